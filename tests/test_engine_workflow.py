"""Every transition of the default policy, allowed and refused, on both trackers. No HTTP."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from config.loader import load_policy
from config.schema import Guard, Mode, Transition
from policies.engine import evaluate
from policies.models import (
    ChangeLabels,
    CreateSubtasks,
    Decision,
    Event,
    EventKind,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
    RememberState,
    Source,
    Subtask,
)
from tests.engine_support import (
    GITHUB_REF,
    NOW,
    PERSON,
    break_guard,
    move,
    snapshot_meeting,
)

POLICY = load_policy()
SOURCES: list[Source] = ["github", "jira"]
ALLOWED = [(t, source) for t in POLICY.workflow.transitions for source in t.from_]
ALLOWED_PAIRS = {(source, t.to) for t, source in ALLOWED}
STATES = [s.id for s in POLICY.workflow.states]
# On GitHub, reopening is the only way out of `closed` and always leads to the reopen target.
REFUSED = [
    (a, b, tracker)
    for a in STATES
    for b in STATES
    for tracker in SOURCES
    if a != b and (a, b) not in ALLOWED_PAIRS and not (tracker == "github" and a == "closed")
]
GUARDED = [(t, source, g) for t, source in ALLOWED for g in t.guards]


_A = TypeVar("_A")


def _of(decision: Decision, kind: type[_A]) -> list[_A]:
    return [a for a in decision.actions if isinstance(a, kind)]


def _result(decision: Decision, rule_id: str) -> bool:
    matches = [r for r in decision.results if r.rule_id == rule_id]
    assert matches, f"rule {rule_id} was not considered: {decision.results}"
    return matches[-1].passed


def _comment(decision: Decision) -> PostComment:
    comments = [c for c in _of(decision, PostComment) if c.marker.startswith("transition-rejected")]
    assert len(comments) == 1, decision.actions
    return comments[0]


def _labels_after(decision: Decision, seen: IssueSnapshot) -> set[str]:
    labels = set(seen.labels)
    for change in _of(decision, ChangeLabels):
        labels = (labels - change.remove) | change.add
    return labels


def _assert_undone(decision: Decision, seen: IssueSnapshot, tracker: Source, before: str, after: str) -> None:
    """The issue is back where it was: same status (label or Jira status), open or closed as before."""
    recorded = [a for a in _of(decision, RememberState) if not a.if_undo_fails]
    assert not recorded, "a refused transition must not move the recorded state"
    fallback = [a.state for a in _of(decision, RememberState) if a.if_undo_fails]
    assert fallback == [after], "should the undo fail, the ledger records where the person's change left it"
    assert {a.rule_id for a in decision.actions} <= {r.rule_id for r in decision.results}, "audit attribution"
    if tracker == "jira":
        assert [a.status for a in _of(decision, MoveToStatus)] == [POLICY.trackers.jira.statuses[before][0]]
        return
    github = POLICY.trackers.github
    status_labels = {github.status_label(s) for s in STATES}
    assert _labels_after(decision, seen) & status_labels == {github.status_label(before)}
    closed = github.closed_states
    if (before in closed) != (after in closed):
        assert [a.status for a in _of(decision, MoveToStatus)] == ["closed" if before in closed else "open"]
    else:
        assert not _of(decision, MoveToStatus)


@pytest.mark.parametrize("tracker", SOURCES)
@pytest.mark.parametrize(("transition", "source"), ALLOWED, ids=[f"{s}->{t.to}" for t, s in ALLOWED])
def test_allowed_transition_with_its_guards_met_passes(
    transition: Transition, source: str, tracker: Source
) -> None:
    decision, _ = move(POLICY, tracker, source, transition.to, snapshot_meeting(POLICY, transition, tracker))

    assert _result(decision, transition.id) is True
    assert all(r.passed for r in decision.results if r.rule_id in {g.id for g in transition.guards})
    assert _of(decision, RememberState)[-1].state == transition.to
    assert not [c for c in _of(decision, PostComment) if c.marker.startswith("transition-rejected")]
    target = POLICY.workflow.state(transition.to)
    assert target is not None
    created = {a.checklist for a in _of(decision, CreateSubtasks)}
    assert created == set(target.checklists)


@pytest.mark.parametrize("tracker", SOURCES)
@pytest.mark.parametrize(
    ("transition", "source", "guard"), GUARDED, ids=[f"{s}->{t.to}:{g.id}" for t, s, g in GUARDED]
)
def test_allowed_transition_with_a_guard_broken_is_undone(
    transition: Transition, source: str, guard: Guard, tracker: Source
) -> None:
    snapshot = break_guard(POLICY, guard, snapshot_meeting(POLICY, transition, tracker), tracker)

    decision, _seen = move(POLICY, tracker, source, transition.to, snapshot)

    assert _result(decision, guard.id) is False
    assert _result(decision, transition.id) is False
    _assert_undone(decision, _seen, tracker, source, transition.to)
    body = _comment(decision).body
    assert "This change of stage was undone." in body
    assert f"`{guard.id}`" in body and f"SOP {guard.sop}" in body
    assert guard.requirement.en in body
    assert not _of(decision, CreateSubtasks)


@pytest.mark.parametrize(
    ("before", "after", "tracker"), REFUSED, ids=[f"{a}->{b}-{t}" for a, b, t in REFUSED]
)
def test_transition_not_in_the_lifecycle_is_undone(before: str, after: str, tracker: Source) -> None:
    decision, _seen = move(POLICY, tracker, before, after, IssueSnapshot(ref=GITHUB_REF))

    assert _result(decision, POLICY.workflow.rule.id) is False
    _assert_undone(decision, _seen, tracker, before, after)
    body = _comment(decision).body
    allowed_next = [POLICY.workflow.state(t.to) for t in POLICY.workflow.transitions_from(before)]
    for state in allowed_next:
        assert state is not None and state.title.en in body


def test_close_before_acceptance_reopens_and_names_the_stages_skipped() -> None:
    decision, _seen = move(POLICY, "github", "in-progress", "closed", IssueSnapshot(ref=GITHUB_REF))

    assert [a.status for a in _of(decision, MoveToStatus)] == ["open"]
    body = _comment(decision).body
    assert "**Closed** can only be entered from Customer acceptance" in body
    assert "- Verification (SOP S4.1" in body and "- Customer acceptance (SOP S4.2" in body


def test_skipped_stages_follow_the_main_line_not_the_waiting_detour() -> None:
    decision, _seen = move(POLICY, "github", "triage", "in-progress", IssueSnapshot(ref=GITHUB_REF))

    body = _comment(decision).body
    assert "- Diagnosis (SOP S2.1" in body and "- Planning (SOP S2.2" in body
    assert "- Waiting for customer" not in body


@pytest.mark.parametrize(
    ("added_first", "steps"),
    [(True, ["add new", "remove old"]), (False, ["remove old", "add new"])],
    ids=["new-label-first", "old-label-removed-first"],
)
def test_github_transition_is_recognised_whichever_label_changes_first(
    added_first: bool, steps: list[str]
) -> None:
    github = POLICY.trackers.github
    old, new = github.status_label("new"), github.status_label("triage")
    labels = {old}
    decisions = []
    for step in steps:
        before = frozenset(labels)
        labels = labels | {new} if step == "add new" else labels - {old}
        event = Event(
            source="github",
            kinds=frozenset({EventKind.LABELS_CHANGED}),
            delivery_id=step,
            actor=PERSON,
            issue=GITHUB_REF,
            labels_before=before,
            labels_after=frozenset(labels),
        )
        decisions.append(
            evaluate(
                POLICY, event, IssueSnapshot(ref=GITHUB_REF, labels=frozenset(labels), last_state="new"), NOW
            )
        )

    first, second = decisions
    if added_first:
        assert _result(first, "start-triage") is True
        assert ChangeLabels("start-triage", remove=frozenset({old})) in first.actions
    else:
        assert first.actions == () and not [r for r in first.results if not r.passed]
        assert _result(second, "start-triage") is True
        assert _of(second, RememberState)[-1].state == "triage"


def test_reopening_a_closed_issue_moves_it_to_in_progress_with_one_status_label() -> None:
    labels = frozenset({POLICY.trackers.github.status_label("closed"), "bug"})
    decision, _seen = move(
        POLICY, "github", "closed", "in-progress", IssueSnapshot(ref=GITHUB_REF, labels=labels)
    )

    assert _result(decision, "reopen") is True
    change = _of(decision, ChangeLabels)[0]
    assert change.add == {"status/in-progress"} and change.remove == {"status/closed"}


def test_warn_mode_comments_without_undoing_and_the_new_state_stands() -> None:
    policy = POLICY.model_copy(update={"mode": Mode.WARN})
    decision, _seen = move(policy, "github", "triage", "in-progress", IssueSnapshot(ref=GITHUB_REF))

    body = _comment(decision).body
    assert body.startswith("**This change of stage does not follow the service procedure.**")
    assert _of(decision, RememberState)[-1].state == "in-progress"
    assert all("status/triage" not in a.add for a in _of(decision, ChangeLabels))
    assert not _of(decision, MoveToStatus)


def test_rule_mode_off_lets_a_guarded_transition_through() -> None:
    transition = POLICY.workflow.transition("triage", "diagnosis")
    assert transition is not None
    policy = POLICY.model_copy(update={"rule_modes": {"owner-assigned": Mode.OFF}})
    snapshot = break_guard(
        policy, transition.guards[2], snapshot_meeting(policy, transition, "github"), "github"
    )

    decision, _seen = move(policy, "github", "triage", "diagnosis", snapshot)

    assert "owner-assigned" not in {r.rule_id for r in decision.results}
    assert _result(decision, "start-diagnosis") is True


def test_guard_set_to_warn_comments_but_keeps_the_transition() -> None:
    transition = POLICY.workflow.transition("triage", "diagnosis")
    assert transition is not None
    policy = POLICY.model_copy(update={"rule_modes": {"owner-assigned": Mode.WARN}})
    snapshot = break_guard(policy, transition.guards[2], snapshot_meeting(policy, transition, "jira"), "jira")

    decision, _seen = move(policy, "jira", "triage", "diagnosis", snapshot)

    assert not _of(decision, MoveToStatus)
    assert "does not follow the service procedure" in _comment(decision).body
    assert _of(decision, RememberState)[-1].state == "diagnosis"


def test_events_caused_by_the_service_itself_produce_nothing() -> None:
    event = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="loop",
        actor=PERSON,
        issue=GITHUB_REF,
        labels_before=frozenset({"status/new"}),
        labels_after=frozenset({"status/new", "status/closed"}),
        by_service=True,
    )
    decision = evaluate(POLICY, event, IssueSnapshot(ref=GITHUB_REF, labels=event.labels_after), NOW)

    assert decision.actions == () and decision.results == ()
    assert "caused by this service" in decision.note


def test_comment_marker_is_stable_for_a_redelivery_and_distinct_for_a_new_delivery() -> None:
    first, _seen = move(POLICY, "jira", "new", "in-progress", IssueSnapshot(ref=GITHUB_REF), delivery="a")
    again, _seen = move(POLICY, "jira", "new", "in-progress", IssueSnapshot(ref=GITHUB_REF), delivery="a")
    other, _seen = move(POLICY, "jira", "new", "in-progress", IssueSnapshot(ref=GITHUB_REF), delivery="b")

    assert _comment(first).marker == _comment(again).marker != _comment(other).marker
    assert first == again


def test_chinese_locale_renders_the_rejection_in_chinese() -> None:
    policy = POLICY.model_copy(update={"locale": "zh-CN"})
    body = _comment(move(policy, "jira", "new", "in-progress", IssueSnapshot(ref=GITHUB_REF))[0]).body

    assert "该阶段变更已被撤销。" in body
    assert "**新建**" in body and "**实施中**" in body
    assert "初步评估" in body


def test_checklist_items_already_under_the_issue_are_not_created_again() -> None:
    transition = POLICY.workflow.transition("in-progress", "verification")
    assert transition is not None
    ready = snapshot_meeting(POLICY, transition, "github")
    first, _seen = move(POLICY, "github", "in-progress", "verification", ready)
    created = _of(first, CreateSubtasks)[0]
    assert created.checklist == "self-check"
    assert created.labels == {POLICY.trackers.github.checklist_label}

    def with_items(titles: tuple[str, ...]) -> IssueSnapshot:
        return replace(ready, subtasks=(*ready.subtasks, *(Subtask(t, done=False) for t in titles)))

    second, _seen = move(POLICY, "github", "in-progress", "verification", with_items(created.titles[:2]))
    third, _seen = move(POLICY, "github", "in-progress", "verification", with_items(created.titles))

    assert _of(second, CreateSubtasks)[0].titles == created.titles[2:]
    assert not _of(third, CreateSubtasks)
    # The comment is still planned (a delivery run again after its items were made owes it); its
    # marker keeps it to one per issue, however often it is planned.
    assert [c.marker for c in _of(third, PostComment) if c.marker.startswith("checklist:")] == [
        "checklist:self-check"
    ]

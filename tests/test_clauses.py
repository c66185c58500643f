"""Issue 10's clauses, on GitHub and on Jira: the preparation before the work (S3.1), the delay
notice (S3.3), and checklist items that say who may close them (S3.1, S4.1, S4.2).

Each clause is shown twice on each tracker, end to end through the fakes: the wrong move (or an
invalid notice) refused and explained, and the right one standing.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses

from config.loader import PolicyError, load_policy, parse_policy
from policies.checklists import item_titles
from policies.context import Context
from policies.engine import evaluate
from policies.followup import section_notice
from policies.ledger import IssueFacts, timeline_entries
from policies.models import (
    Actor,
    Comment,
    CommentPolicy,
    CreateSubtasks,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    PostComment,
    React,
    RememberState,
    Source,
    Subtask,
)
from policies.needs import needs
from policies.sla import Commented, Created, DelayAnnounced, StateChanged, issue_clocks
from policies.sla_notices import due_notices
from runtime.services import utc_now
from runtime.store.ledger import FollowedIssue, LedgerUpdate
from tests.conftest import fixture_json
from tests.engine_support import NOW, PERSON, move, ref_for, snapshot_meeting
from tests.github_support import (
    REF,
    REPO,
    FakeGithub,
    Service,
    add_checklist,
    labelled,
    put_in_state,
)
from tests.jira_support import (
    CLOUD,
    CLOUD_TRANSITION,
    DC_STARTED,
    DEPLOYMENTS,
    Deployment,
    FakeJira,
    Scenario,
    adf_text,
    fake_for,
    follow,
    start,
    status_json,
    subtask_json,
    with_settled_intake,
    with_status_change,
)
from tests.jira_support import Service as JiraService
from tests.jira_support import service as jira_service

POLICY = load_policy()
ISSUE = f"/repos/{REPO}/issues/1"
PLAN = {"github": "### Plan\n\nReplace the disk.", "jira": "h3. Plan\nReplace the disk."}


@pytest.fixture(params=DEPLOYMENTS, ids=lambda d: d.name)
def deployment(request: pytest.FixtureRequest) -> Deployment:
    chosen: Deployment = request.param
    return chosen


def _titles(source: Source, checklist_id: str) -> list[str]:
    checklist = POLICY.checklist(checklist_id)
    assert checklist is not None
    event = Event(source=source, kinds=frozenset(), delivery_id="x", actor=PERSON, issue=ref_for(source))
    return list(item_titles(Context(POLICY, event, IssueSnapshot(ref=ref_for(source)), NOW), checklist))


def _jira_text(fake: FakeJira, comment: Any) -> str:
    return adf_text(comment) if fake.deployment is CLOUD else str(comment).replace("*", "")


# --- S3.1: the preparation is made in planning and done before the work starts ---------------------


@pytest.mark.parametrize("source", ["github", "jira"])
def test_entering_planning_makes_the_preparation_checklist(source: Source) -> None:
    decision, _ = move(POLICY, source, "diagnosis", "planning", IssueSnapshot(ref=ref_for(source)))

    (created,) = [a for a in decision.actions if isinstance(a, CreateSubtasks)]
    assert created.checklist == "preparation" and list(created.titles) == _titles(source, "preparation")


@pytest.mark.parametrize("source", ["github", "jira"])
@pytest.mark.parametrize(
    ("before", "transition"), [("planning", "start-work"), ("customer-confirmation", "customer-confirmed")]
)
def test_the_work_does_not_start_before_the_preparation_is_done(
    source: Source, before: str, transition: str
) -> None:
    found = POLICY.workflow.transition(before, "in-progress")
    assert found is not None and found.id == transition
    ready = snapshot_meeting(POLICY, found, source)
    first = _titles(source, "preparation")[0]
    unprepared = replace(
        ready, subtasks=tuple(replace(s, done=False) if s.title == first else s for s in ready.subtasks)
    )

    refused, _ = move(POLICY, source, before, "in-progress", unprepared)
    started, _ = move(POLICY, source, before, "in-progress", ready)

    failed = {r.rule_id: r for r in refused.violations}
    assert set(failed) >= {"prepared-before-work", transition}
    assert first in failed["prepared-before-work"].reasons
    (comment,) = [a for a in refused.actions if isinstance(a, PostComment)]
    assert first in comment.body and "`prepared-before-work`, SOP S3.1" in comment.body
    assert not started.violations and RememberState(transition, "in-progress") in started.actions


@pytest.mark.parametrize("source", ["github", "jira"])
def test_verification_no_longer_asks_for_the_preparation(source: Source) -> None:
    verify = POLICY.workflow.transition("in-progress", "verification")
    assert verify is not None and all(g.id != "prepared-before-work" for g in verify.guards)

    decision, _ = move(
        POLICY, source, "in-progress", "verification", snapshot_meeting(POLICY, verify, source)
    )

    assert not decision.violations


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_issue_adopted_in_progress_is_not_held_to_a_preparation_it_was_never_given(source: Source) -> None:
    back = POLICY.workflow.transition("waiting-for-customer", "in-progress")
    assert back is not None
    ready = snapshot_meeting(POLICY, back, source)
    adopted = replace(ready, adopted=True, subtasks=())

    decision, _ = move(POLICY, source, "waiting-for-customer", "in-progress", adopted)

    assert not decision.violations
    (waived,) = [r for r in decision.results if r.rule_id == "prepared-before-work"]
    assert waived.passed and "not demanded" in waived.reasons[0]
    assert not [a for a in decision.actions if isinstance(a, CreateSubtasks | PostComment)]


@pytest.mark.parametrize("source", ["github", "jira"])
def test_an_issue_in_progress_from_before_the_rule_is_not_held_to_it_back_from_waiting(
    source: Source,
) -> None:
    """Followed since the preparation was checked at verification: in progress with an item open,
    it waits for the customer and comes back to work, which it was doing already."""
    back = POLICY.workflow.transition("waiting-for-customer", "in-progress")
    assert back is not None
    ready = snapshot_meeting(POLICY, back, source)
    first = _titles(source, "preparation")[0]
    timeline = (
        Created(at=NOW - dt.timedelta(hours=3), state="in-progress"),
        StateChanged(at=NOW - dt.timedelta(hours=1), state="waiting-for-customer"),
    )
    legacy = replace(
        ready,
        timeline=timeline,
        subtasks=tuple(replace(s, done=False) if s.title == first else s for s in ready.subtasks),
    )

    decision, _ = move(POLICY, source, "waiting-for-customer", "in-progress", legacy)

    assert not decision.violations
    (waived,) = [r for r in decision.results if r.rule_id == "prepared-before-work"]
    assert waived.reasons == ("back from waiting to the stage it was in: not demanded again",)


@pytest.mark.parametrize("source", ["github", "jira"])
@pytest.mark.parametrize(
    ("before", "adopted"), [("planning", True), ("planning", False), ("customer-confirmation", False)]
)
def test_an_issue_without_its_preparation_is_held_and_given_it(
    source: Source, before: str, adopted: bool
) -> None:
    """Adopted in planning, or followed since before planning made the checklist (in planning or
    in customer confirmation, which makes none): the start is undone, and the checklist it lacks
    is made in the stage it returns to, so the work can start once it is done."""
    start_work = POLICY.workflow.transition(before, "in-progress")
    assert start_work is not None
    lacking = replace(snapshot_meeting(POLICY, start_work, source), subtasks=(), adopted=adopted)

    decision, _ = move(POLICY, source, before, "in-progress", lacking)

    assert "prepared-before-work" in {r.rule_id for r in decision.violations}
    (created,) = [a for a in decision.actions if isinstance(a, CreateSubtasks)]
    assert list(created.titles) == _titles(source, "preparation")


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_deleted_preparation_item_is_made_again_when_the_start_is_undone(source: Source) -> None:
    start_work = POLICY.workflow.transition("customer-confirmation", "in-progress")
    assert start_work is not None
    ready = snapshot_meeting(POLICY, start_work, source)
    first = _titles(source, "preparation")[0]
    deleted = replace(ready, subtasks=tuple(s for s in ready.subtasks if s.title != first))

    decision, _ = move(POLICY, source, "customer-confirmation", "in-progress", deleted)

    assert "prepared-before-work" in {r.rule_id for r in decision.violations}
    (created,) = [a for a in decision.actions if isinstance(a, CreateSubtasks)]
    assert list(created.titles) == [first]


def test_github_a_legacy_issue_in_customer_confirmation_is_given_its_preparation_and_starts(
    sopguard: Service, github: FakeGithub
) -> None:
    """Followed since before planning made the preparation: no sub-issues. The start is undone,
    the preparation is made, and done it lets the work start."""
    put_in_state(sopguard, github, "customer-confirmation", "customer-confirmed", APPROVED)

    sopguard.deliver(labelled(github, "status/in-progress", body=PLAN["github"]), "start-1")

    assert "status/customer-confirmation" in github.labels and "status/in-progress" not in github.labels
    assert [s["title"] for s in github.sub_issues] == _titles("github", "preparation")
    assert any("`prepared-before-work`, SOP S3.1" in c for c in github.our_comments())

    for sub in github.sub_issues:
        sub["state"] = "closed"
    github.labels.remove("status/customer-confirmation")
    sopguard.deliver(labelled(github, "status/in-progress", body=PLAN["github"]), "start-2")

    assert [label for label in github.labels if label.startswith("status/")] == ["status/in-progress"]
    assert sopguard.intake.store.ledger.memory(REF).last_state == "in-progress"


def test_jira_a_legacy_issue_in_customer_confirmation_is_given_its_preparation_and_starts(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    scenario = _jira_start_work(deployment, open_item=False, before="Customer Confirmation", subtasks=False)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)

    sopguard.deliver(scenario.payload, "start-1")

    assert fake.status == "Customer Confirmation"
    assert fake.subtask_summaries() == _titles("jira", "preparation")
    assert any("prepared-before-work" in _jira_text(fake, c) for c in fake.our_comments())

    fake.status = "In Progress"
    payload = copy.deepcopy(scenario.payload)
    payload["issue"]["fields"]["subtasks"] = [
        {**s, "fields": {**s["fields"], "status": status_json("Done")}} for s in fake.subtasks
    ]
    sopguard.deliver(payload, "start-2")

    assert fake.status == "In Progress"
    fake.check_against_openapi()


def test_github_starting_the_work_unprepared_is_undone_and_prepared_it_stands(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "planning", "plan/approved")  # the plan reviewed (S2.2)
    add_checklist(github, "preparation", open_items=1)

    sopguard.deliver(labelled(github, "status/in-progress", body=PLAN["github"]), "start-1")

    assert "status/planning" in github.labels and "status/in-progress" not in github.labels
    (comment,) = github.our_comments()
    assert "Preparation: Tools, documents and parts are ready" in comment
    assert "`prepared-before-work`, SOP S3.1" in comment

    github.sub_issues[0]["state"] = "closed"
    sopguard.deliver(labelled(github, "status/in-progress", body=PLAN["github"]), "start-2")

    assert [label for label in github.labels if label.startswith("status/")] == ["status/in-progress"]
    assert len(list(github.our_comments())) == 1
    assert sopguard.intake.store.ledger.memory(REF).last_state == "in-progress"


def _jira_start_work(
    deployment: Deployment, *, open_item: bool, before: str = "Planning", subtasks: bool = True
) -> Scenario:
    base = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload = with_settled_intake(with_status_change(base, before, "In Progress"))
    fields = payload["issue"]["fields"]
    fields["description"] = PLAN["jira"]
    fields["assignee"] = fields.get("assignee") or fields["creator"]
    fields["labels"] = [*(fields.get("labels") or []), APPROVED, "customer-confirmed"]
    project = payload["issue"]["key"].split("-")[0]
    fields["subtasks"] = [
        subtask_json(f"{project}-6{n}", title, "To Do" if open_item and n == 0 else "Done")
        for n, title in enumerate(_titles("jira", "preparation"))
        if subtasks
    ]
    return Scenario("start the work", payload)


APPROVED = "plan/approved"


def _approved_in_planning(sopguard: JiraService, scenario: Scenario) -> None:
    """The plan was reviewed in planning (S2.2): the ledger saw the approver's plan/approved."""
    issue = scenario.payload["issue"]
    labels = frozenset(issue["fields"]["labels"])
    ref = IssueRef("jira", issue["key"].split("-")[0], issue["key"])
    store = sopguard.intake.store
    with store.engine.begin() as db:
        store.ledger.write(db, ref, LedgerUpdate(IssueFacts(True, None, "", (), labels), (), {}), utc_now())


@pytest.mark.parametrize("prepared", [False, True])
def test_jira_starting_the_work_unprepared_is_moved_back_and_prepared_it_stands(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment, prepared: bool
) -> None:
    scenario = _jira_start_work(deployment, open_item=not prepared)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    _approved_in_planning(sopguard, scenario)

    sopguard.deliver(scenario.payload, "start-1")

    if prepared:
        assert fake.status == "In Progress" and fake.our_comments() == []
        return
    assert fake.status == "Planning"
    (comment,) = fake.our_comments()
    text = _jira_text(fake, comment)
    assert "Preparation: Tools, documents and parts are ready" in text
    assert "prepared-before-work" in text and "S3.1" in text
    fake.check_against_openapi()


# --- checklist items that say who may close them (S4.1, S4.2) ----------------------------------------


def _closed(
    source: Source, checklist_id: str, closer: Actor | None, teams: frozenset[str] = frozenset()
) -> tuple[Subtask, ...]:
    return tuple(
        Subtask(title, done=True, key=f"K-{n}", closed_by=closer, closer_teams=teams)
        for n, title in enumerate(_titles(source, checklist_id))
    )


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_self_check_closed_by_someone_outside_the_team_is_not_done(source: Source) -> None:
    verify = POLICY.workflow.transition("verification", "acceptance")
    assert verify is not None
    outsider = replace(
        snapshot_meeting(POLICY, verify, source), subtasks=_closed(source, "self-check", Actor("mallory"))
    )
    member = replace(
        outsider, subtasks=_closed(source, "self-check", Actor("rita"), frozenset({"team-members"}))
    )

    refused, _ = move(POLICY, source, "verification", "acceptance", outsider)
    accepted, _ = move(POLICY, source, "verification", "acceptance", member)

    (failed,) = [r for r in refused.violations if r.rule_id == "self-check-done"]
    first = _titles(source, "self-check")[0]
    assert f"{first} (closed by @mallory: only the service team may close it)" in failed.reasons
    (comment,) = [a for a in refused.actions if isinstance(a, PostComment)]
    assert "closed by @\u2060mallory: only the service team may close it" in comment.body
    assert not accepted.violations


@pytest.mark.parametrize("source", ["github", "jira"])
def test_the_customer_acceptance_item_is_the_reporters_or_the_teams_to_close(source: Source) -> None:
    close = POLICY.workflow.transition("acceptance", "closed")
    assert close is not None
    ready = snapshot_meeting(POLICY, close, source)
    others = tuple(s for s in ready.subtasks if not s.title.startswith("Customer acceptance"))
    by_agent = replace(ready, subtasks=(*others, *_closed(source, "customer-acceptance", Actor("dana"))))
    by_customer = replace(ready, subtasks=(*others, *_closed(source, "customer-acceptance", Actor("carol"))))
    team = frozenset({"team-members"})
    by_team = replace(ready, subtasks=(*others, *_closed(source, "customer-acceptance", Actor("rita"), team)))

    refused, _ = move(POLICY, source, "acceptance", "closed", by_agent)

    (failed,) = [r for r in refused.violations if r.rule_id == "customer-accepted"]
    assert "closed by @dana: only the reporter and the service team may close it" in failed.reasons[-1]
    for allowed in (by_customer, by_team):
        assert not move(POLICY, source, "acceptance", "closed", allowed)[0].violations


def test_an_item_closed_by_nobody_the_tracker_names_counts() -> None:
    verify = POLICY.workflow.transition("verification", "acceptance")
    assert verify is not None
    unknown = replace(
        snapshot_meeting(POLICY, verify, "github"), subtasks=_closed("github", "self-check", None)
    )

    decision, _ = move(POLICY, "github", "verification", "acceptance", unknown)

    assert not decision.violations


def test_needs_name_the_restricted_items_and_their_teams() -> None:
    verify = POLICY.workflow.transition("verification", "acceptance")
    assert verify is not None
    _, snapshot = move(
        POLICY, "github", "verification", "acceptance", snapshot_meeting(POLICY, verify, "github")
    )
    github = POLICY.trackers.github
    event = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="d",
        actor=PERSON,
        issue=ref_for("github"),
        labels_before=frozenset({github.status_label("verification")}),
        labels_after=frozenset({github.status_label("verification"), github.status_label("acceptance")}),
    )

    wanted = needs(POLICY, event, snapshot)

    assert wanted.subtasks and wanted.closers == frozenset(_titles("github", "self-check"))
    assert set(wanted.closer_teams) == {"team-members"}


@pytest.mark.parametrize(("closer", "member"), [("mallory", False), ("rita", True)])
def test_github_a_self_check_closed_by_a_passer_by_keeps_the_issue_in_verification(
    sopguard: Service, github: FakeGithub, closer: str, member: bool
) -> None:
    put_in_state(sopguard, github, "verification")
    add_checklist(github, "self-check", closed_by=closer)
    if member:
        github.collaborators.add(closer)
    # The list of sub-issues does not say who closed them: each closed item is read once.
    closed_items = [f"GET /repos/{REPO}/issues/{s['number']}" for s in github.sub_issues]

    sopguard.deliver(labelled(github, "status/acceptance"), "accept-1")

    calls = github.calls()
    assert f"GET /repos/{REPO}/collaborators/{closer}" in calls
    assert [c for c in calls if c in closed_items] == closed_items
    states = [label for label in github.labels if label.startswith("status/")]
    if member:
        assert states == ["status/acceptance"]
        assert not [c for c in github.our_comments() if "self-check-done" in c]
        return
    assert states == ["status/verification"]
    (comment,) = github.our_comments()
    assert (
        "Self-check: The problem is solved (closed by @\u2060mallory: only the service team may close it)"
        in comment
    )
    assert "`self-check-done`, SOP S4.1" in comment


def test_github_a_sub_issue_whose_closer_cannot_be_read_counts_as_done(
    sopguard: Service, github: FakeGithub
) -> None:
    """The `GET` of a closed sub-issue fails: who closed it is unknown, and it counts (quiet
    rather than untrue), as for an account since deleted."""
    put_in_state(sopguard, github, "verification")
    add_checklist(github, "self-check", closed_by="mallory")
    for sub in github.sub_issues:
        github.fail("GET", f"/issues/{sub['number']}", *[(404, {}, '{"message": "Not Found"}')] * 3)

    sopguard.deliver(labelled(github, "status/acceptance"), "accept-1")

    assert [label for label in github.labels if label.startswith("status/")] == ["status/acceptance"]


def _jira_person(deployment: Deployment, ident: str) -> dict[str, str]:
    if deployment is CLOUD:
        return {"accountId": ident, "displayName": ident.title()}
    return {"name": ident, "key": ident, "displayName": ident.title()}


def _jira_request_acceptance(deployment: Deployment) -> Scenario:
    base = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload = with_settled_intake(with_status_change(base, "Verification", "Acceptance"))
    project = payload["issue"]["key"].split("-")[0]
    payload["issue"]["fields"]["subtasks"] = [
        subtask_json(f"{project}-7{n}", title, "Done")
        for n, title in enumerate(_titles("jira", "self-check"))
    ]
    return Scenario("request acceptance", payload)


@pytest.mark.parametrize(("closer", "member"), [("mallory", False), ("rita", True)])
def test_jira_a_self_check_closed_by_someone_without_the_role_is_moved_back(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment, closer: str, member: bool
) -> None:
    scenario = _jira_request_acceptance(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)
    for subtask in fake.subtasks:
        fake.closed_by(subtask["key"], _jira_person(deployment, closer))
    if member:
        fake.in_role("Service Desk Team", users=[closer])

    sopguard.deliver(scenario.payload, "accept-1")

    assert f"GET /rest/api/2/issue/{fake.subtasks[0]['key']}/changelog" in fake.calls()
    if member:
        assert fake.status == "Acceptance"
        assert not [c for c in fake.our_comments() if "self-check-done" in _jira_text(fake, c)]
        return
    assert fake.status == "Verification"
    (comment,) = fake.our_comments()
    text = _jira_text(fake, comment)
    assert (
        "Self-check: The problem is solved (closed by" in text
        and "only the service team may close it" in text
    )
    assert "S4.1" in text
    fake.check_against_openapi()


# --- team names in the locale ------------------------------------------------------------------------


def test_in_chinese_the_built_ins_and_titled_teams_are_named_in_chinese() -> None:
    chinese = POLICY.model_copy(update={"locale": "zh-CN"})
    verify = chinese.workflow.transition("verification", "acceptance")
    assert verify is not None
    outsider = replace(
        snapshot_meeting(chinese, verify, "github"),
        subtasks=_closed("github", "self-check", Actor("mallory")),
    )
    outsider = replace(
        outsider,
        subtasks=tuple(replace(s, title=t) for s, t in zip(outsider.subtasks, _zh_titles(), strict=True)),
    )

    refused, _ = move(chinese, "github", "verification", "acceptance", outsider)

    (comment,) = [a for a in refused.actions if isinstance(a, PostComment)]
    assert "（由 @\u2060mallory 关闭：仅 服务团队成员 可以关闭）" in comment.body
    label = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id="d-2",
        actor=Actor("mallory"),
        issue=ref_for("github"),
        labels_after=frozenset({"plan/approved"}),
    )
    snapshot = IssueSnapshot(ref=ref_for("github"), labels=frozenset({"plan/approved"}), assignees=("dana",))
    (removed,) = [a for a in evaluate(chinese, label, snapshot, NOW).actions if isinstance(a, PostComment)]
    assert "仅 方案评审人 可以添加；负责人、方案作者 不可添加" in removed.body


def _zh_titles() -> list[str]:
    checklist = POLICY.checklist("self-check")
    assert checklist is not None
    return [f"{checklist.title.get('zh-CN')}: {item.get('zh-CN')}" for item in checklist.items]


# --- the delay notice (S3.3): public, in advance, with a new date and a reason -------------------------

DELAY = {
    "github": "### Delay\n\nThe replacement disk arrives late; new date: 2026-12-20.",
    "jira": "h3. Delay\nThe replacement disk arrives late; new date: 2026-12-20.",
}


def _commented(source: Source, body: str, *, public: bool = True, at: dt.datetime = NOW) -> Event:
    return Event(
        source=source,
        kinds=frozenset({EventKind.COMMENTED}),
        delivery_id="c-1",
        actor=Actor("dana"),
        issue=ref_for(source),
        name="issue_comment.created" if source == "github" else "comment_created",
        comment=Comment(Actor("dana"), body, id="31", public=public, at=at),
        at=at,
    )


def _followed(source: Source, *, created: dt.datetime = NOW - dt.timedelta(hours=1)) -> IssueSnapshot:
    """A P1 issue followed since `created` (its resolution is due 4 working hours later)."""
    timeline = (Created(at=created, state="in-progress", priority="P1"),)
    return IssueSnapshot(
        ref=ref_for(source), reporter="carol", timeline=timeline, actor_teams=frozenset({"team-members"})
    )


def _delays(source: Source, event: Event, snapshot: IssueSnapshot) -> list[DelayAnnounced]:
    decision = evaluate(POLICY, event, snapshot, NOW)
    facts = IssueFacts(True, "P1", "carol", (), frozenset())
    entries = timeline_entries(POLICY, event, snapshot, decision, facts, "P1", NOW)
    return [e for e in entries if isinstance(e, DelayAnnounced)]


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_public_delay_notice_in_advance_with_date_and_reason_counts(source: Source) -> None:
    event, snapshot = _commented(source, DELAY[source]), _followed(source)

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert not [a for a in decision.actions if isinstance(a, PostComment)]
    ((rule, passed),) = [(r.rule_id, r.passed) for r in decision.results if r.sop == "S3.3"]
    assert (rule, passed) == ("delay-announced", True)
    (delay,) = _delays(source, event, snapshot)
    assert (delay.new_date, delay.reason) == ("2026-12-20", "The replacement disk arrives late")


@pytest.mark.parametrize(
    ("source", "body", "public", "created", "said"),
    [
        ("jira", DELAY["jira"], False, NOW - dt.timedelta(hours=1), "it is an internal note"),
        (
            "github",
            DELAY["github"],
            True,
            NOW - dt.timedelta(days=3),
            "it comes after the resolution deadline",
        ),
        ("jira", DELAY["jira"], True, NOW - dt.timedelta(days=3), "it comes after the resolution deadline"),
        (
            "github",
            "### Delay\n\nThe disk arrives late.",
            True,
            NOW - dt.timedelta(hours=1),
            "it gives no new date",
        ),
        ("jira", "h3. Delay\nNew date: 2026-12-20", True, NOW - dt.timedelta(hours=1), "it gives no reason"),
        (
            "github",
            "### Delay\n\nLate parts; 2026-11-20.",
            True,
            NOW - dt.timedelta(hours=1),
            "is not a later day",
        ),
    ],
)
def test_a_delay_notice_that_does_not_count_is_answered_once_and_not_recorded(
    source: Source, body: str, public: bool, created: dt.datetime, said: str
) -> None:
    event, snapshot = _commented(source, body, public=public), _followed(source, created=created)

    decision = evaluate(POLICY, event, snapshot, NOW)

    (answer,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert answer.marker == "delay-refused:31"
    assert answer.body.startswith("**This delay notice does not count as telling the customer.** @dana")
    assert said in answer.body and "Rule `delay-announced`, SOP S3.3" in answer.body
    assert "Edit this comment to put it right" in answer.body
    assert _delays(source, event, snapshot) == []
    edited = replace(event, name="issue_comment.edited" if source == "github" else "comment_updated")
    (again,) = [a for a in evaluate(POLICY, edited, snapshot, NOW).actions if isinstance(a, PostComment)]
    assert again.marker == answer.marker and again.on_existing == CommentPolicy.UPSERT


def _edit(source: Source, body: str, at: dt.datetime) -> Event:
    """An edit at `at` of the comment `_commented` wrote an hour before NOW."""
    event = _commented(source, body, at=at)
    assert event.comment is not None
    written = replace(event.comment, at=NOW - dt.timedelta(hours=1))
    return replace(
        event, name="issue_comment.edited" if source == "github" else "comment_updated", comment=written
    )


def _with_comment(snapshot: IssueSnapshot, *notices: DelayAnnounced) -> IssueSnapshot:
    written = Commented(
        at=NOW - dt.timedelta(hours=1), author="dana", is_reporter=False, is_bot=False, comment_id="31"
    )
    return replace(snapshot, timeline=(*snapshot.timeline, written, *notices))


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_refused_notice_put_right_by_an_edit_counts_once_at_the_edits_time(source: Source) -> None:
    snapshot = _with_comment(_followed(source, created=NOW - dt.timedelta(hours=2)))
    fixed = _edit(source, DELAY[source], at=NOW)

    (delay,) = _delays(source, fixed, snapshot)
    decision = evaluate(POLICY, fixed, snapshot, NOW)

    assert (delay.at, delay.new_date, delay.comment_id) == (NOW, "2026-12-20", "31")
    # The refusal, where there was one, is brought up to date; none is posted where there was none.
    (answer,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert (answer.marker, answer.on_existing) == ("delay-refused:31", CommentPolicy.UPDATE_ONLY)
    assert answer.body.startswith("**This delay notice now counts.**")
    (audited,) = [r for r in decision.results if r.rule_id == "delay-announced"]
    assert audited.passed and audited.reasons == ("delay announced by dana: new date 2026-12-20",)
    counted = _with_comment(snapshot, delay)
    assert _delays(source, _edit(source, DELAY[source], at=NOW + dt.timedelta(minutes=5)), counted) == []
    assert not [r for r in evaluate(POLICY, fixed, counted, NOW).results if r.rule_id == "delay-announced"]


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_notice_put_right_by_an_edit_after_the_deadline_is_late(source: Source) -> None:
    """Written in time without a date; the date edited in once the resolution deadline passed."""
    created = NOW - dt.timedelta(days=3)
    snapshot = _with_comment(_followed(source, created=created))
    fixed = _edit(source, DELAY[source], at=NOW)
    assert fixed.comment is not None
    fixed = replace(fixed, comment=replace(fixed.comment, at=created + dt.timedelta(minutes=30)))

    decision = evaluate(POLICY, fixed, snapshot, NOW)

    assert _delays(source, fixed, snapshot) == []
    (answer,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert "it comes after the resolution deadline" in answer.body


def test_a_delay_section_edited_into_someone_elses_comment_is_no_notice() -> None:
    """An admin's edit: the teams looked up are the editor's, and the comment is still its author's."""
    edit = replace(_edit("jira", DELAY["jira"], at=NOW), actor=Actor("admin"))
    snapshot = _with_comment(_followed("jira"))

    assert _delays("jira", edit, snapshot) == []
    assert not [a for a in evaluate(POLICY, edit, snapshot, NOW).actions if isinstance(a, PostComment)]


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_delay_command_in_an_internal_note_or_too_late_is_refused(source: Source) -> None:
    command = '/delay 2026-12-20 "the replacement disk arrives late"'
    internal = _commented(source, command, public=False)
    late = _followed(source, created=NOW - dt.timedelta(days=3))

    for event, snapshot in ((internal, _followed(source)), (_commented(source, command), late)):
        decision = evaluate(POLICY, event, snapshot, NOW)
        (answer,) = [a for a in decision.actions if isinstance(a, PostComment)]
        assert "This delay notice does not count" in answer.body and "command-delay" in answer.body
        # A command is read when written, not when edited: the answer asks for a new one.
        assert "Give /delay again, in a new comment, to put it right." in answer.body
        assert "Edit this comment" not in answer.body
        assert not [a for a in decision.actions if isinstance(a, React)]
        assert _delays(source, event, snapshot) == []

    counted = _commented(source, command)
    assert [d.new_date for d in _delays(source, counted, _followed(source))] == ["2026-12-20"]


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_the_resolution_breach_says_whether_a_delay_notice_was_given(locale: str) -> None:
    policy = POLICY.model_copy(update={"locale": locale})
    created = NOW - dt.timedelta(days=3)
    timeline: tuple[Any, ...] = (Created(at=created, state="in-progress", priority="P1"),)
    notice = DelayAnnounced(
        at=created + dt.timedelta(hours=1), author="dana", new_date="2026-12-20", reason="x"
    )
    clocks = issue_clocks(policy.sla, timeline, NOW)
    facts = IssueFacts(True, "P1", "carol", ("dana",), frozenset())

    def breach(entries: tuple[Any, ...]) -> str:
        notices = due_notices(policy, ref_for("github"), facts, clocks, (), entries)
        (resolution,) = [n for n in notices if n.target_id == "resolution"]
        (comment,) = [a for a in resolution.actions if isinstance(a, PostComment)]
        return comment.body

    told, untold = breach((*timeline, notice)), breach(timeline)
    if locale == "en":
        assert "The customer was told of the delay in advance, with the new date **Dec 20, 2026**." in told
        assert "The customer was not told of a delay before the deadline" in untold
    else:
        assert "截止前已告知客户延期，新的预计时间为 **2026年12月20日**。" in told
        assert "截止前未告知客户延期" in untold


def test_github_a_delay_notice_without_a_date_is_answered_and_one_with_it_recorded(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")

    sopguard.deliver(_github_comment("### Delay\n\nThe disk arrives late.", 501), "delay-1", "issue_comment")
    sopguard.deliver(_github_comment(DELAY["github"], 502), "delay-2", "issue_comment")

    (answer,) = github.our_comments()
    assert "it gives no new date: write it as YYYY-MM-DD" in answer and "SOP S3.3" in answer
    timeline = _timeline_of(sopguard.intake.store.ledger.one(REF))
    assert [(e.new_date, e.author) for e in timeline if isinstance(e, DelayAnnounced)] == [
        ("2026-12-20", "dana")
    ]


def _github_comment(
    body: str,
    comment_id: int,
    *,
    login: str = "dana",
    association: str = "MEMBER",
    edited_at: str = "",
) -> dict[str, Any]:
    """A comment by `login`, written when the recording was; with `edited_at`, its edit then."""
    payload = copy.deepcopy(fixture_json("github", "issue_comment__created.json"))
    written = payload["comment"]["created_at"]
    payload["comment"].update(
        body=body,
        id=comment_id,
        author_association=association,
        created_at=written,
        updated_at=edited_at or written,
    )
    for person in (payload["comment"]["user"], payload["sender"]):
        person.update(login=login, id=77)
    if edited_at:
        payload.update(action="edited", changes={"body": {"from": "before the edit"}})
    return payload


def test_github_a_refused_notice_put_right_by_an_edit_is_recorded_once(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")
    edited = "2019-05-15T15:25:21Z"  # five minutes after the recorded comment

    sopguard.deliver(_github_comment("### Delay\n\nThe disk arrives late.", 501), "delay-1", "issue_comment")
    sopguard.deliver(_github_comment(DELAY["github"], 501, edited_at=edited), "delay-2", "issue_comment")
    sopguard.deliver(
        _github_comment(DELAY["github"] + " Sorry.", 501, edited_at=edited), "delay-3", "issue_comment"
    )

    (answer,) = github.our_comments()  # the refusal, edited in place: it is true again
    assert answer.startswith(
        "**This delay notice now counts.** @dana's edit put it right: the customer was told of the "
        "delay in public, with the new date (Dec 20, 2026) and the reason."
    )
    assert "it gives no new date" not in answer and "Rule `delay-announced`, SOP S3.3" in answer
    timeline = _timeline_of(sopguard.intake.store.ledger.one(REF))
    (delay,) = [e for e in timeline if isinstance(e, DelayAnnounced)]
    assert (delay.new_date, delay.comment_id, delay.at.isoformat()) == (
        "2026-12-20",
        "501",
        edited.replace("Z", "+00:00"),
    )
    audited = [
        (e.delivery_id, e.passed)
        for e in sopguard.intake.store.audit.entries()
        if e.rule_id == "delay-announced"
    ]
    assert audited == [("delay-1", False), ("delay-2", True)]


@pytest.mark.parametrize("source", ["github", "jira"])
@pytest.mark.parametrize("body", [DELAY["github"], "### Delay\n\nI am away next week."])
def test_a_delay_section_by_someone_outside_the_team_is_no_notice_and_not_answered(
    source: Source, body: str
) -> None:
    """The reporter's own "### Delay" (valid or not) is not the team telling the customer."""
    text = body if source == "github" else body.replace("### Delay\n\n", "h3. Delay\n")
    event = replace(_commented(source, text), actor=Actor("carol"))
    assert event.comment is not None
    event = replace(event, comment=replace(event.comment, author=Actor("carol")))
    snapshot = replace(_followed(source), actor_teams=frozenset())

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert not [a for a in decision.actions if isinstance(a, PostComment)]
    (audited,) = [r for r in decision.results if r.rule_id == "delay-announced"]
    assert audited.passed
    assert audited.reasons == ("not a delay notice: carol is not one who gives them (the service team)",)
    assert _delays(source, event, snapshot) == []


def test_a_policy_can_say_who_gives_delay_notices() -> None:
    assert POLICY.sla.delay_notice is not None and POLICY.sla.delay_notice.by == ["team-members"]
    reporters = POLICY.model_copy(
        update={
            "sla": POLICY.sla.model_copy(
                update={
                    "delay_notice": POLICY.sla.delay_notice.model_copy(
                        update={"by": ["reporter", "team-members"]}
                    )
                }
            )
        }
    )
    event = replace(_commented("github", DELAY["github"]), actor=Actor("carol"))
    assert event.comment is not None
    event = replace(event, comment=replace(event.comment, author=Actor("carol")))
    snapshot = replace(_followed("github"), actor_teams=frozenset())
    decision = evaluate(reporters, event, snapshot, NOW)
    facts = IssueFacts(True, "P1", "carol", (), frozenset())
    entries = timeline_entries(reporters, event, snapshot, decision, facts, "P1", NOW)
    assert [e.author for e in entries if isinstance(e, DelayAnnounced)] == ["carol"]


def test_github_a_customers_delay_section_is_not_recorded_nor_answered(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress")

    customer = _github_comment(DELAY["github"], 501, login="carol", association="NONE")
    sopguard.deliver(customer, "delay-1", "issue_comment")

    assert list(github.our_comments()) == []
    assert not [
        e for e in _timeline_of(sopguard.intake.store.ledger.one(REF)) if isinstance(e, DelayAnnounced)
    ]
    (audited,) = [e for e in sopguard.intake.store.audit.entries() if e.rule_id == "delay-announced"]
    assert audited.passed and "not a delay notice: carol" in audited.reasons[0]


def _jira_desk_with_comment(
    tmp_path: Path, mock: responses.RequestsMock, deployment: Deployment, author: str, **comment: Any
) -> tuple[dict[str, Any], FakeJira, JiraService]:
    """A comment delivery by `author` on an issue in progress that sopguard follows, where Dana holds
    the project role Developers (the service team); the Jira and the service it reaches."""
    payload = copy.deepcopy(fixture_json("jira", "mattermost__webhook-cloud-comment-created.json"))
    payload["comment"].update(author=_jira_person(deployment, author), **comment)
    issue = {"issue": {"key": payload["issue"]["key"], "fields": {"status": {"name": "In Progress"}}}}
    fake = fake_for(mock, deployment, issue)
    fake.in_role("Developers", users=["dana"])
    sopguard = jira_service(tmp_path, deployment)
    follow(sopguard, issue)
    return payload, fake, sopguard


def _jira_delays(sopguard: JiraService, fake: FakeJira) -> list[DelayAnnounced]:
    ref = IssueRef("jira", fake.project, fake.key)
    return [e for e in _timeline_of(sopguard.intake.store.ledger.one(ref)) if isinstance(e, DelayAnnounced)]


@pytest.mark.parametrize("public", [False, True])
def test_jira_an_internal_note_with_a_delay_section_does_not_tell_the_customer(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment, public: bool
) -> None:
    payload, fake, sopguard = _jira_desk_with_comment(
        tmp_path, no_network, deployment, "dana", body=DELAY["jira"], jsdPublic=public
    )

    sopguard.deliver(payload, "delay-1")

    delays = _jira_delays(sopguard, fake)
    if public:
        assert [d.new_date for d in delays] == ["2026-12-20"] and fake.our_comments() == []
        return
    assert delays == []
    (answer,) = fake.our_comments()
    text = _jira_text(fake, answer)
    assert "This delay notice does not count as telling the customer." in text
    assert "it is an internal note, which the customer cannot read" in text and "S3.3" in text
    fake.check_against_openapi()


def test_jira_a_customers_delay_section_is_not_recorded_nor_answered(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    payload, fake, sopguard = _jira_desk_with_comment(
        tmp_path, no_network, deployment, "carol", body=DELAY["jira"], jsdPublic=True
    )

    sopguard.deliver(payload, "delay-1")

    assert not _jira_delays(sopguard, fake)
    assert fake.our_comments() == []
    (audited,) = [e for e in sopguard.intake.store.audit.entries() if e.rule_id == "delay-announced"]
    assert audited.passed and "not a delay notice: " in audited.reasons[0]
    fake.check_against_openapi()


def test_jira_a_refused_notice_put_right_by_an_edit_is_recorded_once(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    dana = _jira_person(deployment, "dana")
    payload, fake, sopguard = _jira_desk_with_comment(
        tmp_path, no_network, deployment, "dana", body="h3. Delay\nThe disk arrives late.", updateAuthor=dana
    )
    edit = copy.deepcopy(payload)
    edit["webhookEvent"] = "comment_updated"
    edit["timestamp"] = payload["timestamp"] + 300_000
    edit["comment"]["body"] = DELAY["jira"]

    sopguard.deliver(payload, "delay-1")
    sopguard.deliver(edit, "delay-2")
    sopguard.deliver(edit, "delay-3")

    (delay,) = _jira_delays(sopguard, fake)
    assert (delay.new_date, delay.comment_id) == ("2026-12-20", payload["comment"]["id"])
    assert delay.at == dt.datetime.fromtimestamp(edit["timestamp"] / 1000, dt.UTC)
    # Jira comments are never edited: the refusal, then one follow-up that says it now counts.
    refusal, put_right = fake.our_comments()
    assert "it gives no new date" in _jira_text(fake, refusal)
    assert "This delay notice now counts." in _jira_text(fake, put_right)
    assert "new date (Dec 20, 2026)" in _jira_text(fake, put_right)
    fake.check_against_openapi()


def _timeline_of(issue: FollowedIssue | None) -> tuple[Any, ...]:
    assert issue is not None
    return issue.timeline


@pytest.mark.parametrize(
    ("text", "date", "reason"),
    [
        ("New date: 2026-12-20\nReason: the part is late.", "2026-12-20", "the part is late"),
        (
            "We expect to finish on 2026/12/20 because the vendor is late",
            "2026-12-20",
            "We expect to finish because the vendor is late",
        ),
        ("新的预计时间：2026年12月20日\n原因：备件未到货", "2026-12-20", "备件未到货"),
        ("预计延期至2026年12月20日，原因：备件未到", "2026-12-20", "预计延期，备件未到"),
        ("New date: 2026-12-20", "2026-12-20", ""),
        ("Parts are late; 2026-02-30 is not a day.", "", "Parts are late; 2026-02-30 is not a day"),
        (
            "The part ordered on 2026-11-20 was lost; new date: 2026-12-20.",
            "2026-12-20",
            "The part ordered on 2026-11-20 was lost",
        ),
        (
            "Expected: 2026-12-20. We had said 2026-12-27, but the part came early.",
            "2026-12-20",
            "We had said 2026-12-27, but the part came early",
        ),
        ("The vendor shipped on 2026-11-20 and promises 2026-12-20.", "2026-12-20", None),
        (
            "2026年11月20日订购的备件丢失，新的预计时间：2026年12月20日",
            "2026-12-20",
            "2026年11月20日订购的备件丢失",
        ),
    ],
)
def test_a_delay_sections_labelled_or_latest_date_is_its_new_date_and_the_rest_its_reason(
    text: str, date: str, reason: str | None
) -> None:
    """A labelled date ("new date:", "Expected:", "新的预计时间：") wins; else the latest one."""
    event = _commented("github", f"### Delay\n\n{text}")
    assert event.comment is not None
    context = Context(POLICY, event, _followed("github"), NOW)

    notice = section_notice(context, event.comment)

    assert notice is not None
    assert (notice.new_date.isoformat() if notice.new_date else "") == date
    assert reason is None or notice.reason == reason


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_later_day_is_judged_in_the_calendars_zone(source: Source) -> None:
    """23:30 UTC on Mon 2026-11-23 is 07:30 on Tue 2026-11-24 in Asia/Shanghai (the calendar's)."""
    at = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC)
    snapshot = _followed(source, created=at - dt.timedelta(hours=1))
    today = _commented(source, '/delay 2026-11-24 "the part is late"', at=at)
    tomorrow = _commented(source, '/delay 2026-11-25 "the part is late"', at=at)

    refused = evaluate(POLICY, today, snapshot, at)
    (answer,) = [a for a in refused.actions if isinstance(a, PostComment)]
    assert "is not a later day" in answer.body
    decision = evaluate(POLICY, tomorrow, snapshot, at)
    facts = IssueFacts(True, "P1", "carol", (), frozenset())
    entries = timeline_entries(POLICY, tomorrow, snapshot, decision, facts, "P1", at)
    assert [e.new_date for e in entries if isinstance(e, DelayAnnounced)] == ["2026-11-25"]


def test_a_delay_section_of_long_runs_is_read_without_backtracking() -> None:
    body = "### Delay\n\n" + "new date " * 20_000 + " " * 50_000 + "2026-12-20 " + "reason: " * 20_000
    event = _commented("github", body)
    assert event.comment is not None

    notice = section_notice(Context(POLICY, event, _followed("github"), NOW), event.comment)

    assert notice is not None and notice.new_date == dt.date(2026, 12, 20)


def test_a_refused_delay_notice_is_audited_in_the_policys_locale() -> None:
    chinese = POLICY.model_copy(update={"locale": "zh-CN"})
    event = _commented("jira", "h3. 延期说明\n备件未到", public=False)

    decision = evaluate(chinese, event, _followed("jira"), NOW)

    (refused,) = [r for r in decision.results if r.rule_id == "delay-announced"]
    assert refused.reasons == ("延期说明不予认可：内部备注和未写明新的日期",)
    (answer,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert answer.body.startswith("**此延期说明不视为已告知客户。**")
    assert (
        "- 这是内部备注，客户无法看到：请以公开回复发出\n- 未写明新的日期：请按 YYYY-MM-DD 书写\n"
        in answer.body
    )


def test_a_checklist_item_naming_an_unknown_team_is_refused_with_its_place() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    text = text.replace("zh-CN: 问题已解决, by: team-members}", "zh-CN: 问题已解决, by: team-member}", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "checklists[1].items[0].by[0]" in str(refused.value)
    assert "unknown team 'team-member'" in str(refused.value)


def test_a_section_guard_naming_an_unknown_team_is_refused_with_its_place() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    marked = "          by: team-members # recorded by those who do the work"
    assert marked in text
    text = text.replace(marked, "          by: team-member", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    transitions = [t.id for t in POLICY.workflow.transitions]
    at = transitions.index("start-verification")
    assert f"workflow.transitions[{at}].guards[1].by[0]" in str(refused.value)
    assert "unknown team 'team-member'" in str(refused.value)


def test_a_delay_notice_naming_an_unknown_team_is_refused_with_its_place() -> None:
    text = (Path(__file__).parents[1] / "config" / "sop.yaml").read_text(encoding="utf-8")
    text = text.replace("headings: [Delay, 延期说明]}", "headings: [Delay, 延期说明], by: team-member}", 1)

    with pytest.raises(PolicyError) as refused:
        parse_policy(text)

    assert "sla.delay_notice.by[0]" in str(refused.value)
    assert "unknown team 'team-member'" in str(refused.value)

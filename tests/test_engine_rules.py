"""Intake (S1.2), priority (S1.3) and scopes, through `evaluate`. No HTTP."""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from config.loader import load_policy
from config.schema import Mode, Scope, ScopeMatch
from policies.engine import evaluate
from policies.models import (
    Actor,
    ChangeLabels,
    CommentPolicy,
    Decision,
    Event,
    EventKind,
    IssueSnapshot,
    PostComment,
    RememberManualPriority,
    SetPriority,
    Source,
)
from tests.engine_support import GITHUB_REF, JIRA_REF, NOW, PERSON, complete_fields, ref_for

POLICY = load_policy()
NO_RECEIPT = POLICY.model_copy(update={"sla": POLICY.sla.model_copy(update={"receipt": None})})
_A = TypeVar("_A")


def _of(decision: Decision, kind: type[_A]) -> list[_A]:
    return [a for a in decision.actions if isinstance(a, kind)]


def _event(source: Source, *kinds: EventKind, **changes: object) -> Event:
    base = Event(
        source=source, kinds=frozenset(kinds), delivery_id="d-1", actor=PERSON, issue=ref_for(source)
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def _fields(source: Source, **values: str) -> dict[str, str]:
    """Complete intake fields, with some replaced by intake field id (impact=..., urgency=...)."""
    fields = complete_fields(POLICY, source)
    for field_id, value in values.items():
        field = POLICY.intake.field(field_id.replace("_", "-"))
        assert field is not None
        fields[field.github.heading if source == "github" else field.jira.field] = value
    return fields


# --- intake -----------------------------------------------------------------------------------


def test_opened_with_missing_fields_gets_one_upserted_comment_and_the_needs_info_label() -> None:
    fields = {k: v for k, v in _fields("github").items() if k not in ("Customer", "Impact scope")}
    decision = evaluate(
        POLICY, _event("github", EventKind.OPENED), IssueSnapshot(ref=GITHUB_REF, fields=fields), NOW
    )

    comments = [c for c in _of(decision, PostComment) if c.rule_id == "intake-required-fields"]
    assert len(comments) == 1 and comments[0].on_existing == CommentPolicy.UPSERT
    assert (
        "- Customer\n" in comments[0].body
        and "- Impact scope (who and how many are affected)" in comments[0].body
    )
    assert "SOP S1.2" in comments[0].body
    assert "needs-info" in _of(decision, ChangeLabels)[0].add


def test_issue_form_no_response_counts_as_missing() -> None:
    fields = _fields("github", customer="_No response_")
    decision = evaluate(
        POLICY, _event("github", EventKind.OPENED), IssueSnapshot(ref=GITHUB_REF, fields=fields), NOW
    )

    result = next(r for r in decision.results if r.rule_id == "intake-required-fields")
    assert not result.passed and result.reasons == ("Customer",)


def test_supplying_the_fields_removes_the_label_and_updates_the_comment_only() -> None:
    snapshot = IssueSnapshot(ref=GITHUB_REF, fields=_fields("github"), labels=frozenset({"needs-info"}))
    decision = evaluate(POLICY, _event("github", EventKind.EDITED), snapshot, NOW)

    comment = next(c for c in _of(decision, PostComment) if c.rule_id == "intake-required-fields")
    assert comment.on_existing == CommentPolicy.UPDATE_ONLY
    assert "All required information is now present." in comment.body
    assert "needs-info" in _of(decision, ChangeLabels)[0].remove


def test_complete_intake_at_open_posts_nothing_about_intake() -> None:
    decision = evaluate(
        POLICY, _event("jira", EventKind.OPENED), IssueSnapshot(ref=JIRA_REF, fields=_fields("jira")), NOW
    )

    assert not [c for c in _of(decision, PostComment) if c.rule_id == "intake-required-fields"]
    assert next(r for r in decision.results if r.rule_id == "intake-required-fields").passed


# --- priority ---------------------------------------------------------------------------------

MATRIX = [
    (impact, urgency, level)
    for impact, row in POLICY.priority.matrix.items()
    for urgency, level in row.items()
]


@pytest.mark.parametrize(("impact", "urgency", "level"), MATRIX)
def test_priority_follows_the_matrix_for_a_standard_customer(impact: str, urgency: str, level: str) -> None:
    fields = _fields("github", impact=impact, urgency=urgency, customer_tier="Standard")
    opened = _event("github", EventKind.OPENED)
    decision = evaluate(POLICY, opened, IssueSnapshot(ref=GITHUB_REF, fields=fields), NOW)

    labels = _of(decision, ChangeLabels)[0]
    assert f"priority/{level}" in labels.add
    (receipt,) = _of(decision, PostComment)  # the receipt says the priority and why; nothing else does
    assert receipt.body.startswith(
        f'**Received.** This request is handled as **{level}**, from impact "{impact}"'
    )
    quiet = evaluate(NO_RECEIPT, opened, IssueSnapshot(ref=GITHUB_REF, fields=fields), NOW)
    comment = next(c for c in _of(quiet, PostComment) if c.rule_id == POLICY.priority.id)
    assert comment.body.startswith(f'**Priority {level}** set from impact "{impact}"')


@pytest.mark.parametrize(("impact", "urgency", "level"), MATRIX)
def test_top_tier_raises_one_level_but_never_above_p1(impact: str, urgency: str, level: str) -> None:
    fields = _fields("jira", impact=impact, urgency=urgency, customer_tier="Strategic")
    decision = evaluate(
        NO_RECEIPT, _event("jira", EventKind.OPENED), IssueSnapshot(ref=JIRA_REF, fields=fields), NOW
    )

    levels = POLICY.priority.levels
    expected = levels[max(levels.index(level) - 1, 0)]
    assert _of(decision, SetPriority) == [
        SetPriority(POLICY.priority.id, expected, POLICY.trackers.jira.priorities[expected])
    ]
    assert f"priority-{expected}" in _of(decision, ChangeLabels)[0].add
    comment = next(c for c in _of(decision, PostComment) if c.rule_id == POLICY.priority.id)
    assert ("raised one level" in comment.body) == (level != "P1")


def test_a_changed_priority_replaces_the_old_label_in_the_same_change() -> None:
    fields = _fields("github", impact="Minor", urgency="Low", customer_tier="Standard")
    snapshot = IssueSnapshot(
        ref=GITHUB_REF, fields=fields, labels=frozenset({"priority/P2", "status/triage"})
    )
    decision = evaluate(POLICY, _event("github", EventKind.EDITED), snapshot, NOW)

    labels = _of(decision, ChangeLabels)
    assert len(labels) == 1
    assert labels[0].add == {"priority/P4"} and labels[0].remove == {"priority/P2"}


def test_unchanged_priority_does_nothing() -> None:
    fields = _fields("github", impact="Minor", urgency="Low", customer_tier="Standard")
    snapshot = IssueSnapshot(ref=GITHUB_REF, fields=fields, labels=frozenset({"priority/P4"}))
    decision = evaluate(POLICY, _event("github", EventKind.EDITED), snapshot, NOW)

    assert decision.actions == ()


def test_a_person_choosing_a_priority_label_is_respected_and_recorded() -> None:
    fields = _fields("github", impact="Minor", urgency="Low", customer_tier="Standard")
    event = _event(
        "github",
        EventKind.LABELS_CHANGED,
        labels_before=frozenset({"priority/P4"}),
        labels_after=frozenset({"priority/P4", "priority/P1"}),
        actor=Actor("dana"),
    )
    snapshot = IssueSnapshot(ref=GITHUB_REF, fields=fields, labels=event.labels_after)
    decision = evaluate(POLICY, event, snapshot, NOW)

    assert RememberManualPriority(POLICY.priority.id, "P1") in decision.actions
    (labels,) = _of(decision, ChangeLabels)
    assert labels.remove == {"priority/P4"} and "priority/P1" not in labels.remove
    comment = next(c for c in _of(decision, PostComment) if c.rule_id == POLICY.priority.id)
    assert "**Priority P1** was chosen by @dana; impact and urgency give P4." in comment.body

    later = evaluate(POLICY, _event("github", EventKind.EDITED), replace(snapshot, manual_priority="P1"), NOW)
    assert not _of(later, ChangeLabels) and not _of(later, PostComment)


def test_a_person_changing_the_jira_priority_is_respected() -> None:
    event = _event("jira", EventKind.PRIORITY_CHANGED, priority_before="Low", priority_after="High")
    decision = evaluate(POLICY, event, IssueSnapshot(ref=JIRA_REF, priority="High"), NOW)

    assert RememberManualPriority(POLICY.priority.id, "P2") in decision.actions
    assert not _of(decision, SetPriority)


def test_warn_mode_suggests_the_priority_without_setting_it() -> None:
    policy = POLICY.model_copy(update={"rule_modes": {POLICY.priority.id: Mode.WARN}})
    fields = _fields("jira", impact="Business outage", urgency="High")
    decision = evaluate(
        policy, _event("jira", EventKind.OPENED), IssueSnapshot(ref=JIRA_REF, fields=fields), NOW
    )

    assert not _of(decision, SetPriority)
    comment = next(c for c in _of(decision, PostComment) if c.rule_id == POLICY.priority.id)
    assert "suggested by" in comment.body and "Please set it." in comment.body


def test_values_match_the_matrix_case_insensitively() -> None:
    fields = _fields("github", impact="business OUTAGE", urgency="low", customer_tier="standard")
    decision = evaluate(
        POLICY, _event("github", EventKind.OPENED), IssueSnapshot(ref=GITHUB_REF, fields=fields), NOW
    )

    assert "priority/P2" in _of(decision, ChangeLabels)[0].add


# --- scopes -----------------------------------------------------------------------------------


def test_a_scope_changes_mode_and_locale_for_matching_repositories_only() -> None:
    scope = Scope(match=ScopeMatch(github="acme/*"), mode=Mode.WARN, locale="zh-CN")
    policy = POLICY.model_copy(update={"scopes": [scope]})
    event = _event(
        "github",
        EventKind.LABELS_CHANGED,
        labels_before=frozenset({"status/new"}),
        labels_after=frozenset({"status/new", "status/closed"}),
    )
    snapshot = IssueSnapshot(ref=GITHUB_REF, labels=event.labels_after, is_open=False, last_state="new")

    inside = evaluate(policy, event, snapshot, NOW)
    outside_ref = replace(GITHUB_REF, scope="other/repo")
    outside = evaluate(policy, replace(event, issue=outside_ref), replace(snapshot, ref=outside_ref), NOW)

    assert "该阶段变更不符合服务流程。" in _of(inside, PostComment)[0].body
    assert not [a for a in inside.actions if getattr(a, "status", None) == "open"]
    assert "This change of stage was undone." in _of(outside, PostComment)[0].body


def test_a_jira_label_change_is_not_taken_for_a_change_of_stage() -> None:
    event = _event("jira", EventKind.LABELS_CHANGED, labels_before=frozenset(), labels_after=frozenset({"x"}))
    snapshot = IssueSnapshot(ref=JIRA_REF, status="In Progress", last_state="triage", labels=frozenset({"x"}))

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert not [r for r in decision.results if r.rule_id == POLICY.workflow.rule.id or not r.passed]
    assert not _of(decision, PostComment)


def test_closing_a_github_checklist_item_is_not_judged_as_a_service_request() -> None:
    label = POLICY.trackers.github.checklist_label
    event = _event("github", EventKind.STATUS_CHANGED, status_before="open", status_after="closed")
    snapshot = IssueSnapshot(ref=GITHUB_REF, labels=frozenset({label}), is_open=False)

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert decision.actions == () and "checklist item" in decision.note


def test_a_jira_sub_task_is_not_judged_as_a_service_request() -> None:
    event = _event("jira", EventKind.STATUS_CHANGED, status_before="To Do", status_after="Done")
    decision = evaluate(POLICY, event, IssueSnapshot(ref=JIRA_REF, status="Done", is_subtask=True), NOW)

    assert decision.actions == ()


def test_the_receipt_is_edited_when_the_priority_changes_and_left_alone_otherwise() -> None:
    fields = _fields("github", impact="Minor", urgency="Low", customer_tier="Standard")
    was_p2 = IssueSnapshot(ref=GITHUB_REF, fields=fields, labels=frozenset({"priority/P2"}))
    is_p4 = IssueSnapshot(ref=GITHUB_REF, fields=fields, labels=frozenset({"priority/P4"}))

    changed = evaluate(POLICY, _event("github", EventKind.EDITED), was_p2, NOW)
    unchanged = evaluate(POLICY, _event("github", EventKind.EDITED), is_p4, NOW)

    (receipt,) = [c for c in _of(changed, PostComment) if c.marker == "receipt"]
    assert receipt.on_existing == CommentPolicy.UPSERT and "handled as **P4**" in receipt.body
    assert "- First response due by **Nov 25, 2026, 6:00\u202fPM (China Time)**" in receipt.body
    assert not _of(unchanged, PostComment)

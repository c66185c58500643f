"""The adoption rule and the adopted state, clocks and claims, in the pure engine (no I/O)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from config.loader import load_policy
from config.schema import Adoption, Policy, Scope
from connector.github import events as github_events
from connector.jira import events as jira_events
from policies import adoption
from policies.engine import evaluate
from policies.models import (
    Actor,
    Adopt,
    Change,
    Comment,
    Event,
    EventKind,
    History,
    IssueSnapshot,
    RememberState,
    Source,
)
from policies.sla import Commented, Created, Phase, StateChanged, read_clocks, rules_for
from tests.conftest import fixture_json
from tests.engine_support import NOW, complete_fields, ref_for

POLICY = load_policy()
LONG_AGO = NOW - dt.timedelta(days=400)


def _policy(**rule: object) -> Policy:
    return POLICY.model_copy(update={"adoption": Adoption.model_validate(rule)})


def _snapshot(source: Source, **changes: object) -> IssueSnapshot:
    base = IssueSnapshot(ref=ref_for(source), created_at=LONG_AGO, first_seen=True, reporter="carol")
    return replace(base, **changes)  # type: ignore[arg-type]


def _event(source: Source, *kinds: EventKind) -> Event:
    kind_set = frozenset(kinds or {EventKind.LABELS_CHANGED})
    return Event(source, kind_set, "d-1", Actor("alice"), ref_for(source), at=NOW)


@pytest.mark.parametrize(
    ("rule", "changes", "inside"),
    [
        ({}, {}, True),
        ({"created_after": "2026-01-01"}, {}, False),
        ({"created_after": "2026-01-01"}, {"created_at": NOW}, True),
        ({"labels": ["service-request"]}, {"labels": frozenset({"service-request"})}, True),
        ({"labels": ["service-request"]}, {"labels": frozenset({"bug"})}, False),
        ({"issue_types": ["incident"]}, {"issue_type": "Incident"}, True),
        ({"issue_types": ["Incident"]}, {"issue_type": "Task"}, False),
        ({"labels": ["x"], "issue_types": ["Incident"]}, {"issue_type": "Incident"}, True),
        ({"labels": ["x"], "issue_types": ["Incident"], "require": "all"}, {"issue_type": "Incident"}, False),
    ],
)
def test_the_adoption_rule_on_both_trackers(
    rule: dict[str, object], changes: dict[str, object], inside: bool
) -> None:
    for source in ("github", "jira"):
        assert adoption.covers(_policy(**rule), source, _snapshot(source, **changes))[0] is inside


def test_the_form_is_recognised_by_every_intake_heading_on_github_only() -> None:
    policy = _policy(form=True)
    headings = complete_fields(POLICY, "github")

    assert adoption.covers(policy, "github", _snapshot("github", fields=headings))[0]
    partial = dict(list(headings.items())[:-1])
    assert not adoption.covers(policy, "github", _snapshot("github", fields=partial))[0]
    assert not adoption.covers(policy, "jira", _snapshot("jira", fields=complete_fields(POLICY, "jira")))[0]


def test_a_date_in_the_policy_is_midnight_utc() -> None:
    assert _policy(created_after="2026-01-05").adoption.created_after == dt.datetime(
        2026, 1, 5, tzinfo=dt.UTC
    )


def test_a_first_seen_change_adopts_the_state_shown_and_asks_for_no_tracker_action() -> None:
    snapshot = _snapshot("github", labels=frozenset({"status/in-progress", "status/triage"}))

    decision = evaluate(POLICY, _event("github"), snapshot, NOW)

    assert [type(a) for a in decision.actions] == [RememberState, Adopt]
    assert isinstance(decision.actions[0], RememberState) and decision.actions[0].state == "in-progress"
    assert "furthest of its 2 status labels" in decision.results[0].reasons[0]


def test_an_opening_is_judged_not_adopted() -> None:
    decision = evaluate(POLICY, _event("github", EventKind.OPENED), _snapshot("github", created_at=NOW), NOW)

    assert "adoption" not in {r.rule_id for r in decision.results}


def test_without_history_the_clocks_start_at_the_adoption() -> None:
    decision = evaluate(POLICY, _event("jira"), _snapshot("jira", status="Triage"), NOW)

    adopt = next(a for a in decision.actions if isinstance(a, Adopt))
    assert adopt.beginning == (Created(at=NOW, state="triage"),) and adopt.claims == ()
    assert "history not read: the clocks start at the adoption" in decision.results[0].reasons[1]


def test_with_history_the_clocks_count_from_the_creation_and_what_was_crossed_is_claimed() -> None:
    answer = Comment(Actor("bob"), "On it.", "c-1", at=LONG_AGO + dt.timedelta(minutes=5))
    own = Comment(Actor("carol"), "Any news?", "c-2", at=LONG_AGO + dt.timedelta(minutes=1))
    history = History((Change(LONG_AGO + dt.timedelta(minutes=2), "status", "Triage"),), (own, answer))
    snapshot = _snapshot("jira", status="Triage", history=history)

    decision = evaluate(POLICY, _event("jira"), snapshot, NOW)

    adopt = next(a for a in decision.actions if isinstance(a, Adopt))
    assert Created(at=LONG_AGO, state="new") in adopt.beginning
    assert StateChanged(at=LONG_AGO + dt.timedelta(minutes=2), state="triage") in adopt.beginning
    assert [e.is_reporter for e in adopt.beginning if isinstance(e, Commented)] == [True, False]
    clocks = {c.target_id: c for c in read_clocks(rules_for(POLICY.sla), adopt.beginning, NOW)}
    assert clocks["first-response"].phase is Phase.STOPPED and clocks["first-response"].met
    assert clocks["resolution"].breached  # 400 days open
    assert {claim[0] for claim in adopt.claims} == {"resolution"}
    assert any("resolution target (P4) missed before the adoption" in r for r in decision.results[0].reasons)


def test_an_issue_outside_the_rule_gets_no_decision_at_all() -> None:
    decision = evaluate(_policy(labels=["service-request"]), _event("github"), _snapshot("github"), NOW)

    assert decision.actions == () and decision.results == ()
    assert decision.note == "outside adoption (no label of service-request): not touched"


def test_the_issue_type_is_read_from_both_trackers_payloads() -> None:
    github = fixture_json("github", "issues__opened.json")
    github["issue"]["type"] = {"id": 7, "node_id": "IT_7", "name": "Incident", "color": "red"}
    jira = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")

    assert github_events.snapshot(github).issue_type == "Incident"
    assert github_events.snapshot(fixture_json("github", "issues__opened.json")).issue_type == ""
    assert jira_events.snapshot(jira).issue_type == "Story"


def test_a_scope_gives_its_own_adoption_rule() -> None:
    scoped = Scope.model_validate({"match": {"jira": "OPS"}, "adoption": {"issue_types": ["Incident"]}})
    policy = POLICY.model_copy(update={"scopes": [scoped]})

    assert policy.for_issue("jira", "OPS").adoption.issue_types == ["Incident"]
    assert policy.for_issue("jira", "DEV").adoption == Adoption()
    story = _snapshot("jira", issue_type="Story", status="Triage")
    assert evaluate(policy, _event("jira"), story, NOW).note.startswith("outside adoption (of type Story")
    elsewhere = replace(story.ref, scope="DEV", key="DEV-7")
    other = replace(_event("jira"), issue=elsewhere)
    assert evaluate(policy, other, replace(story, ref=elsewhere), NOW).results[0].rule_id == "adoption"


@pytest.mark.parametrize(
    ("association", "answered"), [("NONE", False), ("CONTRIBUTOR", False), ("MEMBER", True)]
)
def test_a_passers_by_comment_in_the_history_is_not_the_teams_first_response(
    association: str, answered: bool
) -> None:
    """The default policy's responders are the team (S1.4): on GitHub, whose history says who each
    commenter is to the repository, a "+1" by someone who is not an owner, member or collaborator
    leaves the first response unanswered; a member's answers it."""
    comment = Comment(
        Actor("dave", association=association), "+1", "c-1", at=LONG_AGO + dt.timedelta(minutes=5)
    )
    snapshot = _snapshot("github", history=History((), (comment,)))

    decision = evaluate(POLICY, _event("github"), snapshot, NOW)

    adopt = next(a for a in decision.actions if isinstance(a, Adopt))
    clocks = {c.target_id: c for c in read_clocks(rules_for(POLICY.sla), adopt.beginning, NOW)}
    assert (clocks["first-response"].phase is Phase.STOPPED) is answered
    assert (
        "first-response" in {claim[0] for claim in adopt.claims} or answered
    )  # missed: claimed, not announced


def test_with_no_intake_fields_no_issue_counts_as_filed_through_the_form() -> None:
    """A policy without intake fields generates no issue form: `form: true` then takes in nothing."""
    policy = _policy(form=True)
    no_fields = policy.model_copy(update={"intake": policy.intake.model_copy(update={"fields": []})})

    assert adoption.from_form(no_fields, "github", _snapshot("github")) is False
    assert evaluate(no_fields, _event("github"), _snapshot("github"), NOW).note.startswith("outside adoption")

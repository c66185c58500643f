"""A person's priority outside the mapping is kept as manual (issue 9), on real payloads.

Before: a Jira priority the mapping does not know ("Blocker", "Critical") was recorded as
"priority removed", so the next edit let the matrix override the person's choice; the same on
GitHub with a priority label the mapping does not know.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses

from config.loader import load_policy
from connector.delivery import Delivery
from policies.engine import evaluate
from policies.ledger import facts_after
from policies.models import (
    ChangeLabels,
    Decision,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    PostComment,
    RememberManualPriority,
    SetPriority,
)
from policies.priority import OUTSIDE_MAPPING
from tests.conftest import fixture_json
from tests.engine_support import NOW, complete_fields
from tests.jira_support import (
    CLOUD,
    DEPLOYMENTS,
    Deployment,
    Scenario,
    adf_text,
    as_edit,
    issue_path,
    start,
    with_intake,
)

POLICY = load_policy()
RAISED = "mattermost__webhook-issue-updated-raised-priority.json"


def _raised_to(name: str) -> dict[str, Any]:
    """The real "priority Low -> High" delivery, with the person choosing `name` instead."""
    payload = copy.deepcopy(fixture_json("jira", RAISED))
    payload["changelog"]["items"][0].update({"to": "1", "toString": name})
    payload["issue"]["fields"]["priority"].update({"name": name, "id": "1"})
    return payload


def _normalized(source: str, name: str, payload: dict[str, Any]) -> tuple[Event, IssueSnapshot]:
    return Delivery(source, "d-1", name, payload).normalize()  # type: ignore[arg-type]


def _manual(decision: Decision) -> list[str | None]:
    return [a.level for a in decision.actions if isinstance(a, RememberManualPriority)]


@pytest.mark.parametrize("name", ["Blocker", "Critical"])
def test_a_jira_priority_outside_the_mapping_is_recorded_as_manual_and_acknowledged(name: str) -> None:
    event, snapshot = _normalized("jira", "jira:issue_updated", _raised_to(name))

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert _manual(decision) == [OUTSIDE_MAPPING]
    (result,) = [r for r in decision.results if r.rule_id == POLICY.priority.id]
    assert result.reasons == (
        f"priority {name} chosen by {event.actor.login}, not in the mapping: kept as manual",
    )
    (comment,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert f"**Priority {name}** was chosen by @" in comment.body and "The choice is kept" in comment.body
    facts = facts_after(POLICY, event, snapshot, decision)
    assert facts.priority is None  # no level is known for it: the SLA treats it as unknown


def test_the_matrix_never_overrides_the_kept_choice_on_a_later_edit() -> None:
    event, snapshot = _normalized("jira", "jira:issue_updated", _raised_to("Blocker"))
    fields = {**snapshot.fields, **complete_fields(POLICY, "jira")}  # impact and urgency give a level
    edit = replace(event, kinds=frozenset({EventKind.EDITED}), priority_before=None, priority_after=None)
    later = replace(snapshot, fields=fields, manual_priority=OUTSIDE_MAPPING)

    decision = evaluate(POLICY, edit, later, NOW)

    assert not [a for a in decision.actions if isinstance(a, SetPriority)]
    (result,) = [r for r in decision.results if r.rule_id == POLICY.priority.id]
    assert result.passed and result.reasons == ("kept Blocker, chosen by a person",)


def test_the_priority_guard_holds_for_a_kept_choice_outside_the_mapping() -> None:
    """Triage -> Diagnosis asks for a priority (S1.3): a person's "Blocker" is one."""
    event, snapshot = _normalized("jira", "jira:issue_updated", _raised_to("Blocker"))
    move = replace(
        event,
        kinds=frozenset({EventKind.STATUS_CHANGED}),
        status_before="Triage",
        status_after="Diagnosis",
        priority_before=None,
        priority_after=None,
    )
    ready = replace(
        snapshot,
        status="Diagnosis",
        fields={**snapshot.fields, **complete_fields(POLICY, "jira")},
        assignees=("alice",),
        manual_priority=OUTSIDE_MAPPING,
    )
    decision = evaluate(POLICY, move, ready, NOW)
    assert {r.rule_id: r.passed for r in decision.results}["priority-set"] is True

    not_chosen = evaluate(POLICY, move, replace(ready, manual_priority=None), NOW)
    assert {r.rule_id: r.passed for r in not_chosen.results}["priority-set"] is False


def test_a_github_priority_label_the_mapping_does_not_know_is_kept_as_manual() -> None:
    """The real `issues.labeled` delivery, the label being `priority/urgent`: recorded as manual,
    and the mapped priority label the issue had is taken off (the person's label replaces it)."""
    payload = copy.deepcopy(fixture_json("github", "issues__labeled.json"))
    payload["label"]["name"] = "priority/urgent"
    payload["issue"]["labels"] = [
        {**payload["issue"]["labels"][0], "name": "priority/urgent"},
        {**payload["issue"]["labels"][0], "name": "priority/P3", "id": 1},
    ]
    event, snapshot = _normalized("github", "issues", payload)

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert _manual(decision) == [OUTSIDE_MAPPING]
    assert ChangeLabels(POLICY.priority.id, remove=frozenset({"priority/P3"})) in decision.actions
    (comment,) = [a for a in decision.actions if isinstance(a, PostComment)]
    assert "**Priority priority/urgent** was chosen by @Codertocat" in comment.body


def test_removing_the_priority_is_still_recorded_as_removed() -> None:
    payload = copy.deepcopy(fixture_json("github", "issues__unlabeled.json"))
    payload["label"]["name"] = "priority/P2"
    payload["issue"]["labels"] = []
    event, snapshot = _normalized("github", "issues", payload)

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert _manual(decision) == [None]


# --- through the service, on a fake Jira ----------------------------------------------------------


def _blocker(deployment: Deployment) -> dict[str, Any]:
    """A person sets the priority to Blocker: the Cloud payload as above, the Data Center one from its
    recorded work-started update with the priority change in its changelog."""
    if deployment is CLOUD:
        return with_intake(_raised_to("Blocker"))
    payload = fixture_json("jira", "mattermost__webhook-server-issue-updated-in-progress.json")
    payload["issue"]["fields"]["priority"] = {"name": "Blocker", "id": "1"}
    payload["changelog"]["items"] = [{"field": "priority", "fromString": "Medium", "toString": "Blocker"}]
    return with_intake(payload)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_on_jira_a_blocker_is_kept_through_later_edits(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    """The ledger keeps the choice; an edit later (impact and urgency give P1) sets nothing."""
    payload = _blocker(deployment)
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("blocker", payload), deployment)

    sopguard.deliver(payload, "blocker-1")
    sopguard.deliver(as_edit(payload, list(payload["issue"]["fields"]["labels"])), "edit-1")

    issue = issue_path(fake)
    assert not fake.sent("PUT", issue)  # neither the priority nor a priority label was touched
    assert fake.priority == "Blocker"
    key = str(payload["issue"]["key"])
    memory = sopguard.intake.store.ledger.memory(IssueRef("jira", key.split("-")[0], key))
    assert memory.manual_priority == OUTSIDE_MAPPING
    (acknowledged,) = (
        adf_text(c) if deployment is CLOUD else c.replace("*", "") for c in fake.our_comments()
    )
    assert (
        "Priority Blocker was chosen by " in acknowledged
        and "The choice is kept and recorded." in acknowledged
    )
    assert sopguard.outcomes("edit-1")[POLICY.priority.id] == "no action"
    fake.check_against_openapi()

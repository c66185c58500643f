"""A Jira status the policy does not map (a renamed status, "Backlog", "Paused"), on real payloads.

Before (issue 9): moving into one switched the lifecycle off for the issue with no trace, and
moving out of it was judged from nowhere, so `Triage -> Backlog -> In Progress` passed unchecked.
Now the issue is held in the state it left: the move is audited under the lifecycle rule, explained
once on the issue in enforce mode (what the admin must do), and the next move is judged from the
held state, with its guards.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import responses

from config.loader import load_policy
from config.schema import Mode
from connector.delivery import Delivery
from policies.engine import evaluate
from policies.models import Decision, MoveToStatus, PostComment, RememberState
from tests.conftest import fixture_json
from tests.engine_support import NOW
from tests.jira_support import CLOUD_TRANSITION, DEPLOYMENTS, Deployment, Scenario, start, with_status_change

POLICY = load_policy()
LIFECYCLE = POLICY.workflow.rule.id


def _decide(before: str, after: str, last_state: str | None = None, **policy: Any) -> Decision:
    payload = with_status_change(fixture_json("jira", CLOUD_TRANSITION), before, after)
    event, snapshot = Delivery("jira", "d-1", "jira:issue_updated", payload).normalize()
    scoped = POLICY.model_copy(update=policy) if policy else POLICY
    return evaluate(scoped, event, replace(snapshot, last_state=last_state), NOW)


def _comments(decision: Decision) -> list[PostComment]:
    return [a for a in decision.actions if isinstance(a, PostComment)]


def test_moving_into_an_unmapped_status_is_audited_and_explained_once_in_enforce_mode() -> None:
    decision = _decide("In Progress", "Paused")

    (result,) = [r for r in decision.results if r.rule_id == LIFECYCLE]
    assert not result.passed and result.mode == Mode.ENFORCE
    assert result.reasons == (
        "Jira status 'Paused' is not mapped to any state (trackers.jira.statuses): held in in-progress "
        "until it moves to a mapped status",
    )
    (comment,) = _comments(decision)
    assert comment.marker == "status-unmapped:paused"  # once per issue and status
    assert comment.body.startswith('**The Jira status "Paused" is not part of the service procedure.**')
    assert "sopguard keeps handling it as **In progress**, its last stage" in comment.body
    assert 'add "Paused" to `trackers.jira.statuses` under the stage it means' in comment.body
    assert comment.body.rstrip().endswith(f"Rule `{LIFECYCLE}`, SOP P2: {POLICY.clause('P2')}")
    assert not [
        a for a in decision.actions if isinstance(a, MoveToStatus | RememberState)
    ]  # held, not undone


def test_the_explanation_is_in_chinese_for_a_chinese_policy() -> None:
    (comment,) = _comments(_decide("In Progress", "Backlog", locale="zh-CN"))
    assert comment.body.startswith("**Jira 状态「Backlog」不属于服务流程。**")
    assert (
        "仍按其上一阶段 **实施中** 处理" in comment.body
        and "规则 `follow-the-lifecycle`，SOP P2：" in comment.body
    )


def test_in_warn_mode_it_is_audited_without_a_comment() -> None:
    decision = _decide("In Progress", "Paused", mode=Mode.WARN)
    assert [r.rule_id for r in decision.results if not r.passed] == [LIFECYCLE]
    assert _comments(decision) == []


def test_leaving_an_unmapped_status_is_judged_from_the_state_it_was_held_in() -> None:
    """Triage -> Backlog -> In Progress is Triage -> In Progress: the stages in between are skipped,
    so the move is undone (back to Backlog, where Jira had it) and explained."""
    decision = _decide("Backlog", "In Progress", last_state="triage")

    assert MoveToStatus(LIFECYCLE, "Backlog") in decision.actions
    (comment,) = _comments(decision)
    assert comment.marker == "transition-rejected:triage:in-progress:d-1"
    assert "from **Triage** to **In progress**" in comment.body


def test_a_new_issue_created_in_an_unmapped_status_starts_in_the_initial_state() -> None:
    payload = fixture_json("jira", "mattermost__webhook-issue-created.json")
    payload["issue"]["fields"]["status"]["name"] = "Backlog"
    for item in payload["changelog"]["items"]:
        if item["fieldId"] == "status":
            item["toString"] = "Backlog"
    event, snapshot = Delivery("jira", "d-1", "jira:issue_created", payload).normalize()

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert RememberState(LIFECYCLE, POLICY.workflow.initial) in decision.actions
    assert [c.marker for c in _comments(decision) if c.rule_id == LIFECYCLE] == ["status-unmapped:backlog"]


def test_a_mapped_status_is_not_affected() -> None:
    decision = _decide("In Progress", "Verification", last_state="in-progress")
    assert not [c for c in _comments(decision) if c.marker.startswith("status-unmapped:")]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_on_jira_the_explanation_is_posted_once_however_often_the_issue_moves_there(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = with_status_change(fixture_json("jira", CLOUD_TRANSITION), "In Progress", "Paused")
    fake, sopguard = start(no_network, tmp_path / "var", Scenario("unmapped", payload), deployment)

    assert sopguard.deliver(payload, "paused-1") == "accepted"
    assert sopguard.deliver(payload, "paused-2") == "accepted"

    assert len(fake.our_comments()) == 1
    comments = [key for key in sopguard.journal(fake.key) if key.startswith("comment:")]
    assert len(comments) == 1 and "status-unmapped:paused" in comments[0]
    assert fake.status == "Paused"  # nothing undone
    assert sopguard.outcomes("paused-1")[LIFECYCLE] == "applied"
    assert sopguard.outcomes("paused-2")[LIFECYCLE].startswith("skipped: already posted")
    fake.check_against_openapi()

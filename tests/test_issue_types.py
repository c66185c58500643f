"""Sub-tasks are recognised by their issue type, not by having a parent (issue 9), on real payloads.

On Jira, a Story or Task whose parent is an Epic has `fields.parent` as a sub-task does; only the
issue type (`issuetype.subtask`, Cloud's `hierarchyLevel` -1) says which it is. On GitHub, only the
checklist items sopguard creates (sub-issues with the checklist label) are exempt: any other
sub-issue is a service request of its own.
"""

from __future__ import annotations

import copy
from typing import Any

from config.loader import load_policy
from connector.delivery import Delivery
from policies.engine import evaluate
from policies.models import MoveToStatus, PostComment
from tests.conftest import fixture_json
from tests.engine_support import NOW

POLICY = load_policy()
STORY_UNDER_EPIC = "jira-to-matrix__issue-with-parent-updated-status.json"


def _jira(payload: dict[str, Any]) -> Any:
    event, snapshot = Delivery("jira", "d-1", str(payload["webhookEvent"]), payload).normalize()
    return event, snapshot, evaluate(POLICY, event, snapshot, NOW)


def test_a_story_whose_parent_is_an_epic_is_judged_as_a_service_request() -> None:
    """The real delivery: a Story (subtask: false) under an Epic, moved To Do -> In Progress,
    which skips the stages in between: it is undone and explained, as for any other issue."""
    payload = fixture_json("jira", STORY_UNDER_EPIC)
    assert payload["issue"]["fields"]["parent"]["fields"]["issuetype"]["name"] == "Эпик"

    _, snapshot, decision = _jira(payload)

    assert not snapshot.is_subtask
    assert "sub-task" not in decision.note
    assert MoveToStatus("follow-the-lifecycle", "To Do") in decision.actions
    assert any(
        isinstance(a, PostComment) and a.marker.startswith("transition-rejected:") for a in decision.actions
    )


def test_a_sub_task_is_still_left_to_its_parent_by_its_issue_type() -> None:
    payload = copy.deepcopy(fixture_json("jira", STORY_UNDER_EPIC))
    payload["issue"]["fields"]["issuetype"].update({"name": "Sub-task", "subtask": True})

    _, snapshot, decision = _jira(payload)

    assert snapshot.is_subtask
    assert decision.actions == () and "sub-task" in decision.note


def test_a_cloud_issue_type_below_the_standard_level_is_a_sub_task() -> None:
    """Cloud's hierarchy: -1 sub-task, 0 standard, 1 Epic; a type may be renamed, its level stays."""
    payload = copy.deepcopy(fixture_json("jira", STORY_UNDER_EPIC))
    payload["issue"]["fields"]["issuetype"].update(
        {"name": "Checklist item", "subtask": None, "hierarchyLevel": -1}
    )
    assert _jira(payload)[1].is_subtask

    payload["issue"]["fields"]["issuetype"].update({"name": "Epic", "subtask": False, "hierarchyLevel": 1})
    assert not _jira(payload)[1].is_subtask


def test_a_github_sub_issue_without_the_checklist_label_is_a_service_request() -> None:
    """A sub-issue of a tracking issue (as GitHub sends it today: `parent_issue_url`) is judged."""
    payload = copy.deepcopy(fixture_json("github", "issues__opened.json"))
    payload["issue"]["parent_issue_url"] = "https://api.github.com/repos/Codertocat/Hello-World/issues/7"
    event, snapshot = Delivery("github", "d-1", "issues", payload).normalize()

    decision = evaluate(POLICY, event, snapshot, NOW)

    assert decision.results and "sub-task" not in decision.note

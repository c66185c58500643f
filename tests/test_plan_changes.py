"""S3.2: a change of an approved plan withdraws its approval; during the work the issue cannot move
on until the plan is approved again (GitHub and Jira)."""

from __future__ import annotations

import copy
from pathlib import Path

import responses

from tests.conftest import fixture_json
from tests.github_support import (
    FakeGithub,
    Service,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
)
from tests.jira_support import CLOUD, adf_text, fake_for, follow, issue_path
from tests.jira_support import service as jira_service
from tests.test_commands import _jira_comment, commented

OLD_PLAN = "### Plan\n\nReplace the disk on Saturday."
NEW_PLAN = "### Plan\n\nReplace the whole server on Sunday."


def _edited(github: FakeGithub, before: str, after: str) -> dict[str, object]:
    payload = issue_payload("edited", labels=list(github.labels), body=form_body() + "\n\n" + after)
    payload["changes"] = {"body": {"from": form_body() + "\n\n" + before}}
    return payload


def test_github_an_edit_of_the_approved_plan_withdraws_the_approval_and_holds_the_work(
    sopguard: Service, github: FakeGithub
) -> None:
    put_in_state(sopguard, github, "in-progress", "plan/approved")

    sopguard.deliver(_edited(github, OLD_PLAN, NEW_PLAN), "edit-plan")

    assert {"plan/changed", "status/in-progress"} <= set(
        github.labels
    ) and "plan/approved" not in github.labels
    (withdrawn,) = [c for c in github.our_comments() if "withdrawn" in c]
    assert withdrawn.startswith(
        "**The approval of the plan was withdrawn.** @Codertocat changed the approved plan"
    )
    assert "The work can go on, but this issue cannot move on" in withdrawn

    sopguard.deliver(labelled(github, "status/verification"), "move-on")
    assert "status/verification" not in github.labels  # undone: changed-plan-approved (S3.2)
    assert any("A changed plan is approved again" in c for c in github.our_comments())

    sopguard.deliver(
        commented(github, "/approve-plan", by="rita", user_id=5, association="COLLABORATOR"),
        "re-approve",
        "issue_comment",
    )
    assert "plan/approved" in github.labels and "plan/changed" not in github.labels


def test_github_an_edit_elsewhere_keeps_the_approval(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "in-progress", "plan/approved")

    sopguard.deliver(
        _edited(github, OLD_PLAN, OLD_PLAN + "\n\n### Notes\n\nCalled the customer."), "edit-notes"
    )

    assert "plan/approved" in github.labels and not [c for c in github.our_comments() if "withdrawn" in c]


def test_jira_an_edit_of_the_approved_plan_withdraws_the_approval(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    payload = copy.deepcopy(fixture_json("jira", "mattermost__webhook-issue-updated-labels.json"))
    fields = payload["issue"]["fields"]
    fields["labels"] = ["plan/approved"]
    fields["description"] = "h3. Plan\nReplace the whole server on Sunday."
    payload["changelog"]["items"] = [
        {
            "field": "description",
            "fieldtype": "jira",
            "fromString": "h3. Plan\nReplace the disk on Saturday.",
            "toString": fields["description"],
        }
    ]
    fake = fake_for(no_network, CLOUD, payload)
    sopguard = jira_service(tmp_path, CLOUD)
    follow(sopguard, payload)

    sopguard.deliver(payload, "edit-plan")

    (edit,) = fake.sent("PUT", issue_path(fake))
    assert {"add": "plan/changed"} in edit["update"]["labels"] and {"remove": "plan/approved"} in edit[
        "update"
    ]["labels"]
    assert set(fake.labels) >= {"plan/changed"} and "plan/approved" not in fake.labels
    fake.check_against_openapi()


def test_jira_a_new_plan_delivered_twice_is_told_of_once(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    """Jira sends a comment as `comment_created` and as an `issue_commented` update, which shows
    the labels as they were when it was made (the approval still there)."""
    created = copy.deepcopy(fixture_json("jira", "mattermost__webhook-issue-created.json"))
    fake = fake_for(no_network, CLOUD, created)
    sopguard = jira_service(tmp_path, CLOUD)
    sopguard.deliver(created, "created")
    fake.in_role("Developers", users=["agent-rita"])
    sopguard.deliver(_jira_comment(fake, "/approve-plan", "agent-rita", "In Progress"), "c-1")
    plan = _jira_comment(fake, "h3. Plan\nReplace the whole server on Sunday.", "agent-sam", "In Progress")
    as_update = copy.deepcopy(plan)
    as_update.update(
        webhookEvent="jira:issue_updated",
        issue_event_type_name="issue_commented",
        user=plan["comment"]["author"],
        changelog={"items": []},
    )
    as_update["issue"]["fields"]["labels"] = list(fake.labels)

    sopguard.deliver(plan, "c-2")
    sopguard.deliver(as_update, "c-3")

    texts = [adf_text(body) for body in fake.our_comments()]
    assert len([t for t in texts if t.startswith("The approval of the plan was withdrawn.")]) == 1
    assert "plan/changed" in fake.labels and "plan/approved" not in fake.labels

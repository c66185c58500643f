"""Sections read with each tracker's own markup: GitHub Markdown through markdown-it, Jira wiki by
its `h1.`-`h6.` headings, where a `#` line is a numbered list item."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import responses

from policies.text import find_section, sections
from tests.conftest import fixture_json
from tests.jira_support import (
    CLOUD,
    CLOUD_TRANSITION,
    DC_STARTED,
    DEPLOYMENTS,
    Deployment,
    FakeJira,
    Scenario,
    start,
    subtask_json,
    with_settled_intake,
    with_status_change,
)

KEY_STEPS_WIKI = "h3. Key steps\n# Restarted the gateway\n# Checked the error rate: back to 0.1 %\n"


def test_a_github_issue_form_body_is_read_by_its_headings() -> None:
    body = fixture_json("github", "issues__opened.json")["issue"]["body"] or ""
    form = (
        f"{body}\n\n### Customer\n\nACME\n\n### Impact\n\n_No response_\n\n"
        "### Plan ###\n\n1. Replace the disk\n2. Restore"
    )

    found = sections(form, "github")

    assert found["Customer"] == "ACME"
    assert found["Impact"] == ""  # GitHub's answer for an empty optional field
    assert found["Plan"] == "1. Replace the disk\n2. Restore"


def test_markdown_headings_are_atx_or_setext_and_never_inside_code_or_lists() -> None:
    text = (
        "Key steps\n=========\n\n```\n# not a heading\n```\n- # nor this\n\n"
        "Plan\n----\n\nReplace the disk.\n\n## **Work log**\n\n    # indented code\n"
    )

    found = sections(text, "github")

    assert list(found) == ["Key steps", "Plan", "Work log"]
    assert found["Key steps"] == "```\n# not a heading\n```\n- # nor this"
    assert found["Work log"] == "# indented code"


def test_jira_wiki_headings_are_only_h1_to_h6_and_numbered_lists_are_content() -> None:
    text = KEY_STEPS_WIKI + "{code}\nh2. Not a heading\n{code}\nh2. Plan\nReplace the disk.\n"

    found = sections(text, "jira")

    assert found["Key steps"].startswith("# Restarted the gateway\n# Checked")
    assert "h2. Not a heading" in found["Key steps"]
    assert found["Plan"] == "Replace the disk."
    assert find_section(text, ["key STEPS"], "jira")
    assert not find_section("# Key steps\nsomething", ["Key steps"], "jira")


def test_find_section_needs_content_under_a_matching_heading() -> None:
    assert find_section("### Plan\n\n_No response_\n\n### plan\n\nDo it.", ["Plan"], "github") == "Do it."
    assert find_section("h3. Plan\n\nh3. Other\ntext", ["Plan"], "jira") == ""


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_key_steps_written_as_a_wiki_numbered_list_let_the_move_to_verification_stand(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    base = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload = with_settled_intake(with_status_change(base, "In Progress", "Verification"))
    fields = payload["issue"]["fields"]
    fields["description"] = KEY_STEPS_WIKI
    project = payload["issue"]["key"].split("-")[0]
    fields["subtasks"] = [
        subtask_json(f"{project}-6{n}", f"Preparation: {title}", "Done")
        for n, title in enumerate(
            [
                "Tools, documents and parts are ready",
                "Authorizations are in place",
                "The customer's contact person is confirmed",
            ]
        )
    ]
    reporter = fields["reporter"].get("accountId") or fields["reporter"]["name"]

    def reporter_of_the_team(fake: FakeJira) -> None:  # key steps are the team's to record (S3.2)
        fake.in_role("Developers", users=[reporter])

    scenario = Scenario("verification with wiki key steps", copy.deepcopy(payload), reporter_of_the_team)
    fake, sopguard = start(no_network, tmp_path / "var", scenario, deployment)

    sopguard.deliver(scenario.payload, "verify-1")

    assert fake.status == "Verification"
    entries = [e for e in sopguard.intake.store.audit.entries() if e.delivery_id == "verify-1"]
    outcomes = {e.rule_id: e for e in entries}
    assert outcomes["key-steps-recorded"].passed
    assert outcomes["start-verification"].passed
    fake.check_against_openapi()

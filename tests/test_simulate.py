"""`sopguard simulate` through click's CliRunner: every recorded issue payload, the JSON form, the decisions
it shows for a skipped stage on both trackers, its errors, and that it touches no data directory."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli import main
from tests.conftest import FIXTURES, fixture_bytes, fixture_json, fixture_path, github_event_name

GITHUB_ISSUE_FIXTURES = sorted(
    path.name
    for path in (FIXTURES / "github").glob("*.json")
    if github_event_name(path.name) in ("issues", "issue_comment")
)
JIRA_FIXTURES = sorted(path.name for path in (FIXTURES / "jira").glob("*.json"))

GITHUB_HANDLED = {
    ("issues", action)
    for action in (
        "opened",
        "edited",
        "labeled",
        "unlabeled",
        "closed",
        "reopened",
        "assigned",
        "unassigned",
        "deleted",
        "transferred",
    )
} | {("issue_comment", "created"), ("issue_comment", "edited")}
JIRA_HANDLED = {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created"}
STARTED_WORKING = "mattermost__webhook-issue-updated-started-working.json"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory: the default data directory `var/` (relative) would appear here.

    `monkeypatch.chdir` rather than `CliRunner.isolated_filesystem`, which Click 8.5 deprecates.
    """
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def _simulate(*args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(main, ["simulate", *args], input=stdin)


def _assert_no_io(workdir: Path, *ours: str) -> None:
    assert not (workdir / "var").exists()
    assert sorted(os.listdir(workdir)) == sorted(ours)


def _jira_issue(payload: dict[str, Any]) -> str:
    """The issue a Jira delivery is about: its key, or (old Server comments) the id in the comment's URL."""
    if isinstance(payload.get("issue"), dict):
        return str(payload["issue"]["key"])
    match = re.search(r"/issue/([^/]+)/comment/", payload["comment"]["self"])
    assert match is not None
    return match.group(1)


def _labeled_into_in_progress(directory: Path, labels: list[str]) -> Path:
    """The real `issues.labeled` delivery, with `status/in-progress` added and the issue showing `labels`."""
    payload = fixture_json("github", "issues__labeled.json")
    payload["label"] = {**payload["label"], "name": "status/in-progress"}
    payload["issue"]["labels"] = [{**payload["label"], "name": name} for name in labels]
    path = directory / "issues__labeled.json"
    path.write_text(json.dumps(payload))
    return path


def _after(labels: set[str], change: dict[str, Any]) -> set[str]:
    return (labels - set(change["remove"])) | set(change["add"])


# --- every recorded payload ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", GITHUB_ISSUE_FIXTURES)
def test_simulate_every_recorded_github_issue_payload(workdir: Path, name: str) -> None:
    payload = fixture_json("github", name)
    event = f"{github_event_name(name)}.{payload['action']}"
    issue = f"{payload['repository']['full_name']}#{payload['issue']['number']}"

    text = _simulate("--source", "github", "--event", str(fixture_path("github", name)))
    as_json = _simulate("--source", "github", "--event", str(fixture_path("github", name)), "--json")

    assert text.exit_code == 0, text.output
    assert as_json.exit_code == 0, as_json.output
    if (github_event_name(name), payload["action"]) in GITHUB_HANDLED:
        assert text.output.splitlines()[0] == f"{event} on {issue} by {payload['sender']['login']}"
        decision = json.loads(as_json.output)
        assert {"event", "issue", "rules", "actions"} <= decision.keys()
        assert (decision["event"], decision["issue"]) == (event, issue)
        assert all(
            {"rule_id", "sop", "passed", "mode", "reasons"} <= rule.keys() for rule in decision["rules"]
        )
        assert all("type" in action and "rule_id" in action for action in decision["actions"])
    else:
        assert text.output == f"not processed: '{event}' does not affect the service procedure\n"
        assert as_json.output == text.output
    _assert_no_io(workdir)


@pytest.mark.parametrize("name", JIRA_FIXTURES)
def test_simulate_every_recorded_jira_payload(workdir: Path, name: str) -> None:
    payload = fixture_json("jira", name)
    webhook_event = payload.get("webhookEvent")

    text = _simulate("--source", "jira", "--event", str(fixture_path("jira", name)))
    as_json = _simulate("--source", "jira", "--event", str(fixture_path("jira", name)), "--json")

    assert text.exit_code == 0, text.output
    assert as_json.exit_code == 0, as_json.output
    if webhook_event in JIRA_HANDLED:
        event = payload.get("issue_event_type_name") or webhook_event
        issue = _jira_issue(payload)
        assert text.output.splitlines()[0].startswith(f"{event} on {issue} by ")
        decision = json.loads(as_json.output)
        assert {"event", "issue", "rules", "actions"} <= decision.keys()
        assert (decision["event"], decision["issue"]) == (event, issue)
    else:
        # The recorded REST response names no webhookEvent at all.
        assert text.output.startswith("not processed: ")
        assert (webhook_event or "webhookEvent") in text.output
        assert as_json.output == text.output
    _assert_no_io(workdir)


# --- decisions ---------------------------------------------------------------------------------------


def test_a_label_skipping_from_triage_to_in_progress_is_undone(workdir: Path) -> None:
    labels = ["status/triage", "status/in-progress"]
    path = _labeled_into_in_progress(workdir, labels)

    text = _simulate("--source", "github", "--event", str(path))
    result = _simulate("--source", "github", "--event", str(path), "--json")

    assert text.exit_code == 0 and "FAIL follow-the-lifecycle" in text.output
    decision = json.loads(result.output)
    lifecycle = next(r for r in decision["rules"] if r["rule_id"] == "follow-the-lifecycle")
    assert lifecycle["passed"] is False and lifecycle["sop"] == "P2"
    change = next(a for a in decision["actions"] if a["type"] == "ChangeLabels")
    assert "follow-the-lifecycle" in change["rule_id"].split("+")
    status_after = {label for label in _after(set(labels), change) if label.startswith("status/")}
    assert status_after == {"status/triage"}
    comments = [a for a in decision["actions"] if a["type"] == "PostComment"]
    assert [c["rule_id"] for c in comments] == ["follow-the-lifecycle"]
    assert "Triage" in comments[0]["body"] and "In progress" in comments[0]["body"]
    _assert_no_io(workdir, "issues__labeled.json")


def test_the_remembered_state_comes_from_the_state_option(workdir: Path) -> None:
    # The delivery alone shows only status/in-progress; --state says the ledger last knew triage.
    path = _labeled_into_in_progress(workdir, ["status/in-progress"])

    result = _simulate("--source", "github", "--event", str(path), "--state", "triage", "--json")

    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    change = next(a for a in decision["actions"] if a["type"] == "ChangeLabels")
    assert _after({"status/in-progress"}, change) == {"status/triage"}


def test_an_unknown_state_option_is_refused(workdir: Path) -> None:
    path = _labeled_into_in_progress(workdir, ["status/in-progress"])

    result = _simulate("--source", "github", "--event", str(path), "--state", "no-such-state")

    assert result.exit_code != 0 and "no-such-state" in result.output


def test_jira_started_working_from_to_do_is_a_skipped_stage_moved_back(workdir: Path) -> None:
    result = _simulate("--source", "jira", "--event", str(fixture_path("jira", STARTED_WORKING)), "--json")

    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert decision["issue"] == "TES-41"
    lifecycle = next(r for r in decision["rules"] if r["rule_id"] == "follow-the-lifecycle")
    assert lifecycle["passed"] is False
    assert {"type": "MoveToStatus", "rule_id": "follow-the-lifecycle", "status": "To Do"} in decision[
        "actions"
    ]
    comment = next(a for a in decision["actions"] if a["type"] == "PostComment")
    assert comment["rule_id"] == "follow-the-lifecycle" and "Triage" in comment["body"]
    _assert_no_io(workdir)


def test_the_event_name_option_names_a_file_that_does_not(workdir: Path) -> None:
    path = workdir / "payload.json"
    path.write_bytes(fixture_bytes("github", "issues__opened.json"))

    result = _simulate("--source", "github", "--event", "payload.json", "--event-name", "issues")
    piped = _simulate("--source", "github", "--event", "-", "--event-name", "issues", stdin=path.read_bytes())

    assert result.exit_code == 0, result.output
    assert result.output.startswith("issues.opened on Codertocat/Hello-World#1")
    assert piped.output == result.output
    _assert_no_io(workdir, "payload.json")


# --- errors -------------------------------------------------------------------------------------------


def test_a_github_file_whose_name_gives_no_event_needs_the_event_name_option(workdir: Path) -> None:
    (workdir / "payload.json").write_bytes(fixture_bytes("github", "issues__opened.json"))

    result = _simulate("--source", "github", "--event", "payload.json")

    assert result.exit_code != 0
    assert "--event-name" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_a_github_file_in_an_arbitrary_directory_needs_the_event_name_option(workdir: Path) -> None:
    (workdir / "payloads").mkdir()
    (workdir / "payloads" / "payload.json").write_bytes(fixture_bytes("github", "issues__opened.json"))

    result = _simulate("--source", "github", "--event", str(workdir / "payloads" / "payload.json"))

    assert result.exit_code != 0 and "--event-name" in result.output


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_file_that_is_not_json_is_a_clear_error(workdir: Path, source: str) -> None:
    (workdir / "issues__opened.json").write_text("<html>502 Bad Gateway</html>")

    result = _simulate("--source", source, "--event", "issues__opened.json")

    assert result.exit_code != 0
    assert "issues__opened.json is not JSON" in result.output
    assert isinstance(result.exception, SystemExit)
    _assert_no_io(workdir, "issues__opened.json")


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_json_file_that_is_not_an_object_is_a_clear_error(workdir: Path, source: str) -> None:
    (workdir / "issues__opened.json").write_text(json.dumps([fixture_json("github", "issues__opened.json")]))

    result = _simulate("--source", source, "--event", "issues__opened.json")

    assert result.exit_code != 0 and isinstance(result.exception, SystemExit)

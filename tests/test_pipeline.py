"""Signed delivery -> queue -> worker -> engine -> dry-run connector -> audit log and issue ledger."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from cli import main
from config.settings import Settings
from connector.delivery import Delivery
from policies.models import IssueRef
from runtime.queue import DeliveryQueue
from runtime.worker import process_delivery, utc_now
from tests.conftest import fixture_json, github_headers, jira_headers
from webhooks.receivers import Intake

ISSUE = "Codertocat/Hello-World#1"
REF = IssueRef("github", "Codertocat/Hello-World", "1")


def _intake(app: Flask) -> Intake:
    intake: Intake = app.extensions["sopguard"]
    return intake


def _label_event(action: str, label: str, labels: list[str]) -> dict[str, Any]:
    """The real `issues.labeled` delivery, with the label changed and the issue's labels after it."""
    payload = fixture_json("github", "issues__labeled.json")
    payload["action"] = action
    payload["label"] = {**payload["label"], "name": label}
    payload["issue"]["labels"] = [{**payload["label"], "name": name} for name in labels]
    return payload


def _post_github(client: FlaskClient, payload: dict[str, Any], delivery: str) -> str:
    body = json.dumps(payload).encode()
    response = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", delivery))
    assert response.status_code == 202, response.get_json()
    status: str = response.get_json()["status"]
    return status


def test_a_transition_split_over_two_label_events_is_recognised_through_the_ledger(
    app: Flask, client: FlaskClient
) -> None:
    queue = _intake(app).queue
    _post_github(client, _label_event("labeled", "status/triage", ["status/triage"]), "one")
    assert queue.run_pending() == 1
    assert _intake(app).store.memory(REF).last_state == "triage"

    _post_github(client, _label_event("unlabeled", "status/triage", []), "two")
    _post_github(client, _label_event("labeled", "status/in-progress", ["status/in-progress"]), "three")
    assert queue.run_pending() == 2

    entries = list(_intake(app).store.audit_entries(issue=ISSUE))
    last = [e for e in entries if e.delivery_id == "three"]
    assert [(e.rule_id, e.passed) for e in last] == [("follow-the-lifecycle", False)]
    assert last[0].outcome == "recorded (dry run)"
    change = next(a for a in last[0].actions if a["type"] == "ChangeLabels")
    assert change["add"] == ["status/triage"] and change["remove"] == ["status/in-progress"]
    assert _intake(app).store.memory(REF).last_state == "triage"


def test_a_delivery_queued_twice_is_processed_once(app: Flask) -> None:
    intake = _intake(app)
    delivery = Delivery(
        "jira",
        "twice",
        "jira:issue_updated",
        fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json"),
    )
    assert intake.store.register_delivery("jira", "twice", delivery.event_name, utc_now())
    services = intake.queue.services()

    first = process_delivery(services, delivery)
    second = process_delivery(services, delivery)

    assert first is not None and second is None
    assert len([e for e in intake.store.audit_entries() if e.delivery_id == "twice"]) == len(first.results)


def test_jira_skipped_stage_is_audited_with_the_clause_and_the_move_back(
    app: Flask, client: FlaskClient
) -> None:
    body = json.dumps(fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")).encode()
    assert client.post("/webhooks/jira", data=body, headers=jira_headers(body)).status_code == 202
    _intake(app).queue.run_pending()

    (entry,) = _intake(app).store.audit_entries()
    assert (entry.rule_id, entry.sop, entry.passed, entry.issue) == (
        "follow-the-lifecycle",
        "P2",
        False,
        "TES-41",
    )
    assert {"type": "MoveToStatus", "rule_id": "follow-the-lifecycle", "status": "To Do"} in entry.actions


def test_audit_command_lists_and_filters_the_log(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _post_github(client, fixture_json("github", "issues__opened.json"), "opened-1")
    body = json.dumps(fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")).encode()
    client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    _intake(app).queue.run_pending()
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(_intake(app).settings.data_dir))
    runner = CliRunner()

    everything = runner.invoke(main, ["audit"])
    only_jira = runner.invoke(main, ["audit", "--issue", "TES-41", "--json"])

    assert everything.exit_code == 0 and ISSUE in everything.output and "TES-41" in everything.output
    rows = [json.loads(line) for line in only_jira.output.splitlines()]
    assert rows and {row["issue"] for row in rows} == {"TES-41"}
    assert rows[0]["sop"] == "P2" and rows[0]["outcome"] == "recorded (dry run)"


def test_queue_url_must_be_sqlite_or_redis(settings: Settings) -> None:
    with pytest.raises(ValueError, match="SOPGUARD_QUEUE_URL"):
        DeliveryQueue(settings.model_copy(update={"queue_url": "amqp://localhost"}))

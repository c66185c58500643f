"""Signed delivery -> queue -> worker -> engine -> dry-run connector -> audit log and issue ledger."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from cli import main
from policies.models import IssueRef
from runtime.services import utc_now
from tests.conftest import drain, fixture_json, github_headers, jira_headers
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
    _post_github(client, _label_event("labeled", "status/triage", ["status/triage"]), "one")
    assert drain(app) == 1
    assert _intake(app).store.ledger.memory(REF).last_state == "triage"

    _post_github(client, _label_event("unlabeled", "status/triage", []), "two")
    _post_github(client, _label_event("labeled", "status/in-progress", ["status/in-progress"]), "three")
    assert drain(app) == 2

    entries = list(_intake(app).store.audit.entries(issue=ISSUE))
    last = [e for e in entries if e.delivery_id == "three"]
    assert [(e.rule_id, e.passed) for e in last] == [("follow-the-lifecycle", False)]
    assert last[0].outcome == "recorded (dry run)"
    change = next(a for a in last[0].actions if a["type"] == "ChangeLabels")
    assert change["add"] == ["status/triage"] and change["remove"] == ["status/in-progress"]
    assert _intake(app).store.ledger.memory(REF).last_state == "triage"


def test_a_delivery_received_twice_is_processed_once(app: Flask) -> None:
    intake = _intake(app)
    body = json.dumps(fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")).encode()
    puts = [
        intake.store.inbox.put("jira", "twice", "jira:issue_updated", "jira:TES-41", body, utc_now())
        for _ in range(2)
    ]

    assert puts == ["queued", "duplicate"]
    assert drain(app) == 1 and drain(app) == 0
    rows = [e for e in intake.store.audit.entries() if e.delivery_id == "twice"]
    assert rows and len({e.rule_id for e in rows}) == len(rows)
    assert intake.store.inbox.status("jira", "twice") == "processed"


def _follow_tes_41(app: Flask) -> None:
    """The ledger follows TES-41 in New, as if sopguard had seen it opened (else it is adopted)."""
    _intake(app).store.ledger.remember_state(IssueRef("jira", "TES", "TES-41"), "new", utc_now())


def test_jira_skipped_stage_is_audited_with_the_clause_and_the_move_back(
    app: Flask, client: FlaskClient
) -> None:
    _follow_tes_41(app)
    body = json.dumps(fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")).encode()
    assert client.post("/webhooks/jira", data=body, headers=jira_headers(body)).status_code == 202
    drain(app)

    (entry,) = _intake(app).store.audit.entries()
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
    _follow_tes_41(app)
    body = json.dumps(fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")).encode()
    client.post("/webhooks/jira", data=body, headers=jira_headers(body))
    drain(app)
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(_intake(app).settings.data_dir))
    runner = CliRunner()

    everything = runner.invoke(main, ["audit"])
    only_jira = runner.invoke(main, ["audit", "--issue", "TES-41", "--json"])

    assert everything.exit_code == 0 and ISSUE in everything.output and "TES-41" in everything.output
    rows = [json.loads(line) for line in only_jira.output.splitlines()]
    assert rows and {row["issue"] for row in rows} == {"TES-41"}
    assert rows[0]["sop"] == "P2" and rows[0]["outcome"] == "recorded (dry run)"


def test_the_door_keeps_times_as_every_other_writer_does(app: Flask) -> None:
    """The door writes its row without SQLAlchemy's statement machinery (for speed): the row must
    read back exactly as one SQLAlchemy wrote, a UTC time included."""
    from sqlalchemy import select

    from runtime.store.schema import deliveries

    store = _intake(app).store
    received = dt.datetime(2026, 11, 23, 10, 0, 1, 234567, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert store.inbox.put("github", "times-1", "issues", "github:a/b#1", b"{}", received) == "queued"

    with store.engine.connect() as db:
        stored = db.execute(select(deliveries.c.received_at, deliveries.c.attempts)).one()
        text = db.exec_driver_sql("SELECT received_at FROM deliveries").scalar_one()
    assert stored.received_at.replace(tzinfo=dt.UTC) == received
    assert text == "2026-11-23 02:00:01.234567" and stored.attempts == 0

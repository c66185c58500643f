"""`sopguard replay`: real deliveries posted through the app and processed (dry run), then run again
with a candidate policy that removes one guard. Exactly the refusals that guard made disappear."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import update

from cli import main
from config.loader import DEFAULT_POLICY_NAME, load_policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from runtime.replay import replay
from runtime.store import Store
from runtime.store.schema import deliveries
from tests.conftest import drain, github_headers, services_of
from tests.github_support import form_body, issue_payload

ROOT = Path(__file__).parents[1]
SOP_TEXT = (ROOT / "config" / DEFAULT_POLICY_NAME).read_text(encoding="utf-8")
# start-diagnosis's use of the owner guard (S2.3); start-work keeps it, through plan-ready.
OWNER_GUARD = """          requirement: {en: "A priority is set", zh-CN: "须设定优先级"}
        - use: owner
"""
ISSUE = "github:Codertocat/Hello-World#1"
ISSUE_2 = "github:Codertocat/Hello-World#2"
NOBODY: dict[str, Any] = {"assignee": None, "assignees": []}


def _post(app: Flask, payload: dict[str, Any], delivery: str) -> None:
    body = json.dumps(payload).encode()
    answer = app.test_client().post(
        "/webhooks/github", data=body, headers=github_headers(body, "issues", delivery)
    )
    assert answer.status_code == 202, answer.get_json()


def _labeled(label: str, labels: list[str], number: int = 1, **issue: Any) -> dict[str, Any]:
    return issue_payload(
        "labeled", labels=labels, body=form_body(), label={"name": label}, issue={"number": number, **issue}
    )


@pytest.fixture
def recorded(app: Flask) -> Store:
    """Two issues, each triaged, then moved to diagnosis without an owner: #1 has its intake
    information and a priority (refused by the `owner-assigned` guard alone), #2 has neither (asked
    for when it was opened; refused by `owner-assigned` and `priority-set`)."""
    _post(app, issue_payload("opened", labels=[], body=form_body()), "open-1")
    _post(app, issue_payload("opened", labels=[], issue={"number": 2}), "open-2")
    _post(app, _labeled("status/triage", ["status/new", "priority/P4", "status/triage"]), "triage-1")
    _post(app, _labeled("status/diagnosis", ["priority/P4", "status/diagnosis"], **NOBODY), "no-owner-1")
    _post(app, _labeled("status/triage", ["status/new", "status/triage"], number=2), "triage-2")
    _post(app, _labeled("status/diagnosis", ["status/diagnosis"], number=2, **NOBODY), "no-owner-2")
    assert drain(app) == 6
    store: Store = app.extensions["sopguard"].store
    return store


def _candidate(tmp_path: Path) -> Path:
    assert SOP_TEXT.count(OWNER_GUARD) == 1
    path = tmp_path / "no-owner-guard.yaml"
    without = OWNER_GUARD.replace("        - use: owner\n", "")
    path.write_text(SOP_TEXT.replace(OWNER_GUARD, without), encoding="utf-8")
    return path


def test_removing_a_guard_shows_exactly_the_refusals_that_disappear(
    recorded: Store, settings: Settings, tmp_path: Path
) -> None:
    today = dt.datetime.now(dt.UTC).date()
    seen: list[tuple[int, int]] = []
    report = replay(
        settings,
        recorded,
        load_policy(_candidate(tmp_path)),
        load_policy(),
        today,
        today,
        lambda *p: seen.append(p),
    )

    assert report.deliveries == 6 and report.issues == 2 and report.unrecorded == 0
    assert seen[-1] == (6, 6)
    assert list(report.differences) == [ISSUE, ISSUE_2]
    (alone,) = report.differences[ISSUE]
    assert alone.delivery_id == "no-owner-1"
    assert {r.rule_id for r in alone.refusals_gone} == {"owner-assigned", "start-diagnosis"}
    assert not (alone.new_refusals or alone.priority or alone.new_comments)
    assert not alone.comments_gone  # the rejection comment is the refusal's own
    (still_refused,) = report.differences[ISSUE_2]  # start-diagnosis stays refused: no priority
    assert still_refused.delivery_id == "no-owner-2"
    assert [r.rule_id for r in still_refused.refusals_gone] == ["owner-assigned"]
    assert not (still_refused.new_refusals or still_refused.priority)
    assert not (still_refused.new_comments or still_refused.comments_gone)
    totals = report.totals()
    assert totals["refusals_gone"] == 3 and totals["new_refusals"] == 0
    assert totals["deliveries_decided_otherwise"] == 2 and totals["issues_decided_otherwise"] == 2
    assert totals["other_priorities"] == totals["new_comments"] == totals["comments_gone"] == 0


def test_the_policy_in_force_changes_nothing(recorded: Store, settings: Settings) -> None:
    today = dt.datetime.now(dt.UTC).date()
    report = replay(settings, recorded, load_policy(), load_policy(), today, today)
    assert report.deliveries == 6 and report.differences == {}


def test_a_period_before_the_deliveries_replays_nothing(recorded: Store, settings: Settings) -> None:
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    report = replay(settings, recorded, load_policy(), load_policy(), yesterday, yesterday)
    assert report.deliveries == 0 and report.issues == 0


def _cli(settings: Settings, *args: str) -> Any:
    env = {"SOPGUARD_DATA_DIR": str(settings.data_dir)}
    return CliRunner().invoke(main, ["replay", *args], env=env)


def test_the_command_prints_json_and_markdown(recorded: Store, settings: Settings, tmp_path: Path) -> None:
    today = dt.datetime.now(dt.UTC).date().isoformat()
    candidate = str(_candidate(tmp_path))
    answer = _cli(settings, "--since", today, "--policy", candidate, "--format", "json")
    assert answer.exit_code == 0, answer.output
    data = json.loads(answer.stdout)
    assert [issue["issue"] for issue in data["issues"]] == [ISSUE, ISSUE_2]
    (delivery,) = data["issues"][0]["deliveries"]
    assert sorted(r["rule"] for r in delivery["refusals_gone"]) == ["owner-assigned", "start-diagnosis"]
    assert set(delivery) == {"delivery", "event", "at", "refusals_gone"}
    assert data["totals"]["refusals_gone"] == 3

    markdown = _cli(settings, "--since", today, "--until", today, "--policy", candidate)
    assert markdown.exit_code == 0, markdown.output
    assert "## Codertocat/Hello-World#1 (github)" in markdown.stdout
    assert "refusal gone: `start-diagnosis` (SOP S2.1): owner-assigned (S2.3)" in markdown.stdout
    assert "## Codertocat/Hello-World#2 (github)" in markdown.stdout
    assert "| refusals gone | 3 |" in markdown.stdout


def test_a_bad_date_or_policy_is_a_clear_error(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(SOP_TEXT.replace("  initial: new\n", "  initial: nowhere\n"), encoding="utf-8")
    bad_date = _cli(settings, "--since", "2026-02-30", "--policy", str(broken))
    assert bad_date.exit_code == 2 and "--since" in bad_date.output and "Traceback" not in bad_date.output
    backwards = _cli(settings, "--since", "2026-03-02", "--until", "2026-03-01", "--policy", str(broken))
    assert backwards.exit_code == 2 and "before --since" in backwards.output
    bad_policy = _cli(settings, "--since", "2026-03-01", "--policy", str(broken))
    assert bad_policy.exit_code == 1
    assert f"{broken}:" in bad_policy.output and "unknown state 'nowhere'" in bad_policy.output


def test_an_issue_is_replayed_from_its_first_delivery_before_the_period(
    recorded: Store, settings: Settings, tmp_path: Path
) -> None:
    """Opened and triaged yesterday: today's move to diagnosis is judged knowing it is in triage."""
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    earlier = deliveries.c.delivery_id.in_(["open-1", "triage-1"])
    with recorded.engine.begin() as db:
        db.execute(update(deliveries).where(earlier).values(received_at=yesterday))
    today = dt.datetime.now(dt.UTC).date()
    report = replay(settings, recorded, load_policy(_candidate(tmp_path)), load_policy(), today, today)
    assert report.deliveries == 4 and report.warm_up == 2 and report.issues == 2
    (alone,) = report.differences[ISSUE]
    assert alone.delivery_id == "no-owner-1"
    assert {r.rule_id for r in alone.refusals_gone} == {"owner-assigned", "start-diagnosis"}
    assert not (alone.new_refusals or alone.priority or alone.new_comments or alone.comments_gone)


def test_the_services_own_changes_are_its_own_in_the_replay_too(app: Flask, settings: Settings) -> None:
    """The login the service acted as (which its real connector learned from the tracker and a dry
    run cannot ask) is read from its audit log: its own move is not judged as a person's."""
    bot = "sopguard-bot[bot]"
    services_of(app).connectors = {**services_of(app).connectors, "github": DryRunConnector(frozenset({bot}))}
    _post(app, issue_payload("opened", labels=[], body=form_body()), "open-1")
    _post(app, _labeled("status/triage", ["status/new", "priority/P4", "status/triage"]), "triage-1")
    by_bot = _labeled("status/diagnosis", ["priority/P4", "status/diagnosis"], **NOBODY)
    by_bot["sender"] = {**by_bot["sender"], "login": bot}
    _post(app, by_bot, "bot-move-1")
    assert drain(app) == 3
    store: Store = app.extensions["sopguard"].store
    today = dt.datetime.now(dt.UTC).date()

    report = replay(settings, store, load_policy(), load_policy(), today, today)

    assert report.deliveries == 3 and report.differences == {}

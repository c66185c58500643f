"""SLA end to end (issue 5): signed deliveries build the ledger; the sweep, run at a given `now`,
warns before and at a missed target, once, on GitHub and on Jira, with no tracker reads."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from click.testing import CliRunner
from flask import Flask

from cli import main
from connector.retry import QUICK_ATTEMPTS
from policies.sla import DelayAnnounced
from runtime.services import Services
from runtime.sweep import SweepReport, sweep
from tests.conftest import fixture_json, services_of
from tests.github_support import REF, REPO, FakeGithub, Service, form_body, issue_payload, labelled, service
from tests.jira_support import (
    CLOUD,
    DATA_CENTER,
    Deployment,
    FakeJira,
    fake_for,
    with_intake,
    with_status_change,
)
from tests.jira_support import service as jira_service

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
ISSUE = f"/repos/{REPO}/issues/1"


def _services(app: Flask) -> Services:
    return services_of(app)


def _at(app: Flask, when: dt.datetime) -> None:
    """Deliveries processed from now on are processed at `when`."""
    _services(app).clock = lambda: when


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sweep(app: Flask, when: dt.datetime, mock: responses.RequestsMock) -> tuple[SweepReport, list[str]]:
    mock.calls.reset()
    report = sweep(_services(app), when)
    return report, [f"{c.request.method} {c.request.path_url.split('?')[0]}" for c in mock.calls]


# --- GitHub ----------------------------------------------------------------------------------------


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


def _open_github(tmp_path: Path, github: FakeGithub, at: dt.datetime, impact: str, urgency: str) -> Flask:
    sopguard = service(tmp_path)
    _at(sopguard.app, at)
    body = form_body(Impact=impact, Urgency=urgency, **{"Customer tier": "Standard"})
    payload = issue_payload(
        "opened", labels=[], body=body, issue={"created_at": _iso(at), "updated_at": _iso(at)}
    )
    sopguard.deliver(payload, "opened")
    return sopguard.app


def test_github_p1_is_warned_at_75_percent_of_15_minutes_then_breached_once(
    tmp_path: Path, github: FakeGithub
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    assert "priority/P1" in github.labels

    early, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=11), github.mock)
    assert (early.due, calls) == (0, [])

    _, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=11, seconds=15), github.mock)
    assert calls == [f"POST {ISSUE}/comments"]
    warning = list(github.our_comments())[-1]
    assert warning.startswith("**The first response target of this P1 issue is 75% used.**")
    assert "due by **Nov 23, 2026, 10:15\u202fAM (China Time)**; 3 minutes of working time is left" in warning
    assert "SOP S1.4" in warning

    assert _sweep(app, MONDAY_10 + dt.timedelta(minutes=12), github.mock)[1] == []

    _, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=15), github.mock)
    assert calls == [f"POST {ISSUE}/comments", f"POST {ISSUE}/labels"]
    assert "sla/breached" in github.labels
    assert list(github.our_comments())[-1].startswith(
        "**The first response target of this P1 issue was missed.**"
    )

    assert _sweep(app, MONDAY_10 + dt.timedelta(minutes=16), github.mock)[1] == []
    second_worker = Services(
        _services(app).settings, _services(app).policy, _services(app).store, _services(app).connectors
    )
    assert sweep(second_worker, MONDAY_10 + dt.timedelta(minutes=16)).notices == 0
    assert len([c for c in github.our_comments() if "first response target" in c]) == 2


def test_github_p3_opened_friday_1700_is_not_warned_over_the_weekend(
    tmp_path: Path, github: FakeGithub
) -> None:
    friday_17 = dt.datetime(2026, 11, 20, 17, 0, tzinfo=SHANGHAI)
    app = _open_github(tmp_path, github, friday_17, "Minor", "High")
    assert "priority/P3" in github.labels

    saturday = dt.datetime(2026, 11, 21, 0, 0, tzinfo=SHANGHAI)
    for hours in range(0, 48, 3):  # Saturday and Sunday, all day long
        report, calls = _sweep(app, saturday + dt.timedelta(hours=hours), github.mock)
        assert (report.due, calls) == (0, [])

    monday_11 = dt.datetime(2026, 11, 23, 11, 0, tzinfo=SHANGHAI)
    assert _sweep(app, monday_11 - dt.timedelta(minutes=1), github.mock)[1] == []
    report, calls = _sweep(app, monday_11, github.mock)
    assert calls == [f"POST {ISSUE}/comments"]
    assert (
        "due by **Nov 23, 2026, 12:00\u202fPM (China Time)**; 1 hour of working time is left"
        in list(github.our_comments())[-1]
    )


def test_github_waiting_for_the_customer_pauses_the_clock(tmp_path: Path, github: FakeGithub) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    deliver = _deliverer(app)
    deliver(
        labelled(github, "status/triage", issue={"updated_at": _iso(MONDAY_10 + dt.timedelta(minutes=1))}),
        "t",
    )
    deliver(
        labelled(
            github,
            "status/waiting-for-customer",
            issue={"updated_at": _iso(MONDAY_10 + dt.timedelta(minutes=5))},
        ),
        "w",
    )
    assert "status/waiting-for-customer" in github.labels

    paused, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=20), github.mock)
    assert (paused.due, calls) == (0, [])

    deliver(
        labelled(github, "status/triage", issue={"updated_at": _iso(MONDAY_10 + dt.timedelta(minutes=30))}),
        "r",
    )
    assert _sweep(app, MONDAY_10 + dt.timedelta(minutes=36), github.mock)[1] == []
    _, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=36, seconds=15), github.mock)
    assert calls == [f"POST {ISSUE}/comments"]
    assert "due by **Nov 23, 2026, 10:40\u202fAM (China Time)**" in list(github.our_comments())[-1]


def _deliverer(app: Flask) -> Any:
    return Service(app, []).deliver


@pytest.mark.parametrize(
    ("author", "warned"), [("dana", False), ("Codertocat", True)], ids=["agent", "reporter"]
)
def test_a_public_comment_by_an_agent_stops_first_response_the_reporters_does_not(
    tmp_path: Path, github: FakeGithub, author: str, warned: bool
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    comment = fixture_json("github", "issue_comment__created.json")
    comment["issue"]["user"]["login"] = "Codertocat"
    comment["issue"]["labels"] = [{"name": name} for name in github.labels]  # as GitHub sends them now
    reporter = comment["issue"]["user"]
    comment["comment"]["user"] = (
        reporter if author == "Codertocat" else {**reporter, "login": author, "id": 4242}
    )
    comment["comment"]["created_at"] = _iso(MONDAY_10 + dt.timedelta(minutes=5))
    _deliverer(app)(comment, "c-1", "issue_comment")

    _, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=12), github.mock)

    assert calls == ([f"POST {ISSUE}/comments"] if warned else [])


# --- Jira --------------------------------------------------------------------------------------------


def _jira_created(deployment: Deployment, at: dt.datetime) -> dict[str, Any]:
    name = "mattermost__webhook-issue-created.json"
    payload = with_intake(
        fixture_json("jira", name),
        {"Impact": "Business outage", "Urgency": "High", "Customer tier": "Standard"},
    )
    payload = copy.deepcopy(payload)
    payload["timestamp"] = int(at.timestamp() * 1000)
    payload["issue"]["fields"]["created"] = at.isoformat()
    if deployment is DATA_CENTER:
        payload["user"] = {"name": "admin", "key": "admin", "displayName": "Admin"}
    return payload


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_jira_p1_is_warned_then_breached_once(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    payload = _jira_created(deployment, MONDAY_10)
    fake: FakeJira = fake_for(no_network, deployment, payload)
    sopguard = jira_service(tmp_path, deployment)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(payload, "created")
    assert fake.priority == "Highest"
    comment_path = f"/rest/api/{'3' if deployment is CLOUD else '2'}/issue/{fake.key}/comment"

    _, calls = _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=11, seconds=15), no_network)
    assert calls == [f"POST {comment_path}"]
    assert "75%" in json.dumps(fake.comments[-1]["body"], ensure_ascii=False)

    _, calls = _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=15), no_network)
    assert calls == [f"POST {comment_path}", f"PUT /rest/api/2/issue/{fake.key}"]
    assert "sla/breached" in fake.labels
    assert _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=30), no_network)[1] == []
    fake.check_against_openapi()


def test_the_breach_notice_names_the_assignee_and_the_escalation_contact(
    tmp_path: Path, github: FakeGithub
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    services = _services(app)
    services.policy = services.policy.model_copy(
        update={
            "sla": services.policy.sla.model_copy(update={"escalation": {"github": "@acme/service-leads"}})
        }
    )
    assigned = issue_payload(
        "assigned",
        labels=list(github.labels),
        issue={"assignees": [{"login": "dana"}], "updated_at": _iso(MONDAY_10 + dt.timedelta(minutes=1))},
    )
    assigned["assignee"] = {"login": "dana"}
    _deliverer(app)(assigned, "assigned")

    _sweep(app, MONDAY_10 + dt.timedelta(minutes=15), github.mock)

    breach = list(github.our_comments())[-1]
    assert breach.startswith(
        "**The first response target of this P1 issue was missed.** It was due by **Nov 23, 2026, 10:15\u202fAM (China Time)**.\n"
        "@dana: please act now; @acme/service-leads is informed."
    )


# --- after the work: delay notices (S3.3) and ratings (S5.2) -------------------------------------------


def _comment_by(
    github: FakeGithub, author: str, body: str, at: dt.datetime, *, closed: bool = False
) -> dict[str, Any]:
    comment = fixture_json("github", "issue_comment__created.json")
    comment["issue"]["user"]["login"] = "Codertocat"
    comment["issue"]["labels"] = [{"name": name} for name in github.labels]
    comment["issue"]["state"] = "closed" if closed else "open"
    reporter = comment["issue"]["user"]
    comment["comment"]["user"] = (
        reporter if author == "Codertocat" else {**reporter, "login": author, "id": 4242}
    )
    comment["comment"]["body"] = body
    comment["comment"]["created_at"] = comment["issue"]["updated_at"] = _iso(
        at
    )  # a comment updates the issue
    return comment


def test_a_delay_notice_is_recorded_in_the_ledger_and_the_audit_log(
    tmp_path: Path, github: FakeGithub
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Minor", "Low")
    body = "### Delay\n\nThe vendor's patch arrives on Thursday; we now expect to finish on 2026-11-27."
    _deliverer(app)(
        _comment_by(github, "dana", body, MONDAY_10 + dt.timedelta(hours=1)), "delay-1", "issue_comment"
    )

    (issue,) = _services(app).store.ledger.followed()
    (notice,) = [e for e in issue.timeline if isinstance(e, DelayAnnounced)]
    assert notice.new_date == "2026-11-27"
    assert notice.reason == "The vendor's patch arrives on Thursday; we now expect to finish"
    audit = [e for e in _services(app).store.audit.entries() if e.delivery_id == "delay-1"]
    assert [(e.rule_id, e.sop, e.reasons) for e in audit] == [
        ("delay-announced", "S3.3", ["delay announced by dana: new date 2026-11-27"])
    ]
    assert [e.at for e in audit] == [MONDAY_10]  # the instant it was processed, whatever the clock's zone


def test_a_valid_close_asks_for_a_rating_and_the_reporters_score_is_counted(
    tmp_path: Path, github: FakeGithub, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Minor", "Low")
    services = _services(app)
    services.store.ledger.remember_state(REF, "acceptance", MONDAY_10)
    github.labels = ["status/acceptance", "priority/P4"]
    accepted = {"body": form_body(), "updated_at": _iso(MONDAY_10 + dt.timedelta(hours=1))}
    _deliverer(app)(labelled(github, "customer-accepted", issue=accepted), "accept-1")  # the reporter's
    for index, item in enumerate(
        [
            "Customer acceptance: The customer confirms the result",
            "Deliverables: Service report handed over",
            "Deliverables: Documentation updated and handed over",
        ]
    ):
        github.sub_issues.append({"id": 500 + index, "number": 500 + index, "title": item, "state": "closed"})
    closed = issue_payload(
        "closed", labels=list(github.labels), body=form_body() + "\n\n### Root cause\n\nA full disk."
    )
    closed["issue"]["updated_at"] = closed["issue"]["closed_at"] = _iso(MONDAY_10 + dt.timedelta(hours=2))
    github.state = "closed"
    _deliverer(app)(closed, "close-1")

    ask = list(github.our_comments())[-1]
    assert github.state == "closed"
    assert ask.startswith("**This request is closed.** @Codertocat, how satisfied are you with the service?")

    reply = _comment_by(github, "Codertocat", "4", MONDAY_10 + dt.timedelta(hours=3), closed=True)
    _deliverer(app)(reply, "rating-1", "issue_comment")
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(services.settings.data_dir))
    period = ["--since", "2026-11-01", "--until", "2026-11-30"]
    report = CliRunner().invoke(main, ["report", *period, "--format", "csv"])

    rows = list(csv.reader(io.StringIO(report.stdout)))
    assert rows[0][-1] == "Average rating"
    assert (rows[1][:3], rows[1][-1]) == (["github:Codertocat/Hello-World", "P4", "1"], "4.0")


def test_an_opened_delivery_processed_after_a_later_one_leaves_one_creation(
    tmp_path: Path, github: FakeGithub
) -> None:
    sopguard = service(tmp_path)
    _at(sopguard.app, MONDAY_10)
    times = {"created_at": _iso(MONDAY_10), "updated_at": _iso(MONDAY_10 + dt.timedelta(minutes=1))}
    github.labels = ["status/new"]
    sopguard.deliver(labelled(github, "status/triage", issue=times), "labeled-first")
    sopguard.deliver(
        issue_payload("opened", labels=["status/new"], body=form_body(), issue=times), "opened-late"
    )

    (issue,) = _services(sopguard.app).store.ledger.followed()
    assert [type(e).__name__ for e in issue.timeline].count("Created") == 1
    assert _services(sopguard.app).store.inbox.status("github", "opened-late") == "processed"
    assert (
        len(_services(sopguard.app).clocks(issue.ref, issue.timeline, MONDAY_10 + dt.timedelta(hours=1))) == 2
    )


def test_a_notice_the_tracker_refused_is_tried_again_by_the_next_sweep(
    tmp_path: Path, github: FakeGithub
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    bad_gateway = (502, {"Content-Type": "application/json"}, '{"message": "Bad Gateway"}')
    github.fail("POST", "/comments", *[bad_gateway] * QUICK_ATTEMPTS)  # every quick try of one sweep

    failed, _ = _sweep(app, MONDAY_10 + dt.timedelta(minutes=12), github.mock)
    retried, calls = _sweep(app, MONDAY_10 + dt.timedelta(minutes=13), github.mock)

    assert (failed.notices, retried.notices) == (0, 1)
    # A 502 may hide a comment that was made: the journal says `started`, so it is looked for first.
    assert calls == [f"GET {ISSUE}/comments", f"POST {ISSUE}/comments"]
    assert sum("75% used" in c for c in github.our_comments()) == 1


def test_a_jira_cloud_comment_by_the_reporter_keeps_the_clock_running_and_the_facts(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    created = _jira_created(CLOUD, MONDAY_10)
    fake: FakeJira = fake_for(no_network, CLOUD, created)
    sopguard = jira_service(tmp_path, CLOUD)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    comment = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    reporter = created["issue"]["fields"]["reporter"]
    comment["comment"]["author"] = {
        "accountId": reporter["accountId"],
        "displayName": "Someone Else Entirely",
    }
    comment["comment"]["created"] = (MONDAY_10 + dt.timedelta(minutes=5)).isoformat()
    comment["timestamp"] = int((MONDAY_10 + dt.timedelta(minutes=5)).timestamp() * 1000)
    sopguard.deliver(comment, "reporter-comment")

    (issue,) = _services(sopguard.app).store.ledger.followed()
    assert issue.facts.reporter_id == reporter["accountId"] and issue.facts.priority == "P1"
    assert "priority-P1" in issue.facts.labels
    _, calls = _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=12), no_network)
    assert calls == [f"POST /rest/api/3/issue/{fake.key}/comment"]  # first response was not stopped


def _jira_at(payload: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
    timed = copy.deepcopy(payload)
    timed["timestamp"] = int(when.timestamp() * 1000)
    return timed


def test_jira_p3_opened_friday_1700_is_not_warned_over_the_weekend(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    friday_17 = dt.datetime(2026, 11, 20, 17, 0, tzinfo=SHANGHAI)
    created = with_intake(_jira_created(CLOUD, friday_17), {"Impact": "Minor", "Urgency": "High"})
    fake_for(no_network, CLOUD, created)
    sopguard = jira_service(tmp_path, CLOUD)
    _at(sopguard.app, friday_17)
    sopguard.deliver(created, "created")

    saturday = dt.datetime(2026, 11, 21, 0, 0, tzinfo=SHANGHAI)
    assert all(
        _sweep(sopguard.app, saturday + dt.timedelta(hours=h), no_network)[1] == [] for h in range(0, 48, 4)
    )
    _, calls = _sweep(sopguard.app, dt.datetime(2026, 11, 23, 11, 0, tzinfo=SHANGHAI), no_network)
    assert len(calls) == 1 and calls[0].startswith("POST /rest/api/3/issue/")


def test_jira_waiting_for_the_customer_pauses_and_an_agents_comment_stops_first_response(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    created = _jira_created(CLOUD, MONDAY_10)
    fake = fake_for(no_network, CLOUD, created)
    fake.in_role("Service Desk Team", users=["agent-dana"])
    sopguard = jira_service(tmp_path, CLOUD)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    update = fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")
    update["issue"]["fields"] = {
        **copy.deepcopy(created["issue"]["fields"]),
        "status": update["issue"]["fields"]["status"],
    }
    to_triage = _jira_at(with_status_change(update, "To Do", "Triage"), MONDAY_10 + dt.timedelta(minutes=1))
    waiting = _jira_at(
        with_status_change(update, "Triage", "Waiting for Customer"), MONDAY_10 + dt.timedelta(minutes=5)
    )
    sopguard.deliver(to_triage, "triage")
    sopguard.deliver(waiting, "waiting")
    ref = _services(sopguard.app).store.ledger.followed()[0].ref
    assert _services(sopguard.app).store.ledger.memory(ref).last_state == "waiting-for-customer"
    assert fake.calls().count(f"POST /rest/api/2/issue/{fake.key}/transitions") == 0  # nothing moved back

    assert _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=20), no_network)[1] == []

    back = _jira_at(
        with_status_change(update, "Waiting for Customer", "Triage"), MONDAY_10 + dt.timedelta(minutes=30)
    )
    sopguard.deliver(back, "back")
    answer = fixture_json("jira", "mattermost__webhook-cloud-comment-created.json")
    answer["comment"]["author"] = {"accountId": "agent-dana", "displayName": "Dana"}
    answer["comment"]["created"] = (MONDAY_10 + dt.timedelta(minutes=32)).isoformat()
    sopguard.deliver(_jira_at(answer, MONDAY_10 + dt.timedelta(minutes=32)), "answered")

    assert _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=45), no_network)[1] == []
    (issue,) = _services(sopguard.app).store.ledger.followed()
    first = _services(sopguard.app).clocks(issue.ref, issue.timeline, MONDAY_10 + dt.timedelta(minutes=45))[0]
    assert (first.target_id, first.met, first.elapsed) == ("first-response", True, dt.timedelta(minutes=7))


# --- an issue first seen after it was opened: its beginning read from the tracker, once ---------------


def _label_event(kind: str, name: str, at: dt.datetime) -> dict[str, Any]:
    return {
        "id": 1,
        "event": kind,
        "label": {"name": name, "color": "ffffff"},
        "created_at": _iso(at),
        "actor": {"login": "Codertocat", "id": 1},
        "url": "https://api.github.com/x",
        "node_id": "x",
        "commit_id": None,
        "commit_url": None,
        "performed_via_github_app": None,
    }


def minutes(count: float) -> dt.datetime:
    return MONDAY_10 + dt.timedelta(minutes=count)


def test_a_github_issue_adopted_mid_life_gets_its_pauses_from_the_history(
    tmp_path: Path, github: FakeGithub
) -> None:
    github.events = [
        _label_event("labeled", "priority/P1", minutes(0)),
        _label_event("labeled", "status/triage", minutes(1)),
        _label_event("labeled", "status/waiting-for-customer", minutes(2)),
        _label_event("unlabeled", "status/triage", minutes(2)),
        _label_event("labeled", "status/triage", minutes(20)),
        _label_event("unlabeled", "status/waiting-for-customer", minutes(20)),
    ]
    github.labels = ["priority/P1", "status/triage"]
    sopguard = service(tmp_path)
    _at(sopguard.app, minutes(21))
    times = {"created_at": _iso(MONDAY_10), "updated_at": _iso(minutes(21))}
    sopguard.deliver(labelled(github, "bug", issue=times), "first-seen")
    assert github.calls() == [f"GET {ISSUE}/comments", f"GET {ISSUE}/events"]  # read once, to adopt it

    report, calls = _sweep(sopguard.app, minutes(25), github.mock)
    assert calls == [] and report.notices == 0  # 2 + 5 working minutes, not 25
    _, calls = _sweep(
        sopguard.app,
        minutes(
            29,
        )
        + dt.timedelta(seconds=15),
        github.mock,
    )
    assert calls == [f"POST {ISSUE}/comments"]
    assert "due by **Nov 23, 2026, 10:33\u202fAM (China Time)**" in list(github.our_comments())[-1]


def test_a_jira_issue_adopted_mid_life_gets_its_pauses_from_the_changelog(
    tmp_path: Path, no_network: responses.RequestsMock
) -> None:
    created = _jira_created(CLOUD, MONDAY_10)
    fake = fake_for(no_network, CLOUD, created)

    def status(before: str, after: str, minute: int) -> dict[str, Any]:
        at = (MONDAY_10 + dt.timedelta(minutes=minute)).isoformat()
        return {
            "id": str(minute),
            "created": at,
            "items": [{"field": "status", "fromString": before, "toString": after}],
        }

    fake.changelog = [
        status("To Do", "Triage", 1),
        status("Triage", "Waiting for Customer", 2),
        status("Waiting for Customer", "Triage", 20),
    ]
    update = fixture_json("jira", "mattermost__webhook-issue-updated-labels.json")
    update["issue"] = copy.deepcopy(created["issue"])
    update["issue"]["fields"]["status"] = {"name": "Triage", "statusCategory": {"key": "indeterminate"}}
    update["issue"]["fields"]["priority"] = {"name": "Highest", "id": "1"}
    update["timestamp"] = int((MONDAY_10 + dt.timedelta(minutes=21)).timestamp() * 1000)
    sopguard = jira_service(tmp_path, CLOUD)
    _at(sopguard.app, MONDAY_10 + dt.timedelta(minutes=21))
    sopguard.deliver(update, "first-seen")
    read = [f"GET /rest/api/2/issue/{fake.key}/changelog", f"GET /rest/api/2/issue/{fake.key}/comment"]
    assert [c for c in fake.calls() if "/issue/" in c] == read  # once, to adopt it

    _, calls = _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=25), no_network)
    assert calls == []
    _, calls = _sweep(sopguard.app, MONDAY_10 + dt.timedelta(minutes=29, seconds=15), no_network)
    assert calls == ["GET /rest/api/2/serverInfo", f"POST /rest/api/3/issue/{fake.key}/comment"]
    fake.check_against_openapi()

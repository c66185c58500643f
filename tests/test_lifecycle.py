"""The lifecycle without holes (issue 9), end to end on both trackers with real payloads: waiting for
the customer returns only to the stage it came from; transfers, deletions and moves between Jira
projects stop following the old reference; a partly failed notice is retried until each part
landed; the receipt reads the same clocks as the sweep."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from flask import Flask

from runtime.services import Services
from runtime.sweep import sweep
from tests.conftest import fixture_json, services_of
from tests.github_support import FakeGithub, Service, form_body, issue_payload, labelled, service
from tests.jira_support import (
    CLOUD,
    DATA_CENTER,
    Deployment,
    FakeJira,
    adf_text,
    fake_for,
    with_intake,
    with_status_change,
)
from tests.jira_support import service as jira_service

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
TUESDAY_10 = MONDAY_10 + dt.timedelta(days=1)


def _services(app: Flask) -> Services:
    return services_of(app)


def _at(app: Flask, when: dt.datetime) -> None:
    """Deliveries processed from now on are processed at `when`."""
    _services(app).clock = lambda: when


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minutes(count: float) -> dt.datetime:
    return MONDAY_10 + dt.timedelta(minutes=count)


# --- GitHub ----------------------------------------------------------------------------------------


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


def _open_github(tmp_path: Path, github: FakeGithub, **form: str) -> Service:
    sopguard = service(tmp_path)
    _at(sopguard.app, MONDAY_10)
    payload = issue_payload(
        "opened",
        labels=[],
        body=form_body(**form),
        issue={"created_at": _iso(MONDAY_10), "updated_at": _iso(MONDAY_10)},
    )
    sopguard.deliver(payload, "opened")
    return sopguard


def _label(sopguard: Service, github: FakeGithub, label: str, when: dt.datetime) -> None:
    _at(sopguard.app, when)
    sopguard.deliver(labelled(github, label, issue={"updated_at": _iso(when)}), f"{label}@{when:%d%H%M}")


def _receipt(github: FakeGithub) -> str:
    (receipt,) = [c for c in github.our_comments() if "sopguard:receipt" in c]
    return receipt


def test_github_receipt_after_a_pause_states_the_deadline_the_sweep_keeps(
    tmp_path: Path, github: FakeGithub
) -> None:
    sopguard = _open_github(tmp_path, github)  # Minor, Low: P4
    _label(sopguard, github, "status/triage", _minutes(1))
    _label(sopguard, github, "status/waiting-for-customer", _minutes(5))
    _label(sopguard, github, "status/triage", TUESDAY_10)
    _label(sopguard, github, "priority/P1", TUESDAY_10 + dt.timedelta(minutes=1))

    # Five minutes ran before the pause; ten are left from Tuesday 10:00 (not Monday 10:15).
    assert "First response due by **2026-11-24 10:10 (Asia/Shanghai)**" in _receipt(github)
    (issue,) = _services(sopguard.app).store.ledger.followed()
    now = TUESDAY_10 + dt.timedelta(minutes=1)
    first = _services(sopguard.app).clocks(issue.ref, issue.timeline, now)[0]
    assert (first.level, f"{first.deadline:%Y-%m-%d %H:%M}") == ("P1", "2026-11-24 10:10")


# --- Jira --------------------------------------------------------------------------------------------


def _jira_at(payload: dict[str, Any], when: dt.datetime) -> dict[str, Any]:
    timed = copy.deepcopy(payload)
    timed["timestamp"] = int(when.timestamp() * 1000)
    return timed


def _jira_created(deployment: Deployment) -> dict[str, Any]:
    payload = with_intake(fixture_json("jira", "mattermost__webhook-issue-created.json"), {})
    payload["issue"]["fields"]["created"] = MONDAY_10.isoformat()
    if deployment is DATA_CENTER:
        payload["user"] = {"name": "admin", "key": "admin", "displayName": "Admin"}
    return _jira_at(payload, MONDAY_10)


def _jira_update(created: dict[str, Any]) -> dict[str, Any]:
    """A real `jira:issue_updated` of the created issue, its fields as they are."""
    update = fixture_json("jira", "mattermost__webhook-issue-updated-started-working.json")
    update["issue"]["fields"] = copy.deepcopy(created["issue"]["fields"])
    update["issue"]["key"] = created["issue"]["key"]
    return update


def _jira_comment_text(fake: FakeJira, marker: str) -> str:
    bodies = [b if isinstance(b, str) else adf_text(b) for b in fake.our_comments()]
    found = [b for b in bodies if marker in b or (marker == "receipt" and "due by" in b)]
    return found[-1]


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_jira_receipt_after_a_pause_states_the_deadline_the_sweep_keeps(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    created = _jira_created(deployment)
    fake = fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    deliver = sopguard.deliver
    _at(sopguard.app, MONDAY_10)
    deliver(created, "created")
    update = _jira_update(created)
    for before, after, when in [
        ("To Do", "Triage", _minutes(1)),
        ("Triage", "Waiting for Customer", _minutes(5)),
        ("Waiting for Customer", "Triage", TUESDAY_10),
    ]:
        _at(sopguard.app, when)
        deliver(_jira_at(with_status_change(update, before, after), when), f"{after}@{when:%d%H%M}")
        update["issue"]["fields"]["status"] = with_status_change(update, before, after)["issue"]["fields"][
            "status"
        ]
    raised = copy.deepcopy(update)
    raised["issue"]["fields"]["priority"] = {"name": "Highest", "id": "1"}
    raised["changelog"] = {
        "id": "1",
        "items": [{"field": "priority", "fromString": "Low", "toString": "Highest"}],
    }
    now = TUESDAY_10 + dt.timedelta(minutes=1)
    _at(sopguard.app, now)
    deliver(_jira_at(raised, now), "raised")

    receipt = _jira_comment_text(fake, "receipt")
    assert "2026-11-24 10:10 (Asia/Shanghai)" in receipt, receipt
    (issue,) = _services(sopguard.app).store.ledger.followed()
    first = _services(sopguard.app).clocks(issue.ref, issue.timeline, now)[0]
    assert (first.level, f"{first.deadline:%Y-%m-%d %H:%M}") == ("P1", "2026-11-24 10:10")
    assert sweep(_services(sopguard.app), now).notices == 0


# --- waiting for the customer returns only to the stage it came from ---------------------------------

PLANNED = "### Plan\n\nRestart the gateway at night."
OWNER = [{"login": "dana", "id": 4242, "type": "User"}]


def _label_as_is(
    sopguard: Service, github: FakeGithub, label: str, when: dt.datetime, body: str = PLANNED
) -> None:
    """A person adds `label` to an issue with a plan and an owner (and no intake, no priority)."""
    _at(sopguard.app, when)
    payload = labelled(github, label, issue={"updated_at": _iso(when), "assignees": OWNER, "body": body})
    sopguard.deliver(payload, f"{label}@{when:%d%H%M}")


def _open_bare(tmp_path: Path, github: FakeGithub, body: str = PLANNED) -> Service:
    sopguard = service(tmp_path)
    _at(sopguard.app, MONDAY_10)
    opened = issue_payload(
        "opened",
        labels=[],
        body=body,
        issue={"created_at": _iso(MONDAY_10), "updated_at": _iso(MONDAY_10), "assignees": OWNER},
    )
    sopguard.deliver(opened, "opened")
    return sopguard


def _github_state(github: FakeGithub) -> list[str]:
    return sorted(label for label in github.labels if label.startswith("status/"))


def test_github_waiting_for_the_customer_is_no_way_round_triage(tmp_path: Path, github: FakeGithub) -> None:
    sopguard = _open_bare(tmp_path, github)
    _label_as_is(sopguard, github, "status/triage", _minutes(1))
    _label_as_is(sopguard, github, "status/waiting-for-customer", _minutes(5))
    assert _github_state(github) == ["status/waiting-for-customer"]

    _label_as_is(sopguard, github, "status/in-progress", _minutes(30))

    assert _github_state(github) == ["status/waiting-for-customer"]  # undone
    rejection = [c for c in github.our_comments() if "transition-rejected:waiting-for-customer" in c][-1]
    assert "This change of stage was undone." in rejection
    assert "From **Waiting for customer** the next stage can be: Triage." in rejection
    assert "- Diagnosis (SOP S2.1" in rejection and "- Planning (SOP S2.2" in rejection
    ledger = _services(sopguard.app).store.ledger
    (issue,) = ledger.followed()
    assert issue.memory.last_state == "waiting-for-customer"

    _label_as_is(sopguard, github, "status/triage", _minutes(40))
    assert _github_state(github) == ["status/triage"]
    assert ledger.followed()[0].memory.last_state == "triage"


def test_github_waiting_returns_to_a_stage_the_policy_has_no_way_back_to(
    tmp_path: Path, github: FakeGithub
) -> None:
    """Diagnosis -> waiting -> diagnosis: no transition of the policy names it, and it is right."""
    complete = f"{form_body()}\n\n{PLANNED}"
    sopguard = _open_bare(tmp_path, github, complete)
    for label, minute in [("triage", 1), ("diagnosis", 2), ("waiting-for-customer", 5), ("diagnosis", 30)]:
        _label_as_is(sopguard, github, f"status/{label}", _minutes(minute), complete)

    assert _github_state(github) == ["status/diagnosis"]
    assert not [c for c in github.our_comments() if "transition-rejected" in c]


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_jira_waiting_for_the_customer_is_no_way_round_triage(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    created = _jira_created(deployment)
    created["issue"]["fields"]["description"] = "h3. Plan\nRestart the gateway at night."
    created["issue"]["fields"]["assignee"] = {
        "accountId": "agent-dana",
        "name": "dana",
        "displayName": "Dana",
    }
    fake = fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    update = _jira_update(created)
    steps = [
        ("To Do", "Triage", _minutes(1)),
        ("Triage", "Waiting for Customer", _minutes(5)),
        ("Waiting for Customer", "In Progress", _minutes(30)),
    ]
    for before, after, when in steps:
        _at(sopguard.app, when)
        changed = _jira_at(with_status_change(update, before, after), when)
        fake.status = after
        sopguard.deliver(changed, f"{after}@{when:%H%M}")

    transitions = f"POST /rest/api/2/issue/{fake.key}/transitions"
    assert fake.calls().count(transitions) == 1 and fake.status == "Waiting for Customer"
    rejection = _jira_comment_text(fake, "Waiting for customer")
    assert "Triage" in rejection and "Diagnosis" in rejection

    _at(sopguard.app, _minutes(40))
    back = _jira_at(with_status_change(update, "Waiting for Customer", "Triage"), _minutes(40))
    fake.status = "Triage"
    sopguard.deliver(back, "back")
    assert fake.calls().count(transitions) == 1 and fake.status == "Triage"
    assert _services(sopguard.app).store.ledger.followed()[0].memory.last_state == "triage"

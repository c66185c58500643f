"""The lifecycle without holes (issue 9), end to end on both trackers with real payloads: waiting for
the customer returns only to the stage it came from; transfers, deletions and moves between Jira
projects stop following the old reference; a partly failed notice is retried until each part
landed; the receipt reads the same clocks as the sweep."""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from flask import Flask
from github import Auth

from app import create_app
from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from connector.github.events import to_event as to_github_event
from connector.jira.events import to_event as to_jira_event
from policies.models import EventKind, IssueRef
from policies.sla import Created, StateChanged, TimelineEvent
from policies.workflow import paused_from
from runtime.services import Services
from runtime.store import Store
from runtime.sweep import sweep
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, fixture_json, services_of
from tests.fake_github import FakeGithubServer, RandomFaults
from tests.github_support import (
    REPO,
    FakeGithub,
    Service,
    add_checklist,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
    service,
)
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
from tests.test_zh_cn import problems

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
TUESDAY_10 = MONDAY_10 + dt.timedelta(days=1)

# The preparation's items (made in planning, S3.1) and the self-check's (made entering verification).
PREPARED_AND_SELF_CHECKED = sum(
    len(checklist.items)
    for checklist in load_policy().checklists
    if checklist.id in ("preparation", "self-check")
)


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
    assert "First response due by **Nov 24, 2026, 10:10\u202fAM (China Time)**" in _receipt(github)
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
    assert "Nov 24, 2026, 10:10\u202fAM (China Time)" in receipt, receipt
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


# --- transfers, deletions and issues gone: on the loopback fake GitHub --------------------------------

OLD_REPO, NEW_REPO = "octo-org/octo-repo", "Codertocat/Hello-World"  # as octokit's transfer recordings
CHINESE = load_policy().model_copy(update={"locale": "zh-CN"})
P1_FORM = form_body(Impact="Business outage", Urgency="High")


@pytest.fixture
def server(no_network: responses.RequestsMock) -> Iterator[FakeGithubServer]:
    with FakeGithubServer() as fake:
        no_network.add_passthru(fake.url)
        yield fake


def _on_loopback(tmp_path: Path, server: FakeGithubServer, policy: Policy | None = None) -> Service:
    settings = Settings(
        data_dir=tmp_path / "var", github_webhook_secret=GITHUB_SECRET, jira_webhook_secret=JIRA_SECRET
    )
    connector = GithubConnector(auth=Auth.Token("test-token"), base_url=server.url, sleep=lambda _: None)
    services = Services(
        settings,
        policy or load_policy(),
        Store(settings.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
    )
    return Service(create_app(settings, services), [])


def _event(
    action: str, repo: str, server: FakeGithubServer, when: dt.datetime, **extra: Any
) -> dict[str, Any]:
    """`issues.<action>` of issue 1 of `repo`, showing the issue as the fake holds it at `when`."""
    held = server.issue(repo, 1)
    payload = issue_payload(
        action,
        labels=held.labels,
        body=held.body or P1_FORM,
        issue={"created_at": _iso(MONDAY_10), "updated_at": _iso(when), "assignees": OWNER},
        **extra,
    )
    payload["repository"] = {**payload["repository"], "full_name": repo}
    return payload


def _open_on(sopguard: Service, server: FakeGithubServer, repo: str) -> None:
    server.put_issue(repo, 1, body=P1_FORM)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(_event("opened", repo, server, MONDAY_10), f"opened:{repo}")


def _add_label(sopguard: Service, server: FakeGithubServer, repo: str, label: str, when: dt.datetime) -> None:
    server.put_issue(repo, 1, labels=[*server.issue(repo, 1).labels, label])
    _at(sopguard.app, when)
    sopguard.deliver(_event("labeled", repo, server, when, label={"name": label}), f"{label}@{repo}")


def _transfer_deliveries(server: FakeGithubServer, when: dt.datetime) -> dict[str, dict[str, Any]]:
    """Both ends of a transfer as GitHub sends them, the issue carried over with its labels."""
    carried = server.issue(OLD_REPO, 1)
    server.put_issue(NEW_REPO, 1, body=carried.body, labels=carried.labels)
    away = fixture_json("github", "issues__transferred.json")
    away["issue"].update(updated_at=_iso(when), labels=[{"name": n} for n in carried.labels])
    arrived = fixture_json("github", "issues__opened.with-transfer.json")
    arrived["issue"].update(
        updated_at=_iso(when),
        labels=[{"name": n} for n in carried.labels],
        body=carried.body,
        assignees=OWNER,
    )
    return {"transferred": away, "opened": arrived}


@pytest.mark.parametrize("first", ["transferred", "opened"])
def test_a_transferred_issue_is_followed_on_in_its_new_repository_as_it_is(
    tmp_path: Path, server: FakeGithubServer, first: str
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, OLD_REPO)
    _add_label(sopguard, server, OLD_REPO, "status/triage", _minutes(1))
    _add_label(sopguard, server, OLD_REPO, "status/diagnosis", _minutes(2))
    assert sorted(server.issue(OLD_REPO, 1).labels) == ["priority/P1", "status/diagnosis"]

    deliveries = _transfer_deliveries(server, _minutes(3))
    _at(sopguard.app, _minutes(3))
    for name in [first, *({"transferred", "opened"} - {first})]:
        sopguard.deliver(deliveries[name], f"{name}-delivery")

    held = server.issue(NEW_REPO, 1)
    assert sorted(held.labels) == ["priority/P1", "status/diagnosis"]  # taken as it is: nothing undone
    assert [c.body for c in server.comments(NEW_REPO, 1)] == []
    ledger = _services(sopguard.app).store.ledger
    (followed,) = ledger.followed()
    assert (str(followed.ref), followed.memory.last_state) == (f"{NEW_REPO}#1", "diagnosis")
    assert min(e.at for e in followed.timeline) == MONDAY_10  # its clocks run on from its creation

    before = len(server.calls())
    assert sweep(_services(sopguard.app), _minutes(12)).notices == 1
    written = [c for c in server.calls()[before:] if c.is_write]
    assert [(c.method, c.path) for c in written] == [("POST", f"/repos/{NEW_REPO}/issues/1/comments")]


def test_a_deleted_issue_is_no_longer_followed(tmp_path: Path, server: FakeGithubServer) -> None:
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    deleted = fixture_json("github", "issues__deleted.json")  # Codertocat/Hello-World#1
    deleted["issue"]["updated_at"] = _iso(_minutes(3))
    server.delete_issue(NEW_REPO, 1)
    _at(sopguard.app, _minutes(3))
    sopguard.deliver(deleted, "deleted")

    services = _services(sopguard.app)
    assert services.store.ledger.followed() == []
    before = len(server.calls())
    assert [sweep(services, _minutes(m)).due for m in (12, 15, 60)] == [0, 0, 0]
    assert server.calls()[before:] == []
    (row,) = [e for e in services.store.audit.entries() if e.delivery_id == "deleted"]
    assert (row.rule_id, row.reasons) == ("follow-the-lifecycle", ["deleted: no longer followed here"])

    late = _event("labeled", NEW_REPO, server, _minutes(4), label={"name": "status/diagnosis"})
    late["issue"]["labels"] = [{"name": "status/diagnosis"}]
    sopguard.deliver(late, "late-label")
    assert services.store.inbox.status("github", "late-label") == "ignored"
    assert server.calls()[before:] == []  # nothing undone on an issue that is not there


def test_a_sweep_that_finds_the_issue_gone_stops_following_it_with_one_audit_row(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    """The deletion's delivery was lost: the first notice's comment answers 410, so does a read."""
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    server.delete_issue(NEW_REPO, 1)
    services = _services(sopguard.app)

    before = len(server.calls())
    first = sweep(services, _minutes(12))
    calls = [(c.method, c.path, c.status) for c in server.calls()[before:]]
    assert calls == [
        ("POST", f"/repos/{NEW_REPO}/issues/1/comments", 410),
        ("GET", f"/repos/{NEW_REPO}/issues/1", 410),
    ]
    assert (first.notices, services.store.ledger.followed()) == (0, [])
    later = len(server.calls())
    assert [sweep(services, _minutes(m)).due for m in (13, 15, 60)] == [0, 0, 0]
    assert server.calls()[later:] == []
    swept = [e for e in services.store.audit.entries() if e.delivery_id == "sla-sweep"]
    assert len(swept) == 1 and "no longer followed" in swept[0].outcome


def test_a_sweep_retry_and_a_deletion_write_their_audit_reasons_in_chinese(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server, CHINESE)
    server.fail_next("POST", r"/issues/1/comments$", 422, 422, 503, 503, 503)  # refused twice, then down
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    for minute in range(1, 9):
        sweep(services, MONDAY_10 + dt.timedelta(minutes=minute, seconds=30))
    assert sum("sopguard:receipt" in c.body for c in server.comments(NEW_REPO, 1)) == 1
    deleted = fixture_json("github", "issues__deleted.json")
    deleted["issue"]["updated_at"] = _iso(_minutes(9))
    server.delete_issue(NEW_REPO, 1)
    _at(sopguard.app, _minutes(9))
    sopguard.deliver(deleted, "deleted")
    late = _event("labeled", NEW_REPO, server, _minutes(10), label={"name": "status/triage"})
    sopguard.deliver(late, "late-label")

    rows = list(services.store.audit.entries())
    tries = [e.reasons for e in rows if e.delivery_id == "sla-sweep" and e.rule_id == "confirm-receipt"]
    assert tries == [
        ["重试未送达的部分：第 2 次尝试"],
        ["工单系统暂时无法访问时重试，不计入尝试次数"],
        ["重试未送达的部分：第 3 次尝试"],
    ]
    (gone,) = [e.reasons for e in rows if e.delivery_id == "deleted" and e.rule_id == "follow-the-lifecycle"]
    (ignored,) = [e.reasons for e in rows if e.delivery_id == "late-label"]
    assert (gone, ignored) == (["已删除：此处不再跟踪"], ["此处已不再跟踪（已删除），未做任何处理"])
    assert all(problems(reason) == [] for reasons in (*tries, gone, ignored) for reason in reasons)


def test_a_sweep_that_finds_the_issue_gone_says_so_in_chinese(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server, CHINESE)
    _open_on(sopguard, server, NEW_REPO)
    server.delete_issue(NEW_REPO, 1)
    services = _services(sopguard.app)
    sweep(services, _minutes(12))
    (swept,) = [e for e in services.store.audit.entries() if e.delivery_id == "sla-sweep"]
    assert swept.reasons[0].endswith("：不再跟踪") and swept.outcome.endswith("：不再跟踪")


# --- Jira: deleted, and moved to another project ----------------------------------------------------


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_a_deleted_jira_issue_is_no_longer_followed(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    created = _jira_created(deployment)
    fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    deleted = fixture_json("jira", "mattermost__webhook-issue-deleted.json")
    deleted["issue"]["key"] = created["issue"]["key"]
    deleted["issue"]["fields"]["project"] = created["issue"]["fields"]["project"]
    _at(sopguard.app, _minutes(3))
    sopguard.deliver(_jira_at(deleted, _minutes(3)), "deleted")

    services = _services(sopguard.app)
    assert services.store.ledger.followed() == []
    no_network.calls.reset()
    assert [sweep(services, _minutes(m)).due for m in (12, 15, 60)] == [0, 0, 0]
    assert len(no_network.calls) == 0


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_a_jira_issue_moved_to_another_project_is_followed_under_its_new_key(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    moved = fixture_json("jira", "mattermost__webhook-issue-updated-moved.derived.json")
    created = _jira_created(deployment)
    created["issue"]["key"] = moved["changelog"]["items"][1]["fromString"]  # TES-41
    old = fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    update = _jira_update(created)
    _at(sopguard.app, _minutes(1))
    sopguard.deliver(_jira_at(with_status_change(update, "To Do", "Triage"), _minutes(1)), "triage")
    old.status = "Triage"

    moved["issue"]["fields"] = {
        **copy.deepcopy(update["issue"]["fields"]),
        "project": moved["issue"]["fields"]["project"],
        "status": with_status_change(update, "To Do", "Triage")["issue"]["fields"]["status"],
    }
    if deployment is DATA_CENTER:
        moved["user"] = {"name": "admin", "key": "admin", "displayName": "Admin"}
    new = fake_for(no_network, deployment, moved)
    _at(sopguard.app, _minutes(2))
    sopguard.deliver(_jira_at(moved, _minutes(2)), "moved")

    services = _services(sopguard.app)
    (followed,) = services.store.ledger.followed()
    assert (followed.ref.key, followed.ref.scope, followed.memory.last_state) == ("ACME-7", "ACME", "triage")
    assert min(e.at for e in followed.timeline) == MONDAY_10
    assert new.calls().count(f"POST /rest/api/2/issue/{new.key}/transitions") == 0  # nothing undone
    no_network.calls.reset()
    # Created Monday 10:00 with no priority: P4, 8 h; 75% is 6 h of working time, by 17:00.
    assert sweep(services, MONDAY_10 + dt.timedelta(hours=7, minutes=1)).notices == 1
    assert {c.request.path_url.split("?")[0] for c in no_network.calls if c.request.method == "POST"} == {
        f"/rest/api/{'3' if deployment is CLOUD else '2'}/issue/ACME-7/comment"
    }

    # A delivery about the old key still on its way (a change made just before the move) is not
    # taken for a new issue: the old key is known as moved, and nothing is written for it.
    no_network.calls.reset()
    late = _jira_at(with_status_change(update, "Triage", "In Progress"), _minutes(3))
    sopguard.deliver(late, "late-under-the-old-key")
    assert [str(f.ref) for f in services.store.ledger.followed()] == [str(followed.ref)]
    gone = services.store.ledger.one(IssueRef("jira", "TES", "TES-41"))
    assert gone is not None and gone.memory.gone == "moved to ACME-7"
    assert [c for c in no_network.calls if c.request.method != "GET"] == []


# --- a partly failed notice is retried until each of its parts landed, each once ----------------------


def _writes(server: FakeGithubServer, since: int) -> list[tuple[str, str, int | None]]:
    return [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in server.calls()[since:] if c.is_write]


def test_a_breach_whose_comment_failed_while_its_label_went_on_is_announced_by_the_next_sweep(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    assert sweep(services, _minutes(12)).notices == 1  # the 75% warning
    server.fail_next("POST", r"/issues/1/comments$", 422)  # refused once; the label is not

    before = len(server.calls())
    failed = sweep(services, _minutes(15))
    assert _writes(server, before) == [("POST", "comments", 422), ("POST", "labels", 200)]
    assert failed.notices == 0 and "sla/breached" in server.issue(NEW_REPO, 1).labels

    before = len(server.calls())
    retried = sweep(services, _minutes(16))
    assert retried.notices == 1
    assert _writes(server, before) == [("POST", "comments", 201)]  # the label is not made again
    breaches = [c.body for c in server.comments(NEW_REPO, 1) if "was missed" in c.body]
    assert len(breaches) == 1
    before = len(server.calls())
    assert sweep(services, _minutes(30)).due == 0 and _writes(server, before) == []


def test_a_breach_label_the_tracker_refused_is_made_by_a_later_sweep_and_the_comment_not_again(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    sweep(services, _minutes(12))
    server.fail_next("POST", r"/issues/1/labels$", 422)

    before = len(server.calls())
    sweep(services, _minutes(15))
    assert _writes(server, before) == [("POST", "comments", 201), ("POST", "labels", 422)]
    before = len(server.calls())
    sweep(services, _minutes(16))
    assert _writes(server, before) == [("POST", "labels", 200)]
    assert "sla/breached" in server.issue(NEW_REPO, 1).labels
    assert sum("was missed" in c.body for c in server.comments(NEW_REPO, 1)) == 1
    before = len(server.calls())
    assert sweep(services, _minutes(30)).due == 0 and _writes(server, before) == []


def test_a_receipt_the_tracker_refused_is_posted_by_the_next_sweep_once(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    server.fail_next("POST", r"/issues/1/comments$", 422)
    _open_on(sopguard, server, NEW_REPO)
    assert server.comments(NEW_REPO, 1) == [] and "priority/P1" in server.issue(NEW_REPO, 1).labels
    services = _services(sopguard.app)

    assert sweep(services, _minutes(1)).notices == 1
    (receipt,) = [c.body for c in server.comments(NEW_REPO, 1)]
    assert "sopguard:receipt" in receipt
    before = len(server.calls())
    sweep(services, _minutes(2))
    assert _writes(server, before) == []
    retried = [e for e in services.store.audit.entries() if e.rule_id == "confirm-receipt"]
    assert [e.passed for e in retried] == [True, True]  # the delivery's row, then the sweep's try


def test_a_part_refused_for_good_is_given_up_with_an_audit_row_not_tried_for_ever(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    server.fail_next("POST", r"/issues/1/comments$", *[422] * 40)
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    for minute in range(1, 60):
        sweep(services, MONDAY_10 + dt.timedelta(minutes=minute, seconds=30))
    tries = [e for e in services.store.audit.entries(limit=1000) if e.rule_id == "confirm-receipt"]
    assert len(tries) == 1 + 5  # the delivery, then five tries of the sweep
    assert tries[-1].outcome.endswith("given up after 6 attempts")
    assert services.store.ledger.followed()[0].unfinished == ()


@contextmanager
def _sweep_audit_refused(services: Services) -> Iterator[None]:
    """The database refuses the sweep's audit rows (a full disk, say): a real failure of the issue's
    sweep after its notice was claimed and its writes made."""
    with services.store.engine.begin() as db:
        db.exec_driver_sql(
            "CREATE TRIGGER refuse_sweep_audit BEFORE INSERT ON audit WHEN NEW.delivery_id = 'sla-sweep' "
            "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
        )
    yield
    with services.store.engine.begin() as db:
        db.exec_driver_sql("DROP TRIGGER refuse_sweep_audit")


def test_a_refused_breach_comment_is_announced_even_when_the_rest_of_the_issue_sweep_failed(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    assert sweep(services, _minutes(12)).notices == 1
    server.fail_next("POST", r"/issues/1/comments$", 422)
    with _sweep_audit_refused(services):
        sweep(services, _minutes(15))  # claimed, comment refused, label on; then the audit row fails
    assert "sla/breached" in server.issue(NEW_REPO, 1).labels

    before = len(server.calls())
    for minute in range(16, 30):
        sweep(services, _minutes(minute))
    assert _writes(server, before) == [("POST", "comments", 201)]  # the label is not made again
    breaches = [c.body for c in server.comments(NEW_REPO, 1) if "was missed" in c.body]
    assert len(breaches) == 1


def test_an_outage_while_a_part_is_tried_again_is_waited_out_not_counted_as_attempts(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    server.fail_next("POST", r"/issues/1/comments$", 422)  # the receipt is refused once
    _open_on(sopguard, server, NEW_REPO)
    services = _services(sopguard.app)
    server.set_random_faults(RandomFaults(rate=1.0, statuses=(503,)))  # then GitHub is down 40 minutes
    for minute in range(1, 40):
        sweep(services, MONDAY_10 + dt.timedelta(minutes=minute, seconds=30))
    assert not any("sopguard:receipt" in c.body for c in server.comments(NEW_REPO, 1))
    (receipt,) = [u for u in services.store.ledger.followed()[0].unfinished if "receipt" in u.name]
    assert receipt.attempts == 1  # the refusal; the outage's tries are not attempts

    server.set_random_faults(RandomFaults())  # GitHub is back
    for minute in range(40, 75):
        sweep(services, MONDAY_10 + dt.timedelta(minutes=minute, seconds=30))
    receipts = [c.body for c in server.comments(NEW_REPO, 1) if "sopguard:receipt" in c.body]
    assert len(receipts) == 1
    tries = [e for e in services.store.audit.entries(limit=1000) if e.rule_id == "confirm-receipt"]
    assert not any("given up" in e.outcome for e in tries)
    waits = [e.at for e in tries[1:]]  # the sweep's tries, after the delivery's row
    assert max(b - a for a, b in itertools.pairwise(waits)) == dt.timedelta(minutes=30)  # backed off, capped


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_a_jira_receipt_the_tracker_refused_is_posted_by_the_next_sweep_once(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    created = _jira_created(deployment)
    fake = fake_for(no_network, deployment, created)
    refused = (400, {"Content-Type": "application/json"}, '{"errorMessages": ["Comment body too long"]}')
    fake.fail("POST", "/comment", refused)
    sopguard = jira_service(tmp_path, deployment)
    _at(sopguard.app, MONDAY_10)
    sopguard.deliver(created, "created")
    posted = len(fake.our_comments())  # the delivery's other comment (intake) went on

    sweep(_services(sopguard.app), _minutes(1))
    assert len(fake.our_comments()) == posted + 1
    sweep(_services(sopguard.app), _minutes(3))
    assert len(fake.our_comments()) == posted + 1


def test_the_rating_ask_of_a_closed_issue_the_tracker_refused_is_posted_by_a_sweep(
    tmp_path: Path, github: FakeGithub
) -> None:
    """A closed issue has no clocks to sweep; its unfinished comment is swept all the same."""
    sopguard = _open_github(tmp_path, github)
    services = _services(sopguard.app)
    (issue,) = services.store.ledger.followed()
    services.store.ledger.remember_state(issue.ref, "acceptance", MONDAY_10)
    github.labels = ["status/acceptance", "priority/P4"]
    accepted = {"body": form_body(), "updated_at": _iso(_minutes(119))}
    sopguard.deliver(labelled(github, "customer-accepted", issue=accepted), "accept-1")  # the reporter's
    done = [
        "Customer acceptance: The customer confirms the result",
        "Deliverables: Service report handed over",
        "Deliverables: Documentation updated and handed over",
    ]
    github.sub_issues += [
        {"id": 500 + i, "number": 500 + i, "title": title, "state": "closed"} for i, title in enumerate(done)
    ]
    closed = issue_payload(
        "closed", labels=list(github.labels), body=f"{form_body()}\n\n### Root cause\n\nA full disk."
    )
    closed["issue"]["updated_at"] = closed["issue"]["closed_at"] = _iso(_minutes(120))
    github.state = "closed"
    refused = (422, {"Content-Type": "application/json"}, '{"message": "Validation Failed"}')
    github.fail("POST", "/comments", refused)
    _at(sopguard.app, _minutes(120))
    sopguard.deliver(closed, "close-1")
    assert not any("how satisfied" in c for c in github.our_comments())

    sweep(services, _minutes(121))
    asks = [c for c in github.our_comments() if "how satisfied are you" in c]
    assert len(asks) == 1 and github.state == "closed"
    assert services.store.ledger.due_refs(_minutes(600)) == []


def test_a_delivery_whose_writes_find_the_issue_gone_stops_following_it(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    """A label event delivered late, after the issue was deleted: its write and a read answer 410."""
    sopguard = _on_loopback(tmp_path, server)
    _open_on(sopguard, server, NEW_REPO)
    payload = _event("labeled", NEW_REPO, server, _minutes(2), label={"name": "status/triage"})
    payload["issue"]["labels"].append({"name": "status/triage"})
    server.delete_issue(NEW_REPO, 1)
    _at(sopguard.app, _minutes(2))
    sopguard.deliver(payload, "late-label")

    services = _services(sopguard.app)
    assert services.store.ledger.followed() == []
    assert services.store.inbox.status("github", "late-label") == "processed"
    rows = [e for e in services.store.audit.entries() if e.delivery_id == "late-label"]
    assert any("no longer followed" in " ".join(e.reasons) for e in rows)
    before = len(server.calls())
    assert sweep(services, _minutes(15)).due == 0 and server.calls()[before:] == []


def test_a_later_delivery_does_not_put_off_the_retry_of_a_refused_receipt(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _on_loopback(tmp_path, server)
    server.fail_next("POST", r"/issues/1/comments$", 422)
    _open_on(sopguard, server, NEW_REPO)
    _add_label(sopguard, server, NEW_REPO, "bug", MONDAY_10 + dt.timedelta(seconds=30))

    assert _services(sopguard.app).store.ledger.due_refs(_minutes(1)) != []
    sweep(_services(sopguard.app), _minutes(1))
    assert sum("sopguard:receipt" in c.body for c in server.comments(NEW_REPO, 1)) == 1


def test_a_checklist_comment_the_tracker_refused_is_posted_by_the_next_sweep_and_no_item_twice(
    tmp_path: Path, github: FakeGithub
) -> None:
    sopguard = service(tmp_path)
    _at(sopguard.app, MONDAY_10)
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")
    refused = (422, {"Content-Type": "application/json"}, '{"message": "Validation Failed"}')
    github.fail("POST", "/comments", refused)
    body = "### Key steps\n\nRestarted the gateway; error rate back to normal."
    sopguard.deliver(labelled(github, "status/verification", body=body), "verify-1")
    assert len(github.sub_issues) == PREPARED_AND_SELF_CHECKED and not list(github.our_comments())

    github.mock.calls.reset()
    sweep(_services(sopguard.app), _minutes(1))
    posted = [c for c in github.our_comments() if c.startswith("**Self-check**")]
    assert len(posted) == 1 and "one sub-issue per item was created" in posted[0]
    assert (
        len(github.sub_issues) == PREPARED_AND_SELF_CHECKED
        and f"POST /repos/{REPO}/issues" not in github.calls()
    )
    sweep(_services(sopguard.app), _minutes(5))
    assert len([c for c in github.our_comments() if c.startswith("**Self-check**")]) == 1


# --- the pieces, one at a time -------------------------------------------------------------------------


def _at_minute(minute: int) -> dt.datetime:
    return MONDAY_10 + dt.timedelta(minutes=minute)


@pytest.mark.parametrize(
    ("states", "origin"),
    [
        (["new", "triage", "waiting-for-customer"], "triage"),
        (["new", "triage", "diagnosis", "waiting-for-customer"], "diagnosis"),
        (["new", "triage", "waiting-for-customer", "triage", "waiting-for-customer"], "triage"),
        (["new", "triage", "waiting-for-customer", "triage"], None),  # not paused now
        (["waiting-for-customer"], None),  # first seen waiting: where it came from is not known
    ],
)
def test_where_a_paused_issue_came_from_is_read_from_its_timeline(
    states: list[str], origin: str | None
) -> None:
    first, *rest = states
    timeline: tuple[TimelineEvent, ...] = (
        Created(at=_at_minute(0), state=first),
        *(StateChanged(at=_at_minute(i + 1), state=s) for i, s in enumerate(rest)),
    )
    assert paused_from(load_policy(), timeline) == origin


def test_both_ends_of_a_github_transfer_name_the_other() -> None:
    away, _ = to_github_event("issues", "d-1", fixture_json("github", "issues__transferred.json"))
    arrived, _ = to_github_event("issues", "d-2", fixture_json("github", "issues__opened.with-transfer.json"))

    assert (away.kinds, str(away.issue), str(away.moved_to)) == (
        frozenset({EventKind.REMOVED}),
        "octo-org/octo-repo#1",
        "Codertocat/Hello-World#1",
    )
    assert (arrived.kinds, str(arrived.issue), str(arrived.moved_from)) == (
        frozenset({EventKind.MOVED}),
        "Codertocat/Hello-World#1",
        "octo-org/octo-repo#1",
    )
    deleted, _ = to_github_event("issues", "d-3", fixture_json("github", "issues__deleted.json"))
    assert deleted.kinds == {EventKind.REMOVED} and deleted.moved_to is None


def test_a_jira_move_names_the_old_key_and_a_deletion_is_a_removal() -> None:
    moved, _ = to_jira_event(
        "d-1", fixture_json("jira", "mattermost__webhook-issue-updated-moved.derived.json")
    )
    assert EventKind.MOVED in moved.kinds
    assert (moved.issue.key, moved.issue.scope, moved.moved_from) == (
        "ACME-7",
        "ACME",
        IssueRef("jira", "TES", "TES-41", moved.issue.id),
    )
    deleted, _ = to_jira_event("d-2", fixture_json("jira", "mattermost__webhook-issue-deleted.json"))
    assert deleted.kinds == {EventKind.REMOVED}

"""Caught up after an outage (issue 11): changes whose deliveries were dropped on the way are found
by the next reconcile and processed once each, in their issue's turn; a second reconcile does
nothing. GitHub on the loopback fake (`tests/fake_github.py`), which changes issues without sending
anything."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from click.testing import CliRunner
from github import Auth

from app import create_app
from cli import main
from config.loader import load_policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from policies.models import IssueRef
from policies.sla import Commented
from runtime.reconcile import SETTLE, reconcile
from runtime.services import Services, utc_now
from runtime.store import Store
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, drain, fixture_json, services_of
from tests.fake_github import BOT, FakeGithubServer
from tests.github_support import REPO, Service, form_body, issue_payload
from tests.jira_support import CLOUD, DATA_CENTER, Deployment, FakeJira, fake_for, status_json, with_intake
from tests.jira_support import service as jira_service

P1_FORM = form_body(Impact="Business outage", Urgency="High")
REPORTER = "Codertocat"


@pytest.fixture
def server(no_network: responses.RequestsMock) -> Iterator[FakeGithubServer]:
    with FakeGithubServer() as fake:
        no_network.add_passthru(fake.url)
        yield fake


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sopguard(tmp_path: Path, server: FakeGithubServer) -> Service:
    settings = Settings(
        data_dir=tmp_path / "var", github_webhook_secret=GITHUB_SECRET, jira_webhook_secret=JIRA_SECRET
    )
    connector = GithubConnector(auth=Auth.Token("test-token"), base_url=server.url, sleep=lambda _: None)
    services = Services(
        settings,
        load_policy(),
        Store(settings.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
    )
    return Service(create_app(settings, services), [])


def _opened_by_delivery(sopguard: Service, server: FakeGithubServer, at: dt.datetime) -> None:
    """Issue 1, opened an hour ago and delivered as usual: the ledger follows it."""
    server.put_issue(REPO, 1, body=P1_FORM, user=REPORTER, created_at=at, updated_at=at)
    stamps = {"created_at": _iso(at), "updated_at": _iso(at)}
    assert sopguard.deliver(issue_payload("opened", labels=[], body=P1_FORM, issue=stamps), "opened-1") == 1


def _outage(server: FakeGithubServer, at: dt.datetime) -> int:
    """What happened on GitHub while no delivery came through: issue 1 closed, its reporter asking
    on it, and issue 2 opened. The id of the reporter's comment."""
    server.put_issue(REPO, 1, state="closed", updated_at=at)
    comment = server.add_comment(REPO, 1, "Any news? It is still down here.", user=REPORTER)
    server.put_issue(
        REPO, 2, title="Checkout down", body=P1_FORM, user=REPORTER, created_at=at, updated_at=at
    )
    return comment


def _changes(queued: list[str]) -> list[str]:
    """`issue:change` of each made-up delivery, without the instant that names it."""
    return [f"{d.split(':')[2]}:{d.split(':', 6)[-1]}" for d in queued]


def test_the_next_reconcile_processes_each_missed_change_once(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _sopguard(tmp_path, server)
    services = services_of(sopguard.app)
    start = utc_now().replace(microsecond=0)
    _opened_by_delivery(sopguard, server, start - dt.timedelta(hours=1))
    services.store.reconciles.done(f"github:{REPO}", start - dt.timedelta(minutes=30))
    comment = _outage(server, start)
    later = start + SETTLE + dt.timedelta(minutes=1)

    report = reconcile(services, later)

    (scope,) = report.scopes
    assert (scope.scope, scope.since, scope.error) == (
        f"github:{REPO}",
        start - dt.timedelta(minutes=30),
        None,
    )
    # Issues newest first (so none is skipped when one is updated while the pages are read); within
    # an issue, its state last: it leaves the present in the ledger.
    assert _changes(scope.queued) == [
        f"{REPO}#2:opened",
        f"{REPO}#1:comment:{comment}",
        f"{REPO}#1:closed",
    ]
    assert reconcile(services, later, since=scope.since).queued == 0  # already queued: not again

    assert drain(sopguard.app) == 3
    for delivery in scope.queued:
        assert services.store.inbox.status("github", delivery) == "processed"
    ledger = services.store.ledger
    first, second = ledger.one(IssueRef("github", REPO, "1")), ledger.one(IssueRef("github", REPO, "2"))
    assert first is not None and second is not None
    assert [e.comment_id for e in first.timeline if isinstance(e, Commented)] == [str(comment)]
    assert [c.user for c in server.comments(REPO, 2)] == [BOT]  # issue 2 got its receipt, once
    assert services.store.reconciles.last(f"github:{REPO}") == later - SETTLE

    calls = len(server.calls())
    again = reconcile(services, later + dt.timedelta(minutes=15))
    assert (again.queued, again.scopes[0].duplicates) == (0, 0)
    assert [c.method for c in server.calls()[calls:]] == ["GET"] * (len(server.calls()) - calls)
    from_the_start = reconcile(
        services, later + dt.timedelta(minutes=15), since=start - dt.timedelta(hours=2)
    )
    assert from_the_start.queued == 0  # every change is in the ledger now
    assert drain(sopguard.app) == 0


def test_an_issue_with_a_delivery_still_queued_is_left_for_the_next_reconcile(
    tmp_path: Path, server: FakeGithubServer
) -> None:
    sopguard = _sopguard(tmp_path, server)
    services = services_of(sopguard.app)
    start = utc_now().replace(microsecond=0)
    _opened_by_delivery(sopguard, server, start - dt.timedelta(hours=1))
    services.store.reconciles.done(f"github:{REPO}", start - dt.timedelta(minutes=30))
    server.put_issue(REPO, 1, state="closed", updated_at=start)
    body = b'{"action": "edited"}'
    services.store.inbox.put("github", "queued-1", "issues", f"github:{REPO}#1", body, start)

    report = reconcile(services, start + SETTLE + dt.timedelta(minutes=1))

    assert (report.queued, report.scopes[0].waiting) == (0, [f"github:{REPO}#1"])
    assert services.store.reconciles.last(f"github:{REPO}") == start  # it is listed again next time


def test_the_command_reports_what_it_queued(tmp_path: Path, server: FakeGithubServer) -> None:
    result = CliRunner().invoke(
        main, ["reconcile", "--since", "2026-12-01T08:00Z"], env={"SOPGUARD_DATA_DIR": str(tmp_path)}
    )

    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "0 change(s) no delivery brought, queued"


# --- Jira (on `responses`, tests/jira_support.py) ---------------------------------------------------


def _jira_search(fake: FakeJira, issue: dict[str, Any], updated: dt.datetime, asked: list[str]) -> None:
    """The fake's answer to a search: its one issue, as it now stands, in one page."""

    def reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = parse_qs(urlsplit(request.url or "").query)
        asked.append(query["jql"][0])
        fields = {
            **issue["fields"],
            "status": status_json(fake.status),
            "labels": list(fake.labels),
            "priority": {"name": fake.priority} if fake.priority else None,
            "comment": {"comments": fake.comments, "maxResults": 100, "total": len(fake.comments)},
            "updated": updated.isoformat(),
        }
        page: dict[str, Any] = {"issues": [{**issue, "fields": fields}]}
        if fake.deployment is DATA_CENTER:
            page |= {"startAt": 0, "maxResults": 100, "total": 1}
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    fake.search_reply = reply


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_jira_the_next_reconcile_processes_each_missed_change_once(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    start = utc_now().replace(microsecond=0)
    created = with_intake(fixture_json("jira", "mattermost__webhook-issue-created.json"), {})
    created["issue"]["fields"] |= {"created": (start - dt.timedelta(hours=1)).isoformat()}
    created["timestamp"] = int((start - dt.timedelta(hours=1)).timestamp() * 1000)
    fake = fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    services = services_of(sopguard.app)
    sopguard.deliver(created, "created")
    key = created["issue"]["key"]
    project = key.split("-")[0]
    services.store.reconciles.done(f"jira:{project}", start - dt.timedelta(minutes=30))
    # The outage: a label added and the reporter asking, neither delivered.
    fake.labels.append("customer-vip")
    reporter = created["issue"]["fields"]["reporter"]
    asking = {"id": "20001", "author": reporter, "body": "Any news?", "created": start.isoformat()}
    fake.comments.append(asking)
    asked: list[str] = []
    _jira_search(fake, created["issue"], start, asked)
    later = start + SETTLE + dt.timedelta(minutes=1)

    report = reconcile(services, later)

    (scope,) = report.scopes
    assert scope.error is None
    instant = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"
    assert [re.sub(rf"^reconcile:jira:{key}:{instant}:", "", d) for d in scope.queued] == [
        "comment:20001",  # as of its time, then the issue as it is now
        "updated",
    ]
    margin = (start - dt.timedelta(minutes=30, hours=14)).astimezone(dt.UTC)
    assert asked == [f'project = "{project}" AND updated >= "{margin:%Y-%m-%d %H:%M}" ORDER BY updated DESC']
    assert drain(sopguard.app) == 2
    followed = services.store.ledger.one(IssueRef("jira", project, key))
    assert followed is not None and "customer-vip" in followed.facts.labels
    assert [e.comment_id for e in followed.timeline if isinstance(e, Commented)] == ["20001"]

    assert reconcile(services, later + dt.timedelta(minutes=15)).queued == 0
    assert reconcile(services, later, since=start - dt.timedelta(hours=2)).queued == 0  # all known now
    assert drain(sopguard.app) == 0
    fake.check_against_openapi()


@pytest.mark.parametrize("deployment", [CLOUD, DATA_CENTER], ids=["cloud", "dc"])
def test_jira_a_priority_the_ledger_knows_by_its_level_is_not_a_missed_change(
    tmp_path: Path, no_network: responses.RequestsMock, deployment: Deployment
) -> None:
    """Jira names the priority (`High`), the ledger keeps the SOP level it maps to (`P2`): the same
    priority, so an issue that was only touched (sopguard's own comment, say) has nothing missed."""
    start = utc_now().replace(microsecond=0)
    created = with_intake(fixture_json("jira", "mattermost__webhook-issue-created.json"), {})
    created["issue"]["fields"] |= {"created": (start - dt.timedelta(hours=1)).isoformat()}
    created["timestamp"] = int((start - dt.timedelta(hours=1)).timestamp() * 1000)
    fake = fake_for(no_network, deployment, created)
    sopguard = jira_service(tmp_path, deployment)
    services = services_of(sopguard.app)
    sopguard.deliver(created, "created")
    key = created["issue"]["key"]
    project = key.split("-")[0]
    known = services.store.ledger.one(IssueRef("jira", project, key))
    assert known is not None and known.facts.priority is not None and fake.priority is not None
    assert known.facts.priority != fake.priority  # a level in the ledger, a name on Jira
    services.store.reconciles.done(f"jira:{project}", start - dt.timedelta(minutes=30))
    _jira_search(fake, created["issue"], start, [])

    report = reconcile(services, start + SETTLE + dt.timedelta(minutes=1))

    assert report.queued == 0

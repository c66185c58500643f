"""Adoption (issue 9): each symptom of installing sopguard on a tracker with a past, on both trackers,
through the whole pipeline (signed delivery -> inbox -> engine -> connector -> a fake tracker on
`responses`), on real payloads (octokit's GitHub recordings, mattermost's and jira-to-matrix's Jira
ones; tests/fixtures/SOURCES.md). Before adoption each of these was wrong:

- a label added to an old closed issue reopened it, labelled it status/new and said stages were skipped;
- a close of a legacy issue was undone;
- the next sweep announced "missed 15,036 h ago" and put sla/breached on every legacy issue touched;
- an issue answered a week ago was declared unanswered (comments were not read from the history);
- intake was demanded of closed issues and on the first-seen edit of any issue;
- and nothing kept sopguard off issues the team did not want it on.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner
from flask import Flask
from github import Auth

from app import create_app
from cli import main
from config.loader import load_policy
from config.schema import Adoption, Policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from policies.models import IssueRef
from policies.sla import Phase
from runtime.services import Services
from runtime.store import Store
from runtime.sweep import sweep
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, fixture_json, services_of
from tests.github_support import REF, FakeGithub, issue_payload, labelled, put_in_state
from tests.github_support import Service as GithubService
from tests.jira_support import (
    CLOUD,
    CLOUD_CLOSED,
    CLOUD_TRANSITION,
    DC_CLOSED,
    DC_STARTED,
    DEPLOYMENTS,
    Deployment,
    FakeJira,
    as_edit,
    fake_for,
    issue_path,
    post_comment,
    status_json,
)
from tests.jira_support import Service as JiraService
from tests.jira_support import service as jira_service

NOW = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai
ISSUE = "/repos/Codertocat/Hello-World/issues/1"
READS_TO_ADOPT = [f"GET {ISSUE}/comments", f"GET {ISSUE}/events"]


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _at(app: Flask, when: dt.datetime) -> Services:
    services = services_of(app)
    services.clock = lambda: when
    return services


def _audit_reasons(app: Flask) -> list[str]:
    return [r for e in services_of(app).store.audit.entries() for r in e.reasons]


# --- GitHub ------------------------------------------------------------------------------------


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


def github_service(tmp_path: Path, policy: Policy | None = None) -> GithubService:
    settings = Settings(
        data_dir=tmp_path / "var", github_webhook_secret=GITHUB_SECRET, jira_webhook_secret=JIRA_SECRET
    )
    connector = GithubConnector(auth=Auth.Token("test-token"), sleep=lambda _: None)
    services = Services(
        settings,
        policy or load_policy(),
        Store(settings.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
        lambda: NOW,
    )
    return GithubService(create_app(settings, services), [])


@pytest.fixture
def sopguard(tmp_path: Path) -> GithubService:
    return github_service(tmp_path)


def test_github_a_label_on_an_old_closed_issue_adopts_it_closed_and_writes_nothing(
    sopguard: GithubService, github: FakeGithub
) -> None:
    github.state = "closed"
    closed = {"state": "closed", "closed_at": "2019-06-01T00:00:00Z"}

    sopguard.deliver(labelled(github, "wontfix", issue=closed), "legacy-label")

    assert github.calls() == READS_TO_ADOPT  # its history read, nothing written
    assert (github.state, github.labels, list(github.our_comments())) == ("closed", ["wontfix"], [])
    memory = services_of(sopguard.app).store.ledger.memory(REF)
    assert (memory.last_state, memory.adopted) == ("closed", True)
    assert "adopted in Closed (closed on GitHub); its history before is not judged" in _audit_reasons(
        sopguard.app
    )


def test_github_the_close_of_a_legacy_issue_is_not_undone(
    sopguard: GithubService, github: FakeGithub
) -> None:
    github.state, github.labels = "closed", ["status/in-progress"]

    sopguard.deliver(issue_payload("closed", labels=["status/in-progress"]), "legacy-close")

    assert github.calls() == READS_TO_ADOPT  # not reopened, not relabelled, no comment
    assert github.state == "closed" and not list(github.our_comments())


def test_github_a_legacy_issue_past_its_targets_gets_no_breach_notice(
    sopguard: GithubService, github: FakeGithub
) -> None:
    sopguard.deliver(labelled(github, "status/diagnosis"), "legacy-diagnosis")  # opened in 2019
    github.mock.calls.reset()

    for later in (NOW, NOW + dt.timedelta(days=1)):
        report = sweep(_at(sopguard.app, later), later)
        assert report.notices == 0
    assert github.calls() == [] and "sla/breached" not in github.labels
    missed = [r for r in _audit_reasons(sopguard.app) if "missed before the adoption" in r]
    assert [m.split(" target")[0] for m in missed] == ["first response", "resolution"]
    assert all(m.endswith("recorded, not announced") for m in missed)


def test_github_an_issue_answered_a_week_ago_is_not_declared_unanswered(
    sopguard: GithubService, github: FakeGithub
) -> None:
    opened = NOW - dt.timedelta(days=7, hours=1)
    github.comments = [
        {
            "id": 501,
            "body": "We are looking at it.",
            "user": {"login": "support-engineer", "id": 77, "type": "User"},
            "created_at": _iso(NOW - dt.timedelta(days=7)),
            "updated_at": _iso(NOW - dt.timedelta(days=7)),
            "url": "https://api.github.com/repos/Codertocat/Hello-World/issues/comments/501",
        }
    ]

    sopguard.deliver(labelled(github, "bug", issue={"created_at": _iso(opened)}), "answered")

    services = services_of(sopguard.app)
    followed = services.store.ledger.one(REF)
    assert followed is not None
    clocks = {c.target_id: c for c in services.clocks(REF, followed.timeline, NOW)}
    assert clocks["first-response"].phase is Phase.STOPPED and clocks["first-response"].met
    assert sweep(_at(sopguard.app, NOW + dt.timedelta(hours=4)), NOW + dt.timedelta(hours=4)).notices == 0
    assert not list(github.our_comments())


def test_github_the_first_seen_edit_of_an_issue_demands_no_intake(
    sopguard: GithubService, github: FakeGithub
) -> None:
    sopguard.deliver(issue_payload("edited", labels=[], body=""), "first-edit")

    assert github.calls() == READS_TO_ADOPT
    assert "needs-info" not in github.labels and not list(github.our_comments())


def test_github_a_closed_issue_is_never_asked_for_intake(sopguard: GithubService, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "closed")
    github.state = "closed"

    sopguard.deliver(
        issue_payload("edited", labels=list(github.labels), body="", issue={"state": "closed"}), "e"
    )

    assert github.calls() == [] and "needs-info" not in github.labels


def test_github_an_adopted_issue_is_asked_for_intake_only_where_the_policy_says(
    tmp_path: Path, github: FakeGithub
) -> None:
    sopguard = github_service(tmp_path)
    sopguard.deliver(labelled(github, "bug"), "adopt-it")
    github.mock.calls.reset()
    sopguard.deliver(issue_payload("edited", labels=list(github.labels), body=""), "edit-later")
    assert github.calls() == []  # adopted: its intake is not demanded on a later edit

    asking = load_policy().model_copy(update={"adoption": Adoption(intake_for_adopted=True)})
    other = github_service(tmp_path / "asking", asking)
    other.deliver(labelled(github, "question"), "adopt-it")
    other.deliver(issue_payload("edited", labels=list(github.labels), body=""), "edit-later")
    assert "needs-info" in github.labels  # the policy asks it of adopted issues too


def test_github_an_issue_outside_the_adoption_rule_is_not_touched(tmp_path: Path, github: FakeGithub) -> None:
    recent = Adoption(created_after=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    sopguard = github_service(tmp_path, load_policy().model_copy(update={"adoption": recent}))

    sopguard.deliver(labelled(github, "status/in-progress"), "outside")  # an issue opened in 2019
    sweep(services_of(sopguard.app), NOW + dt.timedelta(days=1))

    assert github.calls() == [] and github.labels == ["status/in-progress"]
    assert services_of(sopguard.app).store.ledger.one(REF) is None
    (entry,) = services_of(sopguard.app).store.audit.entries()
    assert entry.reasons == [
        "outside adoption (created 2019-05-15, before 2026-01-01 00:00 UTC): not touched"
    ]


# --- Jira --------------------------------------------------------------------------------------


def _jira(
    mock: responses.RequestsMock, tmp_path: Path, deployment: Deployment, payload: dict[str, Any]
) -> tuple[FakeJira, JiraService]:
    fake = fake_for(mock, deployment, payload)
    sopguard = jira_service(tmp_path / "var", deployment)
    _at(sopguard.app, NOW)
    return fake, sopguard


def _writes(fake: FakeJira) -> list[str]:
    return [c for c in fake.calls() if not c.startswith("GET")]


def _closed_payload(deployment: Deployment) -> dict[str, Any]:
    return fixture_json("jira", CLOUD_CLOSED if deployment is CLOUD else DC_CLOSED)


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_a_label_on_an_old_done_issue_adopts_it_and_writes_nothing(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = _closed_payload(deployment)  # Done (Cloud) or Resolved (Data Center), from 2019
    payload["issue"]["fields"]["labels"] = ["archived"]
    payload["changelog"]["items"] = [{"field": "labels", "fromString": "", "toString": "archived"}]
    fake, sopguard = _jira(no_network, tmp_path, deployment, payload)
    status = fake.status

    sopguard.deliver(payload, "legacy-label")

    assert _writes(fake) == [] and fake.status == status and fake.labels == ["archived"]
    ref = IssueRef("jira", fake.key.split("-")[0], fake.key)
    memory = services_of(sopguard.app).store.ledger.memory(ref)
    assert (memory.last_state, memory.adopted) == ("closed", True)
    fake.check_against_openapi()


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_the_resolution_of_a_legacy_issue_is_not_undone(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = _closed_payload(deployment)  # In Progress -> Done / Resolved, skipping four stages
    fake, sopguard = _jira(no_network, tmp_path, deployment, payload)

    sopguard.deliver(payload, "legacy-close")

    assert _writes(fake) == []  # no transition back, no comment, no label
    assert fake.calls()[-2:] == [f"GET {issue_path(fake)}/changelog", f"GET {issue_path(fake)}/comment"]


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_a_legacy_issue_past_its_targets_gets_no_breach_notice(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    fake, sopguard = _jira(no_network, tmp_path, deployment, payload)
    sopguard.deliver(payload, "legacy-in-progress")  # opened in 2019, first seen now

    for later in (NOW, NOW + dt.timedelta(days=1)):
        assert sweep(_at(sopguard.app, later), later).notices == 0
    assert post_comment(fake) not in fake.calls() and "sla-breached" not in fake.labels
    assert any("missed before the adoption" in r for r in _audit_reasons(sopguard.app))


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_an_issue_answered_a_week_ago_is_not_declared_unanswered(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload["issue"]["fields"]["created"] = (NOW - dt.timedelta(days=7, hours=1)).isoformat()
    fake, sopguard = _jira(no_network, tmp_path, deployment, payload)
    helper = (
        {"accountId": "557058:helper", "displayName": "Helper", "accountType": "atlassian"}
        if deployment is CLOUD
        else {"name": "helper", "key": "helper", "displayName": "Helper"}
    )
    answered = (NOW - dt.timedelta(days=7, minutes=40)).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
    fake.comments = [{"id": "10100", "author": helper, "body": "We are looking at it.", "created": answered}]

    sopguard.deliver(payload, "answered")

    services = services_of(sopguard.app)
    ref = IssueRef("jira", fake.key.split("-")[0], fake.key)
    followed = services.store.ledger.one(ref)
    assert followed is not None
    clocks = {c.target_id: c for c in services.clocks(ref, followed.timeline, NOW)}
    assert clocks["first-response"].phase is Phase.STOPPED and clocks["first-response"].met
    assert _writes(fake) == []


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_the_first_seen_edit_of_an_issue_demands_no_intake(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    base = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload = as_edit(base, labels=[])
    fake, sopguard = _jira(no_network, tmp_path, deployment, payload)

    sopguard.deliver(payload, "first-edit")

    assert _writes(fake) == []


# --- sopguard adopt on Jira (a JQL search, paged) --------------------------------------------------


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=lambda d: d.name)
def test_jira_sopguard_adopt_lists_every_open_issue_and_is_safe_to_run_again(
    no_network: responses.RequestsMock, tmp_path: Path, deployment: Deployment
) -> None:
    payload = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    fake = fake_for(no_network, deployment, payload)
    project = fake.key.split("-")[0]
    template = copy.deepcopy(payload["issue"])
    fake.listed = []
    for number in range(1, 111):  # two pages
        issue = copy.deepcopy(template)
        issue["key"], issue["id"] = f"{project}-{number}", str(30000 + number)
        issue["fields"]["status"] = status_json("Triage" if number % 2 else "In Progress")
        fake.listed.append(issue)
    others = re.compile(
        re.escape(deployment.server) + rf"/rest/api/2/issue/{project}-\d+/(changelog|comment)\b.*"
    )
    empty = {"startAt": 0, "maxResults": 100, "total": 0, "isLast": True, "values": [], "comments": []}
    no_network.add(responses.GET, others, json=empty)  # the other issues' (empty) histories
    env = {
        "SOPGUARD_DATA_DIR": str(tmp_path / "var"),
        "SOPGUARD_TRACKERS": "jira",
        "SOPGUARD_LOG_LEVEL": "WARNING",
        "JIRA_URL": deployment.server,
        **(
            {"JIRA_EMAIL": "sopguard@example.com", "JIRA_API_TOKEN": "t"}
            if deployment is CLOUD
            else {"JIRA_PAT": "p"}
        ),
    }
    runner = CliRunner()

    planned = runner.invoke(main, ["adopt", "--scope", project, "--dry-run"], env=env)
    adopted = runner.invoke(main, ["adopt", "--scope", project], env=env)
    again = runner.invoke(main, ["adopt", "--scope", project], env=env)

    assert planned.exit_code == adopted.exit_code == again.exit_code == 0, planned.output

    def listed(output: str, verdict: str) -> int:
        return len(re.findall(rf"^{project}-\d+  {verdict}$", output, re.MULTILINE))

    assert (
        listed(planned.output, "would adopt in triage")
        == listed(planned.output, "would adopt in in-progress")
        == 55
    )
    assert listed(adopted.output, "adopted in (triage|in-progress)") == 110
    assert adopted.output.count("posts: nothing") == 110
    assert listed(again.output, "already followed") == 110
    assert "110 already followed" in again.stderr
    assert _writes(fake) == []
    searches = [c for c in fake.calls() if "/search" in c]
    assert len(searches) == 6  # two pages, three runs
    fake.check_against_openapi()

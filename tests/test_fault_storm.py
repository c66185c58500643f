"""Issue 8: under a storm of GitHub faults every write is applied once, none is lost, none repeated.

Two sopguards, each with a fresh database, receive the same 200 deliveries for 20 issues (intake,
priority, stage changes allowed and undone, checklists created as sub-issues) against a fake GitHub
on loopback. The reference's fake never fails. The storm's fails 30% of all calls with 5xx and 429
(with and without `Retry-After`), drops connections, lets some writes take effect before it fails
them, fails one sub-issue link six times running, and one checklist's comment three times (its
delivery is postponed in the middle of the checklist). Consumers run on a fake clock: a postponed
delivery runs again once the clock is moved to its `not_before`, so nothing really waits. In the
end GitHub must hold exactly what the reference left: the same labels, each of our comments and
each checklist item once, every item linked, and the same number of writes of each kind.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import responses
from flask import Flask
from github import Auth
from sqlalchemy import func, select

from app import create_app
from config.loader import load_policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from policies.models import IssueRef
from runtime.consumer import Consumer
from runtime.services import Services, utc_now
from runtime.store import Store
from runtime.store.database import aware
from runtime.store.inbox import UNFINISHED
from runtime.store.schema import deliveries
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, fixture_json, github_headers
from tests.fake_github import Call, FakeGithubServer, Fault, RandomFaults, parse_fault
from tests.github_support import form_body, issue_payload

POLICY = load_policy()
REPO = "Codertocat/Hello-World"
BOT = "sopguard-bot"
START = dt.datetime(2019, 5, 20, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai, business hours
CREATED = START - dt.timedelta(days=3)
CHECKLIST_LABEL = POLICY.trackers.github.checklist_label
MARKER = re.compile(r"<!-- sopguard:(.+?) -->")
ITEM_MARKER = "<!-- sopguard:checklist-item:"
# Writes that change nothing when made again; the fake still logs a repeat as a write that took effect.
IDEMPOTENT = frozenset({"labels.add", "labels.set", "labels.remove", "issue.edit", "comment.edit"})
KEY_STEPS = "### Key steps\n\nRestarted the gateway; error rate back to normal."


# --- the scenario --------------------------------------------------------------------------------


def _titles(checklist_id: str) -> list[str]:
    checklist = POLICY.checklist(checklist_id)
    assert checklist is not None
    return [f"{checklist.title.en}: {item.en}" for item in checklist.items]


@dataclass(frozen=True)
class Step:
    """What a person does on an issue, which makes GitHub send one delivery."""

    action: str  # opened, edited, labeled, closed, commented
    label: str = ""
    removing: str = ""  # a label taken off at the same time; "status/" takes off every status label
    text: str = ""  # the new body (opened, edited) or the comment

    def takes_off(self, label: str) -> bool:
        prefix = self.removing.endswith("/") and label.startswith(self.removing)
        return bool(self.removing) and (label == self.removing or prefix)


@dataclass
class Script:
    """One issue: where it starts (the ledger's state, GitHub's labels and the checklists done
    before, closed under it) and what people do on it, one step per wave of deliveries."""

    number: int
    state: str | None
    labels: tuple[str, ...]
    done_checklists: tuple[str, ...]
    steps: list[Step]
    open_items: tuple[str, ...] = ()  # checklist items already under it, not done

    @property
    def ref(self) -> IssueRef:
        return IssueRef("github", REPO, str(self.number))


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def act(server: FakeGithubServer, script: Script, wave: int) -> tuple[str, str, dict[str, Any]]:
    """Do the script's step of `wave` on the fake GitHub, as a person would; the delivery it makes
    (delivery id, event, payload), showing the issue as it then is, a moment later than the last."""
    step = script.steps[wave]
    issue = server.issue(REPO, script.number)
    labels = [name for name in issue.labels if not step.takes_off(name)]
    if step.label and step.label not in labels:
        labels.append(step.label)
    body = step.text if step.action in ("opened", "edited") else (issue.body or "")
    state = "closed" if step.action == "closed" else issue.state
    server.put_issue(REPO, script.number, labels=labels, body=body, state=state)
    updated = _stamp(CREATED + dt.timedelta(hours=wave + 1, seconds=script.number))
    fields: dict[str, Any] = {
        "number": script.number,
        "id": 7_000_000 + script.number,
        "title": issue.title,
        "html_url": f"https://github.com/{REPO}/issues/{script.number}",
        "url": f"https://api.github.com/repos/{REPO}/issues/{script.number}",
        "state": state,
        "created_at": _stamp(CREATED),
        "updated_at": _stamp(CREATED) if step.action == "opened" else updated,
        "closed_at": updated if state == "closed" else None,
    }
    delivery = f"d-{script.number}-{wave}"
    if step.action == "commented":
        payload = fixture_json("github", "issue_comment__created.json")
        payload["issue"].update(fields, body=body, labels=[{"name": n} for n in labels])
        comment_id = 8_000_000 + script.number * 100 + wave
        payload["comment"].update(id=comment_id, body=step.text, created_at=updated, updated_at=updated)
        return delivery, "issue_comment", payload
    extra: dict[str, Any] = {"label": {"name": step.label}} if step.action == "labeled" else {}
    return delivery, "issues", issue_payload(step.action, labels=labels, body=body, issue=fields, **extra)


def _newcomer(number: int, body: str) -> Script:
    """Opened by a customer, then taken through triage to diagnosis; three stages skipped on the way."""
    complete = "### Customer" in body
    return Script(
        number,
        None,
        (),
        (),
        [
            Step("opened", text=body),
            Step("commented", text="Any news?"),
            Step("commented", text="Still waiting.") if complete else Step("edited", text=form_body()),
            Step("labeled", "priority/P2", removing="priority/"),
            Step("labeled", "status/triage", removing="status/"),
            Step("labeled", "status/in-progress", removing="status/"),
            Step("labeled", "bug"),
            Step("labeled", "status/closed"),
            Step("labeled", "status/diagnosis", removing="status/"),
            Step("labeled", "status/verification", removing="status/"),
        ],
    )


def _verifier(number: int) -> Script:
    """In progress with its preparation done: entering verification creates the self-check."""
    return Script(
        number,
        "in-progress",
        ("status/in-progress", "priority/P3"),
        ("preparation",),
        [
            Step("labeled", "bug"),
            Step("commented", text="Work started."),
            Step("edited", text=KEY_STEPS),
            Step("labeled", "status/verification", removing="status/"),
            Step("labeled", "status/acceptance"),
            Step("labeled", "status/closed", removing="status/"),
            Step("labeled", "status/closed"),
            Step("commented", text="Checking the logs."),
            Step("labeled", "status/waiting-for-customer", removing="status/"),
            Step("labeled", "status/verification", removing="status/"),
        ],
    )


def _acceptor(number: int) -> Script:
    """Verified: entering acceptance creates two checklists; closing too early is reopened."""
    return Script(
        number,
        "verification",
        ("status/verification", "priority/P2"),
        ("preparation", "self-check"),
        [
            Step("edited", text=KEY_STEPS),
            Step("labeled", "status/acceptance", removing="status/"),
            Step("closed"),
            Step("labeled", "status/in-progress", removing="status/"),
            Step("labeled", "status/verification", removing="status/"),
            Step("labeled", "status/acceptance", removing="status/"),
            Step("labeled", "status/closed"),
            Step("commented", text="The customer is testing."),
            Step("labeled", "status/triage", removing="status/"),
            Step("labeled", "status/new"),
        ],
    )


STREAK_ISSUE = 10  # its first self-check item is there already; the second's link fails six times
STREAK = (502, 503, "drop", 500, Fault(429), "done-then-500")
ENTERING_VERIFICATION = 3  # the wave in which the verifiers enter verification
OUTAGE_ISSUE = 9  # its self-check's comment fails three times running: the delivery is postponed
OUTAGE = (503, 502, 500)


def scenario() -> list[Script]:
    outage = form_body(**{"Impact": "Business outage", "Urgency": "High"})
    scripts = [_newcomer(n, "") for n in range(1, 5)]
    scripts += [_newcomer(n, outage) for n in range(5, 8)]
    scripts += [_verifier(n) for n in range(8, 14)]
    scripts += [_acceptor(n) for n in range(14, 21)]
    scripts[STREAK_ISSUE - 1].open_items = (_titles("self-check")[0],)
    return scripts


# --- one sopguard against one fake GitHub ---------------------------------------------------------


class FakeClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass
class Sopguard:
    services: Services
    app: Flask
    clock: FakeClock

    @property
    def store(self) -> Store:
        return self.services.store

    def deliver(self, delivery_id: str, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        answer = self.app.test_client().post(
            "/webhooks/github", data=body, headers=github_headers(body, event, delivery_id)
        )
        assert answer.status_code == 202, answer.get_json()

    def next_retry(self) -> dt.datetime | None:
        """The earliest `not_before` of the unfinished deliveries; None when nothing is unfinished."""
        with self.store.engine.connect() as db:
            unfinished, earliest = db.execute(
                select(func.count(), func.min(deliveries.c.not_before)).where(
                    deliveries.c.status.in_(UNFINISHED)
                )
            ).one()
        if not unfinished:
            return None
        return aware(earliest) or self.clock.now

    def settle(self, rounds: int = 500) -> int:
        """Drain; move the clock to the next postponed delivery; again, until none is unfinished.
        Returns how many rounds it took."""
        consumer = Consumer(self.services, 1, sweep=False)
        for done in range(1, rounds + 1):
            consumer.drain()
            retry_at = self.next_retry()
            if retry_at is None:
                return done
            self.clock.now = max(self.clock.now, retry_at)
        raise AssertionError(f"deliveries still unfinished after {rounds} rounds")

    def statuses(self) -> Counter[str]:
        with self.store.engine.connect() as db:
            return Counter(
                dict(db.execute(select(deliveries.c.status, func.count()).group_by("status")).all())
            )

    def postponements(self) -> int:
        """Deliveries put back at least once after a tracker failure (a postponement leaves its
        mark in `failing_since`; it is not counted in `attempts`, which counts runs that never
        came back)."""
        with self.store.engine.connect() as db:
            total = db.execute(
                select(func.count()).where(deliveries.c.failing_since.is_not(None))
            ).scalar_one()
        return int(total or 0)


def sopguard_for(server: FakeGithubServer, tmp_path: Path, **settings: Any) -> Sopguard:
    config = Settings(
        data_dir=tmp_path, github_webhook_secret=GITHUB_SECRET, jira_webhook_secret=JIRA_SECRET, **settings
    )
    clock = FakeClock(START)
    connector = GithubConnector(auth=Auth.Token("t"), base_url=server.url, sleep=lambda _: None)
    services = Services(
        config,
        POLICY,
        Store(config.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
        clock,
    )
    return Sopguard(services, create_app(config, services), clock)


def set_up(server: FakeGithubServer, sopguard: Sopguard, scripts: list[Script]) -> None:
    """GitHub's issues as the scripts start them (parents first, so created items number after
    them), the checklists done before closed under their parents, and the ledger's states."""
    for script in scripts:
        server.put_issue(REPO, script.number, title=f"Request {script.number}", labels=script.labels)
    next_number = len(scripts) + 1
    for script in scripts:
        parent = server.issue(REPO, script.number)
        children = []
        done = [title for checklist in script.done_checklists for title in _titles(checklist)]
        for title in [*done, *script.open_items]:
            server.put_issue(
                REPO,
                next_number,
                title=title,
                state="closed" if title in done else "open",
                labels=[CHECKLIST_LABEL],
                parent_id=parent.id,
                user=BOT,
            )
            children.append(server.issue(REPO, next_number).id)
            next_number += 1
        server.put_issue(REPO, script.number, sub_issue_ids=children)
        if script.state is not None:
            sopguard.store.ledger.remember_state(script.ref, script.state, START)


# --- what GitHub holds ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Held:
    """One parent issue as GitHub holds it, in terms that do not depend on timing or numbering."""

    labels: tuple[str, ...]
    state: str
    markers: tuple[tuple[str, int], ...]
    sub_issues: tuple[tuple[str, int], ...]
    events: tuple[tuple[str, str], ...]


def held(server: FakeGithubServer, scripts: list[Script]) -> dict[int, Held]:
    found = {}
    for script in scripts:
        issue = server.issue(REPO, script.number)
        ours = [c.body for c in server.comments(REPO, script.number) if c.user == BOT]
        markers = Counter(m for body in ours for m in MARKER.findall(body))
        children = Counter(server.issue(REPO, n).title for n in server.sub_issue_numbers(REPO, script.number))
        events = tuple((e["event"], e.get("label", {}).get("name", "")) for e in issue.events)
        found[script.number] = Held(
            tuple(sorted(issue.labels)),
            issue.state,
            tuple(sorted(markers.items())),
            tuple(sorted(children.items())),
            events,
        )
    return found


def orphans(server: FakeGithubServer) -> list[int]:
    """Checklist items sopguard created that no parent holds."""
    return [
        number
        for number in server.issue_numbers(REPO)
        if ITEM_MARKER in (server.issue(REPO, number).body or "")
        and server.issue(REPO, number).parent_id is None
    ]


def applied_writes(calls: list[Call]) -> Counter[str]:
    """Writes that took effect, by kind. An idempotent write that repeats the last one made to its
    method and path (a retry after a lost answer, or a label change run again after a later
    request of it failed) changes nothing on GitHub and is not counted; the label, close and
    reopen events GitHub records (`Held.events`) show each change was made exactly once."""
    last: dict[tuple[str, str], str] = {}
    counts: Counter[str] = Counter()
    for call in calls:
        if not (call.is_write and call.took_effect):
            continue
        body = json.dumps(call.body, sort_keys=True)
        if call.kind not in IDEMPOTENT or last.get((call.method, call.path)) != body:
            counts[call.kind] += 1
        last[(call.method, call.path)] = body
    return counts


# --- the tests ------------------------------------------------------------------------------------


def run(
    server: FakeGithubServer, tmp_path: Path, scripts: list[Script], *, streaks: bool = False
) -> tuple[Sopguard, int]:
    """Every script's steps, wave after wave: people act, GitHub delivers, sopguard settles. With
    `streaks`, the scripted failures strike in the wave the verifiers enter verification."""
    sopguard = sopguard_for(server, tmp_path)
    set_up(server, sopguard, scripts)
    rounds = 0
    for wave in range(max(len(s.steps) for s in scripts)):
        if streaks and wave == ENTERING_VERIFICATION:
            server.fail_next("POST", rf"/issues/{STREAK_ISSUE}/sub_issues$", *STREAK)
            server.fail_next("POST", rf"/issues/{OUTAGE_ISSUE}/comments$", *OUTAGE)
        for script in scripts:
            if wave < len(script.steps):
                sopguard.deliver(*act(server, script, wave))
        rounds += sopguard.settle()
    return sopguard, rounds


STORM = RandomFaults(
    rate=0.3,
    seed=8,
    statuses=(500, 502, 503, 429),
    retry_after_share=0.5,
    drop=0.15,
    after_write=0.4,
)


def test_a_storm_of_faults_loses_no_write_and_repeats_none(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    with FakeGithubServer() as calm:
        no_network.add_passthru(calm.url)
        reference, _ = run(calm, tmp_path / "reference", scenario())
        expected, expected_writes = held(calm, scenario()), applied_writes(calm.calls())
    assert reference.statuses() == {"processed": 200}
    assert sum(expected_writes.values()) > 250, expected_writes
    items = 6 * 3 - 1 + 7 * 3  # each verifier's self-check (one item was there), each acceptor's two lists
    assert expected_writes["issue.create"] == expected_writes["sub_issue.add"] == items
    assert not orphans(calm)

    with FakeGithubServer(faults=STORM, retry_after=1) as storm:
        no_network.add_passthru(storm.url)
        sopguard, rounds = run(storm, tmp_path / "storm", scenario(), streaks=True)
        calls = storm.calls()
        faults = Counter(c.fault.split(" ")[0] for c in calls if c.fault is not None)
        summary = (
            f"{len(calls)} calls, {sum(faults.values())} faults injected ({dict(faults)}), "
            f"{sopguard.postponements()} postponements over {rounds} rounds, "
            f"{sum(expected_writes.values())} writes expected"
        )
        print(summary)
        assert sopguard.statuses() == {"processed": 200}, summary
        assert sopguard.postponements() > 0, summary
        assert sum(faults.values()) > 0.2 * len(calls), summary
        lost_posts = [
            c for c in calls if c.kind == "comment.create" and (c.fault or "").startswith("done-then")
        ]
        assert lost_posts, "some comments were posted and their answers lost"
        links = f"/repos/{REPO}/issues/{STREAK_ISSUE}/sub_issues"
        streak = [c.fault for c in calls if c.kind == "sub_issue.add" and c.path == links]
        assert streak[:6] == [parse_fault(f, 1).label for f in STREAK]
        posts = f"/repos/{REPO}/issues/{OUTAGE_ISSUE}/comments"
        outage = [c.fault for c in calls if c.kind == "comment.create" and c.path == posts]
        assert [parse_fault(f, 1).label for f in OUTAGE] in [outage[i : i + 3] for i in range(len(outage))]
        found = held(storm, scenario())
        for number, issue in found.items():
            assert issue == expected[number], f"issue {number}: {summary}"
            assert all(count == 1 for _, count in issue.markers + issue.sub_issues), f"issue {number}"
        assert not orphans(storm), summary
        assert applied_writes(calls) == expected_writes, summary


def test_a_failure_outlasting_the_horizon_fails_the_delivery_and_a_retry_applies_each_write_once(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    """Every write answered 503 for longer than the retry horizon (60 s of fake time), the first
    one (the undo's label) after it took effect: the delivery fails, saying why, in the inbox, the
    audit and /readyz. Once GitHub is well again, `sopguard retry` runs it once more and each of
    its writes has been made exactly once."""
    skip = Script(
        1,
        "triage",
        ("status/triage", "priority/P2"),
        (),
        [Step("labeled", "status/in-progress", removing="status/")],
    )
    with FakeGithubServer() as server:
        no_network.add_passthru(server.url)
        sopguard = sopguard_for(server, tmp_path, retry_horizon=60.0)
        set_up(server, sopguard, [skip])
        server.set_random_faults(RandomFaults(rate=1.0, statuses=(503,), after_write=1.0, writes_only=True))
        sopguard.deliver(*act(server, skip, 0))

        sopguard.settle()

        assert sopguard.statuses() == {"failed": 1}
        assert sopguard.postponements() > 0
        assert sopguard.clock.now - START >= dt.timedelta(seconds=60)
        error = sopguard.store.inbox.error("github", "d-1-0") or ""
        assert error.startswith("the tracker is unavailable: GithubException: Server Error: 503")
        assert "still failing after" in error
        (audited,) = [e for e in sopguard.store.audit.entries() if e.delivery_id == "d-1-0"]
        assert audited.outcome == f"failed: {error}"
        health = sopguard.app.test_client().get("/readyz").get_json()
        assert (health["status"], health["failed"]) == ("degraded", 1)
        assert {c.kind for c in server.writes()} == {"labels.add"}  # it went no further
        assert held(server, [skip])[1].events == (("labeled", "status/triage"),)
        assert not server.comments(REPO, 1)

        server.set_random_faults(RandomFaults())
        assert sopguard.store.inbox.retry(None, utc_now()) == 1
        sopguard.settle()

        assert sopguard.statuses() == {"processed": 1}
        assert applied_writes(server.calls()) == {"labels.add": 1, "labels.remove": 1, "comment.create": 1}
        undone = held(server, [skip])[1]
        assert undone.events == (("labeled", "status/triage"), ("unlabeled", "status/in-progress"))
        assert undone.labels == ("priority/P2", "status/triage")
        (comment,) = server.comments(REPO, 1)
        assert MARKER.findall(comment.body) == ["transition-rejected:triage:in-progress:d-1-0"]
        assert comment.body.startswith("**This change of stage was undone.**")
        assert sopguard.app.test_client().get("/readyz").get_json()["status"] == "ok"

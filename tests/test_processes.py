"""Real processes on one database, against a fake GitHub on loopback: two `sopguard worker`
processes racing on one issue (SQLite, PostgreSQL, the inbox on Redis), a worker killed with SIGKILL
in the middle of a thousand deliveries (compared with a run without a kill), and a worker stopped
with Ctrl-C in the middle of a delivery.

The door is the Flask app in this process (`create_app` + its test client) on the same database:
it signs nothing and sends nothing, it only keeps deliveries in the inbox, as `sopguard serve`
with `SOPGUARD_WORKERS=0` would. The workers are separate `sopguard worker` processes; each logs to
a file (a pipe nobody reads would fill up and stop them). Every wait has a deadline.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from app import create_app
from config.loader import load_policy
from config.settings import Settings
from policies.models import IssueRef
from runtime.services import utc_now
from runtime.store import Store
from runtime.store.inbox import Inbox
from runtime.store.schema import audit, deliveries, turns, writes
from tests.conftest import GITHUB_SECRET, fixture_json, github_headers
from tests.fake_github import FakeGithubServer
from tests.github_support import form_body, issue_payload
from webhooks.receivers import Intake

ROOT = Path(__file__).parents[1]
REPO = "Codertocat/Hello-World"
POLICY = load_policy()
LEASE = 3  # seconds: a killed worker's turns run out this soon
FINAL = ("processed", "ignored", "failed")
MARKER = re.compile(r"<!-- sopguard:(.*?) -->")


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Worker:
    """A `sopguard worker` process and the file its log goes to."""

    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, seconds: float = 30) -> None:
        """Until its connectors are built (it logs which tracker runs dry): it consumes from then on."""
        started = _wait(lambda: self._alive() and "connector.factory" in self.output(), seconds)
        assert started, f"the worker did not start within {seconds} s: {self.output()[-3000:]}"

    def _alive(self) -> bool:
        assert self.process.poll() is None, f"the worker exited: {self.output()[-3000:]}"
        return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # the worker stops its consumers and exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def _environment(
    data_dir: Path, database_url: str, github: FakeGithubServer, queue_url: str = ""
) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))},
        "SOPGUARD_DATA_DIR": str(data_dir),
        "SOPGUARD_DATABASE_URL": database_url,
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_TURN_LEASE": str(LEASE),
        "SOPGUARD_POLL_INTERVAL": "0.05",
        "GITHUB_TOKEN": "test-token",
        "GITHUB_API_URL": github.url,
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        **({"SOPGUARD_QUEUE_URL": queue_url} if queue_url else {}),
    }


def _sopguard(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli import main; main()", *args]


def _start_worker(env: dict[str, str], log: Path, threads: int = 2, *, drain: bool = False) -> Worker:
    command = _sopguard("worker", "--workers", str(threads), *(["--drain"] if drain else []))
    with log.open("ab") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    return Worker(process, log)


@contextmanager
def _workers(env: dict[str, str], logs: Path, count: int, threads: int = 2) -> Iterator[list[Worker]]:
    started = [_start_worker(env, logs / f"worker-{n}.log", threads) for n in range(count)]
    try:
        for worker in started:
            worker.wait_ready()
        yield started
    finally:
        for worker in started:
            worker.stop()


def _wait(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` came true within `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- the door and the inbox ------------------------------------------------------------------


def _door(data_dir: Path, database_url: str, queue_url: str = "") -> tuple[Flask, Store]:
    """The receiver, in this process, on the workers' database (and inbox), and its store."""
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        queue_url=queue_url,
        trackers=["github"],
        github_webhook_secret=GITHUB_SECRET,
    )
    app = create_app(settings)
    intake: Intake = app.extensions["sopguard"]
    return app, intake.store


def _post(door: Flask, delivery: Delivery) -> None:
    body = json.dumps(delivery.payload).encode()
    answer = door.test_client().post(
        "/webhooks/github", data=body, headers=github_headers(body, delivery.event, delivery.id)
    )
    assert answer.status_code == 202, answer.get_json()


def _post_together(door: Flask, batch: list[Delivery]) -> None:
    """Each delivery from its own thread, released at once."""
    start = threading.Barrier(len(batch))
    failures: list[BaseException] = []

    def send(delivery: Delivery) -> None:
        start.wait()
        try:
            _post(door, delivery)
        except BaseException as error:  # reported by the test's thread below
            failures.append(error)

    senders = [threading.Thread(target=send, args=(d,)) for d in batch]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join(timeout=30)
    assert not failures, failures


def _count(store: Store, *statuses: str) -> int:
    with store.engine.connect() as db:
        query = select(func.count()).select_from(deliveries).where(deliveries.c.status.in_(statuses))
        return int(db.execute(query).scalar_one())


def _held_turns(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as db:
        return [(row.issue, row.owner) for row in db.execute(select(turns.c.issue, turns.c.owner))]


def _wait_until_done(store: Store, seconds: float) -> None:
    """Until no delivery received is unfinished and (in the database) every turn is given back, a
    killed worker's too: whoever takes an issue's turn over gives it back."""
    done = _wait(lambda: store.inbox.health().pending == 0, seconds)
    assert done, f"{store.inbox.health().pending} deliveries unfinished after {seconds} s"
    if isinstance(store.inbox, Inbox):
        assert _wait(lambda: not _held_turns(store), 5), f"turns never given back: {_held_turns(store)}"


# --- deliveries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    id: str
    event: str
    payload: dict[str, Any]


def _labels_event(number: int, action: str, label: str, labels: list[str], **issue: Any) -> dict[str, Any]:
    """`issues.<action>` by alice on issue `number`, showing the labels after the change."""
    payload = issue_payload(action, labels=labels, label={"name": label}, issue={"number": number, **issue})
    payload["sender"] = {**payload["sender"], "login": "alice"}
    return payload


def _close_checklist(github: FakeGithubServer, parent: int, checklist_id: str, first: int) -> None:
    """The parent's checklist as sub-issues numbered from `first`, every item done."""
    checklist = POLICY.checklist(checklist_id)
    assert checklist is not None
    label = POLICY.trackers.github.checklist_label
    numbers = [first + n for n in range(len(checklist.items))]
    for number, item in zip(numbers, checklist.items, strict=True):
        github.put_issue(
            REPO, number, title=f"{checklist.title.en}: {item.en}", state="closed", labels=[label]
        )
    parent_id = github.issue(REPO, parent).id
    for number in numbers:
        github.put_issue(REPO, number, parent_id=parent_id)
    github.put_issue(REPO, parent, sub_issue_ids=[github.issue(REPO, n).id for n in numbers])


# --- 1. two worker processes, one issue ---------------------------------------------------------

CHECKLIST_ISSUE, MOVES_ISSUE = 1, 2
AFTER_RELABEL = ["status/verification", "bug", "area/network"]


def _relabel_into_verification() -> list[Delivery]:
    """A bulk relabel: four deliveries, each showing the labels after all of it; only the first to
    run sees the change of stage (judged on a stale state, each would create the checklist)."""
    body = "### Key steps\n\nRestarted the gateway; error rate back to normal."
    after, n = AFTER_RELABEL, CHECKLIST_ISSUE
    return [
        Delivery(
            "relabel-1", "issues", _labels_event(n, "unlabeled", "status/in-progress", after, body=body)
        ),
        Delivery("relabel-2", "issues", _labels_event(n, "labeled", "status/verification", after, body=body)),
        Delivery("relabel-3", "issues", _labels_event(n, "labeled", "bug", after, body=body)),
        Delivery("relabel-4", "issues", _labels_event(n, "labeled", "area/network", after, body=body)),
    ]


def _two_quick_moves() -> list[Delivery]:
    """triage -> diagnosis -> planning: each move an unlabel and a label."""
    ready = {"body": form_body(), "assignees": [{"login": "alice"}]}
    n, p2 = MOVES_ISSUE, "priority/P2"
    return [
        Delivery("move-1", "issues", _labels_event(n, "unlabeled", "status/triage", [p2], **ready)),
        Delivery(
            "move-2",
            "issues",
            _labels_event(n, "labeled", "status/diagnosis", [p2, "status/diagnosis"], **ready),
        ),
        Delivery("move-3", "issues", _labels_event(n, "unlabeled", "status/diagnosis", [p2], **ready)),
        Delivery(
            "move-4",
            "issues",
            _labels_event(n, "labeled", "status/planning", [p2, "status/planning"], **ready),
        ),
    ]


def _race_two_workers(tmp_path: Path, database_url: str, queue_url: str = "") -> None:
    data_dir = tmp_path / "var"
    door, store = _door(data_dir, database_url, queue_url)  # the schema is made before any worker starts
    checklist_ref = IssueRef("github", REPO, str(CHECKLIST_ISSUE))
    moves_ref = IssueRef("github", REPO, str(MOVES_ISSUE))
    store.ledger.remember_state(checklist_ref, "in-progress", utc_now())
    store.ledger.remember_state(moves_ref, "triage", utc_now())
    relabel, moves = _relabel_into_verification(), _two_quick_moves()
    with FakeGithubServer() as github:
        github.put_issue(REPO, CHECKLIST_ISSUE, labels=AFTER_RELABEL)
        _close_checklist(github, CHECKLIST_ISSUE, "preparation", first=101)
        github.put_issue(REPO, MOVES_ISSUE, labels=["priority/P2", "status/planning"])
        env = _environment(data_dir, database_url, github, queue_url)
        with _workers(env, tmp_path, count=2):
            _post_together(door, relabel)
            for delivery in moves:  # sent at once, received in this order (GitHub sends them in turn)
                _post(door, delivery)
            _wait_until_done(store, seconds=60)
        _assert_checklist_created_once(github, store, checklist_ref)
        _assert_both_moves_stand(github, store, moves_ref)
    assert {store.inbox.status("github", d.id) for d in relabel + moves} == {"processed"}


def _assert_checklist_created_once(github: FakeGithubServer, store: Store, ref: IssueRef) -> None:
    self_check = POLICY.checklist("self-check")
    assert self_check is not None
    titles = [f"Self-check: {item.en}" for item in self_check.items]
    created = [call.body["title"] for call in github.writes("issue.create", effective=True)]
    # The other issue's move into planning makes its preparation checklist (S3.1), once as well.
    preparation = [t for t in created if t.startswith("Preparation: ")]
    prepared = POLICY.checklist("preparation")
    assert prepared is not None
    assert sorted(t for t in created if t not in preparation) == sorted(titles)
    assert len(preparation) == len(prepared.items)
    linked = [github.issue(REPO, n).title for n in github.sub_issue_numbers(REPO, CHECKLIST_ISSUE)]
    both = len(titles) + len(prepared.items)  # the checklist issue had its preparation made too
    assert sorted(linked[-len(titles) :]) == sorted(titles) and len(linked) == both
    assert len(github.writes("sub_issue.add", effective=True)) == len(titles) + len(preparation)
    checklist_comments = [
        c for c in github.comments(REPO, CHECKLIST_ISSUE) if c.body.startswith("**Self-check**")
    ]
    assert len(checklist_comments) == 1
    assert store.ledger.memory(ref).last_state == "verification"


def _assert_both_moves_stand(github: FakeGithubServer, store: Store, ref: IssueRef) -> None:
    verdicts = [(e.delivery_id, e.rule_id, e.passed) for e in store.audit.entries(str(ref)) if e.rule_id]
    assert ("move-2", "start-diagnosis", True) in verdicts
    assert ("move-4", "start-planning", True) in verdicts
    assert not [v for v in verdicts if v[2] is False]
    assert store.ledger.memory(ref).last_state == "planning"
    assert github.issue(REPO, MOVES_ISSUE).labels == ["priority/P2", "status/planning"]
    assert not any("undone" in c.body for c in github.comments(REPO, MOVES_ISSUE))


def test_two_worker_processes_on_sqlite_run_one_issue_one_step_at_a_time(tmp_path: Path) -> None:
    _race_two_workers(tmp_path, f"sqlite:///{tmp_path / 'var' / 'sopguard.db'}")


def test_two_worker_processes_on_postgresql_run_one_issue_one_step_at_a_time(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    _race_two_workers(tmp_path, fresh_postgres_url)


# --- 2. a worker killed in the middle of a thousand deliveries ---------------------------------

ISSUES, PER_ISSUE = 50, 20
KILL_AFTER = 300  # finished deliveries
# Per issue after `opened` and the move to triage: moves that skip stages (undone, with a comment),
# priorities chosen by a person (a comment, the receipt edited, the old label removed), a comment.
PATTERN = (
    "skip-to-verification",
    "choose-priority",
    "skip-to-planning",
    "choose-priority",
    "skip-to-acceptance",
    "comment",
)


def _iso(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def _comment_event(
    number: int, comment_id: int, labels: list[str], at: dt.datetime, issue: dict[str, Any]
) -> dict[str, Any]:
    """A comment by alice announcing a delay (the ledger learns it; nothing is written to GitHub)."""
    payload = fixture_json("github", "issue_comment__created.json")
    payload["issue"].update(issue, number=number, labels=[{"name": n} for n in labels], updated_at=_iso(at))
    alice = {**payload["comment"]["user"], "login": "alice"}
    payload["comment"].update(
        id=comment_id,
        body="### Delay\n\nThe spare part arrives tomorrow; new date Friday.",
        user=alice,
        created_at=_iso(at),
        updated_at=_iso(at),
    )
    payload["sender"] = alice
    return payload


def _issue_deliveries(number: int, created: dt.datetime) -> list[Delivery]:
    """One issue's deliveries, each a moment later than the one before (none is history)."""
    issue = {"body": form_body(), "assignees": [{"login": "alice"}], "created_at": _iso(created)}
    found: list[Delivery] = []

    def add(event: str, payload: dict[str, Any]) -> None:
        found.append(Delivery(f"i{number}-d{len(found)}", event, payload))

    def at() -> str:
        return _iso(created + dt.timedelta(seconds=len(found)))

    opened = issue_payload("opened", labels=[], issue={**issue, "number": number, "updated_at": at()})
    add("issues", opened)
    level = "priority/P4"  # impact Minor, urgency Low
    moved = [level, "status/new", "status/triage"]
    add("issues", _labels_event(number, "labeled", "status/triage", moved, **issue, updated_at=at()))
    while len(found) < PER_ISSUE:
        kind = PATTERN[(len(found) - 2) % len(PATTERN)]
        if kind == "comment":
            moment = created + dt.timedelta(seconds=len(found))
            comment_id = 7_000_000 + number * 100 + len(found)
            add("issue_comment", _comment_event(number, comment_id, [level, "status/triage"], moment, issue))
        elif kind == "choose-priority":
            chosen = "priority/P1" if level != "priority/P1" else "priority/P3"
            labels = ["status/triage", level, chosen]
            add("issues", _labels_event(number, "labeled", chosen, labels, **issue, updated_at=at()))
            level = chosen
        else:
            skipped_to = "status/" + kind.removeprefix("skip-to-")
            labels = [level, "status/triage", skipped_to]
            add("issues", _labels_event(number, "labeled", skipped_to, labels, **issue, updated_at=at()))
    return found


def _workload(created: dt.datetime) -> list[Delivery]:
    """Every issue's deliveries, interleaved as they would arrive: a step of each issue in turn."""
    per_issue = [_issue_deliveries(number, created) for number in range(1, ISSUES + 1)]
    return [issue[step] for step in range(PER_ISSUE) for issue in per_issue]


@dataclass
class Run:
    """One run of the workload: its fake GitHub and its database, and figures."""

    github: FakeGithubServer
    store: Store
    figures: dict[str, float]


def _queue(tmp_path: Path, name: str, github: FakeGithubServer, workload: list[Delivery]) -> Run:
    data_dir = tmp_path / name
    url = f"sqlite:///{data_dir / 'sopguard.db'}"
    door, store = _door(data_dir, url)
    begun = time.monotonic()
    for delivery in workload:
        _post(door, delivery)
    return Run(github, store, {"queued in s": time.monotonic() - begun})


def _started_writes(store: Store) -> list[str]:
    """Journal keys of tracker writes begun and not known to have finished."""
    with store.engine.connect() as db:
        return [row[0] for row in db.execute(select(writes.c.key).where(writes.c.state == "started"))]


def _attempts(store: Store) -> dict[str, int]:
    with store.engine.connect() as db:
        return dict(db.execute(select(deliveries.c.delivery_id, deliveries.c.attempts)).all())


def _statuses(store: Store) -> dict[str, str]:
    with store.engine.connect() as db:
        return dict(db.execute(select(deliveries.c.delivery_id, deliveries.c.status)).all())


def _decisions(store: Store) -> dict[str, list[tuple[str | None, bool | None]]]:
    """Per delivery, its rules and verdicts; asserts each delivery was decided (and recorded) once."""
    moments: dict[str, set[Any]] = {}
    verdicts: dict[str, list[tuple[str | None, bool | None]]] = {}
    with store.engine.connect() as db:
        for delivery, at, rule, passed in db.execute(
            select(audit.c.delivery_id, audit.c.at, audit.c.rule_id, audit.c.passed)
        ).all():
            moments.setdefault(delivery, set()).add(at)
            verdicts.setdefault(delivery, []).append((rule, passed))
    twice = {d: sorted(map(str, m)) for d, m in moments.items() if len(m) > 1}
    assert not twice, f"recorded more than once: {twice}"
    return {d: sorted(v, key=repr) for d, v in verdicts.items()}


def _order_kept(store: Store) -> None:
    """Per issue, the deliveries were recorded (audit row ids) in the order they were received (seq)."""
    with store.engine.connect() as db:
        received = dict(db.execute(select(deliveries.c.delivery_id, deliveries.c.seq)).all())
        recorded = dict(
            db.execute(select(audit.c.delivery_id, func.min(audit.c.id)).group_by(audit.c.delivery_id)).all()
        )
        issue_of = dict(db.execute(select(deliveries.c.delivery_id, deliveries.c.issue)).all())
    by_issue: dict[str, list[str]] = {}
    for delivery in sorted(received, key=received.__getitem__):
        by_issue.setdefault(issue_of[delivery], []).append(delivery)
    for issue, in_order in by_issue.items():
        assert sorted(in_order, key=recorded.__getitem__) == in_order, f"{issue} out of order"


def _tracker_state(github: FakeGithubServer) -> dict[int, dict[str, Any]]:
    """Per issue, what a person would see: labels, our comments by marker, the label history."""
    state = {}
    for number in github.issue_numbers(REPO):
        issue = github.issue(REPO, number)
        markers = [m for c in github.comments(REPO, number) for m in MARKER.findall(c.body)]
        assert len(markers) == len(set(markers)), f"#{number}: a comment posted twice: {markers}"
        bodies = {m: c.body for c in github.comments(REPO, number) for m in MARKER.findall(c.body)}
        history = [(e["event"], e.get("label", {}).get("name")) for e in issue.events]
        state[number] = {"labels": sorted(issue.labels), "comments": bodies, "history": history}
    return state


def test_a_worker_killed_mid_backlog_loses_repeats_and_reorders_nothing(tmp_path: Path) -> None:
    workload = _workload(utc_now().replace(microsecond=0))
    with FakeGithubServer() as reference_github, FakeGithubServer() as github:
        reference = _queue(tmp_path, "reference", reference_github, workload)
        begun = time.monotonic()
        env = _environment(tmp_path / "reference", reference.store.url, reference_github)
        with _workers(env, tmp_path / "reference", count=1):
            _wait_until_done(reference.store, seconds=120)
        reference.figures["reference run in s"] = time.monotonic() - begun

        killed = _queue(tmp_path, "killed", github, workload)
        env = _environment(tmp_path / "killed", killed.store.url, github)
        first = _start_worker(env, tmp_path / "first.log")
        begun = time.monotonic()
        try:
            assert _wait(lambda: _count(killed.store, *FINAL) >= KILL_AFTER, 60), f"{KILL_AFTER} not finished"
            killed.figures["finished when the kill was decided"] = _count(killed.store, *FINAL)
            _next_comment_arrives(github, seconds=10)  # killed before it hears the answer, most likely
        finally:
            first.kill()
        killed.figures["first worker ran for s"] = time.monotonic() - begun
        killed.figures["finished before the kill"] = _count(killed.store, *FINAL)
        in_flight = {d for d, s in _statuses(killed.store).items() if s == "processing"}
        started_writes = _started_writes(killed.store)
        killed.figures["processing at the kill"] = len(in_flight)
        killed.figures["writes begun, unfinished at the kill"] = len(started_writes)
        begun = time.monotonic()
        second = _start_worker(env, tmp_path / "second.log")
        try:
            _wait_until_done(killed.store, seconds=120)
        finally:
            second.stop()
        killed.figures["second worker took s"] = time.monotonic() - begun
        print(  # figures for `pytest -s`
            {**reference.figures, **killed.figures},
            {"interrupted": started_writes, "effective writes": dict(github.write_counts(effective=True))},
        )

        statuses = _statuses(killed.store)
        assert set(statuses.values()) <= {"processed", "ignored"}, Counter(statuses.values())
        assert statuses == _statuses(reference.store)
        assert _decisions(killed.store) == _decisions(reference.store)
        _order_kept(killed.store)
        _order_kept(reference.store)
        assert {d for d, n in _attempts(killed.store).items() if n != 1} == in_flight
        assert _tracker_state(github) == _tracker_state(reference_github)
        _assert_same_writes(github, reference_github, started_writes)


def _next_comment_arrives(github: FakeGithubServer, seconds: float) -> None:
    """Until the fake has made the next comment (it answers right after): a kill then interrupts a
    write that took effect, whose journal entry says only `started`. No harm if none comes."""
    posted = len(github.writes("comment.create"))
    github.wait_for(lambda calls: sum(c.kind == "comment.create" for c in calls) > posted, seconds)


def _assert_same_writes(github: FakeGithubServer, reference: FakeGithubServer, started: list[str]) -> None:
    """The writes that took effect are the reference run's; only a label or state write the kill
    interrupted (journaled `started`) may have been made again, and those are safe to repeat."""
    made, expected = github.write_counts(effective=True), reference.write_counts(effective=True)
    repeatable = {"labels.add": "labels:", "issue.edit": "state:"}
    for kind in expected.keys() | made.keys():
        if kind in repeatable:
            interrupted = sum(1 for key in started if key.startswith(repeatable[kind]))
            assert expected[kind] <= made[kind] <= expected[kind] + interrupted, (kind, made, expected)
        else:
            assert made[kind] == expected[kind], (kind, made, expected)


def test_two_worker_processes_with_the_inbox_on_redis_run_one_issue_one_step_at_a_time(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    pytest.importorskip("runtime.store.redis_inbox", reason="the Redis inbox comes with branch redisinbox")
    redis_url: str = request.getfixturevalue("redis_url")  # a server only once the inbox is there
    _race_two_workers(tmp_path, f"sqlite:///{tmp_path / 'var' / 'sopguard.db'}", redis_url)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_worker_finishes_the_delivery_in_hand_and_gives_its_turn_back(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (systemd, a container's stop) while a tracker write is under way:
    the worker finishes that delivery, gives the issue's turn back and exits; nothing is left
    `processing` for a lease to run out."""
    data_dir = tmp_path / "var"
    url = f"sqlite:///{data_dir / 'sopguard.db'}"
    door, store = _door(data_dir, url)
    for delivery in _issue_deliveries(1, utc_now().replace(microsecond=0)):
        _post(door, delivery)
    with FakeGithubServer() as github:
        worker = _start_worker(_environment(data_dir, url, github), tmp_path / "worker.log", threads=1)
        try:
            assert github.wait_for(lambda calls: any(c.kind == "comment.create" for c in calls), 30)
            worker.process.send_signal(stop_signal)
            assert worker.process.wait(timeout=30) == 0, worker.output()[-3000:]
        finally:
            worker.stop()
        statuses = Counter(_statuses(store).values())
        assert statuses["processed"] >= 1 and statuses["processing"] == 0, statuses
        assert _held_turns(store) == []
        receipts = [c for c in github.comments(REPO, 1) if "<!-- sopguard:receipt -->" in c.body]
        assert len(receipts) == 1

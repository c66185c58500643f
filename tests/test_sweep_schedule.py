"""The SLA sweep apart from the deliveries: its own thread and schedule, so a backlog of deliveries
never holds up a due notice, and a listing of only the issues that are due, read a page at a time."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import responses
from sqlalchemy import Engine, event, insert, select, update
from sqlalchemy.engine import Connection

from policies.sla import Created
from runtime.consumer import Consumer
from runtime.store.database import as_utc
from runtime.store.ledger import DUE_PAGE, encode
from runtime.store.schema import deliveries, issues, timeline
from runtime.sweep import sweep
from tests.conftest import services_of
from tests.github_support import REPO, FakeGithub, Service, form_body, issue_payload

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai
WARNING_DUE = T0 + dt.timedelta(hours=4, minutes=1)  # 3 working hours of a P3's 4: 75% used
BACKLOG = 100
# Any request about an issue other than #1, the one the due notice is for.
OTHER_ISSUES = re.compile(
    rf"^https://api\.github\.com(:443)?/repos/{re.escape(REPO)}/issues/(?:[2-9]|[1-9]\d+)(?:[/?].*)?$"
)


def _opened(number: int) -> dict[str, Any]:
    fields = {"number": number, "id": 1000 + number, "created_at": "2026-11-23T02:00:00Z"}
    body = form_body(Impact="Minor", Urgency="Medium")  # P3: first response due in 4 working hours
    return issue_payload(
        "opened", labels=[], body=body, issue=fields | {"updated_at": "2026-11-23T02:00:00Z"}
    )


def _until(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` came true within `seconds` (a deadline, not a measurement)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def stuck_tracker(no_network: responses.RequestsMock) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Every tracker call about another issue than #1 hangs until the test ends (then answers 503):
    the consumer that takes a delivery of the backlog is stuck in it, and the rest waits."""
    release, entered = threading.Event(), threading.Event()

    def hang(_: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        entered.set()
        release.wait(30)
        return 503, {"Content-Type": "application/json"}, '{"message": "unavailable"}'

    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        no_network.add_callback(method, OTHER_ISSUES, callback=hang)
    yield entered, release
    release.set()


def test_a_due_notice_is_posted_behind_a_backlog_of_other_issues_deliveries(
    sopguard: Service,
    no_network: responses.RequestsMock,
    stuck_tracker: tuple[threading.Event, threading.Event],
) -> None:
    entered, release = stuck_tracker
    first = FakeGithub(no_network, number=1)
    services = services_of(sopguard.app)
    services.clock = lambda: T0
    sopguard.deliver(_opened(1), "opened-1")
    said = len(list(first.our_comments()))
    services.clock = lambda: WARNING_DUE
    for number in range(2, BACKLOG + 2):
        body = json.dumps(_opened(number)).encode()
        assert services.store.inbox.put(
            "github", f"opened-{number}", "issues", f"github:{REPO}#{number}", body, WARNING_DUE
        )

    stop = threading.Event()
    consumer = Consumer(services, 1, sweep_every=0.2)
    running = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    running.start()
    try:
        assert entered.wait(20), "the consumer never took a delivery of the backlog"
        posted = _until(lambda: len(list(first.our_comments())) > said, 20)
        with services.store.engine.connect() as db:
            waiting = db.execute(
                select(deliveries.c.delivery_id).where(deliveries.c.status.in_(("queued", "processing")))
            ).all()
    finally:
        stop.set()
        release.set()
        running.join(30)

    assert posted, "no SLA notice while the backlog waited"
    assert any("75%" in comment for comment in list(first.our_comments())[said:])
    assert len(waiting) == BACKLOG  # none of the backlog had been done: the sweep went first


def _seed(engine: Engine, due: int, later: int, now: dt.datetime) -> None:
    """`due` open issues whose next notice is due (the oldest the most overdue), `later` not yet."""
    rows: list[dict[str, Any]] = [
        {
            "ref": f"github:{REPO}#{number}",
            "source": "github",
            "scope": REPO,
            "key": str(number),
            "is_open": True,
            "labels": [],
            "assignees": [],
            "context": {},
            "next_due_at": as_utc(
                now - dt.timedelta(seconds=due - number)
                if number < due
                else now + dt.timedelta(minutes=1 + number)
            ),
            "updated_at": as_utc(now),
        }
        for number in range(due + later)
    ]
    with engine.begin() as db:
        db.execute(insert(issues), rows)


def _listings(engine: Engine) -> list[str]:
    """The statements that list due issues, recorded as the engine runs them."""
    seen: list[str] = []

    def record(_: Connection, __: Any, statement: str, *___: Any) -> None:
        if "ORDER BY issues.next_due_at" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen


def test_the_sweep_lists_only_the_due_issues_a_page_at_a_time(sopguard: Service) -> None:
    services = services_of(sopguard.app)
    now = WARNING_DUE
    engine = services.store.engine
    _seed(engine, due=2 * DUE_PAGE + 200, later=800, now=now)
    ledger = services.store.ledger

    pages = list(ledger.due_pages(now))
    assert [len(page) for page in pages] == [DUE_PAGE, DUE_PAGE, 200]
    listed = [ref.key for page in pages for ref in page]
    assert listed == [str(n) for n in range(2 * DUE_PAGE + 200)]  # the most overdue first, each once
    assert ledger.count_due(now) == 2 * DUE_PAGE + 200

    listings = _listings(engine)
    report = sweep(services, now)

    assert report.due == 2 * DUE_PAGE + 200
    assert len(listings) == 3 and all("LIMIT" in statement for statement in listings)


def test_histories_of_issues_not_due_wait_when_the_sweep_has_no_time_left(
    sopguard: Service, no_network: responses.RequestsMock
) -> None:
    """The due notices come first; the histories of the rest are read within the sweep's budget,
    and what is left is read by the next sweep."""
    github = FakeGithub(no_network, number=1)
    services = services_of(sopguard.app)
    now = WARNING_DUE
    _seed(services.store.engine, due=0, later=1, now=now)
    key = f"github:{REPO}#0"
    with services.store.engine.begin() as db:
        db.execute(update(issues).where(issues.c.ref == key).values(key="1", ref=f"github:{REPO}#1"))
        db.execute(update(issues).values(history_before=as_utc(now - dt.timedelta(minutes=5))))
        created = Created(at=now - dt.timedelta(hours=1), state="new")
        db.execute(insert(timeline).values(ref=f"github:{REPO}#1", entry=encode(created)))

    sweep(services, now, history_budget=0.0)
    assert not any(call.endswith("/events") for call in github.calls())

    sweep(services, now)
    assert [call for call in github.calls() if call.endswith("/events")] == [
        f"GET /repos/{REPO}/issues/1/events"
    ]

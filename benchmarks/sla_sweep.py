"""The SLA sweep over 10,000 open issues: CPU time, peak memory, and the tracker calls it makes.

The ledger is filled with 10,000 open GitHub issues on the default policy's business-hours
calendar (Asia/Shanghai), then swept at Monday 11:00 local time:

- when nothing is due (every issue's next notice lies later that day): target 0 tracker calls;
- when 100 warnings are due (100 P1 issues at 75% of their 15-minute first-response target):
  target 100 comment calls and nothing else;
- with those 100 due behind a backlog of 10,000 deliveries queued for other issues (that no
  consumer takes): the sweep's wall time, which the backlog should not change;
- the listing of due issues when every one of the 10,000 is due: read 500 at a time, its peak
  memory is that of one page;
- and, for the worst case, the clocks of all 10,000 issues read from the ledger in one pass.

    .venv/bin/python -m benchmarks.sla_sweep [--issues 10000] [--due 100] [--backlog 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import requests
import responses
from github import Auth
from sqlalchemy import insert

from config.loader import load_policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from policies.models import IssueRef
from policies.sla import Created, PriorityChanged, StateChanged
from policies.sla_notices import next_due
from runtime.services import Services
from runtime.store import Store
from runtime.store.database import as_utc
from runtime.store.inbox import delivery_key, pack
from runtime.store.ledger import encode, issue_key
from runtime.store.schema import deliveries, issues, timeline
from runtime.sweep import sweep

_T = TypeVar("_T")
ZONE = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 11, 23, 11, 0, tzinfo=ZONE)  # a Monday, a working day in China
REPO = "acme/service-desk"


def _timeline(created: dt.datetime, level: str) -> list[Any]:
    return [
        Created(at=created, state="new"),
        PriorityChanged(at=created, priority=level),
        StateChanged(at=created + dt.timedelta(minutes=1), state="triage"),
    ]


def fill_ledger(services: Services, count: int, due: int) -> None:
    """`due` P1 issues opened 12 minutes ago (75% of 15 min used), the rest P4 opened 30 minutes ago."""
    issue_rows: list[dict[str, Any]] = []
    timeline_rows: list[dict[str, Any]] = []
    for number in range(1, count + 1):
        level, minutes = ("P1", 12) if number <= due else ("P4", 30)
        ref = IssueRef("github", REPO, str(number))
        entries = _timeline(NOW - dt.timedelta(minutes=minutes), level)
        clocks = services.clocks(ref, entries, NOW - dt.timedelta(minutes=minutes - 1))
        issue_rows.append(
            {
                "ref": issue_key(ref),
                "source": "github",
                "scope": REPO,
                "key": str(number),
                "last_state": "triage",
                "priority": level,
                "is_open": True,
                "reporter": "customer",
                "assignees": ["agent"],
                "labels": ["status/triage", f"priority/{level}"],
                "context": {},
                "next_due_at": as_utc(
                    next_due(services.policy, clocks, (), NOW - dt.timedelta(minutes=minutes - 1))
                ),
                "updated_at": NOW,
            }
        )
        timeline_rows.extend({"ref": issue_key(ref), "entry": encode(entry)} for entry in entries)
    with services.store.engine.begin() as db:
        db.execute(insert(issues), issue_rows)
        db.execute(insert(timeline), timeline_rows)


def fill_backlog(services: Services, count: int) -> None:
    """`count` deliveries queued for issues the ledger does not follow, as if no consumer ran."""
    body = pack(b'{"action": "edited"}')
    rows = [
        {
            "key": delivery_key("github", f"backlog-{n}"),
            "source": "github",
            "delivery_id": f"backlog-{n}",
            "event_name": "issues",
            "issue": f"github:{REPO}-backlog#{n}",
            "body": body,
            "received_at": NOW,
            "status": "queued",
            "attempts": 0,
        }
        for n in range(count)
    ]
    with services.store.engine.begin() as db:
        db.execute(insert(deliveries), rows)


def wall_time(function: Callable[[], _T]) -> tuple[_T, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def cpu_time(function: Callable[[], _T]) -> tuple[_T, float]:
    started = time.process_time()
    result = function()
    return result, time.process_time() - started


def peak_memory(function: Callable[[], object]) -> int:
    """Bytes allocated at the peak while `function` ran (tracemalloc; run apart from the CPU timing,
    which tracemalloc would slow down several times)."""
    tracemalloc.start()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _services(root: Path) -> Services:
    settings = Settings(data_dir=root, github_token="benchmark")
    connector = GithubConnector(auth=Auth.Token("benchmark"), sleep=lambda _: None)
    return Services(
        settings,
        load_policy(),
        Store(settings.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
    )


def _comment_reply(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
    return 201, {"Content-Type": "application/json"}, '{"id": 1, "body": "", "user": {"login": "sopguard"}}'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=100)
    parser.add_argument("--backlog", type=int, default=10_000, help="deliveries queued for other issues")
    options = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as root,
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        mock.add_callback(
            "POST",
            re.compile(r"https://api\.github\.com(:443)?/repos/.+/issues/\d+/comments"),
            callback=_comment_reply,
        )
        mock.add(
            "POST",
            re.compile(r"https://api\.github\.com(:443)?/repos/.+/issues/\d+/labels"),
            json=[{"name": "sla/breached"}],
        )
        services = _services(Path(root))
        started = time.perf_counter()
        fill_ledger(services, options.issues, options.due)
        print(
            f"ledger: {options.issues} open issues written in {time.perf_counter() - started:.1f} s (setup)"
        )

        early = NOW - dt.timedelta(minutes=5)
        quiet, cpu = cpu_time(lambda: sweep(services, early))
        peak = peak_memory(lambda: sweep(services, early))
        print(
            f"sweep, nothing due: {quiet.due} issues due, {len(mock.calls)} tracker calls, "
            f"CPU {cpu * 1000:.1f} ms, peak memory {peak / 1024:.0f} KiB"
        )

        (busy, cpu), wall = wall_time(lambda: cpu_time(lambda: sweep(services, NOW)))
        kinds = sorted({f"{c.request.method} {c.request.path_url.rsplit('/', 1)[-1]}" for c in mock.calls})
        print(
            f"sweep, {options.due} warnings due: {busy.notices} notices, {len(mock.calls)} tracker calls "
            f"({', '.join(kinds)}), CPU {cpu:.2f} s, wall {wall:.2f} s"
        )

        fill_backlog(services, options.backlog)
        mock.calls.reset()
        later = NOW + dt.timedelta(minutes=3, seconds=45)  # the same issues: 100% used, breaches due
        (behind, cpu), wall = wall_time(lambda: cpu_time(lambda: sweep(services, later)))
        print(
            f"sweep, {behind.due} breaches due behind {options.backlog} queued deliveries: "
            f"{behind.notices} notices, {len(mock.calls)} tracker calls, CPU {cpu:.2f} s, wall {wall:.2f} s"
        )

        far = NOW + dt.timedelta(days=30)
        listing = services.store.ledger.due_pages
        listed, cpu = cpu_time(lambda: sum(len(page) for page in listing(far)))
        peak = peak_memory(lambda: sum(len(page) for page in listing(far)))
        print(
            f"every issue due: {listed} issues listed 500 at a time, CPU {cpu * 1000:.0f} ms, "
            f"peak memory {peak / 1024:.0f} KiB"
        )

        def read_every_clock() -> int:
            followed = services.store.ledger.followed()
            return sum(len(services.clocks(i.ref, i.timeline, NOW)) for i in followed)

        readings, cpu = cpu_time(read_every_clock)
        peak = peak_memory(read_every_clock)
        print(
            f"worst case, every clock read from the ledger: {readings} clocks of {options.issues} issues, "
            f"CPU {cpu:.2f} s, peak memory {peak / 1024 / 1024:.1f} MiB"
        )


if __name__ == "__main__":
    main()

"""A seeded database for the report's tests: a few hundred issues written through the ledger and
audit store APIs, each built to one known outcome, and the figures those outcomes add up to,
counted here by construction (not by `policies.report`).

The period is four weeks, Monday 2026-10-12 to Sunday 2026-11-08 (after National Day, with no
holiday or make-up day in it); the clocks are read at its end, 2026-11-09 00:00 UTC (08:00 in
Shanghai, before the day's working hours). Issues open at 10:00 Shanghai time on a Monday, Tuesday
or Wednesday. With the default policy's targets (first response P1 15 min ... P4 8 h; resolution
P1 4 h ... P4 80 h of working time), every outcome below holds with a wide margin:

- quick: answered after 5 min, closed after 2 h: both met (any priority);
- late: answered after 3 days, closed after 5 days: both breached (P1, P2);
- slow fix: answered after 5 min, closed after 5 days: first response met, resolution breached (P1, P2);
- late then met: answered after 5 min, closed after 5 days, reopened after 6 days and closed an
  hour later: resolution breached in cycle 1, met in cycle 2, one reopen (P1);
- rejected: answered after 5 min, in acceptance after 1 h, sent back at 12:00, in acceptance again
  at 13:00 and closed: two resolution cycles met, one rejection (any priority);
- running: opened Friday 2026-11-06 at 19:00, unanswered: both clocks running (P4, last week);
- cancelled: a quick one with an audit row of the rule `cancel`;
- delayed: a slow fix whose agent announced the delay (one delay notice).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from policies.ledger import IssueFacts
from policies.models import IssueRef, Source
from policies.sla import Closed, Commented, Created, DelayAnnounced, Reopened, StateChanged, TimelineEvent
from runtime.store import Store
from runtime.store.ledger import LedgerUpdate

SHANGHAI = ZoneInfo("Asia/Shanghai")
SINCE, UNTIL = dt.date(2026, 10, 12), dt.date(2026, 11, 8)
AS_OF = dt.datetime(2026, 11, 9, tzinfo=dt.UTC)
SCOPES: tuple[tuple[Source, str], ...] = (("github", "acme/desk"), ("jira", "OPS"))
ARCHETYPES = ("quick", "late", "slow fix", "late then met", "rejected", "running", "cancelled", "delayed")


@dataclass
class Figures:
    """What one scope and priority (or all) should show."""

    issues: int = 0
    first_response: Counter[str] = field(default_factory=Counter)  # met, breached, running
    resolution: Counter[str] = field(default_factory=Counter)
    rejections: int = 0
    reopens: int = 0
    cancellations: int = 0
    delay_notices: int = 0


@dataclass
class Expected:
    groups: dict[tuple[str, str], Figures] = field(default_factory=dict)
    total: Figures = field(default_factory=Figures)
    weeks: Counter[dt.date] = field(default_factory=Counter)
    rules: dict[str, tuple[int, int]] = field(default_factory=dict)  # rule -> (blocked, warned)
    stage_most: str = ""
    guard_most: str = ""
    breached_refs: set[str] = field(default_factory=set)


def _agent(at: dt.datetime) -> Commented:
    return Commented(at=at, author="dana", is_reporter=False, is_bot=False)


def _timeline(kind: str, opened: dt.datetime, level: str) -> tuple[list[TimelineEvent], bool]:
    """The issue's timeline and whether it is still open."""
    hours, days = dt.timedelta(hours=1), dt.timedelta(days=1)
    start: list[TimelineEvent] = [Created(at=opened, state="triage", priority=level)]
    if kind == "running":
        return start, True
    answered = opened + (3 * days if kind == "late" else dt.timedelta(minutes=5))
    events = [*start, _agent(answered)]
    if kind in ("quick", "cancelled"):
        return [*events, StateChanged(opened + 2 * hours, "closed"), Closed(opened + 2 * hours)], False
    if kind == "rejected":
        noon = opened + 2 * hours
        return [
            *events,
            StateChanged(opened + hours, "acceptance"),
            StateChanged(noon, "in-progress"),
            StateChanged(noon + hours, "acceptance"),
            StateChanged(noon + 2 * hours, "closed"),
            Closed(noon + 2 * hours),
        ], False
    if kind == "delayed":
        events.append(DelayAnnounced(at=opened + days, author="dana"))
    events += [StateChanged(opened + 5 * days, "closed"), Closed(opened + 5 * days)]
    if kind == "late then met":
        again = opened + 6 * days
        events += [
            Reopened(again, "in-progress"),
            StateChanged(again + hours, "closed"),
            Closed(again + hours),
        ]
    return events, False


def _outcomes(kind: str) -> tuple[list[str], list[str], int, int]:
    """First-response and resolution outcomes per cycle, rejections, reopens."""
    return {
        "quick": (["met"], ["met"], 0, 0),
        "cancelled": (["met"], ["met"], 0, 0),
        "late": (["breached"], ["breached"], 0, 0),
        "slow fix": (["met"], ["breached"], 0, 0),
        "delayed": (["met"], ["breached"], 0, 0),
        "late then met": (["met"], ["breached", "met"], 0, 1),
        "rejected": (["met"], ["met", "met"], 1, 0),
        "running": (["running"], ["running"], 0, 0),
    }[kind]


def _plan(index: int, rng: random.Random) -> tuple[str, str, dt.datetime]:
    """The archetype, priority and opening of issue `index`."""
    kind = ARCHETYPES[index % len(ARCHETYPES)]
    if kind == "running":
        return kind, "P4", dt.datetime(2026, 11, 6, 19, tzinfo=SHANGHAI)
    week = rng.randrange(3 if kind in ("late", "slow fix", "delayed", "late then met") else 4)
    day = SINCE + dt.timedelta(weeks=week, days=rng.randrange(3))
    levels = {
        "late then met": ("P1",),
        "late": ("P1", "P2"),
        "slow fix": ("P1", "P2"),
        "delayed": ("P1", "P2"),
    }
    opened = dt.datetime.combine(day, dt.time(10), SHANGHAI)
    return kind, rng.choice(levels.get(kind, ("P1", "P2", "P3", "P4"))), opened


def _count(expected: Expected, ref: IssueRef, kind: str, level: str, opened: dt.datetime) -> None:
    first, resolution, rejections, reopens = _outcomes(kind)
    group = expected.groups.setdefault((f"{ref.source}:{ref.scope}", level), Figures())
    for figures in (group, expected.total):
        figures.issues += 1
        figures.first_response.update(first)
        figures.resolution.update(resolution)
        figures.rejections += rejections
        figures.reopens += reopens
        figures.cancellations += kind == "cancelled"
        figures.delay_notices += kind == "delayed"
    day = opened.astimezone(dt.UTC).date()
    expected.weeks[day - dt.timedelta(days=day.weekday())] += 1
    if "breached" in first + resolution:
        expected.breached_refs.add(str(ref))


def _audit(store: Store, expected: Expected, refs: list[IssueRef]) -> None:
    """Refused and warned changes: the lifecycle refuses triage -> in-progress (skipping diagnosis
    and planning) 12 times and diagnosis -> in-progress (planning) 5 times; the owner guard blocks
    9 times, the intake guard warns 4 times; and the cancellations."""
    at = dt.datetime(2026, 10, 20, 3, tzinfo=dt.UTC)
    plan = [("triage", "in-progress")] * 12 + [("diagnosis", "in-progress")] * 5
    with store.engine.begin() as db:
        for index, (before, after) in enumerate(plan):
            ref = refs[index]
            marker = f"transition-rejected:{before}:{after}:seed-{index}"
            row = {
                "rule_id": "follow-the-lifecycle",
                "sop": "P2",
                "passed": False,
                "mode": "enforce",
                "reasons": [f"{before} -> {after} is not an allowed transition"],
                "actions": [{"type": "PostComment", "rule_id": "follow-the-lifecycle", "marker": marker}],
                "outcome": "done",
            }
            _write(db, store, ref, [row], at, f"seed-{index}")
        for index in range(9):
            row = _guard("owner-assigned", "S2.3", "enforce")
            _write(
                db, store, refs[index], [row, _guard("start-diagnosis", "S2.1", "enforce")], at, f"g-{index}"
            )
        for index in range(4):
            _write(db, store, refs[index], [_guard("intake-complete", "S1.2", "warn")], at, f"w-{index}")
    expected.rules = {
        "follow-the-lifecycle": (17, 0),
        "owner-assigned": (9, 0),
        "start-diagnosis": (9, 0),
        "intake-complete": (0, 4),
    }
    expected.stage_most, expected.guard_most = "Planning", "A named owner is assigned"


def _guard(rule_id: str, sop: str, mode: str) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "sop": sop,
        "passed": False,
        "mode": mode,
        "reasons": [],
        "actions": [],
        "outcome": "done",
    }


def _write(
    db: Connection, store: Store, ref: IssueRef, rows: list[dict[str, Any]], at: dt.datetime, delivery: str
) -> None:
    store.audit.write(
        db, rows, at=at, delivery_id=delivery, source=ref.source, issue=str(ref), event="issues"
    )


def seed(store: Store, count: int = 320, seed_value: int = 12) -> Expected:
    """Write `count` issues (and their audit rows) and return what the report should show."""
    rng, expected, refs = random.Random(seed_value), Expected(), []
    cancelled: list[IssueRef] = []
    with store.engine.begin() as db:
        for index in range(count):
            source, scope = rng.choice(SCOPES)
            ref = IssueRef(source, scope, str(index + 1) if source == "github" else f"OPS-{index + 1}")
            kind, level, opened = _plan(index, rng)
            timeline, is_open = _timeline(kind, opened, level)
            facts = IssueFacts(
                is_open=is_open, priority=level, reporter="erin", assignees=("dana",), labels=frozenset()
            )
            store.ledger.write(db, ref, LedgerUpdate(facts, timeline, {}), opened)
            _count(expected, ref, kind, level, opened)
            refs.append(ref)
            if kind == "cancelled":
                cancelled.append(ref)
    _audit(store, expected, refs)
    with store.engine.begin() as db:
        for index, ref in enumerate(cancelled):
            row = {**_guard("command-cancel", "S5.1", "enforce"), "passed": True}
            _write(db, store, ref, [row], AS_OF - dt.timedelta(days=1), f"c-{index}")
    return expected

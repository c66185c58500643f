"""How well the targets were met (P4) and where the SOP is skipped (S5.3), for a period.

Pure: the caller reads every clock cycle of each issue (`policies.sla.read_all_cycles`) and the
audit rows of the period, and passes them in; this counts them per scope and priority, per week and
per rule. Rendering (HTML, Markdown, CSV) is `runtime.report_page`'s.

- The issues counted are those opened in the period; their clocks are read at its end (or now, if
  sooner). Every resolution cycle counts: a breach stays a breach when the issue is reopened and
  meets its target in the new cycle.
- A clock is *met* (stopped before its target), *breached* (reached its target, stopped or not) or
  *running* (still counting, not yet due). "% met" is of the clocks decided: met and breached.
- Leaving a stop state is either a *rejection at acceptance* (the customer sent the result back)
  or a *reopen after closure* (the tracker had closed it, or it was in a closed state).
- A cancellation is an audit row of a command that closes the issue without acceptance, carried
  out (`/cancel`: `command-cancel` in the default policy).
- Where the SOP is skipped: the audit rows of the period whose rule did not pass, per rule and
  clause; the stages skipped by a change the lifecycle refused; the guards that blocked a move.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from policies.models import IssueRef
from policies.sla import AllCycles, ClockReading, DelayAnnounced, Phase, Rated, Reopening, TimelineEvent

TRANSITION_MARKER = "transition-rejected:"


@dataclass(frozen=True)
class IssueClocks:
    """One issue opened in the period: its timeline and every cycle of its clocks."""

    ref: IssueRef
    created: dt.datetime
    timeline: Sequence[TimelineEvent]
    cycles: AllCycles

    @property
    def scope(self) -> str:
        return f"{self.ref.source}:{self.ref.scope}"

    @property
    def level(self) -> str:
        """The priority level the latest clock holds the issue to."""
        return self.cycles.readings[-1].level if self.cycles.readings else "-"


class AuditRow(Protocol):
    """What the report reads of an audit row (`runtime.store.audit.AuditEntry` has it)."""

    @property
    def at(self) -> dt.datetime: ...
    @property
    def issue(self) -> str: ...
    @property
    def rule_id(self) -> str | None: ...
    @property
    def sop(self) -> str | None: ...
    @property
    def passed(self) -> bool | None: ...
    @property
    def mode(self) -> str | None: ...
    @property
    def actions(self) -> list[dict[str, Any]]: ...


def _hours(span: dt.timedelta) -> float:
    return span.total_seconds() / 3600


@dataclass
class Target:
    """One target's clocks: how many were met, breached or still running, and the working hours
    each stopped one took."""

    met: int = 0
    breached: int = 0
    running: int = 0
    hours: list[float] = field(default_factory=list)

    def add(self, clock: ClockReading) -> None:
        if clock.breached:
            self.breached += 1
        elif clock.phase is Phase.STOPPED:
            self.met += 1
        else:
            self.running += 1
        if clock.phase is Phase.STOPPED:
            self.hours.append(_hours(clock.elapsed))

    def merge(self, other: Target) -> None:
        self.met += other.met
        self.breached += other.breached
        self.running += other.running
        self.hours += other.hours

    @property
    def clocks(self) -> int:
        return self.met + self.breached + self.running

    @property
    def decided(self) -> int:
        return self.met + self.breached

    def share_met(self) -> float | None:
        """Of the clocks decided (met or breached), the share met; None when none is decided."""
        return self.met / self.decided if self.decided else None

    def median(self) -> float | None:
        return statistics.median(self.hours) if self.hours else None

    def p90(self) -> float | None:
        if len(self.hours) < 2:
            return self.hours[0] if self.hours else None
        return statistics.quantiles(self.hours, n=10, method="inclusive")[-1]


@dataclass
class Row:
    """The figures of one group of issues: a scope and priority, a week, or all of them."""

    scope: str
    priority: str
    issues: int = 0
    rejections: int = 0
    reopens: int = 0
    cancellations: int = 0
    delay_notices: int = 0
    ratings: list[int] = field(default_factory=list)
    targets: dict[str, Target] = field(default_factory=lambda: defaultdict(Target))

    def add(self, item: IssueClocks, cancellations: int, closed_states: frozenset[str]) -> None:
        self.issues += 1
        self.rejections += sum(1 for r in item.cycles.reopenings if is_rejection(r, closed_states))
        self.reopens += sum(1 for r in item.cycles.reopenings if not is_rejection(r, closed_states))
        self.cancellations += cancellations
        self.delay_notices += sum(1 for e in item.timeline if isinstance(e, DelayAnnounced))
        self.ratings += [e.score for e in item.timeline if isinstance(e, Rated)]
        for clock in item.cycles.readings:
            self.targets[clock.target_id].add(clock)

    def merge(self, other: Row) -> None:
        self.issues += other.issues
        self.rejections += other.rejections
        self.reopens += other.reopens
        self.cancellations += other.cancellations
        self.delay_notices += other.delay_notices
        self.ratings += other.ratings
        for target_id, target in other.targets.items():
            self.targets[target_id].merge(target)

    def average_rating(self) -> float | None:
        return statistics.mean(self.ratings) if self.ratings else None


def is_rejection(reopening: Reopening, closed_states: frozenset[str]) -> bool:
    """A move back out of acceptance while the issue was open, as opposed to a reopen of a closed one."""
    return not reopening.was_closed and reopening.state not in closed_states


@dataclass(frozen=True)
class Breach:
    """One clock cycle that reached its target."""

    ref: IssueRef
    scope: str
    level: str
    target_id: str
    cycle: int
    late_by_hours: float
    deadline: dt.datetime
    stopped: bool


@dataclass
class RuleCount:
    """How often one rule did not hold in the period: `blocked` where it was enforced (the change
    undone), `warned` where it only commented."""

    rule_id: str
    sop: str
    blocked: int = 0
    warned: int = 0
    issues: set[str] = field(default_factory=set)

    @property
    def total(self) -> int:
        return self.blocked + self.warned


@dataclass
class Report:
    since: dt.date
    until: dt.date
    as_of: dt.datetime
    target_ids: list[str]
    rows: list[Row]
    total: Row
    weeks: list[tuple[dt.date, Row]]
    breaches: list[Breach]
    rules: list[RuleCount]
    stages: list[tuple[str, int]]
    guards: list[RuleCount]


def week_of(day: dt.date) -> dt.date:
    """The Monday that starts the ISO week of `day`."""
    return day - dt.timedelta(days=day.weekday())


def _cancellations(audit_rows: Iterable[AuditRow], cancel_ids: frozenset[str]) -> Counter[str]:
    """Closes without acceptance, by issue: audit rows of a cancelling command carried out."""
    return Counter(row.issue for row in audit_rows if row.rule_id in cancel_ids and row.passed)


def _breaches(items: Iterable[IssueClocks]) -> list[Breach]:
    found = [
        Breach(
            ref=item.ref,
            scope=item.scope,
            level=clock.level,
            target_id=clock.target_id,
            cycle=clock.cycle,
            late_by_hours=_hours(clock.elapsed - clock.target),
            deadline=clock.deadline,
            stopped=clock.phase is Phase.STOPPED,
        )
        for item in items
        for clock in item.cycles.readings
        if clock.breached
    ]
    return sorted(found, key=lambda b: (-b.late_by_hours, str(b.ref)))


def refused_change(row: AuditRow) -> tuple[str, str] | None:
    """The states (before, after) of a change the lifecycle refused, read from its comment's marker."""
    for action in row.actions:
        marker = str(action.get("marker", ""))
        if action.get("type") == "PostComment" and marker.startswith(TRANSITION_MARKER):
            before, after, *_ = marker.removeprefix(TRANSITION_MARKER).split(":")
            return before, after
    return None


def _skips(
    audit_rows: Iterable[AuditRow],
    ignored: frozenset[str],
    guard_ids: frozenset[str],
    skipped_states: Callable[[str, str], Sequence[str]],
) -> tuple[list[RuleCount], list[tuple[str, int]], list[RuleCount]]:
    """Rules that did not hold, most often first; stages skipped; guards that blocked. The rules
    `ignored` (the SLA targets, whose breaches the clocks count, and cancellations) are left out."""
    rules: dict[str, RuleCount] = {}
    stages: Counter[str] = Counter()
    for row in audit_rows:
        if row.passed is not False or row.rule_id in ignored or row.rule_id is None:
            continue
        count = rules.setdefault(row.rule_id, RuleCount(row.rule_id, row.sop or ""))
        if row.mode == "enforce":
            count.blocked += 1
        else:
            count.warned += 1
        count.issues.add(row.issue)
        change = refused_change(row) if row.rule_id not in guard_ids else None
        if change is not None:
            stages.update(skipped_states(*change))
    ranked = sorted(rules.values(), key=lambda r: (-r.total, r.rule_id))
    guards = sorted(
        (r for r in ranked if r.rule_id in guard_ids and r.blocked),
        key=lambda r: (-r.blocked, r.rule_id),
    )
    return ranked, sorted(stages.items(), key=lambda s: (-s[1], s[0])), guards


def summarize(
    items: Iterable[IssueClocks],
    audit_rows: Sequence[AuditRow],
    *,
    since: dt.date,
    until: dt.date,
    as_of: dt.datetime,
    target_ids: Sequence[str],
    closed_states: frozenset[str] = frozenset({"closed"}),
    guard_ids: frozenset[str] = frozenset(),
    cancel_ids: frozenset[str] = frozenset(),
    skipped_states: Callable[[str, str], Sequence[str]] = lambda _before, _after: (),
) -> Report:
    """The report of the period. `audit_rows` are those of the period (already filtered to the
    scope and priority asked for); `cancel_ids` are the rules (commands) that close an issue
    without acceptance (S5.1); `skipped_states` names the stages between two states."""
    items = list(items)
    cancelled = _cancellations(audit_rows, cancel_ids)
    groups: dict[tuple[str, str], Row] = {}
    weeks: dict[dt.date, Row] = {}
    total = Row("", "")
    for item in items:
        cancellations = cancelled[str(item.ref)]
        row = groups.setdefault((item.scope, item.level), Row(item.scope, item.level))
        row.add(item, cancellations, closed_states)
        week = week_of(item.created.date())
        weeks.setdefault(week, Row("", "")).add(item, cancellations, closed_states)
    for row in groups.values():
        total.merge(row)
    ignored = frozenset({*target_ids, *cancel_ids})
    rules, stages, guards = _skips(audit_rows, ignored, guard_ids, skipped_states)
    return Report(
        since=since,
        until=until,
        as_of=as_of,
        target_ids=list(target_ids),
        rows=[groups[key] for key in sorted(groups)],
        total=total,
        weeks=sorted(weeks.items()),
        breaches=_breaches(items),
        rules=rules,
        stages=stages,
        guards=guards,
    )

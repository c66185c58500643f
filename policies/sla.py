"""SLA clocks (S1.4, S3.3, P1): first response and resolution, read from an issue's timeline at `now`.

Pure: no I/O and no clock; `now` is passed in. The semantics follow Jira Service Management's SLAs:

- A clock counts working time on its target's calendar (`policies.calendar`), net of pauses: time
  in one of the policy's `pause_states` (waiting for the customer) does not count.
- First response: one cycle per issue, from creation to the first public comment by one of the
  policy's responders (the service team: a passer-by's "+1" is no response) who is neither the
  reporter nor a bot (our own comments are a bot's). Closing the issue, or moving it to
  a stop state, before any response also stops it: the issue got its answer. A reopened issue does
  not restart it.
- Resolution: stops on entering a stop state (`acceptance` or `closed` by default) or on closing;
  leaving the stop (a reopen, or a move back from acceptance) starts a new cycle from zero.
- The target is the one for the issue's current priority, applied to the time counted since the
  cycle started, so a change of priority re-targets a running clock from its start. A stopped
  clock keeps the priority it had when it stopped. An issue without a priority (or with a level
  the target does not list) is held to the lowest level's target, the most lenient, so that S1.4
  holds from the first minute; `level_assumed` says so.
- A clock is breached once its elapsed time reaches the target (the deadline is the first late
  instant); a threshold of `warn_at` is crossed once elapsed reaches that fraction of the target.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from operator import attrgetter
from types import MappingProxyType
from typing import Literal, NamedTuple

from config.schema import Sla, SlaTarget
from policies.calendar import ALWAYS_OPEN, ZERO, WorkingCalendar, calendar_from_config, utc

DEFAULT_STOP_STATES = ("acceptance", "closed")

TargetKind = Literal["first-response", "resolution"]


# --- the timeline ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    """The issue was opened; `state` is its SOP state then (None: not known, counts as running)."""

    at: dt.datetime
    state: str | None = None
    priority: str | None = None


@dataclass(frozen=True)
class StateChanged:
    """The issue entered an SOP state (a Jira status or GitHub `status/` label, mapped)."""

    at: dt.datetime
    state: str


@dataclass(frozen=True)
class Commented:
    """A comment. GitHub comments are all public; a Jira Service Management internal note is not."""

    at: dt.datetime
    author: str
    is_reporter: bool
    is_bot: bool
    public: bool = True
    comment_id: str = ""
    # By one of the policy's responders (`sla.responders`, the service team), as looked up then.
    by_responder: bool = True

    @property
    def is_response(self) -> bool:
        """Whether it answers the customer: public, by a responder, and by neither the reporter nor a bot."""
        return self.public and self.by_responder and not self.is_reporter and not self.is_bot


@dataclass(frozen=True)
class PriorityChanged:
    at: dt.datetime
    priority: str | None


@dataclass(frozen=True)
class Closed:
    """The tracker closed the issue (whatever its SOP state): the resolution clock stops."""

    at: dt.datetime


@dataclass(frozen=True)
class Reopened:
    """The tracker reopened the issue; `state` is the SOP state it reopened into, when known."""

    at: dt.datetime
    state: str | None = None


@dataclass(frozen=True)
class DelayAnnounced:
    """Someone told the customer of a delay, in public and before the resolution deadline, with
    its reason and the new date (S3.3): a valid delay notice (`policies.followup`), at the time it
    was given (an edit's, for a notice an edit put right). Entries of earlier releases have no
    date, reason or comment id."""

    at: dt.datetime
    author: str
    new_date: str = ""  # ISO 8601
    reason: str = ""
    comment_id: str = ""  # the comment that gave it: counted once, however often it is edited


@dataclass(frozen=True)
class Rated:
    """The reporter rated the service after closure (S5.2), 1 (poor) to 5 (excellent)."""

    at: dt.datetime
    score: int


@dataclass(frozen=True)
class PlanWritten:
    """Someone wrote or changed the plan section of the issue's own text: its author (S2.2)."""

    at: dt.datetime
    author: str
    author_id: str = ""


@dataclass(frozen=True)
class SectionWritten:
    """Someone wrote or changed, in the issue's own text, the section of a guard that says who
    may write it (`SectionGuard.by`), or opened the issue with it: its author (with GitHub's
    `author_association` where the delivery gave it), or nobody ("") once it is taken out."""

    at: dt.datetime
    guard: str
    author: str
    author_id: str = ""
    association: str = ""


@dataclass(frozen=True)
class AdoptedIn:
    """sopguard adopted the issue here, met mid-life in this stage (`None`: none it knows): what
    came before, it did not see."""

    at: dt.datetime
    state: str | None


TimelineEvent = (
    Created
    | StateChanged
    | Commented
    | PriorityChanged
    | Closed
    | Reopened
    | DelayAnnounced
    | Rated
    | PlanWritten
    | SectionWritten
    | AdoptedIn
)


# --- the compiled policy --------------------------------------------------------------------


@dataclass(frozen=True)
class TargetRule:
    """One `SlaTarget` with its calendar built, ready to read clocks."""

    id: str
    kind: TargetKind
    sop: str
    calendar: WorkingCalendar
    warn_at: tuple[float, ...]
    by_priority: Mapping[str, dt.timedelta]
    fallback_level: str

    def level_for(self, priority: str | None) -> tuple[str, bool]:
        """The level whose target applies, and whether it was assumed for want of a known priority."""
        if priority is not None and priority in self.by_priority:
            return priority, False
        return self.fallback_level, True


@dataclass(frozen=True)
class SlaRules:
    """A policy's SLA section compiled once and shared by every clock read under it."""

    targets: tuple[TargetRule, ...]
    pause_states: frozenset[str]
    stop_states: frozenset[str]


def _lowest_level(levels: Iterable[str]) -> str:
    """P1 is the highest level; the lowest is the one with the largest number."""
    return max(levels, key=lambda level: int(level[1:]))


def _target_rule(target: SlaTarget, calendars: Mapping[str, WorkingCalendar]) -> TargetRule:
    if target.calendar is not None and target.calendar not in calendars:
        raise ValueError(f"SLA target {target.id!r} names an unknown calendar {target.calendar!r}")
    return TargetRule(
        id=target.id,
        kind=target.kind,
        sop=target.sop,
        calendar=calendars[target.calendar] if target.calendar else ALWAYS_OPEN,
        warn_at=tuple(sorted(set(target.warn_at))),
        by_priority=MappingProxyType(dict(target.by_priority)),
        fallback_level=_lowest_level(target.by_priority),
    )


_COMPILED: dict[int, tuple[Sla, SlaRules]] = {}


def rules_for(sla: Sla) -> SlaRules:
    """`compile_sla` once per policy section, so every reader shares the calendars' day caches."""
    cached = _COMPILED.get(id(sla))
    if cached is None or cached[0] is not sla:
        cached = _COMPILED[id(sla)] = (sla, compile_sla(sla))
    return cached[1]


def compile_sla(sla: Sla, stop_states: Iterable[str] = DEFAULT_STOP_STATES) -> SlaRules:
    """Build each calendar once, so that every clock read under this policy shares its caches."""
    calendars = {calendar.id: calendar_from_config(calendar) for calendar in sla.calendars}
    return SlaRules(
        targets=tuple(_target_rule(target, calendars) for target in sla.targets),
        pause_states=frozenset(sla.pause_states),
        stop_states=frozenset(stop_states),
    )


# --- what a clock reads ---------------------------------------------------------------------


class Phase(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ClockReading:
    """One target's clock at `now`, for its current cycle. Instants are in the calendar's zone.

    `deadline` is when elapsed time reaches the target: if that already happened, the instant it
    did; otherwise the instant it will if the clock runs without pause from `now` (from the stop,
    for a stopped clock), so a paused clock shows the deadline it would have if resumed now.
    `remaining` is negative once breached (by how much). `next_threshold_at` follows the same rule
    as the deadline and is None when the clock has stopped or every threshold is crossed.
    """

    target_id: str
    kind: TargetKind
    sop: str
    level: str
    level_assumed: bool
    target: dt.timedelta
    cycle: int
    cycle_start: dt.datetime
    phase: Phase
    stopped_at: dt.datetime | None
    elapsed: dt.timedelta
    remaining: dt.timedelta
    deadline: dt.datetime
    crossed: tuple[float, ...]
    next_threshold: float | None
    next_threshold_at: dt.datetime | None

    @property
    def breached(self) -> bool:
        return self.elapsed >= self.target

    @property
    def met(self) -> bool:
        """Stopped before reaching the target."""
        return self.phase is Phase.STOPPED and not self.breached


# --- replaying the timeline -----------------------------------------------------------------


class _Period(NamedTuple):
    """A stretch `[start, end)` of the issue's life in one phase."""

    start: dt.datetime
    end: dt.datetime
    phase: Phase


class _History(NamedTuple):
    """The timeline folded: its phases, and the instants each clock needs (all UTC)."""

    created: dt.datetime
    now: dt.datetime
    periods: tuple[_Period, ...]
    priorities: tuple[tuple[dt.datetime, str | None], ...]
    first_response: dt.datetime | None
    first_stop: dt.datetime | None
    reopenings: tuple[dt.datetime, ...]
    # Per reopening: the SOP state it left, and whether the tracker had closed the issue.
    left: tuple[tuple[str | None, bool], ...] = ()


def _phase(state: str | None, closed: bool, rules: SlaRules) -> Phase:
    if closed or state in rules.stop_states:
        return Phase.STOPPED
    if state in rules.pause_states:
        return Phase.PAUSED
    return Phase.RUNNING


def _lifecycle_after(
    event: StateChanged | Closed | Reopened, state: str | None, closed: bool, rules: SlaRules
) -> tuple[str | None, bool]:
    """The SOP state and the tracker's closed flag after an event. A reopening into an unknown
    state leaves a stop state for an unknown one, which counts as running."""
    if isinstance(event, StateChanged):
        return event.state, closed
    if isinstance(event, Closed):
        return state, True
    if event.state is not None:
        return event.state, False
    return (None if state in rules.stop_states else state), False


def _created(timeline: Sequence[TimelineEvent]) -> Created:
    """The earliest `Created`: deliveries can arrive out of order, and a late `opened` must not
    break an issue's clocks; any later `Created` is ignored."""
    created = [event for event in timeline if isinstance(event, Created)]
    if not created:
        raise ValueError("a timeline needs a Created event")
    return min(created, key=lambda event: utc(event.at))


def _replay(rules: SlaRules, timeline: Sequence[TimelineEvent], now: dt.datetime) -> _History:
    """Fold the events up to `now`, in time order (ties keep their order), into phases.

    An event dated before the creation (two systems' clocks) counts as at the creation, and a
    `now` before the creation as the creation.
    """
    created = _created(timeline)
    opened = utc(created.at)
    now = max(utc(now), opened)
    state, closed, priority = created.state, False, created.priority
    priorities: list[tuple[dt.datetime, str | None]] = [(opened, priority)]
    first_response: dt.datetime | None = None
    first_stop: dt.datetime | None = None
    reopenings: list[dt.datetime] = []
    left: list[tuple[str | None, bool]] = []
    periods: list[_Period] = []
    since, phase = opened, _phase(state, closed, rules)
    for event in sorted(timeline, key=attrgetter("at")):
        if isinstance(event, Created):
            continue
        at = max(utc(event.at), opened)
        if at > now:
            break
        before = state, closed
        if isinstance(event, StateChanged | Closed | Reopened):
            state, closed = _lifecycle_after(event, state, closed, rules)
        elif isinstance(event, PriorityChanged):
            priority = event.priority
            priorities.append((at, priority))
        elif isinstance(event, Commented) and event.is_response and first_response is None:
            first_response = at
        new_phase = _phase(state, closed, rules)
        if new_phase is phase:
            continue
        if phase is Phase.STOPPED:
            reopenings.append(at)
            left.append(before)
        elif new_phase is Phase.STOPPED and first_stop is None:
            first_stop = at
        periods.append(_Period(since, at, phase))
        since, phase = at, new_phase
    if phase is Phase.STOPPED and first_stop is None:
        first_stop = opened
    periods.append(_Period(since, now, phase))
    return _History(
        opened,
        now,
        tuple(periods),
        tuple(priorities),
        first_response,
        first_stop,
        tuple(reopenings),
        tuple(left),
    )


def _priority_at(history: _History, instant: dt.datetime) -> str | None:
    current: str | None = None
    for at, priority in history.priorities:
        if at > instant:
            break
        current = priority
    return current


class _Cycle(NamedTuple):
    number: int
    start: dt.datetime
    stopped_at: dt.datetime | None
    running: tuple[tuple[dt.datetime, dt.datetime], ...]
    phase: Phase


def _cycle(history: _History, number: int, start: dt.datetime, stopped_at: dt.datetime | None) -> _Cycle:
    end = stopped_at if stopped_at is not None else history.now
    running = tuple(
        (max(p.start, start), min(p.end, end))
        for p in history.periods
        if p.phase is Phase.RUNNING and p.end > start and p.start < end
    )
    phase = Phase.STOPPED if stopped_at is not None else history.periods[-1].phase
    return _Cycle(number, start, stopped_at, running, phase)


def _resolution_cycle(history: _History) -> _Cycle:
    """The current cycle: the last one to start, at the creation or on leaving a stop. Nothing but
    another reopening leaves a stop, so it has stopped if and only if the issue is stopped now."""
    start = history.reopenings[-1] if history.reopenings else history.created
    last = history.periods[-1]
    stopped_at = last.start if last.phase is Phase.STOPPED else None
    return _cycle(history, len(history.reopenings) + 1, start, stopped_at)


def _first_response_cycle(history: _History) -> _Cycle:
    stops = [s for s in (history.first_response, history.first_stop) if s is not None]
    return _cycle(history, 1, history.created, min(stops, default=None))


# --- reading a clock ------------------------------------------------------------------------


def _due(
    calendar: WorkingCalendar,
    running: Sequence[tuple[dt.datetime, dt.datetime]],
    spans: Sequence[dt.timedelta],
    resume: dt.datetime,
    amount: dt.timedelta,
) -> dt.datetime:
    """The instant a cycle's working time reaches `amount`: inside the stretches already run if it
    got there (`spans` is the working time of each), else by running on from `resume`."""
    counted = ZERO
    for (start, _), span in zip(running, spans, strict=True):
        if counted + span >= amount:
            return calendar.add_working_time(start, amount - counted)
        counted += span
    return calendar.add_working_time(resume, amount - counted)


def _read_clock(rule: TargetRule, cycle: _Cycle, history: _History) -> ClockReading:
    calendar, zone = rule.calendar, rule.calendar.zone
    stopped_at = cycle.stopped_at
    resume = stopped_at or history.now
    level, assumed = rule.level_for(_priority_at(history, resume))
    target = rule.by_priority[level]
    spans = [calendar.working_time(start, end) for start, end in cycle.running]
    elapsed = sum(spans, ZERO)
    marks = [(fraction, target * fraction) for fraction in rule.warn_at]
    pending = [] if stopped_at else [(fraction, mark) for fraction, mark in marks if elapsed < mark]
    upcoming, upcoming_mark = pending[0] if pending else (None, None)
    deadline = _due(calendar, cycle.running, spans, resume, target)
    upcoming_at = None
    if upcoming_mark is not None:
        upcoming_at = (
            deadline
            if upcoming_mark == target
            else _due(calendar, cycle.running, spans, resume, upcoming_mark)
        )
    return ClockReading(
        target_id=rule.id,
        kind=rule.kind,
        sop=rule.sop,
        level=level,
        level_assumed=assumed,
        target=target,
        cycle=cycle.number,
        cycle_start=cycle.start.astimezone(zone),
        phase=cycle.phase,
        stopped_at=stopped_at.astimezone(zone) if stopped_at else None,
        elapsed=elapsed,
        remaining=target - elapsed,
        deadline=deadline.astimezone(zone),
        crossed=tuple(fraction for fraction, mark in marks if elapsed >= mark),
        next_threshold=upcoming,
        next_threshold_at=upcoming_at.astimezone(zone) if upcoming_at else None,
    )


def issue_clocks(sla: Sla, timeline: Sequence[TimelineEvent], now: dt.datetime) -> tuple[ClockReading, ...]:
    """An issue's clocks at `now`, as the sweep, the receipt and the ledger all read them: the one
    computation of its deadlines; none before the timeline knows when the issue was created."""
    if not any(isinstance(entry, Created) for entry in timeline):
        return ()
    return read_clocks(rules_for(sla), timeline, now)


def read_clocks(
    rules: SlaRules, timeline: Sequence[TimelineEvent], now: dt.datetime
) -> tuple[ClockReading, ...]:
    """Every target's clock for one issue at `now`, in the order of the policy's targets."""
    history = _replay(rules, timeline, now)
    cycles = {"first-response": _first_response_cycle(history), "resolution": _resolution_cycle(history)}
    return tuple(_read_clock(rule, cycles[rule.kind], history) for rule in rules.targets)


@dataclass(frozen=True)
class Reopening:
    """The issue left a stop state, which starts a new resolution cycle: `state` is the SOP state
    it left and `was_closed` whether the tracker had closed it (a reopen after closure) or not (a
    move back from acceptance: the customer rejected the result)."""

    at: dt.datetime
    state: str | None
    was_closed: bool


@dataclass(frozen=True)
class AllCycles:
    """Every cycle of every target up to `now`, oldest first, and each reopening between them."""

    readings: tuple[ClockReading, ...]
    reopenings: tuple[Reopening, ...]


def _resolution_cycles(history: _History) -> list[_Cycle]:
    """Each resolution cycle: the first from the creation, one more from each reopening; each but
    the last stopped where the stop period before the next reopening began."""
    stopped = {p.end: p.start for p in history.periods if p.phase is Phase.STOPPED}
    starts = (history.created, *history.reopenings)
    ended = [
        _cycle(history, number, start, stopped[next_start])
        for number, (start, next_start) in enumerate(pairwise(starts), 1)
    ]
    return [*ended, _resolution_cycle(history)]


def read_all_cycles(rules: SlaRules, timeline: Sequence[TimelineEvent], now: dt.datetime) -> AllCycles:
    """Like `read_clocks`, with every resolution cycle, not only the current one: a report counts
    a breach in an earlier cycle even once the issue met its target in a later one."""
    history = _replay(rules, timeline, now)
    cycles = {"first-response": [_first_response_cycle(history)], "resolution": _resolution_cycles(history)}
    readings = [_read_clock(rule, cycle, history) for rule in rules.targets for cycle in cycles[rule.kind]]
    reopenings = tuple(
        Reopening(at.astimezone(dt.UTC), state, closed)
        for at, (state, closed) in zip(history.reopenings, history.left, strict=True)
    )
    return AllCycles(tuple(readings), reopenings)

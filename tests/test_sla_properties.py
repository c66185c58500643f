"""Properties of the working-time arithmetic and of the SLA clock (hypothesis), on random calendars:
random hours per weekday, zones with DST changes (at 02:00, at midnight, by half an hour), holidays
by country and subdivision, and extra dates."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.schema import Calendar, HolidaySource, Sla, SlaTarget
from policies.calendar import BusinessCalendar, WorkingCalendar, calendar_from_config, holiday_year
from policies.sla import (
    Closed,
    Commented,
    Created,
    Phase,
    PriorityChanged,
    Reopened,
    SlaRules,
    StateChanged,
    TimelineEvent,
    compile_sla,
    read_clocks,
)

PROPERTIES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

UTC = dt.UTC
DST_ZONES = (
    "America/New_York",
    "Europe/London",
    "Australia/Sydney",
    "Australia/Lord_Howe",  # a half-hour shift
    "America/Havana",  # changes at midnight
    "America/Sao_Paulo",  # changed at midnight until 2019
)
ZONES = ("UTC", "Asia/Shanghai", "Asia/Kolkata", *DST_ZONES)
FIRST_YEAR, LAST_YEAR = 2017, 2026
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAYS = (None, HolidaySource(country="CN"), HolidaySource(country="US", subdivision="MA"))


def _clock(minute: int) -> str:
    hours, minutes = divmod(minute, 60)
    return f"{hours:02d}:{minutes:02d}"


@st.composite
def day_ranges(draw: st.DrawFn, earliest: int = 0, latest: int = 24 * 60) -> list[str]:
    """Zero to three ranges on quarter hours, from `earliest` up to `latest` (minutes)."""
    quarters = st.integers(earliest // 15, latest // 15)
    marks = draw(st.lists(quarters, min_size=0, max_size=6, unique=True).map(sorted))
    pairs = zip(marks[::2], marks[1::2], strict=False)
    return [f"{_clock(start * 15)}-{_clock(end * 15)}" for start, end in pairs]


def _dates() -> st.SearchStrategy[dt.date]:
    return st.dates(dt.date(FIRST_YEAR, 1, 1), dt.date(LAST_YEAR, 12, 31))


@st.composite
def calendars(draw: st.DrawFn) -> Calendar | None:
    """No calendar (24x7), or a calendar with hours on at least one weekday."""
    if draw(st.integers(0, 5)) == 0:
        return None
    hours = draw(st.fixed_dictionaries({day: day_ranges() for day in WEEKDAYS}))
    if not any(hours.values()):
        hours["wed"] = ["09:00-17:00"]
    return Calendar(
        id="random",
        timezone=draw(st.sampled_from(ZONES)),
        working_hours={} if draw(st.integers(0, 4)) == 0 else hours,
        holidays=draw(st.sampled_from(HOLIDAYS)),
        extra_holidays=draw(st.lists(_dates(), max_size=3)),
        extra_working_days=draw(st.lists(_dates(), max_size=3)),
    )


def instants() -> st.SearchStrategy[dt.datetime]:
    return st.datetimes(dt.datetime(FIRST_YEAR, 1, 1), dt.datetime(LAST_YEAR, 11, 30), timezones=st.just(UTC))


def spans(days: int = 20) -> st.SearchStrategy[dt.timedelta]:
    return st.timedeltas(dt.timedelta(0), dt.timedelta(days=days))


def shown_in(instant: dt.datetime, zone: str) -> dt.datetime:
    """The same instant written in another zone: the arithmetic must not care."""
    return instant.astimezone(ZoneInfo(zone))


# --- the calendar's arithmetic ----------------------------------------------------------------


@PROPERTIES
@given(calendars(), instants(), spans(), spans(), st.sampled_from(ZONES))
def test_working_time_is_additive(
    config: Calendar | None, a: dt.datetime, ab: dt.timedelta, bc: dt.timedelta, zone: str
) -> None:
    calendar = calendar_from_config(config)
    b, c = a + ab, a + ab + bc
    assert calendar.working_time(a, c) == calendar.working_time(a, b) + calendar.working_time(
        shown_in(b, zone), c
    )


@PROPERTIES
@given(calendars(), instants(), spans())
def test_working_time_is_at_most_elapsed_time_and_never_negative(
    config: Calendar | None, a: dt.datetime, ab: dt.timedelta
) -> None:
    calendar = calendar_from_config(config)
    assert dt.timedelta(0) <= calendar.working_time(a, a + ab) <= ab
    assert calendar.working_time(a + ab, a) == dt.timedelta(0)


@PROPERTIES
@given(
    calendars(), instants(), st.timedeltas(dt.timedelta(0), dt.timedelta(hours=300)), st.sampled_from(ZONES)
)
def test_add_working_time_inverts_working_time_at_the_earliest_instant(
    config: Calendar | None, start: dt.datetime, duration: dt.timedelta, zone: str
) -> None:
    calendar = calendar_from_config(config)
    deadline = calendar.add_working_time(shown_in(start, zone), duration)
    assert deadline >= start
    assert calendar.working_time(start, deadline) == duration
    if duration:
        assert calendar.working_time(start, deadline - dt.timedelta(microseconds=1)) < duration


@PROPERTIES
@given(calendars(), instants(), st.timedeltas(dt.timedelta(0), dt.timedelta(hours=200)), spans(days=5))
def test_add_working_time_is_monotonic_in_the_duration(
    config: Calendar | None, start: dt.datetime, shorter: dt.timedelta, extra: dt.timedelta
) -> None:
    calendar = calendar_from_config(config)
    assert calendar.add_working_time(start, shorter) <= calendar.add_working_time(start, shorter + extra)


@cache
def _dst_days(zone_name: str) -> tuple[dt.date, ...]:
    """The dates of a zone whose length is not 24 hours, in the years the tests draw from."""
    zone, days = ZoneInfo(zone_name), []
    day = dt.date(FIRST_YEAR, 1, 1)
    while day.year <= LAST_YEAR:
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone)
        next_midnight = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
        if next_midnight.astimezone(UTC) - midnight.astimezone(UTC) != dt.timedelta(days=1):
            days.append(day)
        day += dt.timedelta(days=1)
    return tuple(days)


@PROPERTIES
@given(st.sampled_from(DST_ZONES), day_ranges(earliest=4 * 60, latest=23 * 60), st.data())
def test_a_dst_day_counts_its_hours_by_the_wall_clock(
    zone_name: str, ranges: list[str], data: st.DataObject
) -> None:
    """Ranges clear of the change last as long as they read. Every zone here changes before 04:00,
    or (Sao Paulo until 2019) at midnight, which on the day it goes back is 24:00 of the day before."""
    day = data.draw(st.sampled_from(_dst_days(zone_name)))
    zone, hours = ZoneInfo(zone_name), ranges or ["09:00-17:00"]
    calendar = calendar_from_config(
        Calendar(id="dst", timezone=zone_name, working_hours=dict.fromkeys(WEEKDAYS, hours))
    )
    wall_clock = sum((_wall_length(text) for text in hours), dt.timedelta(0))
    start = dt.datetime.combine(day, dt.time(4), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    assert calendar.working_time(start, end) == wall_clock


def _wall_length(text: str) -> dt.timedelta:
    start, end = (dt.timedelta(hours=int(part[:2]), minutes=int(part[3:])) for part in text.split("-"))
    return end - start


@PROPERTIES
@given(calendars(), st.data())
def test_holidays_contribute_zero(config: Calendar | None, data: st.DataObject) -> None:
    if config is None or (config.holidays is None and not config.extra_holidays):
        return
    candidates = list(config.extra_holidays)
    if config.holidays is not None:
        year = data.draw(st.integers(FIRST_YEAR, LAST_YEAR))
        public = holiday_year(config.holidays.country, config.holidays.subdivision, year)
        candidates += sorted(public.holidays - public.make_up_working_days - set(config.extra_working_days))
    if not candidates:
        return
    day = data.draw(st.sampled_from(candidates))
    calendar = calendar_from_config(config)
    assert isinstance(calendar, BusinessCalendar)
    zone = calendar.zone
    start = dt.datetime.combine(day, dt.time(), tzinfo=zone)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    assert calendar.working_time(start, end) == dt.timedelta(0)


# --- the clock ---------------------------------------------------------------------------------

RUNNING_STATES = ("new", "triage", "in-progress")
PAUSE, STOPS = "waiting-for-customer", ("acceptance", "closed")
PRIORITIES = ("P1", "P2", "P3", "P4")


def _rules(config: Calendar | None, first_response: dt.timedelta, resolution: dt.timedelta) -> SlaRules:
    def target(kind: Literal["first-response", "resolution"], duration: dt.timedelta) -> SlaTarget:
        return SlaTarget(
            id=kind,
            sop="S1.4",
            kind=kind,
            calendar=config.id if config else None,
            by_priority=dict.fromkeys(PRIORITIES, duration),
        )

    sla = Sla(
        pause_states=[PAUSE],
        calendars=[config] if config else [],
        targets=[target("first-response", first_response), target("resolution", resolution)],
    )
    return compile_sla(sla)


def targets() -> st.SearchStrategy[dt.timedelta]:
    return st.timedeltas(dt.timedelta(minutes=1), dt.timedelta(hours=60))


@st.composite
def timelines(
    draw: st.DrawFn, created: dt.datetime, with_close_and_reopen: bool = True
) -> list[TimelineEvent]:
    """A creation, then up to eight changes of state or priority, comments (and closes, reopenings)
    within three weeks."""
    at = st.timedeltas(dt.timedelta(0), dt.timedelta(days=21)).map(lambda offset: created + offset)
    kinds: list[st.SearchStrategy[TimelineEvent]] = [
        st.builds(StateChanged, at, st.sampled_from((*RUNNING_STATES, PAUSE, *STOPS))),
        st.builds(Commented, at, st.just("someone"), st.booleans(), st.booleans(), st.booleans()),
        st.builds(PriorityChanged, at, st.sampled_from((*PRIORITIES, None))),
    ]
    if with_close_and_reopen:
        kinds += [
            st.builds(Closed, at),
            st.builds(Reopened, at, st.sampled_from((None, "in-progress", PAUSE))),
        ]
    created_event = Created(
        created, draw(st.sampled_from(RUNNING_STATES)), draw(st.sampled_from((*PRIORITIES, None)))
    )
    return [created_event, *draw(st.lists(st.one_of(kinds), max_size=8))]


def _state_at(timeline: list[TimelineEvent], instant: dt.datetime) -> str | None:
    """The state set last before `instant` (timelines without closes and reopenings)."""
    state = None
    for event in sorted(timeline, key=lambda e: e.at):
        if event.at >= instant:
            break
        if isinstance(event, Created | StateChanged):
            state = event.state
    return state


def _with_pause(timeline: list[TimelineEvent], start: dt.datetime, end: dt.datetime) -> list[TimelineEvent]:
    """The same timeline with its running time in `[start, end)` turned into waiting for the customer:
    stops and pauses stay where they are, so no cycle begins or ends elsewhere."""

    def paused(event: TimelineEvent) -> TimelineEvent:
        if isinstance(event, StateChanged) and start <= event.at < end and event.state in RUNNING_STATES:
            return StateChanged(event.at, PAUSE)
        return event

    inserted: list[TimelineEvent] = []
    if _state_at(timeline, start) in RUNNING_STATES:
        inserted.append(StateChanged(start, PAUSE))
    resumed = _state_at(timeline, end)
    if resumed in RUNNING_STATES:
        assert resumed is not None
        inserted.append(StateChanged(end, resumed))
    created, *rest = timeline
    return [created, *inserted, *(paused(event) for event in rest)]


@PROPERTIES
@given(calendars(), instants(), targets(), targets(), st.data())
def test_inserting_a_pause_never_increases_elapsed_time(
    config: Calendar | None,
    created: dt.datetime,
    first: dt.timedelta,
    resolution: dt.timedelta,
    data: st.DataObject,
) -> None:
    timeline = data.draw(timelines(created, with_close_and_reopen=False))
    start = created + data.draw(spans(days=21))
    end = start + data.draw(spans(days=7))
    now = created + data.draw(spans(days=30))
    rules = _rules(config, first, resolution)
    before = read_clocks(rules, tuple(timeline), now)
    after = read_clocks(rules, tuple(_with_pause(timeline, start, end)), now)
    for plain, with_pause in zip(before, after, strict=True):
        assert with_pause.elapsed <= plain.elapsed
        assert with_pause.cycle == plain.cycle


@PROPERTIES
@given(calendars(), instants(), targets(), targets(), st.data())
def test_elapsed_time_never_goes_back_within_a_cycle(
    config: Calendar | None,
    created: dt.datetime,
    first: dt.timedelta,
    resolution: dt.timedelta,
    data: st.DataObject,
) -> None:
    timeline = tuple(data.draw(timelines(created)))
    earlier = created + data.draw(spans(days=25))
    later = earlier + data.draw(spans(days=5))
    rules = _rules(config, first, resolution)
    for before, after in zip(
        read_clocks(rules, timeline, earlier), read_clocks(rules, timeline, later), strict=True
    ):
        if before.cycle == after.cycle:
            assert before.elapsed <= after.elapsed


@PROPERTIES
@given(calendars(), instants(), targets(), spans(days=3), st.data())
def test_the_clocks_deadline_is_monotonic_in_the_target(
    config: Calendar | None,
    created: dt.datetime,
    shorter: dt.timedelta,
    extra: dt.timedelta,
    data: st.DataObject,
) -> None:
    timeline = tuple(data.draw(timelines(created)))
    now = created + data.draw(spans(days=30))
    short = read_clocks(_rules(config, shorter, shorter), timeline, now)
    long = read_clocks(_rules(config, shorter + extra, shorter + extra), timeline, now)
    for a, b in zip(short, long, strict=True):
        assert a.deadline <= b.deadline


@PROPERTIES
@given(calendars(), instants(), targets(), targets(), st.data())
def test_a_reading_is_consistent_with_itself(
    config: Calendar | None,
    created: dt.datetime,
    first: dt.timedelta,
    resolution: dt.timedelta,
    data: st.DataObject,
) -> None:
    timeline = tuple(data.draw(timelines(created)))
    now = created + data.draw(spans(days=30))
    rules = _rules(config, first, resolution)
    for rule, reading in zip(rules.targets, read_clocks(rules, timeline, now), strict=True):
        calendar: WorkingCalendar = rule.calendar
        assert reading.remaining == reading.target - reading.elapsed
        assert reading.crossed == tuple(f for f in (0.75, 1.0) if reading.elapsed >= reading.target * f)
        assert reading.cycle_start <= now
        if reading.breached:
            assert reading.deadline <= (reading.stopped_at or now)
        elif reading.phase is Phase.RUNNING:
            assert reading.deadline > now
            assert calendar.working_time(now, reading.deadline) == reading.remaining
        if reading.phase is Phase.STOPPED:
            assert reading.stopped_at is not None and reading.next_threshold_at is None

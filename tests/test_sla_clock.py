"""SLA clocks (S1.4, S3.3, P1) on concrete calendars: the working-time arithmetic and the clock read
from an issue's timeline. Pure: no HTTP, no database, `now` given."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from config.loader import load_policy
from config.schema import Calendar, HolidaySource, Sla, SlaTarget
from policies.calendar import ALWAYS_OPEN, AlwaysOpen, BusinessCalendar, calendar_from_config, parse_hours
from policies.sla import (
    ClockReading,
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

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)

POLICY = load_policy()
RULES = compile_sla(POLICY.sla)
BUSINESS_HOURS = RULES.targets[0].calendar
OFFICE_WEEK = {day: ["09:00-17:00"] for day in ("mon", "tue", "wed", "thu", "fri")}
US_OFFICE = calendar_from_config(
    Calendar(
        id="us", timezone="America/New_York", working_hours=OFFICE_WEEK, holidays=HolidaySource(country="US")
    )
)


def sh(
    month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, year: int = 2024
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=SHANGHAI)


def ny(month: int, day: int, hour: int = 0, minute: int = 0, year: int = 2024) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def agent(at: dt.datetime, public: bool = True) -> Commented:
    return Commented(at, "alice", is_reporter=False, is_bot=False, public=public)


def reporter(at: dt.datetime) -> Commented:
    return Commented(at, "carol", is_reporter=True, is_bot=False)


def bot(at: dt.datetime) -> Commented:
    return Commented(at, "sopguard[bot]", is_reporter=False, is_bot=True)


def clocks(
    timeline: list[TimelineEvent], now: dt.datetime, rules: SlaRules = RULES
) -> dict[str, ClockReading]:
    return {reading.kind: reading for reading in read_clocks(rules, tuple(timeline), now)}


# --- calendars ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "duration", "deadline", "why"),
    [
        (sh(10, 8, 10), 15 * M, sh(10, 8, 10, 15), "same morning"),
        (sh(10, 8, 11, 30), H, sh(10, 8, 13, 30), "over the lunch break"),
        (sh(10, 8, 8, 0), H, sh(10, 8, 10), "before opening"),
        (sh(10, 8, 9), 3 * H, sh(10, 8, 12), "ends with the morning: 12:00, not 13:00"),
        (sh(10, 18, 17), 4 * H, sh(10, 21, 12), "Friday 17:00 over the weekend to Monday noon"),
        (sh(9, 30, 17), 4 * H, sh(10, 8, 12), "National Day week (1-7 October) skipped"),
        (sh(9, 27, 17), 4 * H, sh(9, 29, 12), "make-up Sunday 29 September worked"),
        (sh(10, 11, 17), 2 * H, sh(10, 12, 10), "make-up Saturday 12 October worked"),
        (sh(10, 8, 10), dt.timedelta(0), sh(10, 8, 10), "nothing to add"),
        (sh(10, 5, 10), dt.timedelta(0), sh(10, 5, 10), "nothing to add on a holiday"),
    ],
)
def test_deadline_on_shanghai_business_hours(
    start: dt.datetime, duration: dt.timedelta, deadline: dt.datetime, why: str
) -> None:
    assert BUSINESS_HOURS.add_working_time(start, duration) == deadline, why
    assert BUSINESS_HOURS.working_time(start, deadline) == duration, why


@pytest.mark.parametrize(
    ("start", "end", "worked", "why"),
    [
        (sh(10, 8, 11), sh(10, 8, 14), 2 * H, "lunch does not count"),
        (sh(10, 18, 0), sh(10, 21, 0), 8 * H, "a Friday, then a weekend"),
        (sh(10, 1, 0), sh(10, 8, 0), dt.timedelta(0), "the National Day holidays count zero"),
        (sh(9, 29, 0), sh(9, 30, 0), 8 * H, "a make-up Sunday counts a full day (Monday's hours)"),
        (sh(2, 4, 0), sh(2, 5, 0), 8 * H, "Spring Festival make-up Sunday"),
        (sh(10, 8, 14), sh(10, 8, 11), dt.timedelta(0), "end before start"),
        (sh(12, 30, 17), sh(1, 2, 10, year=2025), 10 * H, "New Year's Day 2025 only, across the year's end"),
    ],
)
def test_working_time_on_shanghai_business_hours(
    start: dt.datetime, end: dt.datetime, worked: dt.timedelta, why: str
) -> None:
    assert BUSINESS_HOURS.working_time(start, end) == worked, why


def test_instants_in_other_zones_are_the_same_instants() -> None:
    start_in_utc = sh(10, 18, 17).astimezone(dt.UTC)
    assert BUSINESS_HOURS.add_working_time(start_in_utc, 4 * H) == sh(10, 21, 12)
    assert BUSINESS_HOURS.working_time(start_in_utc, sh(10, 21, 12).astimezone(NEW_YORK)) == 4 * H


def test_us_office_across_the_spring_dst_change() -> None:
    friday, monday = ny(3, 8, 16), ny(3, 11, 10)  # EST before, EDT after (10 March 2024)
    assert monday - friday == 66 * H  # Python subtracts by wall clock within one zone...
    assert monday.astimezone(dt.UTC) - friday.astimezone(dt.UTC) == 65 * H  # ...the real time is shorter
    assert US_OFFICE.working_time(friday, monday) == 2 * H
    assert US_OFFICE.add_working_time(friday, 2 * H) == monday
    assert US_OFFICE.add_working_time(friday, 2 * H).astimezone(dt.UTC).hour == 14


def test_us_office_across_the_autumn_dst_change_and_a_holiday() -> None:
    assert US_OFFICE.working_time(ny(11, 1, 16), ny(11, 4, 10)) == 2 * H  # DST ends 3 November
    assert US_OFFICE.working_time(ny(11, 11, 0), ny(11, 12, 0)) == dt.timedelta(0)  # Veterans Day
    assert US_OFFICE.add_working_time(ny(11, 8, 16), 2 * H) == ny(11, 12, 10)


@pytest.mark.parametrize(("day", "hours"), [(ny(3, 10), 23 * H), (ny(11, 3), 25 * H), (ny(11, 4), 24 * H)])
def test_an_all_day_range_is_as_long_as_the_day_is(day: dt.datetime, hours: dt.timedelta) -> None:
    every_day = {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    calendar = calendar_from_config(Calendar(id="ops", timezone="America/New_York", working_hours=every_day))
    next_day = dt.datetime.combine(day.date() + dt.timedelta(days=1), dt.time(), tzinfo=NEW_YORK)
    assert calendar.working_time(day, next_day) == hours


def test_a_subdivision_has_its_own_holidays() -> None:
    massachusetts = calendar_from_config(
        Calendar(
            id="boston",
            timezone="America/New_York",
            working_hours=OFFICE_WEEK,
            holidays=HolidaySource(country="US", subdivision="MA"),
        )
    )
    patriots_day = (ny(4, 15), ny(4, 16))
    assert massachusetts.working_time(*patriots_day) == dt.timedelta(0)
    assert US_OFFICE.working_time(*patriots_day) == 8 * H


def test_extra_dates_override_the_library() -> None:
    calendar = calendar_from_config(
        Calendar(
            id="desk",
            timezone="Asia/Shanghai",
            working_hours={"mon": ["09:00-12:00", "13:00-18:00"], "sat": ["10:00-14:00"]},
            holidays=HolidaySource(country="CN"),
            extra_holidays=[dt.date(2024, 10, 14), dt.date(2024, 9, 29)],
            extra_working_days=[dt.date(2024, 10, 3), dt.date(2024, 10, 20), dt.date(2024, 10, 14)],
        )
    )
    day = dt.timedelta(days=1)
    worked = {d: calendar.working_time(sh(10, d), sh(10, d) + day) for d in (3, 12, 14, 19, 20, 21)}
    assert worked == {
        3: 8 * H,  # a public holiday listed as an extra working day: Monday's hours
        12: 4 * H,  # a make-up Saturday keeps Saturday's own hours
        14: dt.timedelta(0),  # in both lists: the holiday wins
        19: 4 * H,
        20: 8 * H,  # an extra working Sunday: Monday's hours
        21: 8 * H,
    }
    assert calendar.working_time(sh(9, 29), sh(9, 30)) == dt.timedelta(0)  # make-up day, made a holiday


def test_holidays_without_working_hours_mean_all_day_except_holidays() -> None:
    calendar = calendar_from_config(
        Calendar(id="cn", timezone="Asia/Shanghai", holidays=HolidaySource(country="CN"))
    )
    assert calendar.working_time(sh(10, 1), sh(10, 5)) == dt.timedelta(0)
    assert calendar.working_time(sh(10, 5), sh(10, 7)) == 48 * H  # this calendar works weekends
    assert calendar.working_time(sh(10, 7), sh(10, 9)) == 24 * H


def test_no_calendar_is_24x7_in_elapsed_time_whatever_the_zone() -> None:
    assert calendar_from_config(None) is ALWAYS_OPEN
    assert calendar_from_config(Calendar(id="utc", timezone="UTC")) == AlwaysOpen(ZoneInfo("UTC"))
    saturday = ny(3, 9, 12)
    assert ALWAYS_OPEN.add_working_time(saturday, 24 * H) == ny(3, 10, 13)  # 24 h, over the DST change
    assert ALWAYS_OPEN.working_time(saturday, ny(3, 10, 13)) == 24 * H
    assert ALWAYS_OPEN.working_time(ny(3, 10, 13), saturday) == dt.timedelta(0)


@pytest.mark.parametrize(
    ("ranges", "minutes"),
    [
        (["13:00-18:00", "09:00-12:00"], ((540, 720), (780, 1080))),
        (["09:00-12:00", "11:00-13:00", "13:00-14:00"], ((540, 840),)),
        (["00:00-24:00"], ((0, 1440),)),
        ([], ()),
    ],
)
def test_working_hours_are_sorted_and_merged(ranges: list[str], minutes: tuple[tuple[int, int], ...]) -> None:
    assert parse_hours(ranges) == minutes


@pytest.mark.parametrize("ranges", [["22:00-02:00"], ["09:00-09:00"]])
def test_an_empty_or_overnight_range_is_refused(ranges: list[str]) -> None:
    with pytest.raises(ValueError, match="end before they start"):
        parse_hours(ranges)


def test_a_calendar_without_any_working_hours_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one weekday"):
        BusinessCalendar(zone=SHANGHAI, week=((),) * 7)


@pytest.mark.parametrize("calendar", [BUSINESS_HOURS, ALWAYS_OPEN])
def test_naive_datetimes_and_negative_durations_are_refused(calendar: object) -> None:
    assert isinstance(calendar, BusinessCalendar | AlwaysOpen)
    with pytest.raises(ValueError, match="no time zone"):
        calendar.working_time(dt.datetime(2024, 10, 8, 10), sh(10, 8, 11))
    with pytest.raises(ValueError, match="negative"):
        calendar.add_working_time(sh(10, 8, 10), -M)


# --- clocks: thresholds and deadlines -------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "crossed", "phase", "breached"),
    [
        (sh(10, 8, 10, 11, 14), (), Phase.RUNNING, False),
        (sh(10, 8, 10, 11, 15), (0.75,), Phase.RUNNING, False),
        (sh(10, 8, 10, 14, 59), (0.75,), Phase.RUNNING, False),
        (sh(10, 8, 10, 15), (0.75, 1.0), Phase.RUNNING, True),
        (sh(10, 8, 14), (0.75, 1.0), Phase.RUNNING, True),
    ],
)
def test_p1_first_response_warns_at_75_percent_and_breaches_at_15_minutes(
    now: dt.datetime, crossed: tuple[float, ...], phase: Phase, breached: bool
) -> None:
    reading = clocks([Created(sh(10, 8, 10), "new", "P1")], now)["first-response"]
    assert (reading.crossed, reading.phase, reading.breached) == (crossed, phase, breached)
    assert reading.target == 15 * M
    assert reading.deadline == sh(10, 8, 10, 15)
    assert reading.deadline.tzinfo == SHANGHAI
    assert reading.remaining == 15 * M - reading.elapsed


def test_the_next_threshold_is_given_with_its_instant() -> None:
    timeline: list[TimelineEvent] = [Created(sh(10, 8, 10), "new", "P1")]
    before, after = (
        clocks(timeline, sh(10, 8, 10, 5))["first-response"],
        clocks(timeline, sh(10, 8, 10, 12))["first-response"],
    )
    assert (before.next_threshold, before.next_threshold_at) == (0.75, sh(10, 8, 10, 11, 15))
    assert (after.next_threshold, after.next_threshold_at) == (1.0, sh(10, 8, 10, 15))
    done = clocks(timeline, sh(10, 8, 10, 20))["first-response"]
    assert (done.next_threshold, done.next_threshold_at) == (None, None)


@pytest.mark.parametrize(
    ("now", "elapsed", "crossed"),
    [
        (sh(10, 19, 12), H, ()),  # Saturday
        (sh(10, 20, 23, 59), H, ()),  # Sunday night
        (sh(10, 21, 10, 59), 2 * H + 59 * M, ()),
        (sh(10, 21, 11), 3 * H, (0.75,)),
        (sh(10, 21, 12), 4 * H, (0.75, 1.0)),
    ],
)
def test_a_p3_issue_opened_friday_17h_is_not_due_over_the_weekend(
    now: dt.datetime, elapsed: dt.timedelta, crossed: tuple[float, ...]
) -> None:
    reading = clocks([Created(sh(10, 18, 17), "new", "P3")], now)["first-response"]
    assert (reading.elapsed, reading.crossed) == (elapsed, crossed)
    assert reading.deadline == sh(10, 21, 12)


def test_national_day_is_skipped_and_the_make_up_days_counted() -> None:
    before_holidays = clocks([Created(sh(9, 30, 17), "new", "P3")], sh(10, 7, 18))["first-response"]
    assert (before_holidays.elapsed, before_holidays.deadline) == (H, sh(10, 8, 12))
    before_make_up_sunday = clocks([Created(sh(9, 27, 17), "new", "P3")], sh(9, 28, 12))["first-response"]
    assert before_make_up_sunday.deadline == sh(9, 29, 12)
    resolution = clocks([Created(sh(9, 27, 17), "new", "P1")], sh(9, 29, 18))["resolution"]
    assert (resolution.elapsed, resolution.breached, resolution.deadline) == (9 * H, True, sh(9, 29, 12))


def test_a_target_without_a_calendar_runs_24x7() -> None:
    sla = Sla(
        targets=[
            SlaTarget(
                id="fr", sop="S1.4", kind="first-response", by_priority={"P1": dt.timedelta(minutes=15)}
            )
        ]
    )
    reading = read_clocks(compile_sla(sla), (Created(sh(10, 19, 3), "new", "P1"),), sh(10, 19, 3, 20))[0]
    assert (reading.breached, reading.deadline) == (True, sh(10, 19, 3, 15))
    assert reading.deadline.utcoffset() == dt.timedelta(0)


# --- clocks: what stops, pauses and restarts them --------------------------------------------


def test_waiting_for_customer_pauses_both_clocks() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 10), "new", "P2"),
        StateChanged(sh(10, 8, 10, 10), "waiting-for-customer"),
        StateChanged(sh(10, 8, 15), "in-progress"),
    ]
    paused = clocks(timeline, sh(10, 8, 14))
    for reading in paused.values():
        assert (reading.phase, reading.elapsed) == (Phase.PAUSED, 10 * M)
    assert paused["first-response"].deadline == sh(10, 8, 14, 50)  # if it resumed now
    resumed = clocks(timeline, sh(10, 8, 15, 20))["first-response"]
    assert (resumed.phase, resumed.elapsed, resumed.crossed) == (Phase.RUNNING, 30 * M, ())
    assert resumed.deadline == sh(10, 8, 15, 50)


def test_a_breach_before_a_pause_stays_a_breach_at_its_instant() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 10), "new", "P1"),
        StateChanged(sh(10, 8, 10, 30), "waiting-for-customer"),
    ]
    reading = clocks(timeline, sh(10, 9, 10))["first-response"]
    assert (reading.phase, reading.elapsed, reading.breached) == (Phase.PAUSED, 30 * M, True)
    assert reading.deadline == sh(10, 8, 10, 15)


@pytest.mark.parametrize(
    ("comment", "stops"),
    [
        (agent(sh(10, 8, 10, 30)), True),
        (agent(sh(10, 8, 10, 30), public=False), False),
        (reporter(sh(10, 8, 10, 30)), False),
        (bot(sh(10, 8, 10, 30)), False),
    ],
)
def test_only_an_agents_public_comment_is_a_first_response(comment: Commented, stops: bool) -> None:
    reading = clocks([Created(sh(10, 8, 10), "new", "P2"), comment], sh(10, 8, 11, 30))["first-response"]
    if stops:
        assert (reading.phase, reading.stopped_at, reading.elapsed, reading.met) == (
            Phase.STOPPED,
            sh(10, 8, 10, 30),
            30 * M,
            True,
        )
        assert reading.next_threshold is None
    else:
        assert (reading.phase, reading.elapsed, reading.breached) == (Phase.RUNNING, 90 * M, True)


def test_a_late_first_response_is_breached_and_stays_so() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 10), "new", "P1"),
        bot(sh(10, 8, 10)),
        agent(sh(10, 8, 10, 20)),
    ]
    reading = clocks(timeline, sh(10, 10, 9))["first-response"]
    assert (reading.phase, reading.elapsed, reading.breached, reading.met) == (
        Phase.STOPPED,
        20 * M,
        True,
        False,
    )
    assert (reading.deadline, reading.crossed) == (sh(10, 8, 10, 15), (0.75, 1.0))


def test_resolution_stops_on_acceptance_and_close_and_first_response_with_it() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 9), "new", "P2"),
        StateChanged(sh(10, 8, 11), "acceptance"),
        Closed(sh(10, 9, 9)),
    ]
    readings = clocks(timeline, sh(10, 10, 9))
    for reading in readings.values():
        assert (reading.phase, reading.stopped_at, reading.elapsed) == (Phase.STOPPED, sh(10, 8, 11), 2 * H)
    assert readings["first-response"].breached  # 1 h target: closing late is still late
    assert readings["resolution"].met


def test_the_stop_states_are_a_parameter() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 9), "new", "P2"),
        StateChanged(sh(10, 8, 11), "acceptance"),
    ]
    only_closed = compile_sla(POLICY.sla, stop_states=("closed",))
    reading = clocks(timeline, sh(10, 8, 12), only_closed)["resolution"]
    assert (reading.phase, reading.elapsed) == (Phase.RUNNING, 3 * H)


@pytest.mark.parametrize(
    "reopen",
    [
        [Closed(sh(10, 9, 10)), Reopened(sh(10, 10, 9))],
        [StateChanged(sh(10, 9, 10), "closed"), Reopened(sh(10, 10, 9))],
        [StateChanged(sh(10, 9, 10), "acceptance"), StateChanged(sh(10, 10, 9), "in-progress")],
        [
            StateChanged(sh(10, 9, 10), "closed"),
            Closed(sh(10, 9, 10)),
            Reopened(sh(10, 10, 9), "in-progress"),
        ],
    ],
)
def test_reopening_starts_a_new_resolution_cycle(reopen: list[TimelineEvent]) -> None:
    timeline: list[TimelineEvent] = [Created(sh(10, 8, 9), "new", "P2"), agent(sh(10, 8, 9, 30)), *reopen]
    readings = clocks(timeline, sh(10, 10, 11))
    resolution = readings["resolution"]
    assert (resolution.cycle, resolution.cycle_start, resolution.phase) == (2, sh(10, 10, 9), Phase.RUNNING)
    assert (resolution.elapsed, resolution.deadline) == (2 * H, sh(10, 11, 18))
    first_response = readings["first-response"]
    assert (first_response.cycle, first_response.phase, first_response.met) == (1, Phase.STOPPED, True)


def test_a_cycle_before_the_reopening_is_still_read_when_stopped() -> None:
    timeline: list[TimelineEvent] = [Created(sh(10, 8, 9), "new", "P2"), Closed(sh(10, 9, 10))]
    resolution = clocks(timeline, sh(10, 9, 12))["resolution"]
    assert (resolution.cycle, resolution.phase, resolution.elapsed, resolution.met) == (
        1,
        Phase.STOPPED,
        9 * H,
        True,
    )
    assert resolution.deadline == sh(10, 9, 18)  # where it would have been due had it run on


def test_a_change_of_priority_retargets_from_the_cycle_start() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 10), "new", "P4"),
        PriorityChanged(sh(10, 8, 10, 20), "P1"),
    ]
    before = clocks(timeline, sh(10, 8, 10, 19))["first-response"]
    assert (before.level, before.target, before.deadline, before.crossed) == ("P4", 8 * H, sh(10, 9, 10), ())
    after = clocks(timeline, sh(10, 8, 10, 20))
    assert (after["first-response"].level, after["first-response"].breached) == ("P1", True)
    assert after["first-response"].deadline == sh(10, 8, 10, 15)
    assert (after["resolution"].target, after["resolution"].deadline) == (4 * H, sh(10, 8, 15))


def test_a_stopped_clock_keeps_the_priority_it_stopped_with() -> None:
    timeline: list[TimelineEvent] = [
        Created(sh(10, 8, 10), "new", "P3"),
        agent(sh(10, 8, 10, 30)),
        PriorityChanged(sh(10, 8, 11), "P1"),
    ]
    readings = clocks(timeline, sh(10, 8, 12))
    assert (readings["first-response"].level, readings["first-response"].met) == ("P3", True)
    assert readings["resolution"].level == "P1"


@pytest.mark.parametrize("priority", [None, "P9"])
def test_without_a_known_priority_the_lowest_levels_target_applies(priority: str | None) -> None:
    reading = clocks([Created(sh(10, 8, 10), "new", priority)], sh(10, 8, 11))["first-response"]
    assert (reading.level, reading.level_assumed, reading.target) == ("P4", True, 8 * H)
    cleared = clocks(
        [Created(sh(10, 8, 10), "new", "P1"), PriorityChanged(sh(10, 8, 10, 1), None)], sh(10, 8, 11)
    )
    assert (cleared["first-response"].level, cleared["first-response"].level_assumed) == ("P4", True)


def test_events_after_now_are_ignored_and_before_the_creation_clamped() -> None:
    timeline: list[TimelineEvent] = [
        agent(sh(10, 8, 12)),
        Created(sh(10, 8, 10), "new", "P2"),
        StateChanged(sh(10, 8, 9, 59), "triage"),
    ]
    reading = clocks(timeline, sh(10, 8, 10, 30))["first-response"]
    assert (reading.phase, reading.elapsed, reading.cycle_start) == (Phase.RUNNING, 30 * M, sh(10, 8, 10))
    early = clocks(timeline, sh(10, 8, 9))["first-response"]
    assert (early.elapsed, early.deadline) == (dt.timedelta(0), sh(10, 8, 11))


def test_an_issue_created_in_a_pause_state_starts_paused() -> None:
    reading = clocks([Created(sh(10, 8, 10), "waiting-for-customer", "P2")], sh(10, 8, 12))["resolution"]
    assert (reading.phase, reading.elapsed) == (Phase.PAUSED, dt.timedelta(0))


def test_a_timeline_needs_a_creation_and_a_late_second_one_is_ignored() -> None:
    with pytest.raises(ValueError, match="needs a Created event"):
        read_clocks(RULES, (agent(sh(10, 8, 10)),), sh(10, 8, 11))
    once = read_clocks(RULES, (Created(sh(10, 8, 10)),), sh(10, 8, 11))
    twice = read_clocks(RULES, (Created(sh(10, 8, 10, 30)), Created(sh(10, 8, 10))), sh(10, 8, 11))
    assert twice == once
    with pytest.raises(ValueError, match="no time zone"):
        read_clocks(RULES, (Created(sh(10, 8, 10)),), dt.datetime(2024, 10, 8, 11))


def test_an_unknown_calendar_is_refused_when_compiling() -> None:
    target = SlaTarget(
        id="fr", sop="S1.4", kind="first-response", calendar="nowhere", by_priority={"P1": "15m"}
    )
    with pytest.raises(ValueError, match="unknown calendar 'nowhere'"):
        compile_sla(Sla(targets=[target]))

"""Business calendars: working time between two instants, and the instant a duration of it runs out.

Pure: no I/O and no clock. A calendar is a time zone, working hours per weekday, public holidays
from the `holidays` library (with its make-up working days, such as China's 调休 weekends) and the
policy's own extra dates; no calendar means 24x7.

Working time is physical elapsed time inside the working hours. Hours are wall-clock hours in the
calendar's zone, so 09:00-17:00 is eight hours on a day when the clocks change at 02:00, while a
range that spans the change (00:00-24:00) is an hour shorter or longer: the time that really
passes. Which hours a date has is decided in this order:

1. a date in `extra_holidays` has none;
2. a date in `extra_working_days`, or one the holidays library lists as a make-up working day, has
   its weekday's hours, or, when its weekday has none (a Sunday worked instead of a holiday), the
   hours of the first weekday from Monday that has any (`make_up_hours`, usually Monday's);
3. a public holiday of the library has none;
4. any other date has its weekday's hours.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo

import holidays

from config.schema import Calendar, Policy, Weekday

UTC = dt.UTC
ZERO = dt.timedelta(0)
ONE_DAY = dt.timedelta(days=1)
MINUTES_PER_DAY = 24 * 60
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

MinuteRange = tuple[int, int]
"""Working hours within one local day as minutes since midnight, `[start, end)`; `end` may be 1440."""
DayHours = tuple[MinuteRange, ...]
Interval = tuple[dt.datetime, dt.datetime]
"""One stretch of working time as two aware UTC instants, `[start, end)`."""

ALL_DAY: DayHours = ((0, MINUTES_PER_DAY),)


class WorkingDay(NamedTuple):
    """One local date's working intervals (UTC, in order, not overlapping) and their total, so that
    a walk over many days adds whole days without looking at their hours."""

    intervals: tuple[Interval, ...]
    total: dt.timedelta

    def within(self, start: dt.datetime, end: dt.datetime | None) -> bool:
        """Whether all of the day's working time lies in `[start, end)` (no `end`: open-ended)."""
        if not self.intervals:
            return True
        return start <= self.intervals[0][0] and (end is None or self.intervals[-1][1] <= end)

    def overlap(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """The day's working time in `[start, end)`."""
        total = ZERO
        for opens, closes in self.intervals:
            if closes > start and opens < end:
                total += min(closes, end) - max(opens, start)
        return total


class WorkingCalendar(Protocol):
    """What the SLA clock needs of a calendar. Every instant passed in must be time-zone aware."""

    @property
    def zone(self) -> dt.tzinfo:
        """The zone in which the calendar's hours are read, and its deadlines shown."""
        ...

    def working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        """Working time in `[start, end)`; zero when `end` is not after `start`."""
        ...

    def add_working_time(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The first instant (UTC) by which `duration` of working time has passed since `start`."""
        ...


def utc(instant: dt.datetime) -> dt.datetime:
    """The same instant in UTC; a naive datetime is refused rather than read in the host's zone.

    UTC matters beyond display: Python subtracts two datetimes that share a tzinfo by wall clock.
    """
    zone = instant.tzinfo
    if zone is UTC:
        return instant
    if zone is None or zone.utcoffset(instant) is None:
        raise ValueError(f"{instant!r} has no time zone; the clock needs aware datetimes")
    return instant.astimezone(UTC)


@dataclass(frozen=True)
class AlwaysOpen:
    """24x7: working time is elapsed time. `zone` only says where deadlines are shown."""

    zone: dt.tzinfo = UTC

    def working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        return max(utc(end) - utc(start), ZERO)

    def add_working_time(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        if duration < ZERO:
            raise ValueError(f"cannot add a negative working time ({duration})")
        return utc(start) + duration


ALWAYS_OPEN = AlwaysOpen()


@dataclass(frozen=True)
class HolidayYear:
    """One year of a country's (or subdivision's) public holidays and make-up working days."""

    holidays: frozenset[dt.date]
    make_up_working_days: frozenset[dt.date]


@lru_cache(maxsize=256)
def holiday_year(country: str, subdivision: str | None, year: int) -> HolidayYear:
    """The library's holidays of one year, computed once per (country, subdivision, year).

    `weekend_workdays` also carries make-up days that belong to other years (a late-December
    Saturday worked for the next New Year), so only this year's are kept.
    """
    known = holidays.country_holidays(country, subdiv=subdivision, years=year)
    return HolidayYear(
        holidays=frozenset(day for day in known if day.year == year),
        make_up_working_days=frozenset(day for day in known.weekend_workdays if day.year == year),
    )


@dataclass(frozen=True, eq=False)
class BusinessCalendar:
    """Working hours per weekday (Monday first) in a time zone, less holidays, plus make-up days.

    Each date's working intervals are computed once and kept on the instance, so build one
    calendar per policy and share it; a walk over days then costs a dictionary look-up per day.
    """

    zone: ZoneInfo
    week: tuple[DayHours, ...]
    holiday_source: tuple[str, str | None] | None = None
    extra_holidays: frozenset[dt.date] = frozenset()
    extra_working_days: frozenset[dt.date] = frozenset()
    _days: dict[dt.date, WorkingDay] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.week) != len(WEEKDAYS):
            raise ValueError(f"a week has seven days of working hours, not {len(self.week)}")
        if not any(self.week):
            raise ValueError("a calendar needs working hours on at least one weekday")

    @property
    def make_up_hours(self) -> DayHours:
        """The hours of a make-up working day whose weekday has none: the first weekday's that has some."""
        return next(hours for hours in self.week if hours)

    def hours_on(self, day: dt.date) -> DayHours:
        """The working hours of one local date (see the module's docstring for the order of rules)."""
        if day in self.extra_holidays:
            return ()
        public = self._holiday_year(day.year)
        if day in self.extra_working_days or (public and day in public.make_up_working_days):
            return self.week[day.weekday()] or self.make_up_hours
        if public and day in public.holidays:
            return ()
        return self.week[day.weekday()]

    def working_day(self, day: dt.date) -> WorkingDay:
        """One local date's working intervals as UTC instants, computed once."""
        worked = self._days.get(day)
        if worked is None:
            intervals = _utc_intervals(day, self.hours_on(day), self.zone)
            worked = self._days[day] = WorkingDay(intervals, sum((b - a for a, b in intervals), ZERO))
        return worked

    def working_time(self, start: dt.datetime, end: dt.datetime) -> dt.timedelta:
        start, end = utc(start), utc(end)
        total = ZERO
        if end <= start:
            return total
        day, last_day = self._local_date(start), self._local_date(end)
        while day <= last_day:
            worked = self.working_day(day)
            if worked.within(start, end):
                total += worked.total
            else:
                total += worked.overlap(start, end)
            day += ONE_DAY
        return total

    def add_working_time(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The deadline: a duration that ends exactly with a working interval ends at its close
        (12:00 before a lunch break), not at the next opening. Zero gives `start` itself."""
        if duration < ZERO:
            raise ValueError(f"cannot add a negative working time ({duration})")
        start = utc(start)
        if duration == ZERO:
            return start
        left = duration
        day = self._local_date(start)
        while True:
            worked = self.working_day(day)
            if worked.total < left and worked.within(start, None):
                left -= worked.total
            else:
                for opens, closes in worked.intervals:
                    if closes <= start:
                        continue
                    begin = max(opens, start)
                    available = closes - begin
                    if left <= available:
                        return begin + left
                    left -= available
            day += ONE_DAY

    def _local_date(self, instant: dt.datetime) -> dt.date:
        return instant.astimezone(self.zone).date()

    def _holiday_year(self, year: int) -> HolidayYear | None:
        if self.holiday_source is None:
            return None
        country, subdivision = self.holiday_source
        return holiday_year(country, subdivision, year)


def _wall_instant(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime:
    """A local wall-clock time as a UTC instant; minute 1440 is the next day's midnight.

    A time that does not exist (skipped by a DST change) is read with the offset in force before
    the change, as zoneinfo does with `fold=0`.
    """
    if minute == MINUTES_PER_DAY:
        day, minute = day + ONE_DAY, 0
    hour, minute = divmod(minute, 60)
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def _utc_intervals(day: dt.date, hours: DayHours, zone: ZoneInfo) -> tuple[Interval, ...]:
    """A day's hours as UTC intervals; a range shifted into the next by a DST gap is trimmed."""
    intervals: list[Interval] = []
    for start_minute, end_minute in hours:
        opens = _wall_instant(day, start_minute, zone)
        closes = _wall_instant(day, end_minute, zone)
        if intervals and opens < intervals[-1][1]:
            opens = intervals[-1][1]
        if closes > opens:
            intervals.append((opens, closes))
    return tuple(intervals)


def parse_hours(ranges: Iterable[str]) -> DayHours:
    """`["09:00-12:00", "13:00-18:00"]` as minute ranges, sorted, touching or overlapping ones merged.

    A range that ends before it starts (an overnight shift) is refused: write it as two days.
    """
    parsed: list[MinuteRange] = []
    for text in ranges:
        start_text, end_text = text.split("-")
        start, end = _minutes(start_text), _minutes(end_text)
        if end <= start:
            raise ValueError(f"working hours {text!r} end before they start; split an overnight range")
        parsed.append((start, end))
    merged: list[MinuteRange] = []
    for start, end in sorted(parsed):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return tuple(merged)


def _minutes(text: str) -> int:
    hour, minute = text.strip().split(":")
    return int(hour) * 60 + int(minute)


def week_hours(working_hours: Mapping[Weekday, Sequence[str]]) -> tuple[DayHours, ...]:
    """Monday-to-Sunday hours from the policy's `working_hours`; empty means all day, every day."""
    if not working_hours:
        return (ALL_DAY,) * len(WEEKDAYS)
    return tuple(parse_hours(working_hours.get(day, ())) for day in WEEKDAYS)


def calendar_from_config(calendar: Calendar | None) -> WorkingCalendar:
    """The calendar a policy describes. No calendar, or one with neither hours nor holidays, is 24x7.

    A calendar with holidays but no working hours is open all day on every day that is not a
    holiday.
    """
    if calendar is None:
        return ALWAYS_OPEN
    zone = ZoneInfo(calendar.timezone)
    if not calendar.working_hours and calendar.holidays is None and not calendar.extra_holidays:
        return AlwaysOpen(zone)
    source = calendar.holidays
    return BusinessCalendar(
        zone=zone,
        week=week_hours(calendar.working_hours),
        holiday_source=(source.country, source.subdivision) if source else None,
        extra_holidays=frozenset(calendar.extra_holidays),
        extra_working_days=frozenset(calendar.extra_working_days),
    )


MAKE_UP_LOOKBACK = 15
"""Years looked back for a country's make-up working days: a country that had some lately (China
publishes each year's schedule in the November before) should have them for this year too."""


def holiday_warnings(policy: Policy, today: dt.date) -> list[str]:
    """What the holidays library does not know for the years a calendar will be used in (this year
    and next), so that nobody learns it from a wrong deadline: a country with no holidays at all
    for a year, or one whose make-up working days (China's 调休) are listed for an earlier year but
    not for this one. Dates the policy lists itself (`extra_holidays`, `extra_working_days`) for
    that year count as the year's data. Empty when everything is known."""
    warnings: list[str] = []
    sections = [("sla", policy.sla)] + [
        (f"scopes[{index}].sla", scope.sla) for index, scope in enumerate(policy.scopes) if scope.sla
    ]
    for where, sla in sections:
        for index, calendar in enumerate(sla.calendars):
            for year in (today.year, today.year + 1):
                gap = _holiday_gap(calendar, year)
                if gap:
                    warnings.append(f"{where}.calendars[{index}] ({calendar.id}): {gap}")
    return warnings


def _holiday_gap(calendar: Calendar, year: int) -> str:
    source = calendar.holidays
    if source is None:
        return ""
    name = source.country + (f"-{source.subdivision}" if source.subdivision else "")
    version = f"holidays {getattr(holidays, '__version__', '')}".strip()
    known = holiday_year(source.country, source.subdivision, year)
    if not known.holidays and not any(day.year == year for day in calendar.extra_holidays):
        return (
            f"{version} has no public holidays for {name} in {year}; upgrade the holidays package, "
            "or list the year's holidays in extra_holidays"
        )
    earlier = next(
        (
            y
            for y in range(year - 1, year - 1 - MAKE_UP_LOOKBACK, -1)
            if holiday_year(source.country, source.subdivision, y).make_up_working_days
        ),
        None,
    )
    listed = any(day.year == year for day in calendar.extra_working_days)
    if earlier is not None and not known.make_up_working_days and not listed:
        return (
            f"{version} has no make-up working days for {name} in {year} (it has them for {earlier}), "
            "so deadlines would treat that year's working weekends as days off; upgrade the holidays "
            "package once the year's schedule is published, or list them in extra_working_days"
        )
    return ""

"""Calendars at go-live (issue 9): working hours that no clock can use are refused by `validate` with
a message a person understands, at PATH:LINE:COLUMN; the holidays data is checked for the years a
calendar will be used in (`validate` and `/readyz` warn); the holidays package has this year's
Chinese schedule, make-up working days included.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import holidays
import pytest
from click.testing import CliRunner
from flask import Flask

import cli
from config.loader import PolicyError, load_policy, parse_policy
from config.schema import Calendar, HolidaySource
from policies.calendar import calendar_from_config, holiday_warnings
from runtime.services import utc_now
from tests.conftest import services_of

SOP_PATH = Path(cli.__file__).parent / "config" / "sop.yaml"
SOP_TEXT = SOP_PATH.read_text(encoding="utf-8")
MONDAY = 'mon: ["09:00-12:00", "13:00-18:00"]'
POLICY = load_policy()


def _with_monday(hours: str) -> str:
    assert MONDAY in SOP_TEXT
    return SOP_TEXT.replace(MONDAY, f"mon: {hours}", 1)


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        (
            "13:00-24:30",
            "'13:00-24:30': 24:30 is not a time of day (hours 00-23 and minutes 00-59; 24:00 may end a range at midnight)",
        ),
        (
            "18:00-09:00",
            "'18:00-09:00' ends before it starts; an overnight shift is two ranges, one on each day "
            "(such as 18:00-24:00 and 00:00-09:00)",
        ),
        ("9-18", "'9-18' is not a range of working hours; write it as HH:MM-HH:MM, such as 09:00-18:00"),
        ("12:60-13:00", "'12:60-13:00': 12:60 is not a time of day"),
        ("10:00-10:00", "'10:00-10:00' ends before it starts"),
    ],
)
def test_working_hours_no_clock_can_use_are_refused_where_they_are_written(hours: str, message: str) -> None:
    text = _with_monday(f'["09:00-12:00", "{hours}"]')
    with pytest.raises(PolicyError) as raised:
        parse_policy(text, "p.yaml")
    (problem,) = raised.value.problems
    line = _line_of(text, f'"{hours}"')
    assert (problem.path, problem.line, problem.column) == (
        "p.yaml",
        line,
        text.splitlines()[line - 1].index(f'"{hours}"') + 1,
    )
    assert str(problem).startswith(
        f"p.yaml:{line}:{problem.column}: sla.calendars[0].working_hours.mon[1]: {message}"
    )


def test_a_range_to_midnight_is_accepted_and_every_clock_can_use_it() -> None:
    policy = parse_policy(_with_monday('["13:00-24:00"]'))
    calendar = calendar_from_config(policy.sla.calendars[0])
    monday = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)  # 13:00 in Shanghai
    assert calendar.add_working_time(monday, dt.timedelta(hours=11)) == dt.datetime(
        2026, 11, 23, 16, 0, tzinfo=dt.UTC
    )


def test_working_hours_with_no_hours_on_any_day_are_refused() -> None:
    with pytest.raises(
        ValueError, match="working_hours gives no hours on any day; leave it out for a 24x7 calendar"
    ):
        Calendar(id="none", timezone="UTC", working_hours={"mon": []})


# --- the holidays data ------------------------------------------------------------------------


def test_the_holidays_package_has_the_2026_chinese_schedule_with_its_make_up_days() -> None:
    """The State Council's 2026 schedule, published in November 2025: the weekend days worked instead."""
    china = holidays.country_holidays("CN", years=2026)
    assert sorted(d for d in china.weekend_workdays if d.year == 2026) == [
        dt.date(2026, 1, 4),
        dt.date(2026, 2, 14),
        dt.date(2026, 2, 28),
        dt.date(2026, 5, 9),
        dt.date(2026, 9, 20),
        dt.date(2026, 10, 10),
    ]
    assert dt.date(2026, 2, 16) in china and dt.date(2026, 10, 7) in china


def test_a_year_without_china_s_make_up_days_is_warned_about() -> None:
    """2039 is far beyond any schedule published; the library still computes its fixed holidays."""
    warnings = holiday_warnings(POLICY, dt.date(2039, 6, 1))
    assert len(warnings) == 2
    assert warnings[0].startswith(
        f"sla.calendars[0] (business-hours): holidays {getattr(holidays, '__version__', '')} has no make-up working days for CN in 2039 (it has them for "
    )
    assert "list them in extra_working_days" in warnings[0] and "in 2040" in warnings[1]


def test_a_year_whose_make_up_days_the_policy_lists_itself_is_not_warned_about() -> None:
    calendar = POLICY.sla.calendars[0].model_copy(
        update={"extra_working_days": [dt.date(2039, 9, 25), dt.date(2040, 2, 4)]}
    )
    policy = POLICY.model_copy(update={"sla": POLICY.sla.model_copy(update={"calendars": [calendar]})})
    assert holiday_warnings(policy, dt.date(2039, 6, 1)) == []


def test_a_country_without_make_up_days_and_a_known_year_need_no_warning() -> None:
    assert holiday_warnings(POLICY, dt.date(2025, 12, 1)) == []  # 2025 and 2026: both published
    calendar = POLICY.sla.calendars[0].model_copy(update={"holidays": HolidaySource(country="US")})
    policy = POLICY.model_copy(update={"sla": POLICY.sla.model_copy(update={"calendars": [calendar]})})
    assert holiday_warnings(policy, dt.date(2039, 6, 1)) == []


def test_validate_prints_the_warnings_for_this_year_and_next() -> None:
    result = CliRunner().invoke(cli.main, ["validate", str(SOP_PATH)])
    assert result.exit_code == 0
    expected = [f"{SOP_PATH}: warning: {w}" for w in holiday_warnings(POLICY, utc_now().date())]
    assert [line for line in result.stderr.splitlines() if ": warning: " in line] == expected


def test_readyz_lists_the_warnings_and_stays_ok(app: Flask) -> None:
    services_of(app)  # the app as `sopguard serve` builds it, with its services
    body = app.test_client().get("/readyz").get_json()
    expected = holiday_warnings(services_of(app).policy, utc_now().date())
    assert body["status"] == "ok"
    assert body.get("warnings", []) == expected

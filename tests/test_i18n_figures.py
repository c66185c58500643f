"""Figures in comments are exact: a threshold is not rounded to its neighbour, and time left under
a minute is not "0 minutes"."""

from __future__ import annotations

import datetime as dt

import pytest

from config import i18n
from config.schema import Locale


@pytest.mark.parametrize(
    ("fraction", "locale", "shown"),
    [(0.75, "en", "75%"), (0.875, "en", "87.5%"), (0.995, "zh-CN", "99.5%"), (1.0, "zh-CN", "100%")],
)
def test_a_threshold_is_shown_as_configured(fraction: float, locale: Locale, shown: str) -> None:
    assert i18n.percent(fraction, locale) == shown


@pytest.mark.parametrize(("locale", "shown"), [("en", "less than a minute"), ("zh-CN", "不到1分钟")])
def test_time_left_under_a_minute_is_not_zero_minutes(locale: Locale, shown: str) -> None:
    assert i18n.duration(dt.timedelta(seconds=20), locale) == shown
    assert i18n.duration(dt.timedelta(minutes=1, seconds=59), locale) != shown  # a minute and more: minutes

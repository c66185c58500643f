"""The policy's locale for everything sopguard writes itself: durations, instants and numbers
through Babel (CLDR's formats for each locale), and every sentence of code (audit reasons, CLI
output) through one gettext catalogue.

The catalogue's message ids are the English sentences, so `en` needs no catalogue; the Chinese
one is `config/locales/zh_CN/LC_MESSAGES/sopguard.po`, read when first used (no compiled `.mo` is
kept beside it to drift from it). A message's values are named, `%(name)s`, as gettext's
python-format has them, so a translation may put them in another order.

Comment templates are the policy's own text (`config.templates`), not this catalogue's: an admin
edits those; these are the program's.
"""

from __future__ import annotations

import datetime as dt
import gettext as gettext_module
import io
from collections.abc import Sequence
from functools import cache
from importlib import resources

from babel import Locale as BabelLocale
from babel.dates import format_date, format_datetime, format_time, get_datetime_format, get_timezone_name
from babel.lists import format_list
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, format_percent
from babel.support import Translations
from babel.units import format_unit

from config.schema import Locale

DOMAIN = "sopguard"
CATALOGUES = {"zh-CN": "zh_CN"}
"""The locales with a catalogue, and its folder under `config/locales`."""


@cache
def babel_locale(locale: Locale) -> BabelLocale:
    """CLDR's data for a policy locale (`zh-CN` is Simplified Chinese as written in China)."""
    return BabelLocale.parse(locale, sep="-")


@cache
def translations(locale: Locale) -> gettext_module.NullTranslations:
    """The catalogue of `locale`: the `.po` file made into gettext's translations once."""
    folder = CATALOGUES.get(locale)
    if folder is None:
        return gettext_module.NullTranslations()
    source = resources.files("config").joinpath("locales", folder, "LC_MESSAGES", f"{DOMAIN}.po")
    with source.open("rb") as po:
        catalogue = read_po(po, locale=folder, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalogue)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def marked(message: str) -> str:
    """A sentence said later through `say` (gettext's `N_`): kept as it is, found by the catalogue's
    extraction."""
    return message


def say(locale: Locale, message: str, /, **values: object) -> str:
    """`message` (its English text, the catalogue's id) in `locale`, with `%(name)s` filled in."""
    text = translations(locale).gettext(message)
    return text % values if values else text


def say_plural(locale: Locale, singular: str, plural: str, count: int, /, **values: object) -> str:
    """The form of a message that fits `count`; `%(count)s` is the count, as a number of `locale`."""
    text = translations(locale).ngettext(singular, plural, count)
    return text % {"count": number(count, locale), **values}


def listing(items: Sequence[str], locale: Locale) -> str:
    """Items as one list the way the locale joins them: `A, B, and C`, `A、B和C`."""
    return format_list(items, style="standard", locale=babel_locale(locale))


def number(value: float, locale: Locale) -> str:
    return format_decimal(value, locale=babel_locale(locale))


def percent(fraction: float, locale: Locale) -> str:
    """`0.75` as `75%`, `0.875` as `87.5%` (a warning threshold is never shown rounded to a
    neighbour), written as the locale writes percentages."""
    return format_percent(fraction, "#,##0.#%", locale=babel_locale(locale))


def duration(span: dt.timedelta, locale: Locale) -> str:
    """Working time to the minute (rounded down), in hours and minutes: `50 hours, 44 minutes`,
    `50小时44分钟`. Never in days or rounded to the largest unit as `format_timedelta` would: a
    working day is not 24 hours, and an SLA notice must say exactly how much time is left."""
    minutes = int(abs(span).total_seconds() // 60)
    if minutes == 0 and span:
        return say(locale, "less than a minute")
    hours, minutes = divmod(minutes, 60)
    where = babel_locale(locale)
    parts = [format_unit(hours, "duration-hour", length="long", locale=where)] if hours else []
    if minutes or not hours:
        parts.append(format_unit(minutes, "duration-minute", length="long", locale=where))
    return format_list(parts, style="unit", locale=where)


def day(date: dt.date, locale: Locale) -> str:
    """A date as the locale writes it: `Dec 20, 2026`, `2026年12月20日`."""
    return format_date(date, "medium", locale=babel_locale(locale))


def instant(moment: dt.datetime, locale: Locale) -> str:
    """A date and time in its own zone, as the locale writes them, with the zone named so nobody
    converts it wrongly: `Nov 24, 2026, 10:15 AM (China Time)`, `2026年11月24日 10:15（中国时间）`."""
    where = babel_locale(locale)
    zone = moment.tzinfo or dt.UTC
    day = format_date(moment, "medium", locale=where)
    time = format_time(moment, "short", tzinfo=zone, locale=where)
    both = str(get_datetime_format("medium", locale=where)).replace("{1}", day).replace("{0}", time)
    return say(locale, "%(instant)s (%(zone)s)", instant=both, zone=zone_name(moment, locale))


def zone_name(moment: dt.datetime, locale: Locale) -> str:
    """The zone of `moment` by its locale's name (`China Time`, `中国时间`); UTC and fixed
    offsets, which CLDR names only as an unknown region, by their offset (`UTC`, `UTC+08:00`)."""
    zone, offset = moment.tzinfo, moment.utcoffset()
    if getattr(zone, "key", "UTC") not in ("UTC", "Etc/UTC"):
        return get_timezone_name(zone, "long", locale=babel_locale(locale), zone_variant="generic")
    if not offset:
        return "UTC"
    return "UTC" + format_datetime(moment, "xxx", tzinfo=zone, locale=babel_locale(locale))

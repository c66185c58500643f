"""Reading sections out of issue text: GitHub issue forms (`### Heading`) and Jira wiki (`h3. Heading`)."""

from __future__ import annotations

import datetime as dt
import re

NO_RESPONSE = "_No response_"
# The times a tracker can write; the latest leaves a year for the arithmetic of deadlines.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)

# The title is the rest of the line, its trailing blanks and #s stripped in Python: a lazy `.*?`
# before `[ \t#]*$` made a heading line followed by a long run of spaces quadratic (a 40,000-space
# issue body took 24 s, a megabyte hours).
_HEADING = re.compile(r"^(?:#{1,6}[ \t]*|h[1-6]\.[ \t]+)(?P<title>\S[^\n]*)$", re.MULTILINE)


def sections(text: str) -> dict[str, str]:
    """Map each heading to the text under it, trimmed; GitHub's `_No response_` becomes empty.

    Headings compare case-insensitively elsewhere, so keys keep the author's spelling and
    `find_section` does the matching.
    """
    found: dict[str, str] = {}
    normalized = text.replace("\r\n", "\n")
    matches = list(_HEADING.finditer(normalized))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(normalized)
        content = normalized[match.end() : end].strip()
        found.setdefault(_title(match.group("title")), "" if content == NO_RESPONSE else content)
    return found


def _title(line: str) -> str:
    """A heading's title: its first character, then the rest without trailing blanks and #s."""
    return (line[0] + line[1:].rstrip(" \t#")).strip()


def parse_time(value: object) -> dt.datetime | None:
    """An aware time from a tracker's timestamp, or None when `value` names no plausible time.

    Reads ISO 8601 as trackers write it (`Z`, `+0800`) and epoch milliseconds. A time written
    without an offset (Jira Server's `2026-11-24T10:00:00.000`) is read as UTC, so the result can
    always be compared with other times. Times before the epoch or in the year 9999, and
    anything that is not text or a number (a bool included) are None.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            at = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
        elif isinstance(value, str) and value:
            at = dt.datetime.fromisoformat(value)
        else:
            return None
    except (ValueError, OverflowError, OSError):  # unreadable text, NaN, or out of datetime's range
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    return at if _EPOCH <= at < _LATEST else None


def find_section(text: str, headings: list[str]) -> str:
    """The content of the first section whose heading is one of `headings` (any case), or ''."""
    wanted = {heading.casefold() for heading in headings}
    for title, content in sections(text).items():
        if title.casefold() in wanted and content:
            return content
    return ""

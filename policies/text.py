"""Reading sections out of issue text: GitHub issue forms (`### Heading`) and Jira wiki (`h3. Heading`)."""

from __future__ import annotations

import datetime as dt
import re

NO_RESPONSE = "_No response_"

_HEADING = re.compile(r"^(?:#{1,6}[ \t]*|h[1-6]\.[ \t]+)(?P<title>\S.*?)[ \t#]*$", re.MULTILINE)


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
        found.setdefault(match.group("title").strip(), "" if content == NO_RESPONSE else content)
    return found


def parse_time(value: object) -> dt.datetime | None:
    """An ISO 8601 timestamp as trackers write it (`Z`, `+0800`), or epoch milliseconds; else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    if isinstance(value, str) and value:
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def find_section(text: str, headings: list[str]) -> str:
    """The content of the first section whose heading is one of `headings` (any case), or ''."""
    wanted = {heading.casefold() for heading in headings}
    for title, content in sections(text).items():
        if title.casefold() in wanted and content:
            return content
    return ""

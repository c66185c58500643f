"""Reading sections out of issue text, each markup with its own reader.

GitHub text is Markdown, read with markdown-it-py (CommonMark, with GitHub's tables): ATX
(`### Plan`) and setext (`Plan` over `====`) headings at the top level of the text; a `#` line in
a code block, a quote or a list item is not a section heading. Jira text is wiki markup, where
only `h1.`-`h6.` lines are headings (a `#` line is a numbered list item there), outside `{code}`
and `{noformat}` blocks.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from policies.models import Source

NO_RESPONSE = "_No response_"
# The times a tracker can write; the latest leaves a year for the arithmetic of deadlines.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LATEST = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)

# The title is the rest of the line, its trailing blanks stripped in Python: a lazy `.*?` before
# `[ \t]*$` made a heading line followed by a long run of spaces quadratic.
_WIKI_HEADING = re.compile(r"^[ \t]*h[1-6]\.[ \t]+(?P<title>\S[^\n]*)$")
_WIKI_PREFORMATTED = re.compile(r"\{(?:code|noformat)(?::[^}]*)?\}")
_WIKI_QUOTE = re.compile(r"\{quote\}")
# Blocks whose lines are not the author's own words as written: code, quotes, raw HTML.
_QUOTED_OR_CODE = frozenset({"fence", "code_block", "html_block", "blockquote_open"})

# A heading: its title, the line it starts on and the line after it (0-based, as markdown-it counts).
_Heading = tuple[str, int, int]


@cache
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _inline_text(token: Token) -> str:
    """A heading's words without their Markdown (`**Plan**` is `Plan`)."""
    words = {"text", "code_inline", "softbreak"}
    return "".join(
        " " if child.type == "softbreak" else child.content
        for child in token.children or ()
        if child.type in words
    )


def _markdown_headings(lines: list[str]) -> Iterator[_Heading]:
    tokens = _markdown().parse("\n".join(lines))
    for index, token in enumerate(tokens):
        if token.type == "heading_open" and token.level == 0 and token.map:
            yield _inline_text(tokens[index + 1]), token.map[0], token.map[1]


def _wiki_headings(lines: list[str]) -> Iterator[_Heading]:
    preformatted = False
    for number, line in enumerate(lines):
        if not preformatted and (heading := _WIKI_HEADING.match(line)):
            yield heading["title"].rstrip(" \t"), number, number + 1
        # Each `{code}` / `{noformat}` tag opens or closes a block that is shown as written.
        preformatted ^= len(_WIKI_PREFORMATTED.findall(line)) % 2 == 1


def own_lines(text: str, markup: Source) -> list[str]:
    """The lines of `text` outside code blocks and quotes: what its author says, not shows or
    quotes (a Markdown fence, indented code or `>` quote; Jira's `{code}`, `{noformat}`, `{quote}`)."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if markup == "github":
        hidden: set[int] = set()
        for token in _markdown().parse("\n".join(lines)):
            if token.type in _QUOTED_OR_CODE and token.map:
                hidden.update(range(*token.map))
        return [line for number, line in enumerate(lines) if number not in hidden]
    shown, preformatted, quoted = [], False, False
    for line in lines:
        if not preformatted and not quoted:
            shown.append(line)
        preformatted ^= len(_WIKI_PREFORMATTED.findall(line)) % 2 == 1
        if not preformatted:
            quoted ^= len(_WIKI_QUOTE.findall(line)) % 2 == 1
    return shown


def sections(text: str, markup: Source) -> dict[str, str]:
    """Map each heading to the text under it, trimmed; GitHub's `_No response_` becomes empty.

    `markup` is the tracker the text comes from: GitHub Markdown or Jira wiki markup. Headings
    compare case-insensitively elsewhere, so keys keep the author's spelling and `find_section`
    does the matching.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    headings = list(_markdown_headings(lines) if markup == "github" else _wiki_headings(lines))
    found: dict[str, str] = {}
    for index, (title, _, after) in enumerate(headings):
        end = headings[index + 1][1] if index + 1 < len(headings) else len(lines)
        content = "\n".join(lines[after:end]).strip()
        empty = markup == "github" and content == NO_RESPONSE
        found.setdefault(title.strip(), "" if empty else content)
    return found


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


def find_section(text: str, headings: Iterable[str], markup: Source) -> str:
    """The content of the first section whose heading is one of `headings` (any case), or ''."""
    wanted = {heading.casefold() for heading in headings}
    for title, content in sections(text, markup).items():
        if title.casefold() in wanted and content:
            return content
    return ""

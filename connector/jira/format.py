"""The engine's Markdown comments as Jira renders them: ADF for Cloud (REST v3), wiki markup for Data Center.

The templates write a small Markdown: paragraphs separated by blank lines (a single newline is a
line break, as on GitHub), `**bold**`, `` `code` ``, `- ` bullets, `1. ` numbered items, `#`
headings and `---` rules. Both renderers parse it into the same blocks, so a comment reads the
same on both deployments. `mentions` maps a login written as `@login` to the account to notify:
an ADF mention node on Cloud (account id), `[~name]` on Data Center.

Tracker text reaches the Markdown escaped by `config.templates.escape`: a backslash before a
punctuation character, `&lt;` `&gt;` `&amp;`, a word joiner after an `@`. They are read back here, so ADF text nodes and
wiki text carry the characters as written (wiki text is then escaped for wiki markup, where a
line of text never starts a heading, list or quote); an escaped or joined `@` is never a mention.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from config.templates import ENTITIES, ESCAPABLE, MENTION_BREAK

Adf = dict[str, Any]
BlockKind = Literal["paragraph", "bullets", "numbered", "heading", "rule"]

_HEADING = re.compile(r"^(?P<hashes>#{1,6})[ \t]+(?P<text>.*?)[ \t#]*$")
_RULE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^[-*+][ \t]+(?P<text>.*)$")
_NUMBERED = re.compile(r"^\d{1,9}[.)][ \t]+(?P<text>.*)$")
_CONTINUATION = re.compile(r"^[ \t]{2,}(?P<text>\S.*)$")
# An escaped character is text, so it is matched first and never opens or closes a mark.
_INLINE = re.compile(
    rf"\\{ESCAPABLE}"
    rf"|\*\*(?P<strong>(?:\\{ESCAPABLE}|\\(?!{ESCAPABLE})|[^\\])+?)\*\*"
    r"|`(?P<code>[^`\n]+)`"
)
_CHARACTERS = {entity: character for character, entity in ENTITIES.items()}
_TEXT_ESCAPE = re.compile(
    rf"\\(?P<escaped>{ESCAPABLE})|@{MENTION_BREAK}|(?P<entity>{'|'.join(map(re.escape, _CHARACTERS))})"
)


@dataclass
class Block:
    """One block of the comment; `lines` are a paragraph's lines or a list's items (each a list of lines)."""

    kind: BlockKind
    lines: list[list[str]] = field(default_factory=list)
    level: int = 0


def blocks(markdown: str) -> list[Block]:
    """Split Markdown into blocks; a list item's indented or lazy continuation lines stay in the item."""
    result: list[Block] = []
    current: Block | None = None
    for raw in markdown.replace("\r\n", "\n").split("\n"):
        line = raw.rstrip()
        if not line.strip():
            current = None
            continue
        if heading := _HEADING.match(line):
            result.append(Block("heading", [[heading["text"]]], len(heading["hashes"])))
            current = None
        elif _RULE.match(line):
            result.append(Block("rule"))
            current = None
        elif item := _BULLET.match(line) or _NUMBERED.match(line):
            kind: BlockKind = "bullets" if _BULLET.match(line) else "numbered"
            if current is None or current.kind != kind:
                current = Block(kind)
                result.append(current)
            current.lines.append([item["text"]])
        elif current is not None and current.kind in ("bullets", "numbered"):
            continued = _CONTINUATION.match(line)
            current.lines[-1].append(continued["text"] if continued else line.strip())
        else:
            if current is None or current.kind != "paragraph":
                current = Block("paragraph", [[]])
                result.append(current)
            current.lines[0].append(line.strip())
    return result


@dataclass(frozen=True)
class Span:
    """A run of inline text: plain, strong or code; `strong` spans may hold code."""

    kind: Literal["text", "strong", "code"]
    text: str


def spans(line: str) -> Iterator[Span]:
    """The line's runs; a text run is still Markdown (its escapes are read by `literal`)."""
    position = 0
    for match in _INLINE.finditer(line):
        if match["strong"] is None and match["code"] is None:
            continue  # an escaped character stays in the text run around it
        if match.start() > position:
            yield Span("text", line[position : match.start()])
        if match["strong"] is not None:
            yield Span("strong", match["strong"])
        else:
            yield Span("code", match["code"])
        position = match.end()
    if position < len(line):
        yield Span("text", line[position:])


def literal(text: str) -> tuple[str, frozenset[int]]:
    """A text run's characters as written (escapes and entities read, mention breaks dropped), and where in
    them an `@` stands that was escaped or broken: one that is not ours to mention with."""
    parts: list[str] = []
    inert: set[int] = set()
    position = length = 0
    for match in _TEXT_ESCAPE.finditer(text):
        parts.append(text[position : match.start()])
        length += match.start() - position
        character = match["escaped"] or _CHARACTERS.get(match["entity"] or "", "@")
        if character == "@":
            inert.add(length)
        parts.append(character)
        length += 1
        position = match.end()
    parts.append(text[position:])
    return "".join(parts), frozenset(inert)


def _split_mentions(text: str, mentions: Mapping[str, str]) -> Iterator[tuple[str, str | None]]:
    """`(text, None)` runs of plain text and `(login, account)` mentions, longest login first."""
    text, inert = literal(text)
    if not mentions:
        yield text, None
        return
    pattern = re.compile(
        "|".join(f"@{re.escape(login)}(?![\\w.-])" for login in sorted(mentions, key=len, reverse=True))
    )
    position = 0
    for match in pattern.finditer(text):
        if match.start() in inert:
            continue
        if match.start() > position:
            yield text[position : match.start()], None
        login = match.group()[1:]
        yield login, mentions[login]
        position = match.end()
    if position < len(text):
        yield text[position:], None


# --- Atlassian Document Format (Cloud, REST v3) ---------------------------------------------


def _adf_text(text: str, marks: list[str]) -> list[Adf]:
    if not text:
        return []
    node: Adf = {"type": "text", "text": text}
    if marks:
        node["marks"] = [{"type": mark} for mark in marks]
    return [node]


def _adf_plain(text: str, marks: list[str], mentions: Mapping[str, str]) -> list[Adf]:
    nodes: list[Adf] = []
    for run, account in _split_mentions(text, mentions):
        if account is None:
            nodes.extend(_adf_text(run, marks))
        else:
            nodes.append({"type": "mention", "attrs": {"id": account, "text": f"@{run}"}})
    return nodes


def _adf_line(line: str, mentions: Mapping[str, str]) -> list[Adf]:
    nodes: list[Adf] = []
    for span in spans(line):
        if span.kind == "code":
            nodes.extend(_adf_text(span.text, ["code"]))
        elif span.kind == "strong":
            # ADF allows the code mark only alone, so code inside bold stays code.
            for inner in spans(span.text):
                if inner.kind == "code":
                    nodes.extend(_adf_text(inner.text, ["code"]))
                else:
                    nodes.extend(_adf_plain(inner.text, ["strong"], mentions))
        else:
            nodes.extend(_adf_plain(span.text, [], mentions))
    return nodes


def _adf_lines(lines: list[str], mentions: Mapping[str, str]) -> list[Adf]:
    nodes: list[Adf] = []
    for number, line in enumerate(lines):
        if number:
            nodes.append({"type": "hardBreak"})
        nodes.extend(_adf_line(line, mentions))
    return nodes


def _adf_paragraph(lines: list[str], mentions: Mapping[str, str]) -> Adf:
    content = _adf_lines(lines, mentions)
    return {"type": "paragraph", "content": content} if content else {"type": "paragraph"}


def _adf_block(block: Block, mentions: Mapping[str, str]) -> Adf:
    if block.kind == "heading":
        return {
            "type": "heading",
            "attrs": {"level": block.level},
            "content": _adf_lines(block.lines[0], mentions),
        }
    if block.kind == "rule":
        return {"type": "rule"}
    if block.kind == "paragraph":
        return _adf_paragraph(block.lines[0], mentions)
    items = [{"type": "listItem", "content": [_adf_paragraph(item, mentions)]} for item in block.lines]
    return {"type": "bulletList" if block.kind == "bullets" else "orderedList", "content": items}


def to_adf(markdown: str, mentions: Mapping[str, str] | None = None) -> Adf:
    """An ADF document (`{"type": "doc", "version": 1, ...}`) for a comment body."""
    content = [_adf_block(block, mentions or {}) for block in blocks(markdown)]
    return {"type": "doc", "version": 1, "content": content or [{"type": "paragraph"}]}


# --- wiki markup (Data Center, REST v2) ------------------------------------------------------

# Characters that open an effect (`*bold*`, `_em_`, `-strike-`, `+under+`, `^sup^`, `~sub~`, `??cite??`,
# `!image!`) when they start a word (after no letter or digit, another mark included: `**x*`);
# escaping the opener is enough to keep the text literal.
_WIKI_OPENER = re.compile(r"(?:^|(?<=\W))([*_\-+^~!]|\?\?)(?=\S)")
_WIKI_ALWAYS = re.compile(r"([{\[|])")
_WIKI_EMOTICON = re.compile(r"(\((?:y|n|i|/|x|!|\+|-|\?|on|off|\*[rgby]?|flag|flagoff)\)|[:;][()PD](?!\w))")
_WORD = re.compile(r"\w")
# Text at the start of a wiki line that would make it a numbered or bulleted item, a heading or a
# quote. Our own marks never start so: bold is `*x*` or `{*}`, code `{{`, a mention `[~`.
_WIKI_LINE_START = re.compile(r"^(?:(?P<marker>#|[*-](?=\s))|(?P<word>h[1-6]|bq)\.)")


def escape_wiki(text: str) -> str:
    """Plain text that Jira's wiki renderer shows as written (no effects, macros, links, icons).

    A backslash of the text is an entity: in wiki markup it would escape the next character, or
    with another one break the line.
    """
    text = _WIKI_ALWAYS.sub(r"\\\1", text.replace("\\", "&#92;"))
    text = _WIKI_OPENER.sub(lambda m: "".join(f"\\{c}" for c in m.group(1)), text)
    return _WIKI_EMOTICON.sub(lambda m: f"\\{m.group(1)}", text)


def _wiki_text_line(line: str) -> str:
    """A wiki line of a paragraph, where text never starts a block (`\\#`, `h1\\.`, `\\- `)."""
    return _WIKI_LINE_START.sub(
        lambda m: f"\\{m['marker']}" if m["marker"] else f"{m['word']}\\.", line, count=1
    )


def _wiki_plain(text: str, mentions: Mapping[str, str]) -> str:
    return "".join(
        escape_wiki(run) if account is None else f"[~{account}]"
        for run, account in _split_mentions(text, mentions)
    )


def _wiki_strong(inner: str, before: str, after: str) -> str:
    """`*x*`, or `{*}x{*}` where a letter touches the marks (wiki bold needs word boundaries)."""
    touching = bool(_WORD.match(before[-1:] or " ") or _WORD.match(after[:1] or " "))
    mark = "{*}" if touching or inner[:1].isspace() or inner[-1:].isspace() else "*"
    return f"{mark}{inner}{mark}"


def _wiki_line(line: str, mentions: Mapping[str, str]) -> str:
    parts: list[str] = []
    position = 0
    for match in _INLINE.finditer(line):
        if match["strong"] is None and match["code"] is None:
            continue  # an escaped character stays in the text run around it
        parts.append(_wiki_plain(line[position : match.start()], mentions))
        if match["code"] is not None:
            parts.append("{{" + escape_wiki(match["code"]) + "}}")
        else:
            inner = "".join(
                "{{" + escape_wiki(s.text) + "}}" if s.kind == "code" else _wiki_plain(s.text, mentions)
                for s in spans(match["strong"])
            )
            parts.append(_wiki_strong(inner, line[: match.start()], line[match.end() :]))
        position = match.end()
    parts.append(_wiki_plain(line[position:], mentions))
    return "".join(parts)


def _wiki_block(block: Block, mentions: Mapping[str, str]) -> str:
    if block.kind == "heading":
        return f"h{block.level}. " + _wiki_line(" ".join(block.lines[0]), mentions)
    if block.kind == "rule":
        return "----"
    if block.kind == "paragraph":
        return "\n".join(_wiki_text_line(_wiki_line(line, mentions)) for line in block.lines[0])
    bullet = "*" if block.kind == "bullets" else "#"
    # Inside a list item a newline would end the item; `\\` is wiki's forced line break.
    return "\n".join(
        f"{bullet} " + " \\\\ ".join(_wiki_line(line, mentions) for line in item) for item in block.lines
    )


def to_wiki(markdown: str, mentions: Mapping[str, str] | None = None) -> str:
    """Jira wiki markup for a comment body."""
    return "\n\n".join(_wiki_block(block, mentions or {}) for block in blocks(markdown))

"""Check a comment template before it ever runs: parse it, look up every name it uses, and render
it with the engine's variables (`config.templates.KIND_VARIABLES`) in every combination.

A problem comes with the line of the template it is on and the column within that line, and
`file_position` turns those into the line and column of the policy file the template sits in.
"""

from __future__ import annotations

import difflib
import re
import traceback
from collections.abc import Collection, Iterator, Sequence
from functools import lru_cache
from typing import NamedTuple

import jinja2
import yaml
from jinja2 import nodes

from config.schema import MessageKind
from config.templates import sample_variables, template_environment, variable_names

_TEMPLATE_FILE = "<template>"  # the file name Jinja gives a template made from a string
_JINJA_NAMES = frozenset({"loop", "self", "caller", "varargs", "kwargs"})  # Jinja's own, where they apply


class Spot(NamedTuple):
    """Where in a template: `line` counts from 1, `column` from 0 within that line."""

    line: int
    column: int


class TemplateProblem(NamedTuple):
    spot: Spot
    message: str


def _suggest(name: str, known: Collection[str]) -> str:
    hint = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean '{hint[0]}'?" if hint else ""


def _unknown_variable(name: str, known: Collection[str]) -> str:
    return f"unknown variable '{name}' (known: {', '.join(sorted(known))}){_suggest(name, known)}"


def _unknown_builtin(what: str, name: str, known: Collection[str]) -> str:
    return f"unknown {what} '{name}' (only Jinja's built-in {what}s exist){_suggest(name, known)}"


def _spot(source: str, line: int, pattern: str | None) -> Spot:
    """The template line (clamped to the text) and the column where `pattern`'s group 1 starts."""
    lines = source.splitlines() or [""]
    line = min(max(line, 1), len(lines))
    text = lines[line - 1]
    found = re.search(pattern, text) if pattern else None
    column = found.start(1) if found else len(text) - len(text.lstrip())
    return Spot(line, column)


def _unknown_names(source: str, template: nodes.Template, kind: MessageKind) -> Iterator[TemplateProblem]:
    """Filters and tests Jinja does not have, and variables the engine does not pass."""
    environment = template_environment()
    for node in template.find_all(nodes.Filter):
        if node.name not in environment.filters:
            where = _spot(source, node.lineno, rf"\|\s*({re.escape(node.name)})\b")
            yield TemplateProblem(where, _unknown_builtin("filter", node.name, environment.filters))
    for test in template.find_all(nodes.Test):
        if test.name not in environment.tests:
            where = _spot(source, test.lineno, rf"\bis\s+(?:not\s+)?({re.escape(test.name)})\b")
            yield TemplateProblem(where, _unknown_builtin("test", test.name, environment.tests))
    known = variable_names(kind)
    names = list(template.find_all(nodes.Name))
    declared = {n.name for n in names if n.ctx != "load"}  # loop variables, `set`, macro parameters
    declared |= {*environment.globals, *_JINJA_NAMES}
    first_use: dict[str, int] = {}
    for name in names:
        if name.ctx == "load" and name.name not in known | declared:
            first_use[name.name] = min(first_use.get(name.name, name.lineno), name.lineno)
    for name_id, line in sorted(first_use.items(), key=lambda item: (item[1], item[0])):
        where = _spot(source, line, rf"(?<![\w.])({re.escape(name_id)})\b")
        yield TemplateProblem(where, _unknown_variable(name_id, known))


def _render_failure(source: str, error: Exception) -> TemplateProblem:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == _TEMPLATE_FILE]
    line = (frames[-1].lineno or 1) if frames else 1
    named = re.search(r"'([^']+)' is undefined|has no attribute '([^']+)'", str(error))
    pattern = rf"\b({re.escape(next(g for g in named.groups() if g))})\b" if named else None
    detail = str(error) if isinstance(error, jinja2.TemplateError) else f"{type(error).__name__}: {error}"
    return TemplateProblem(
        _spot(source, line, pattern), f"cannot be rendered with the variables the engine passes: {detail}"
    )


MAX_NESTING = 50


def _too_deep(source: str) -> Spot | None:
    """Where brackets nest deeper than any message needs (Jinja's parser recurses once per level,
    so a deep enough template would exhaust Python's stack instead of being reported)."""
    depth, line, column = 0, 1, 0
    for char in source:
        if char == "\n":
            line, column = line + 1, 0
            continue
        depth += char in "([{"
        depth -= char in ")]}" and depth > 0
        if depth > MAX_NESTING:
            return Spot(line, column)
        column += 1
    return None


@lru_cache(maxsize=512)
def template_problems(kind: MessageKind, source: str) -> tuple[TemplateProblem, ...]:
    """Every problem of one template; a template that is fine renders for every sample."""
    if (deep := _too_deep(source)) is not None:
        return (TemplateProblem(deep, f"brackets nested more than {MAX_NESTING} deep"),)
    environment = template_environment()
    try:
        tree = environment.parse(source)
    except jinja2.TemplateSyntaxError as error:
        where = _spot(source, error.lineno, None)
        return (TemplateProblem(where, f"template syntax error: {error.message}"),)
    unknown = tuple(_unknown_names(source, tree, kind))
    if unknown:
        return unknown  # rendering would only report the first of them again
    template = environment.from_string(source)
    failures: dict[TemplateProblem, None] = {}
    for variables in sample_variables(kind):
        try:
            template.render(**variables)
        except Exception as error:  # an admin's template may fail in any way; each is reported
            failures[_render_failure(source, error)] = None
    return tuple(failures)


def file_position(node: yaml.ScalarNode, spot: Spot, file_lines: Sequence[str]) -> tuple[int, int]:
    """The 1-based line and column in the policy file of a spot in the template `node` holds.

    A literal block (`|`) keeps the template's lines one for one below its indicator; a scalar on
    one line starts at the node (after its quote). Elsewhere (`>` folds lines) the spot's text is
    searched for in the node's lines, falling back to the node's start.
    """
    start, end = node.start_mark, node.end_mark
    template_lines = node.value.splitlines() or [""]
    text = template_lines[min(spot.line, len(template_lines)) - 1]
    if node.style == "|" and start.line + spot.line < len(file_lines):
        raw = file_lines[start.line + spot.line]
        indent = len(raw) - len(text) if raw.endswith(text) else len(raw) - len(raw.lstrip(" "))
        return start.line + spot.line + 1, indent + spot.column + 1
    if start.line == end.line:
        quote = 1 if node.style in ("'", '"') else 0
        return start.line + 1, start.column + quote + spot.column + 1
    token = text[spot.column :].split(maxsplit=1)[0] if text[spot.column :].strip() else ""
    for index in range(start.line, min(end.line + 1, len(file_lines))):
        if token and (found := file_lines[index].find(token)) >= 0:
            return index + 1, found + 1
    return start.line + 1, start.column + 1

"""Read a policy file and report every problem in it as `PATH:LINE:COLUMN: message`.

The YAML is composed into nodes first, so each value keeps the line and column it came from;
pydantic's error locations and the cross-reference checks are then mapped back to those nodes.

Whatever the bytes, the result is a policy or problems, never another exception, and quickly:
the file's size, its nesting depth and its node count (an alias counts as every node it repeats,
which stops "billion laughs") are bounded while the YAML is composed, before anything is built.
"""

from __future__ import annotations

import codecs
import difflib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from config.checks import CheckError, cross_reference_errors
from config.schema import SHORTHAND, Policy
from config.template_checks import file_position

Loc = tuple[str | int, ...]

DEFAULT_POLICY_NAME = "sop.yaml"
MAX_POLICY_SIZE = 512_000
"""Bytes in a policy file, characters in policy text: the default policy is about 24 kB."""
MAX_NODES = 10_000
"""YAML nodes in a policy, each alias counted as the nodes it repeats: the default has about 1,300."""
MAX_DEPTH = 50
"""Levels of nesting in a policy: the default has 8."""

_log = logging.getLogger(__name__)
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
"""What PyYAML counts as the end of a line, so positions computed here agree with its marks."""
_SCALAR_KINDS = {"timestamp": "a date", "int": "an integer", "float": "a number", "bool": "a boolean"}


class _Mark(Protocol):
    """PyYAML's marks (`yaml.Mark`, and libyaml's): 0-based."""

    line: int
    column: int


class _NodeProblem(Exception):
    """A problem at one node while composing or constructing the YAML: a limit, or a value that cannot be built."""

    def __init__(self, mark: _Mark | None, message: str) -> None:
        super().__init__(message)
        self.line, self.column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        self.message = message


class _PolicyYamlLoader(yaml.composer.Composer, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """SafeLoader without YAML 1.1's `on/off/yes/no` booleans (`mode: off` must stay a string),
    with the size limits enforced while composing and every constructor failure tied to its node.

    The events come from a parser mixed in below: libyaml's when PyYAML was built with it (its
    scanner is about 20 times faster than PyYAML's own), else PyYAML's.
    """

    def __init__(self, text: str) -> None:
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self._depth = 0
        self._nodes = 0
        self._open_anchors: set[str] = set()
        self._anchor_sizes: dict[str, int] = {}

    if TYPE_CHECKING:  # from the parser mixed in

        def peek_event(self) -> yaml.Event: ...
        def dispose(self) -> None: ...

    def _count(self, nodes: int, mark: _Mark | None, alias: str | None = None) -> None:
        self._nodes += nodes
        if self._nodes <= MAX_NODES:
            return
        if alias is None:
            raise _NodeProblem(mark, f"more than {MAX_NODES:,} YAML nodes; a policy this large is refused")
        raise _NodeProblem(
            mark,
            f"alias *{alias} repeats {nodes:,} nodes, past the limit of {MAX_NODES:,} for the whole policy",
        )

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise _NodeProblem(event.start_mark, f"alias *{event.anchor} is inside the node it refers to")
            if event.anchor in self._anchor_sizes:
                self._count(self._anchor_sizes[event.anchor], event.start_mark, event.anchor)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _NodeProblem(event.start_mark, f"nesting deeper than {MAX_DEPTH} levels")
        self._count(1, event.start_mark)
        before, anchor = self._nodes, getattr(event, "anchor", None)
        if anchor is not None:
            self._open_anchors.add(anchor)
        node = super().compose_node(parent, index)
        if anchor is not None:
            self._open_anchors.discard(anchor)
            self._anchor_sizes[anchor] = self._nodes - before + 1
        self._depth -= 1
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """PyYAML's constructors raise ValueError, KeyError, AttributeError... on some scalars
        (`2024-02-30`, `0x_`, `!!bool maybe`); each becomes a problem at its node."""
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, _NodeProblem):
            raise
        except Exception as error:
            raise _NodeProblem(node.start_mark, _unbuildable(node, error)) from None


def _unbuildable(node: yaml.Node, error: Exception) -> str:
    kind = str(node.tag).rsplit(":", 1)[-1]
    if isinstance(node, yaml.ScalarNode):
        value = str(node.value)
        shown = value if len(value) <= 40 else value[:37] + "..."
        reason = str(error) if isinstance(error, ValueError) else "not a valid value"
        return f"cannot read '{shown}' as {_SCALAR_KINDS.get(kind, f'!!{kind}')}: {reason}"
    return f"cannot build this !!{kind} node: {error}"


class _PythonPolicyLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _PolicyYamlLoader):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        _PolicyYamlLoader.__init__(self, text)


def _fastest_loader() -> type[_PolicyYamlLoader]:
    try:
        from yaml._yaml import CParser
    except ImportError:  # PyYAML built without libyaml
        return _PythonPolicyLoader

    class _LibyamlPolicyLoader(_PolicyYamlLoader, CParser):
        """Its reader errors carry a byte offset into the UTF-8 text, not a character index."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _PolicyYamlLoader.__init__(self, text)

    return _LibyamlPolicyLoader


_LOADER = _fastest_loader()

_PolicyYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class PolicyError(Exception):
    """The policy file cannot be used; `problems` lists every reason, in file order.

    `warnings` are about how the file was read (see `decode_policy`), shown before the problems.
    """

    def __init__(self, problems: list[Problem], warnings: list[str] | None = None) -> None:
        self.problems = sorted(problems)
        self.warnings = warnings or []
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class _Document:
    """Constructed YAML data plus the position of every key and value, by location path."""

    data: Any
    values: dict[Loc, yaml.Mark] = field(default_factory=dict)
    keys: dict[Loc, yaml.Mark] = field(default_factory=dict)
    scalars: dict[Loc, yaml.ScalarNode] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # the file's lines (libyaml's marks carry no text)
    duplicates: list[tuple[Loc, yaml.Mark]] = field(default_factory=list)

    def locate(self, loc: Loc, *, at_key: bool = False) -> yaml.Mark:
        """The node at `loc`, or its deepest ancestor in the file; with `at_key`, the key's position."""
        found: Loc = ()
        for step in loc:
            if (*found, step) not in self.values:
                break
            found = (*found, step)
        if at_key and found == loc and found in self.keys:
            return self.keys[found]
        return self.values.get(found) or self.values[()]


def _index_nodes(document: _Document, node: yaml.Node, loc: Loc) -> None:
    document.values[loc] = node.start_mark
    if isinstance(node, yaml.ScalarNode):
        document.scalars[loc] = node
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                document.duplicates.append(((*loc, key), key_node.start_mark))
            seen.add(key)
            document.keys[(*loc, key)] = key_node.start_mark
            _index_nodes(document, value_node, (*loc, key))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_nodes(document, item, (*loc, index))


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `text[index]`, counted as PyYAML counts them."""
    line, line_start = 1, 0
    for line_break in _LINE_BREAK.finditer(text, 0, index):
        line, line_start = line + 1, line_break.end()
    return line, index - line_start - text.count("\ufeff", line_start, index) + 1


def _refused_character(text: str, index: int, path: str) -> Problem:
    line, column = _position(text, index)
    message = (
        f"invalid YAML: character U+{ord(text[index]):04X} is not allowed (a control or special character)"
    )
    return Problem(path, line, column, message)


def _reader_problem(error: yaml.reader.ReaderError, text: str, path: str) -> Problem:
    index = error.position
    if _LOADER is not _PythonPolicyLoader:
        index = len(text.encode("utf-8")[:index].decode("utf-8", errors="ignore"))
    return _refused_character(text, min(index, len(text) - 1), path)


def _compose(text: str, path: str) -> tuple[yaml.Node, Any]:
    loader: _PolicyYamlLoader | None = None
    try:
        loader = _LOADER(text)
        node = loader.get_single_node()
        if node is None:
            raise PolicyError([Problem(path, 1, 1, "the file is empty")])
        return node, loader.construct_document(node)
    except yaml.reader.ReaderError as error:
        raise PolicyError([_reader_problem(error, text, path)]) from None
    except UnicodeEncodeError as error:  # libyaml reads UTF-8: a lone surrogate cannot be encoded
        raise PolicyError([_refused_character(text, error.start, path)]) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = error.problem or error.context
        raise PolicyError([Problem(path, line, column, f"invalid YAML: {message}")]) from None
    except _NodeProblem as error:
        raise PolicyError([Problem(path, error.line, error.column, error.message)]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _parse(text: str, path: str) -> _Document:
    if len(text) > MAX_POLICY_SIZE:
        message = f"the policy has {len(text):,} characters; the limit is {MAX_POLICY_SIZE:,}"
        raise PolicyError([Problem(path, 1, 1, message)])
    node, data = _compose(text, path)
    document = _Document(data=data, lines=text.splitlines())
    _index_nodes(document, node, ())
    if not isinstance(document.data, dict):
        raise PolicyError([Problem(path, 1, 1, "a policy is a mapping of sections (workflow:, ...)")])
    return document


def _dotted(loc: Loc) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text


@cache
def _policy_schema() -> dict[str, Any]:
    return Policy.model_json_schema(by_alias=True)


def _walk_schema(loc: Loc) -> tuple[Loc, dict[str, Any] | None]:
    """`loc` without pydantic's union-tag steps, and the JSON Schema found at its end (if any).

    Pydantic puts a discriminated union's tag into error locations (`guards.2.assignee.label`);
    the file has no such key, so the tag is dropped before locating a node or naming a path.
    """
    definitions = _policy_schema().get("$defs", {})

    def resolve(schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        if "anyOf" in schema:
            # A shorthand the policy also accepts (`config.schema.SHORTHAND`) is not where errors are.
            present = [s for s in schema["anyOf"] if s.get("type") != "null" and not s.get(SHORTHAND)]
            if len(present) == 1:
                return resolve(present[0])
        return schema

    schema: dict[str, Any] | None = resolve(_policy_schema())
    clean: list[str | int] = []
    for step in loc:
        mapping = (schema or {}).get("discriminator", {}).get("mapping", {})
        if schema is not None and "oneOf" in schema and isinstance(step, str) and step in mapping:
            schema = resolve({"$ref": mapping[step]})
            continue
        clean.append(step)
        if schema is None:
            continue
        if isinstance(step, int) and "items" in schema:
            schema = resolve(schema["items"])
        elif step in schema.get("properties", {}):
            schema = resolve(schema["properties"][step])
        elif isinstance(schema.get("additionalProperties"), dict):
            schema = resolve(schema["additionalProperties"])
        elif len(schema.get("patternProperties", {})) == 1:  # a mapping keyed by ids
            schema = resolve(next(iter(schema["patternProperties"].values())))
        else:
            schema = None
    return tuple(clean), schema


def _message(error: ErrorDetails, loc: Loc) -> str:
    """The problem in words; `loc` is the error's location as the file spells it (no union tags)."""
    where = _dotted(loc)
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        _, parent_schema = _walk_schema(error["loc"][:-1])
        known = list((parent_schema or {}).get("properties", {}))
        hint = difflib.get_close_matches(key, known, n=1)
        suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
        return f"unknown key '{key}' in {_dotted(loc[:-1]) or 'the top level'}{suggestion}"
    if error["type"] == "union_tag_invalid":
        tag = str(error.get("ctx", {}).get("tag"))
        expected = [t.strip(" '") for t in str(error.get("ctx", {}).get("expected_tags", "")).split(",")]
        hint = difflib.get_close_matches(tag, expected, n=1)
        suggestion = f"did you mean '{hint[0]}'?" if hint else f"known: {', '.join(expected)}"
        return f"{where}: unknown kind '{tag}'; {suggestion}"
    if error["type"] == "missing":
        return f"{where}: required key is missing"
    # A validator's own ValueError already says what is wrong; pydantic's prefix adds nothing.
    return f"{where}: {error['msg'].removeprefix('Value error, ')}"


def _structural_problems(error: ValidationError, document: _Document, path: str) -> list[Problem]:
    problems = []
    for detail in error.errors():
        loc, _ = _walk_schema(detail["loc"])
        if detail["type"] == "union_tag_invalid":
            loc = (*loc, detail.get("ctx", {}).get("discriminator", "'check'").strip("'"))
        mark = document.locate(loc, at_key=detail["type"] == "extra_forbidden")
        problems.append(Problem(path, mark.line + 1, mark.column + 1, _message(detail, loc)))
    return problems


def _valid_sections(data: dict[str, Any]) -> dict[str, Any]:
    """Each top-level section that validates on its own, so cross-checks run despite other errors."""
    sections: dict[str, Any] = {}
    for name, info in Policy.model_fields.items():
        key = info.alias or name
        if key not in data:
            if not info.is_required():
                sections[name] = info.get_default(call_default_factory=True)
            continue
        try:
            sections[name] = TypeAdapter[Any](info.annotation or Any).validate_python(data[key])
        except ValidationError:
            continue
    return sections


def _cross_problems(errors: Iterable[CheckError], document: _Document, path: str) -> Iterator[Problem]:
    for error in errors:
        mark = document.locate(error.loc, at_key=error.at_key)
        line, column = mark.line + 1, mark.column + 1
        if error.spot is not None and error.loc in document.scalars:
            line, column = file_position(document.scalars[error.loc], error.spot, document.lines)
        yield Problem(path, line, column, f"{_dotted(error.loc)}: {error.message}")


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Validate policy text; raise `PolicyError` listing every problem found."""
    document = _parse(text, path)
    problems = [
        Problem(
            path,
            mark.line + 1,
            mark.column + 1,
            f"duplicate key '{loc[-1]}' in {_dotted(loc[:-1]) or 'the top level'}",
        )
        for loc, mark in document.duplicates
    ]
    policy: Policy | None = None
    try:
        policy = Policy.model_validate(document.data)
    except ValidationError as error:
        problems += _structural_problems(error, document, path)
    sections = policy.__dict__ if policy is not None else _valid_sections(document.data)
    problems += _cross_problems(cross_reference_errors(sections), document, path)
    if problems or policy is None:
        raise PolicyError(sorted(set(problems)))
    return policy


def _mostly_utf8(data: bytes) -> bool:
    """Whether more of the non-ASCII characters decode as UTF-8 than fail: a damaged UTF-8 file."""
    text = data.decode("utf-8", errors="replace")
    failed = text.count("\ufffd")
    return sum(1 for char in text if ord(char) > 0x7F) - failed > failed


def decode_policy(data: bytes, path: str) -> tuple[str, list[str]]:
    """The text of a policy file, and warnings about how it was read.

    UTF-8, with or without a byte-order mark, is the format. A file that is not UTF-8 but is all
    GB18030 (GBK's superset, what Chinese Windows editors save) is read as GB18030 with a warning,
    unless most of its non-ASCII text is UTF-8: then it is a damaged UTF-8 file, and reading it as
    GB18030 would garble the rest. Anything else is a problem at the first byte that cannot be read.
    """
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return body.decode("utf-8"), []
    except UnicodeDecodeError as error:
        failure, encodings = error, "not UTF-8 text"
    if not _mostly_utf8(body):
        try:
            return body.decode("gb18030"), [f"{path}: read as GB18030 (not UTF-8); save it as UTF-8"]
        except UnicodeDecodeError as error:
            failure, encodings = error, "neither UTF-8 nor GB18030"
    readable = body[: failure.start].decode(failure.encoding)
    line, column = _position(readable, len(readable))
    message = f"{encodings}: cannot decode byte 0x{body[failure.start]:02X}; save the file as UTF-8"
    raise PolicyError([Problem(path, line, column, message)])


@dataclass(frozen=True)
class LoadedPolicy:
    """A policy read from a file, with the warnings a reader should see (e.g. the encoding it guessed)."""

    policy: Policy
    warnings: list[str]


def _read_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_POLICY_SIZE + 1)
    except OSError as error:
        raise PolicyError([Problem(str(path), 1, 1, f"cannot read the file: {error.strerror}")]) from None
    if len(data) > MAX_POLICY_SIZE:
        message = f"the file is larger than {MAX_POLICY_SIZE:,} bytes, the limit for a policy"
        raise PolicyError([Problem(str(path), 1, 1, message)])
    return data


def read_policy(path: Path | str | None = None) -> LoadedPolicy:
    """Read the policy at `path` (or the default shipped with sopguard) with its warnings."""
    if path is None:
        data = resources.files("config").joinpath(DEFAULT_POLICY_NAME).read_bytes()
        name = f"<default>/{DEFAULT_POLICY_NAME}"
    else:
        data, name = _read_bytes(Path(path)), str(path)
    text, warnings = decode_policy(data, name)
    try:
        return LoadedPolicy(parse_policy(text, name), warnings)
    except PolicyError as error:
        raise PolicyError(error.problems, warnings) from None


def load_policy(path: Path | str | None = None) -> Policy:
    """Load the policy at `path`, or the default SOP policy shipped with sopguard; warnings are logged."""
    try:
        loaded = read_policy(path)
    except PolicyError as error:
        for warning in error.warnings:
            _log.warning(warning)
        raise
    for warning in loaded.warnings:
        _log.warning(warning)
    return loaded.policy

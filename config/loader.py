"""Read a policy file and report every problem in it as `PATH:LINE:COLUMN: message`.

The YAML is composed into nodes first, so each value keeps the line and column it came from;
pydantic's error locations and the cross-reference checks are then mapped back to those nodes.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from config.checks import CheckError, cross_reference_errors
from config.schema import Policy
from config.template_checks import file_position

Loc = tuple[str | int, ...]

DEFAULT_POLICY_NAME = "sop.yaml"


class _PolicyYamlLoader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1's `on/off/yes/no` booleans: `mode: off` must stay a string."""


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
    """The policy file cannot be used; `problems` lists every reason, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass
class _Document:
    """Constructed YAML data plus the position of every key and value, by location path."""

    data: Any
    values: dict[Loc, yaml.Mark] = field(default_factory=dict)
    keys: dict[Loc, yaml.Mark] = field(default_factory=dict)
    scalars: dict[Loc, yaml.ScalarNode] = field(default_factory=dict)
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


def _parse(text: str, path: str) -> _Document:
    loader = _PolicyYamlLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError([Problem(path, 1, 1, "the file is empty")])
        document = _Document(data=loader.construct_document(node))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError([Problem(path, line, column, f"invalid YAML: {error.problem}")]) from None
    finally:
        loader.dispose()
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
            present = [s for s in schema["anyOf"] if s.get("type") != "null"]
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
    return f"{where}: {error['msg']}"


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
            line, column = file_position(document.scalars[error.loc], error.spot)
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


def load_policy(path: Path | str | None = None) -> Policy:
    """Load the policy at `path`, or the default SOP policy shipped with sopguard."""
    if path is None:
        text = resources.files("config").joinpath(DEFAULT_POLICY_NAME).read_text(encoding="utf-8")
        return parse_policy(text, f"<default>/{DEFAULT_POLICY_NAME}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError([Problem(str(path), 1, 1, f"cannot read the file: {error.strerror}")]) from None
    return parse_policy(text, str(path))

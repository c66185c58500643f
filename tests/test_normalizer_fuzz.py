"""Bad data inside a signed delivery (hypothesis): the real fixtures with values at random JSON paths
replaced by other JSON (strings, numbers, null, lists, objects, huge integers, lists and objects
nested ~900 deep). Normalising such a delivery returns, or refuses it with `Ignored` or
`BadPayload`; no other exception may reach the worker, and no time comes out naive."""

from __future__ import annotations

import copy
import datetime as dt
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import FrameType
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.errors import BadPayload, Ignored
from connector.github import events as github_events
from connector.jira import events as jira_events
from policies.models import Event, IssueSnapshot
from tests.conftest import FIXTURES, fixture_json, github_event_name

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

Json = Any
DEPTH = 900
STACK_LEFT = 300  # frames for the normalisers' own calls; pydantic and the flattening need far fewer
Path_ = tuple[str | int, ...]
FIXTURE_NAMES = tuple(
    (source, path.name)
    for source in ("github", "jira")
    for path in sorted((FIXTURES / source).glob("*.json"))
)
# The parts the normalisers read; paths elsewhere (a repository's 90 URLs) are drawn less often.
READ_ROOTS = frozenset({"action", "issue", "comment", "sender", "label", "user", "changelog", "timestamp"})
READ_ROOTS |= {"webhookEvent", "issue_event_type_name", "repository"}
# Keys the normalisers read that many fixtures lack, so that adding them is tried too.
ADDED: dict[str, tuple[Path_, ...]] = {
    "github": (("label",), ("comment",), ("sender",), ("issue", "pull_request"), ("issue", "closed_at")),
    "jira": (
        ("user",),
        ("comment",),
        ("changelog",),
        ("issue", "fields", "parent"),
        ("issue", "fields", "subtasks"),
        ("issue", "fields", "comment"),
        ("issue", "fields", "issuetype"),
    ),
}


@dataclass(frozen=True)
class Deep:
    """A list, or an object under one key, nested `DEPTH` deep: built when it is put in, so that
    hypothesis shows this recipe rather than the value (printing which would overflow)."""

    key: str | None = None  # None: a list

    def build(self) -> Json:
        value: Json = [] if self.key is None else {}
        for _ in range(DEPTH):
            value = [value] if self.key is None else {self.key: value}
        return value


Mutation = tuple[Path_, Json]


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([-1, 0, 2**63, 2**64, -(2**80), 10**300])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["", "abc", "PROJ-1", "o/n", "2026-11-24T10:00:00.000", "2019-1-30 15:51:34,870"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "value", "key", "login", "id", "x"]), children, max_size=3)
    ),
    max_leaves=6,
)
DEEP = st.sampled_from([Deep(), Deep("value"), Deep("name"), Deep("x")])
REPLACEMENTS = JSON_VALUES | DEEP


@cache
def _paths(source: str, name: str) -> tuple[Path_, ...]:
    """Every JSON path in a fixture and the `ADDED` ones: those the normalisers read first, shallow first."""
    found: list[Path_] = []

    def walk(value: Json, path: Path_) -> None:
        found.append(path)
        children = (
            value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        )
        for step, child in children:
            walk(child, (*path, step))

    walk(fixture_json(source, name), ())
    found.extend(path for path in ADDED[source] if path not in found)
    read = sorted(
        (p for p in found if p and p[0] in READ_ROOTS and not (p[0] == "repository" and len(p) > 2)), key=len
    )
    unread = set(found) - set(read)
    return (*read, *(p for p in found if p in unread))


def _replaced(payload: Json, path: Path_, value: Json) -> Json:
    if not path:
        return value
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return payload


@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str, tuple[Mutation, ...]]:
    """A fixture and one to three (path, replacement) pairs to apply to it."""
    source, name = draw(st.sampled_from(FIXTURE_NAMES))
    paths = _paths(source, name)
    where = st.sampled_from(paths[: max(1, len(paths) // 3)]) | st.sampled_from(paths)
    count = draw(st.integers(1, 3))
    return source, name, tuple((draw(where), draw(REPLACEMENTS)) for _ in range(count))


def _mutated(source: str, name: str, changes: tuple[Mutation, ...]) -> Json:
    payload: Json = copy.deepcopy(fixture_json(source, name))
    for path, replacement in changes:
        value = replacement.build() if isinstance(replacement, Deep) else replacement
        try:
            payload = _replaced(payload, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier mutation took this path away
            continue
    return payload


@contextmanager
def _little_stack_left() -> Iterator[None]:
    """As if called from deep in a server's stack: a walk down a ~900-deep value would not fit."""
    depth, frame = 0, cast(FrameType | None, sys._getframe())
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + STACK_LEFT)
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def _normalise(source: str, name: str, payload: Json) -> tuple[Event, IssueSnapshot]:
    with _little_stack_left():
        return _normalised(source, name, payload)


def _normalised(source: str, name: str, payload: Json) -> tuple[Event, IssueSnapshot]:
    if source == "github":
        event_name = github_event_name(name)
        github_events.classify(event_name, payload)
        assert github_events.issue_key(event_name, payload).startswith("github:")
        return github_events.to_event(event_name, "d", payload)
    jira_events.classify(payload)
    assert jira_events.issue_key(str(payload["webhookEvent"]), payload).startswith("jira:")
    return jira_events.to_event("d", payload)


def _times(event: Event, snapshot: IssueSnapshot) -> list[dt.datetime | None]:
    comments = (*snapshot.comments, *([event.comment] if event.comment else []))
    return [event.at, snapshot.created_at, *(comment.at for comment in comments)]


@FUZZ
@given(mutations())
def test_a_mutated_delivery_is_normalised_or_refused_with_a_reason(
    mutated: tuple[str, str, tuple[Mutation, ...]],
) -> None:
    source, name, changes = mutated
    payload = _mutated(source, name, changes)
    if not isinstance(payload, dict):
        return  # the receiver answers 400 before any normaliser sees it
    try:
        event, snapshot = _normalise(source, name, payload)
    except (Ignored, BadPayload) as refusal:
        assert str(refusal)
        return
    assert all(at is None or at.tzinfo is not None for at in _times(event, snapshot))

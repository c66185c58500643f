"""Both webhook endpoints fuzzed through the Flask test client (hypothesis), every request validly
signed: the real fixtures with values at random JSON paths replaced (wrong types, huge integers,
floats, NaN, nulls, lists and objects nested up to beyond Python's recursion limit, long and unicode
strings, empty objects) or keys deleted, raw bytes, JSON that is not an object, invalid UTF-8, known
and unknown event headers, odd or missing delivery ids.

With a healthy database nothing justifies a 5xx, so for every request: the answer is below 500 and
is JSON with a `status` or an `error`. After the inbox is drained, every accepted delivery ended
`processed`, `ignored` or `failed` with a reason (never the worker's catch-all for a bug), with
audit rows; nothing is left queued; and nothing was logged at ERROR or with a traceback.

`SOPGUARD_FUZZ_EXAMPLES` sets the number of examples per database (a local campaign); the
figures of a run are printed (`pytest -s`)."""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app import create_app
from config.settings import Settings
from runtime.store import Store
from runtime.store.schema import audit
from tests.conftest import (
    GITHUB_SECRET,
    JIRA_SECRET,
    drain,
    fixture_json,
    github_event_name,
    github_headers,
    jira_headers,
)
from tests.test_normalizer_fuzz import FIXTURE_NAMES, JSON_VALUES, _paths, _replaced

EXAMPLES = int(os.environ.get("SOPGUARD_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Json = Any
Path_ = tuple[str | int, ...]
FINAL = {"processed", "ignored", "failed"}
# Written out here rather than read from the code under test.
GITHUB_EVENTS = ("issues", "issue_comment", "ping", "installation", "pull_request", "push", "label")
DEPTHS = (100, 500, 900, 950, 990, 1000, 1100, 5000)


@dataclass(frozen=True)
class Raw:
    """JSON text put in place of a value after the payload is encoded: nesting deeper than the
    encoder would go, or a number literal that is not a Python value (`1e999`, 5,000 digits)."""

    text: str

    @property
    def marker(self) -> str:
        return f"\x00raw:{id(self)}\x00"


def _deep_list(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


def _deep_object(depth: int, key: str) -> Raw:
    return Raw(f'{{"{key}": ' * depth + "null" + "}" * depth)


DELETE = object()  # in place of a replacement: delete the key

SPECIAL_TEXT = st.sampled_from(
    [
        "NaN",
        "nan",
        "Infinity",
        "-0",
        "1e309",
        "abc",
        "x",
        "",
        " ",
        "0",
        "-1",
        "PROJ-1",
        "o/n",
        "a" * 300 + "/b",
        "PROJ" * 100 + "-1",
        "\u0000",
        "a\u0000/b",
        "\ud800",
        "\ud83d\ude00/\u00e9",
        "\u202e\u0645\u0631\u062d\u0628\u0627",
        "2026-11-24T10:00:00.000",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00",
        "2019-1-30 15:51:34,870",
    ]
)
LONG_TEXT = st.integers(1_000, 200_000).map(lambda n: "x" * n) | st.text(min_size=200, max_size=2000)
RAW = (
    st.sampled_from(DEPTHS).map(_deep_list)
    | st.tuples(st.sampled_from(DEPTHS), st.sampled_from(["value", "name", "x"])).map(
        lambda pair: _deep_object(*pair)
    )
    | st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("9" * 5000), Raw("NaN"), Raw("-Infinity")])
)
REPLACEMENTS = (
    JSON_VALUES
    | SPECIAL_TEXT
    | LONG_TEXT
    | st.sampled_from([{}, [], [{}], {"": None}, 2**63, 2**63 - 1, 2**64, 10**300, 0.5, -0.0])
    | RAW
    | st.just(DELETE)
)


@st.composite
def mutated_body(draw: st.DrawFn, source: str) -> tuple[str, bytes]:
    """A fixture of `source` (its name) with one to four values replaced or keys deleted, encoded."""
    name = draw(st.sampled_from([n for s, n in FIXTURE_NAMES if s == source]))
    paths = _paths(source, name)
    where = st.sampled_from(paths[: max(1, len(paths) // 3)]) | st.sampled_from(paths)
    payload: Json = copy.deepcopy(fixture_json(source, name))
    raws: list[Raw] = []
    for _ in range(draw(st.integers(1, 4))):
        path, value = draw(where), draw(REPLACEMENTS)
        if isinstance(value, dict | list):
            value = copy.deepcopy(value)  # the same {} may be drawn again, for another path
        if isinstance(value, Raw):
            raws.append(value)
            value = value.marker
        try:
            payload = _deleted(payload, path) if value is DELETE else _replaced(payload, path, value)
        except (KeyError, IndexError, TypeError):  # an earlier change took this path away
            continue
    # Escaped (`\ud800`, `\u0000`) or as UTF-8 (a lone surrogate then is bytes no decoder takes).
    text = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    for raw in raws:
        text = text.replace(json.dumps(raw.marker), raw.text)
    return name, text.encode("utf-8", "surrogatepass")


def _deleted(payload: Json, path: Path_) -> Json:
    if not path:
        return {}
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return payload


@st.composite
def odd_body(draw: st.DrawFn, source: str) -> tuple[str, bytes]:
    """Not a JSON object, or not UTF-8, or JSON in another encoding."""
    name = draw(st.sampled_from([n for s, n in FIXTURE_NAMES if s == source]))
    real = json.dumps(fixture_json(source, name))
    cut = draw(st.integers(0, len(real)))
    body = draw(
        st.binary(max_size=200)
        | st.sampled_from(
            [b"", b"null", b"[]", b'"x"', b"1", b"true", b"{", b"{}", b"{}{}", b"\xef\xbb\xbf{}"]
        )
        | st.just(real[:cut].encode())  # truncated
        | st.just(real[:cut].encode() + b"\xff\xfe" + real[cut:].encode())  # invalid UTF-8
        | st.just(real.encode("utf-16"))
        | st.just(real.encode("utf-32-le"))
        | st.just(b"\xef\xbb\xbf" + real.encode())  # a UTF-8 byte-order mark
        | JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode())
    )
    return name, body


# Latin-1 as the test client sends it; waitress itself refuses control characters but the door must
# not count on it (a NUL in a delivery id could never be written to PostgreSQL).
HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF, exclude_characters="\r\n"), max_size=40)


@dataclass(frozen=True)
class Request:
    source: str
    fixture: str
    body: bytes
    event: str | None  # GitHub's X-GitHub-Event
    delivery: str | None  # None: no delivery id header

    def headers(self, number: int) -> dict[str, str]:
        delivery = None if self.delivery is None else f"{self.delivery}{number}"
        if self.source == "github":
            headers = github_headers(self.body, self.event or "", delivery or "", GITHUB_SECRET)
            if delivery is None:
                del headers["X-GitHub-Delivery"]
            return headers
        return jira_headers(self.body, delivery, JIRA_SECRET)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    source = draw(st.sampled_from(["github", "jira"]))
    fixture, body = draw(mutated_body(source) | odd_body(source))
    event = draw(
        st.just(github_event_name(fixture)) | st.sampled_from(GITHUB_EVENTS) | HEADER_TEXT
        if source == "github"
        else st.none()
    )
    delivery = draw(
        st.just("fuzz-") | st.none() | st.just("") | HEADER_TEXT.map(lambda t: f"{t}-") | st.just("d" * 400)
    )
    return Request(source, fixture, body, event, delivery)


@dataclass
class Campaign:
    """What one run sent and saw, printed at its end."""

    requests: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)

    def report(self, database: str) -> str:
        answers = ", ".join(f"{code}: {n}" for code, n in sorted(self.answers.items()))
        ended = ", ".join(f"{status}: {n}" for status, n in sorted(self.ended.items()))
        common = "".join(f"\n  {n:5} {why}" for why, n in self.failures.most_common(12))
        return (
            f"[{database}] {self.requests} requests; answers {answers}; "
            f"accepted deliveries ended {ended}; most common reasons for failing:{common}"
        )


def _app(tmp_path: Path, database_url: str) -> Flask:
    return create_app(
        Settings(
            data_dir=tmp_path / "var",
            database_url=database_url,
            github_webhook_secret=GITHUB_SECRET,
            jira_webhook_secret=JIRA_SECRET,
        )
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sqlite":
        return ""
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def _problems_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Records a healthy service never writes: a traceback, or anything at ERROR (the database
    could not be written, or the worker caught an exception it did not foresee)."""
    return [
        f"{record.name} {record.levelname}: {record.getMessage()[:300]}"
        for record in caplog.records
        if record.exc_info or "Traceback" in record.getMessage() or record.levelno >= logging.ERROR
    ]


def _audit_rows(store: Store, source: str, delivery_id: str) -> int:
    with store.engine.connect() as db:
        query = select(func.count()).where(audit.c.source == source, audit.c.delivery_id == delivery_id)
        return int(db.execute(query).scalar_one())


def _check_answer(request: Request, response: Any) -> str | None:
    """The delivery id of an accepted delivery, after checking the answer's form."""
    assert response.status_code < 500, (response.status_code, response.get_data()[:300])
    answer = response.get_json(silent=True)
    assert isinstance(answer, dict), response.get_data()[:300]
    if response.status_code < 300:
        assert answer.get("status") in {"accepted", "queued", "duplicate", "requeued", "ignored"}, answer
    else:
        assert isinstance(answer.get("error"), str) and answer["error"], answer
    if answer.get("status") in {"accepted", "queued", "requeued"}:
        delivery: str = answer["delivery"]
        return delivery
    return None


def _check_outcome(store: Store, source: str, delivery: str, campaign: Campaign) -> None:
    status = store.inbox.status(source, delivery)
    error = store.inbox.error(source, delivery)
    assert status in FINAL, (delivery, status, error)
    if status == "failed":
        assert error, delivery
        assert not error.startswith("unexpected error"), error
        campaign.failures[error.split(", not ")[0][:100]] += 1
    assert _audit_rows(store, source, delivery) >= 1, (delivery, status)
    campaign.ended[str(status)] += 1


def test_signed_garbage_is_never_a_server_error_and_every_accepted_delivery_ends_with_a_reason(
    tmp_path: Path, database_url: str, logged: pytest.LogCaptureFixture
) -> None:
    app = _app(tmp_path, database_url)
    client: FlaskClient = app.test_client()
    store: Store = app.extensions["sopguard"].store
    numbers = itertools.count(1)
    campaign = Campaign()

    @FUZZ
    @given(requests())
    def one_request(request: Request) -> None:
        logged.clear()
        response = client.post(
            f"/webhooks/{request.source}", data=request.body, headers=request.headers(next(numbers))
        )
        campaign.requests += 1
        campaign.answers[response.status_code] += 1
        accepted = _check_answer(request, response)
        drain(app)
        if accepted is not None:
            _check_outcome(store, request.source, accepted, campaign)
        assert store.inbox.health().pending == 0
        assert _problems_logged(logged) == []

    one_request()
    print(campaign.report("postgresql" if database_url else "sqlite"))

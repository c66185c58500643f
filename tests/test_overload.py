"""Overload shedding and the production server config: the middleware alone, then gunicorn itself.

The gunicorn runs start `gunicorn -c gunicorn.conf.py` in a subprocess on loopback. To overload it
without racing the clock, the served app (`held_app`, below) holds its only thread on a marker file
until the test releases it; a second request, meanwhile, waits in the queue longer than the limit.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime.store import Store
from tests.conftest import GITHUB_SECRET, fixture_bytes, github_headers
from webhooks.overload import QUEUE_WAIT, ShedOverload, max_queue_wait_from_environment

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

ROOT = Path(__file__).resolve().parents[1]
MAX_WAIT = 0.5
HOLD_DIR = "SOPGUARD_TEST_HOLD_DIR"
Answer = tuple[int, dict[str, str], bytes]


def held_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Served by gunicorn in the end-to-end test: `/hold` waits for `release`, every call is logged."""
    markers = Path(os.environ[HOLD_DIR])
    with (markers / "calls").open("a") as calls:
        calls.write(environ["PATH_INFO"] + "\n")
    if environ["PATH_INFO"] == "/hold":
        (markers / "holding").touch()
        deadline = time.monotonic() + 30
        while not (markers / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"handled"]


def _recording_app(calls: list[str]) -> ShedOverload:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        start_response("202 Accepted", [])
        return [b"queued"]

    return ShedOverload(app, max_wait=5.0)


def _call(app: ShedOverload, environ: WSGIEnvironment) -> tuple[str, dict[str, str], bytes]:
    answer: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer.append((status, headers))

    body = b"".join(app(environ, start_response))  # type: ignore[arg-type]
    status, headers = answer[0]
    return status, dict(headers), body


class _UnreadableBody:
    def read(self, *_: object) -> bytes:
        raise AssertionError("the body of a shed request must not be read")


def test_a_request_that_waited_too_long_is_shed_without_reading_the_body() -> None:
    calls: list[str] = []
    environ = {"PATH_INFO": "/webhooks/github", "wsgi.input": _UnreadableBody(), QUEUE_WAIT: 5.2}
    status, headers, body = _call(_recording_app(calls), environ)
    assert status.startswith("503")
    assert json.loads(body) == {"error": "overloaded; please redeliver"}
    assert headers["Retry-After"] == "5"
    assert headers["Content-Length"] == str(len(body))
    assert calls == []


@pytest.mark.parametrize("environ", [{QUEUE_WAIT: 0.01}, {QUEUE_WAIT: 5.0}, {}], ids=["fresh", "at", "none"])
def test_a_fresh_request_or_one_from_another_server_reaches_the_app(environ: WSGIEnvironment) -> None:
    calls: list[str] = []
    status, _, body = _call(_recording_app(calls), {"PATH_INFO": "/webhooks/github", **environ})
    assert (status, body, calls) == ("202 Accepted", b"queued", ["/webhooks/github"])


@pytest.mark.parametrize("text", ["0", "-1", "soon", "nan"])
def test_the_queue_wait_limit_must_be_a_positive_number(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setenv("SOPGUARD_MAX_QUEUE_WAIT", text)
    with pytest.raises(ValueError, match="SOPGUARD_MAX_QUEUE_WAIT"):
        max_queue_wait_from_environment()


def test_the_queue_wait_limit_is_five_seconds_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert max_queue_wait_from_environment() == 5.0
    monkeypatch.setenv("SOPGUARD_MAX_QUEUE_WAIT", "2.5")
    assert max_queue_wait_from_environment() == 2.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _gunicorn(app: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", app]


def _environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))}
    return {**kept, "SOPGUARD_DATA_DIR": str(tmp_path / "var"), **extra}


def _request(
    port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body, headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _get(port: int, path: str) -> Answer:
    return _request(port, "GET", path)


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


@contextlib.contextmanager
def _serving(app: str, env: dict[str, str], ready_path: str) -> Iterator[int]:
    """`gunicorn -c gunicorn.conf.py APP` on a free loopback port, until `ready_path` answers 200."""
    port = _free_port()
    server = subprocess.Popen(_gunicorn(app), cwd=ROOT, env={**env, "SOPGUARD_PORT": str(port)})
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                assert _get(port, ready_path)[0] == 200
                break
            except ConnectionRefusedError:
                assert server.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=30)


def _signed(tmp_path: Path, **extra: str) -> dict[str, str]:
    return _environment(tmp_path, SOPGUARD_TRACKERS="github", GITHUB_WEBHOOK_SECRET=GITHUB_SECRET, **extra)


@pytest.fixture
def held_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """gunicorn with one process of one thread, serving `held_app`."""
    markers = tmp_path / "markers"
    markers.mkdir()
    env = _signed(
        tmp_path,
        SOPGUARD_WEB_WORKERS="1",
        SOPGUARD_WEB_THREADS="1",
        SOPGUARD_MAX_QUEUE_WAIT=str(MAX_WAIT),
        **{HOLD_DIR: str(markers)},
    )
    try:
        with _serving("tests.test_overload:held_app", env, "/ready") as port:
            yield port, markers
    finally:
        (markers / "release").touch()


def test_gunicorn_serves_the_receiver_from_two_processes_sharing_one_database(tmp_path: Path) -> None:
    """Each process spools what it is sent; the inbox, taking the spools in, keeps each delivery
    once, whichever process took each copy."""
    body = fixture_bytes("github", "issues__labeled.json")
    ids = [f"gunicorn-{n % 5}" for n in range(40)]  # each id 8 times, over new connections
    with _serving("app:create_app()", _signed(tmp_path, SOPGUARD_WEB_WORKERS="2"), "/healthz") as port:
        answers = [
            _request(port, "POST", "/webhooks/github", body, github_headers(body, "issues", i)) for i in ids
        ]
    assert {(status, json.loads(answer)["status"]) for status, _, answer in answers} == {(202, "accepted")}

    inbox = Store(f"sqlite:///{tmp_path / 'var' / 'sopguard.db'}").inbox
    assert inbox.health().pending == 5
    assert {inbox.status("github", f"gunicorn-{n}") for n in range(5)} == {"queued"}


def test_gunicorn_sheds_a_request_queued_behind_a_busy_thread(held_server: tuple[int, Path]) -> None:
    port, markers = held_server
    answers: dict[str, Answer] = {}

    def get(path: str) -> None:
        answers[path] = _get(port, path)

    holder = threading.Thread(target=get, args=("/hold",))
    holder.start()
    _wait_for(markers / "holding")
    queued = threading.Thread(target=get, args=("/queued",))
    queued.start()
    time.sleep(MAX_WAIT * 2)  # the only thread is held: /queued waits at least this long
    (markers / "release").touch()
    holder.join(30)
    queued.join(30)

    status, headers, body = answers["/queued"]
    assert (status, json.loads(body), headers["Retry-After"]) == (
        503,
        {"error": "overloaded; please redeliver"},
        "1",
    )
    assert answers["/hold"][0] == 200
    assert _get(port, "/after")[0] == 200
    assert (markers / "calls").read_text().split() == ["/ready", "/hold", "/after"]


def test_gunicorn_refuses_to_start_without_a_webhook_secret(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    result = subprocess.run(
        _gunicorn("app:create_app()"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "no webhook secret is set: set GITHUB_WEBHOOK_SECRET and/or JIRA_WEBHOOK_SECRET" in result.stderr


def test_gunicorn_refuses_to_start_with_a_broken_policy(tmp_path: Path) -> None:
    policy = tmp_path / "sop.yaml"
    policy.write_text("workflow: 5\n")
    env = _environment(tmp_path, SOPGUARD_POLICY=str(policy), SOPGUARD_INSECURE_DEV="1")
    result = subprocess.run(
        _gunicorn("app:create_app()"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"{policy}:1:11: workflow: Input should be a valid dictionary" in result.stderr

"""pytest fixtures for tests against a real PostgreSQL and a real Redis (loaded by tests/conftest.py).

A server starts when the first test that needs it runs, on a free loopback port of its own, and
stops when the session ends: after failures, on Ctrl-C and on SIGTERM too. A test asks for

- `postgres_url`: SQLAlchemy URL (`postgresql+psycopg://`) of a database made for this session,
  shared by the tests that ask for it;
- `fresh_postgres_url`: the URL of a new, empty database for this test alone, dropped after it;
- `redis_url`: `redis://127.0.0.1:PORT/0` of a Redis server for this session (never saved to disk).

Without the server binaries (`make test` installs them, tests/servers/install.sh) these tests skip,
except in CI (`CI` set), where a missing server fails them.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import pytest

from tests.servers.launch import (
    PostgresServer,
    postgres_bin_dir,
    redis_binary,
    running_postgres,
    running_redis,
)

SESSION_DATABASE = "sopguard_test"
_fresh_database_numbers = itertools.count(1)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def _unavailable(server: str, looked_in: str) -> NoReturn:
    reason = f"{server} is not installed (looked for {looked_in})"
    if _in_ci():
        pytest.fail(f"{reason}; CI must run these tests: tests/servers/install.sh installs it", pytrace=False)
    pytest.skip(f"{reason}; `make test` installs it (tests/servers/install.sh)")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """pytest tears fixtures down on Ctrl-C but dies at once on SIGTERM (`kill`, a CI timeout):
    while a server runs, SIGTERM raises KeyboardInterrupt instead, so the server is stopped then too."""
    ours = threading.current_thread() is threading.main_thread() and (
        signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    )
    if ours:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        _unavailable("PostgreSQL", "initdb in /usr/lib/postgresql/*/bin and on PATH")
    with _sigterm_as_interrupt(), running_postgres(bin_dir) as server:
        server.create_database(SESSION_DATABASE)
        yield server


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url(SESSION_DATABASE)


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    name = f"test_{next(_fresh_database_numbers)}"
    postgres_server.create_database(name)
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = redis_binary()
    if binary is None:
        _unavailable("Redis", "redis-server on PATH")
    with _sigterm_as_interrupt(), running_redis(binary) as server:
        yield server.url

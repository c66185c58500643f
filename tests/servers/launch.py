"""Start a real PostgreSQL or Redis server on a free loopback port, in a temporary directory.

Each `running_*` context manager yields a handle once the server answers, and on exit stops the
server (also when the body raised) and removes its directory. No test-framework code here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

POSTGRES_USER = "postgres"
"""The superuser initdb creates, and, when we are root, the system user Debian's package creates."""
START_SECONDS = 30.0
START_ATTEMPTS = 3
"""A free port can be taken by someone else between the probe and the server's bind: try anew."""


class ServerError(RuntimeError):
    """A server could not be prepared or did not come up; the message carries its log."""


@dataclass(frozen=True)
class PostgresServer:
    port: int

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg://{POSTGRES_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drops `name`, ending any connection a test left open to it."""
        self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=POSTGRES_USER, dbname="postgres", autocommit=True
        ) as connection:
            connection.execute(statement)


@dataclass(frozen=True)
class RedisServer:
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def postgres_bin_dir() -> Path | None:
    """Debian keeps initdb and postgres off PATH, in /usr/lib/postgresql/MAJOR/bin: the newest wins."""
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda initdb: int(initdb.parts[-3]) if initdb.parts[-3].isdigit() else 0,
    )
    initdb = debian[-1] if debian else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def redis_binary() -> Path | None:
    found = shutil.which("redis-server")
    return Path(found) if found else None


@contextmanager
def running_postgres(bin_dir: Path) -> Iterator[PostgresServer]:
    """A fresh cluster (initdb), fsync off, listening on 127.0.0.1 and a unix socket in its directory.

    initdb and postgres refuse to run as root: as root, both run as the `postgres` system user.
    """
    as_owner, owner = _postgres_owner()
    with _scratch_dir("sopguard-postgres-", owner) as root:
        data = root / "data"
        _run(
            [
                *as_owner,
                str(bin_dir / "initdb"),
                f"--pgdata={data}",
                f"--username={POSTGRES_USER}",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=root,
        )

        def command(port: int) -> list[str]:
            return [
                *as_owner,
                str(bin_dir / "postgres"),
                *("-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(root)),
                *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            ]

        def ready(port: int) -> bool:
            answer = subprocess.run(
                [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)], check=False
            )
            return answer.returncode == 0

        # SIGINT is PostgreSQL's fast shutdown: open sessions are ended instead of waited for.
        with _serving("PostgreSQL", command, ready, root, stop_signal=signal.SIGINT) as port:
            yield PostgresServer(port)


@contextmanager
def running_redis(binary: Path) -> Iterator[RedisServer]:
    """An empty Redis on 127.0.0.1 that never writes its data to disk."""
    with _scratch_dir("sopguard-redis-", None) as root:

        def command(port: int) -> list[str]:
            return [
                str(binary),
                *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)),
                *("--save", "", "--appendonly", "no"),
            ]

        with _serving("Redis", command, _accepts_connections, root, stop_signal=signal.SIGTERM) as port:
            yield RedisServer(port)


def _postgres_owner() -> tuple[list[str], pwd.struct_passwd | None]:
    """The command prefix that runs as the cluster's owner, and that owner when it is not us.

    setpriv execs the program itself (runuser stays its parent), so the server gets our signals.
    """
    if os.geteuid() != 0:
        return [], None
    try:
        owner = pwd.getpwnam(POSTGRES_USER)
    except KeyError:
        raise ServerError(
            f"running as root, PostgreSQL needs the `{POSTGRES_USER}` system user "
            "(Debian's postgresql package creates it)"
        ) from None
    return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"], owner


@contextmanager
def _scratch_dir(prefix: str, owner: pwd.struct_passwd | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=prefix) as name:
        if owner is not None:
            os.chown(name, owner.pw_uid, owner.pw_gid)
        yield Path(name)


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServerError(f"{' '.join(command)} failed:\n{done.stdout}{done.stderr}")


@contextmanager
def _serving(
    name: str,
    command: Callable[[int], list[str]],
    ready: Callable[[int], bool],
    root: Path,
    stop_signal: signal.Signals,
) -> Iterator[int]:
    """Runs `command(port)` until `ready(port)`, yields the port, then stops the server."""
    log = root / "server.log"
    for _attempt in range(START_ATTEMPTS):
        port = free_port()
        with log.open("ab") as output:
            process = subprocess.Popen(
                command(port),
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                # Out of our process group, so a Ctrl-C reaches only pytest, whose teardown stops
                # the server after the last test that uses it, not under it.
                start_new_session=True,
            )
        try:
            if _came_up(process, port, ready):
                yield port
                return
        finally:
            _stop(process, stop_signal)
    raise ServerError(f"{name} did not start; its log:\n{log.read_text(errors='replace')}")


def _came_up(process: subprocess.Popen[bytes], port: int, ready: Callable[[int], bool]) -> bool:
    """True once the server answers; False when it exited first (its port was taken, say)."""
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None:
        if ready(port):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return False


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], stop_signal: signal.Signals) -> None:
    if process.poll() is None:
        process.send_signal(stop_signal)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

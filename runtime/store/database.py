"""Opening the service's database: SQLite in the data directory by default, any SQLAlchemy URL
(PostgreSQL when scaled out). SQLite runs in WAL mode with `synchronous=NORMAL`: a commit is
durable against a crash of the process (a kill, an exception) without an fsync per delivery, and
readers never block the one writer. The WAL is checkpointed (copied into the database, with its
fsync) by a background thread every second rather than by whichever commit crosses the threshold,
so that no request pays for a checkpoint: this is most of what an acknowledged delivery costs.

The schema is versioned with Alembic (`runtime/store/migrations/`): opening a database brings it to
the newest revision, whoever opens it first (`serve`, `worker`, `sopguard db upgrade`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, String, column, create_engine, event, inspect, select, table, text

from runtime.store.schema import metadata

SQLITE_BUSY_TIMEOUT_MS = 10_000
MIGRATIONS = Path(__file__).with_name("migrations")
# The schema of the release before migrations: a database it made has its tables, no `alembic_version`.
BASELINE = "0001"
# Any constant: the PostgreSQL advisory lock every sopguard process takes to change the schema.
POSTGRES_SCHEMA_LOCK = 0x736F7067

log = logging.getLogger(__name__)


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    _into_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
    cursor.close()


def _into_wal(cursor: Any) -> None:
    """`journal_mode=WAL`. Switching a new file's mode needs it to itself, and SQLite answers
    "locked" at once, without its busy wait, while another process creates the tables: wait here."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class _Checkpointer:
    """One daemon thread per process that checkpoints open SQLite databases (`PASSIVE`: it never
    blocks a reader or a writer; several processes on one file may all do it). A process that
    consumes the inbox checkpoints its database every second; one that only receives (a gunicorn
    web worker beside `sopguard worker` processes) leaves that to the consumers and checkpoints only
    when the WAL has grown past `WAL_LIMIT` (no consumer is running), so the door does not pay for
    the copying."""

    EVERY = 1.0
    WAL_LIMIT = 64 * 1024 * 1024

    def __init__(self) -> None:
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._often: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, engine: Engine, *, often: bool = False) -> None:
        with self._lock:
            self._engines.add(engine)
            if often:
                self._often.add(engine)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.EVERY)
            for engine in list(self._engines):
                if engine in self._often or _wal_size(engine) > self.WAL_LIMIT:
                    checkpoint(engine)


def _wal_size(engine: Engine) -> int:
    try:
        return os.stat(f"{engine.url.database}-wal").st_size
    except OSError:
        return 0


def checkpoint_often(engine: Engine) -> None:
    """This process consumes the inbox: it checkpoints `engine`'s WAL every second."""
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        _CHECKPOINTER.watch(engine, often=True)


def checkpoint(engine: Engine) -> None:
    """Copy the WAL into the database file now, as far as readers allow."""
    try:
        with engine.connect() as db:
            db.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
    except Exception as error:  # a database being removed (a test's), or busy: the next round will do
        log.debug("checkpoint of %s skipped: %s", engine.url, error)


_CHECKPOINTER = _Checkpointer()


def connect(url: str) -> Engine:
    """An engine for `url`, its schema left as it is."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if url != "sqlite:///:memory:":
            _CHECKPOINTER.watch(engine)
    return engine


def open_database(url: str) -> Engine:
    """An engine for `url`, its schema created or brought up to date."""
    engine = connect(url)
    ensure_schema(engine)
    return engine


def display_name(engine: Engine) -> str:
    """The engine's URL as the logs and the command line show it: without its password."""
    return urllib.parse.unquote(engine.url.render_as_string(hide_password=True))


@dataclass(frozen=True)
class SchemaChange:
    """What `ensure_schema` found (`before`: None for an empty database) and left (`after`)."""

    database: str
    before: str | None
    after: str

    def __str__(self) -> str:
        if self.before is None:
            return f"created {self.database} at {self.after}"
        if self.before == self.after:
            return f"{self.database} already at {self.after}"
        return f"upgraded {self.database} from {self.before} to {self.after}"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, in code: the environment ships in the package, no alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None, "runtime/store/migrations/versions has no revision"
    return head


def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def _revision(connection: Connection) -> str | None:
    """The database's revision: None when empty, `BASELINE` when made by the release before migrations."""
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables:
        # Read directly: Alembic's own MigrationContext would log its set-up at every start.
        version_num = column("version_num", String)
        return connection.execute(select(version_num).select_from(table("alembic_version"))).scalar()
    return BASELINE if tables & set(metadata.tables) else None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _revision(connection)


class UnknownRevision(RuntimeError):
    """The database is at a revision this version does not have: a newer sopguard upgraded it."""


def ensure_schema(engine: Engine) -> SchemaChange:
    """Create the schema of an empty database, or upgrade an older one to the newest revision.

    Safe when several processes start at once on one database: the first to find work takes the
    schema lock and does it; the others wait for the lock, then find the schema current.
    """
    database, head = display_name(engine), head_revision()
    before = current_revision(engine)
    if before != head:
        with _schema_lock(engine) as connection:
            before = _revision(connection)
            if before != head:
                _bring_to_head(connection, before, database)
        if before != head:
            log.info("%s", SchemaChange(database, before, head))
    return SchemaChange(database, before, head)


def _bring_to_head(connection: Connection, revision: str | None, database: str) -> None:
    if revision is not None and revision not in known_revisions():
        raise UnknownRevision(
            f"{database} is at schema revision {revision}, which this version of sopguard (at "
            f"{head_revision()}) does not know: run the version that upgraded it, or restore a backup"
        )
    migrations = MigrationContext.configure(connection)
    if revision is None:
        # A fresh database: the tables straight from schema.py, faster than replaying every revision.
        metadata.create_all(connection)
        migrations.stamp(_scripts(), "head")
        return
    if not inspect(connection).has_table("alembic_version"):
        migrations.stamp(_scripts(), BASELINE)
    command.upgrade(alembic_config(connection), "head")


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database's schema lock; committed on exit.

    SQLite: `BEGIN IMMEDIATE` takes the write lock at once (the other processes wait for it, up to
    the busy timeout). PostgreSQL: a transaction-scoped advisory lock; its DDL is transactional.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": POSTGRES_SCHEMA_LOCK})
        yield connection
        connection.commit()


def as_utc(instant: dt.datetime | None) -> dt.datetime | None:
    """Instants are stored in UTC: SQLite keeps no offset, so a zone's wall time would compare wrongly."""
    return instant.astimezone(dt.UTC) if instant is not None else None


def aware(instant: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns the stored UTC instants without their zone."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=dt.UTC)


class WriterLock:
    """One writer at a time on a SQLite file, across this machine's processes, woken the moment the
    last one commits. SQLite lets one transaction write at a time and makes the others wait in its
    busy handler, which naps a millisecond and more between tries: under a stream of short writes
    from several processes (the door under load) the naps, not the writes, bound the throughput.
    An advisory `flock` on a file beside the database queues the writers in the kernel instead.
    Other databases serialise writers well enough themselves: there it does nothing."""

    def __init__(self, engine: Engine) -> None:
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._threads = threading.Lock()
        self._file: int | None = None

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._path is None:
            yield
            return
        with self._threads:
            if self._file is None:
                self._file = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._file, fcntl.LOCK_UN)

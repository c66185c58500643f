"""Opening the service's database: SQLite in the data directory by default, any SQLAlchemy URL
(PostgreSQL when scaled out). SQLite runs in WAL mode with `synchronous=NORMAL`: a commit is
durable against a crash of the process (a kill, an exception) without an fsync per delivery, and
readers never block the one writer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event

from runtime.store.schema import metadata

SQLITE_BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(connection: Any, _: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def open_database(url: str) -> Engine:
    """An engine for `url`, its schema created or brought up to date."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    ensure_schema(engine)
    return engine


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def as_utc(instant: dt.datetime | None) -> dt.datetime | None:
    """Instants are stored in UTC: SQLite keeps no offset, so a zone's wall time would compare wrongly."""
    return instant.astimezone(dt.UTC) if instant is not None else None


def aware(instant: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns the stored UTC instants without their zone."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=dt.UTC)

"""The door's write on SQLite: every delivery the receiver's threads keep at the same moment goes
into one transaction, under one writer lock, with one commit.

SQLite has one writer at a time per file. The web processes' request threads would otherwise each
take the file's writer lock (`WriterLock`), write one row and commit, and a lock holder preempted on
a busy machine holds everyone up. Here a thread adds its row to the process's pending rows and waits
for the process's *leader*: whichever thread holds the leader lock writes all the rows pending then
(its own and those that came meanwhile) and tells each thread what became of its row. Nothing is
acknowledged before its commit. Rows go straight to the driver, bound as SQLAlchemy binds them, so
every reader sees the same row; `INSERT ... ON CONFLICT DO NOTHING` tells a duplicate from a new
delivery without failing the batch.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from runtime.store.database import WriterLock
from runtime.store.schema import deliveries

COLUMNS = ("key", "source", "delivery_id", "event_name", "issue", "body", "received_at", "status", "attempts")


class _Row:
    """One thread's row, and the wake-up it waits on: a bare lock, taken at birth and released by
    the leader that wrote the row (or that hands it the lead), far cheaper than an `Event`."""

    __slots__ = ("error", "kept", "lead", "values", "woken")

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.woken = threading.Lock()
        self.woken.acquire()
        self.kept = False
        self.lead = False
        self.error: BaseException | None = None


class GroupedInsert:
    def __init__(self, engine: Engine, writer: WriterLock) -> None:
        self.engine = engine
        self.writer = writer
        self.sql = (
            f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            "ON CONFLICT (key) DO NOTHING"
        )
        # Only the columns whose values the dialect converts (times, as SQLite text) need a call.
        self.binds = {name: bind for name in COLUMNS if (bind := _binder(engine, name)) is not None}
        self._pending: list[_Row] = []
        self._lock = threading.Lock()  # guards `_pending` and `_leading`
        self._leading = False
        self._connection: Any = None  # the leaders' own, opened by this process (see `_driver`)
        self._opened_by = 0

    def keep(self, row: dict[str, Any]) -> bool:
        """Write the row with whatever else is pending; `False` when its key was there already.

        With no write under way, the thread leads: it writes what is pending (its own row first).
        Otherwise it waits on its own row; the leader that wrote it wakes it, or wakes it to lead
        the next batch. No thread waits on another's wake-up, so they do not convoy on one lock."""
        binds = self.binds
        mine = _Row(tuple(binds[name](row[name]) if name in binds else row[name] for name in COLUMNS))
        with self._lock:
            self._pending.append(mine)
            mine.lead = not self._leading
            self._leading = True
        if not mine.lead:
            mine.woken.acquire()
        if mine.lead:
            self._lead()
        if mine.error is not None:
            raise mine.error
        return mine.kept

    def _lead(self) -> None:
        """Write one batch, wake its rows, and hand the lead to the first row that came meanwhile."""
        with self._lock:
            batch, self._pending = self._pending, []
        self._write(batch)
        for written in batch:
            if not written.lead:
                written.woken.release()
        with self._lock:
            if self._pending:
                successor = self._pending[0]
                successor.lead = True
                successor.woken.release()
            else:
                self._leading = False

    def _write(self, batch: Sequence[_Row]) -> None:
        try:
            connection = self._driver()
            try:
                with self.writer.held():
                    kept = [connection.execute(self.sql, row.values).rowcount == 1 for row in batch]
                    connection.commit()
            except BaseException:
                self._forget_connection()
                raise
        except BaseException as failure:
            error = (
                DBAPIError.instance(self.sql, (), failure, sqlite3.Error)
                if isinstance(failure, sqlite3.Error)
                else failure
            )
            for row in batch:
                row.error = error
            return
        for row, was_kept in zip(batch, kept, strict=True):
            row.kept = was_kept

    def _driver(self) -> Any:
        """The driver connection the leaders of this process write with, opened through the engine
        (so with its pragmas) and kept out of its pool: a checkout and return per batch cost as much
        as the insert. A forked child opens its own; one that failed is replaced."""
        if self._connection is None or self._opened_by != os.getpid():
            pooled = self.engine.raw_connection()
            pooled.detach()
            self._connection, self._opened_by = pooled.dbapi_connection, os.getpid()
        return self._connection

    def _forget_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(sqlite3.Error):
                connection.rollback()
                connection.close()


def _binder(engine: Engine, column: str) -> Callable[[Any], Any] | None:
    """How SQLAlchemy's dialect binds a value of this column (a time as SQLite text, say); `None`
    when it passes the value as it is."""
    kind = deliveries.c[column].type.dialect_impl(engine.dialect)
    binder: Callable[[Any], Any] | None = kind.bind_processor(engine.dialect)
    return binder

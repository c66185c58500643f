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

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from runtime.store.database import WriterLock
from runtime.store.schema import deliveries

COLUMNS = ("key", "source", "delivery_id", "event_name", "issue", "body", "received_at", "status", "attempts")


@dataclass
class _Row:
    values: tuple[Any, ...]
    done: threading.Event = field(default_factory=threading.Event)
    kept: bool = False
    error: BaseException | None = None


class GroupedInsert:
    def __init__(self, engine: Engine, writer: WriterLock) -> None:
        self.engine = engine
        self.writer = writer
        self.sql = (
            f"INSERT INTO deliveries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            "ON CONFLICT (key) DO NOTHING"
        )
        self.binds = [_binder(engine, name) for name in COLUMNS]
        self._pending: list[_Row] = []
        self._pending_lock = threading.Lock()
        self._leader = threading.Lock()

    def keep(self, row: dict[str, Any]) -> bool:
        """Write the row with whatever else is pending; `False` when its key was there already."""
        mine = _Row(tuple(bind(row[name]) for name, bind in zip(COLUMNS, self.binds, strict=True)))
        with self._pending_lock:
            self._pending.append(mine)
        with self._leader:
            if not mine.done.is_set():
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._write(batch)
        if mine.error is not None:
            raise mine.error
        return mine.kept

    def _write(self, batch: Sequence[_Row]) -> None:
        try:
            connection = self.engine.raw_connection()  # the pool's: a disposed pool reconnects
            try:
                with self.writer.held():
                    kept = [connection.execute(self.sql, row.values).rowcount == 1 for row in batch]
                    connection.commit()
            except BaseException:
                connection.rollback()
                raise
            finally:
                connection.close()
        except BaseException as failure:
            error = (
                DBAPIError.instance(self.sql, (), failure, sqlite3.Error)
                if isinstance(failure, sqlite3.Error)
                else failure
            )
            for row in batch:
                row.error = error
                row.done.set()
            return
        for row, was_kept in zip(batch, kept, strict=True):
            row.kept = was_kept
            row.done.set()


def _binder(engine: Engine, column: str) -> Callable[[Any], Any]:
    """How SQLAlchemy's dialect binds a value of this column (a time as SQLite text, say)."""
    kind = deliveries.c[column].type.dialect_impl(engine.dialect)
    return kind.bind_processor(engine.dialect) or _same


def _same(value: Any) -> Any:
    return value

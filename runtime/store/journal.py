"""The journal of tracker writes: what sopguard began and finished on each issue, so that a retried,
resumed or redelivered delivery never repeats a write that took effect.

A write is recorded `started` before its request and `done` (with what the tracker answered: a
comment's id, a created issue's number) or `failed` (refused for good) after it. A `started` entry
found later means the request may or may not have taken effect: only then does a connector look on
the tracker before writing again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from connector.base import Recorded, WriteState
from runtime.store.database import as_utc
from runtime.store.schema import writes


class IssueJournal:
    """The journal of one issue, as one delivery (or sweep) sees it; implements `connector.base.Journal`."""

    def __init__(
        self,
        engine: Engine,
        issue: str,
        delivery: str,
        clock: Callable[[], dt.datetime],
        *,
        complete: bool = True,
        retry_refused: bool = False,
    ) -> None:
        self.engine = engine
        self.issue = issue
        self.delivery = delivery
        self.clock = clock
        self.complete = complete
        # A part of a notice tried again: a write refused last time is made again, not skipped.
        self.retry_refused = retry_refused

    def recall(self, key: str) -> Recorded | None:
        with self.engine.connect() as db:
            row = db.execute(
                select(writes.c.state, writes.c.result).where(
                    writes.c.issue == self.issue, writes.c.key == key
                )
            ).first()
        if row is None or (self.retry_refused and row[0] == "failed"):
            return None
        state: WriteState = row[0]
        return Recorded(state, dict(row[1] or {}))

    def begin(self, key: str) -> None:
        self._record(key, "started", {})

    def done(self, key: str, result: Mapping[str, Any] | None = None) -> None:
        self._record(key, "done", result or {})

    def failed(self, key: str, reason: str) -> None:
        self._record(key, "failed", {"reason": reason})

    def _record(self, key: str, state: WriteState, result: Mapping[str, Any]) -> None:
        values = {
            "state": state,
            "result": dict(result),
            "delivery": self.delivery,
            "at": as_utc(self.clock()),
        }
        with self.engine.begin() as db:
            changed = db.execute(
                update(writes).where(writes.c.issue == self.issue, writes.c.key == key).values(**values)
            ).rowcount
            if changed:
                return
        try:
            with self.engine.begin() as db:
                db.execute(insert(writes).values(issue=self.issue, key=key, **values))
        except IntegrityError:  # recorded in the meantime by the same turn's other write path
            with self.engine.begin() as db:
                db.execute(
                    update(writes).where(writes.c.issue == self.issue, writes.c.key == key).values(**values)
                )

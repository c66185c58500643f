"""Up to when each repository or project was last reconciled with its tracker."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine, insert, select, update

from runtime.store.database import as_utc, aware
from runtime.store.schema import reconciles


class Reconciles:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def last(self, scope: str) -> dt.datetime | None:
        """The end of the last reconcile of `scope` (`github:owner/name`, `jira:PROJ`), if any."""
        with self.engine.connect() as db:
            until = db.execute(select(reconciles.c.until).where(reconciles.c.scope == scope)).scalar()
        return aware(until)

    def done(self, scope: str, until: dt.datetime) -> None:
        """`scope` is reconciled up to `until`: the next reconcile starts there."""
        with self.engine.begin() as db:
            moved = db.execute(
                update(reconciles).where(reconciles.c.scope == scope).values(until=as_utc(until))
            )
            if moved.rowcount == 0:
                db.execute(insert(reconciles).values(scope=scope, until=as_utc(until)))

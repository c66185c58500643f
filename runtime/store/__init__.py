"""The service's own records, split by job (see `runtime.store.schema`): the inbox of deliveries and
the per-issue turns, the journal of tracker writes, the issue ledger, and the audit log. One
database holds them all, so a delivery's outcome is committed in one transaction; or the inbox and
the turns live in Redis (`queue_url`, see `runtime.store.redis_inbox`) and the rest in the database."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine

from config.settings import REDIS_SCHEMES
from policies.models import IssueRef
from runtime.store.audit import AuditLog
from runtime.store.database import open_database
from runtime.store.inbox import Final, Inbox, InboxPort
from runtime.store.journal import IssueJournal
from runtime.store.ledger import Ledger, LedgerUpdate, issue_key


class Store:
    def __init__(self, url: str, queue_url: str = "") -> None:
        """The store in the database at `url`; its inbox there too, or in Redis at a `redis://`
        (or `rediss://`) `queue_url`."""
        self.url = url
        self.engine = open_database(url)
        self.inbox: InboxPort = _open_inbox(self.engine, queue_url)
        self.ledger = Ledger(self.engine)
        self.audit = AuditLog(self.engine)

    def journal(
        self,
        ref: IssueRef,
        delivery: str,
        clock: Callable[[], dt.datetime],
        *,
        complete: bool,
        retry_refused: bool = False,
    ) -> IssueJournal:
        return IssueJournal(
            self.engine, issue_key(ref), delivery, clock, complete=complete, retry_refused=retry_refused
        )

    def record(
        self,
        *,
        seq: int | None,
        status: Final,
        error: str | None,
        source: str,
        delivery_id: str,
        event_name: str,
        ref: IssueRef,
        audit_rows: Sequence[Mapping[str, Any]],
        ledger: LedgerUpdate | None,
        now: dt.datetime,
    ) -> None:
        """A delivery's outcome in one transaction: its audit rows, what the ledger learns, and its
        final status in the inbox (when it came through the inbox).

        An inbox in Redis is told the final status right after the commit: a crash between the two
        leaves the delivery `processing`, so it runs again once its turn's lease has run out; its
        journal makes that repeat write nothing to the tracker again (the audit log gets its rows
        a second time)."""
        in_database = self.inbox if isinstance(self.inbox, Inbox) else None
        with self.engine.begin() as db:
            self.audit.write(
                db,
                audit_rows,
                at=now,
                delivery_id=delivery_id,
                source=source,
                issue=str(ref),
                event=event_name,
            )
            if ledger is not None:
                self.ledger.write(db, ref, ledger, now)
            if seq is not None and in_database is not None:
                in_database.finish_in(db, seq, status, now, error)
        if seq is not None and in_database is None:
            self.inbox.finish(seq, status, now, error)


def _open_inbox(engine: Engine, queue_url: str) -> InboxPort:
    if not queue_url:
        return Inbox(engine)
    if not queue_url.startswith(REDIS_SCHEMES):
        raise ValueError(f"the queue URL must be redis:// or rediss:// (or none): {queue_url!r}")
    from runtime.store.redis_inbox import RedisInbox  # redis is an extra: only needed here

    return RedisInbox.from_url(queue_url)

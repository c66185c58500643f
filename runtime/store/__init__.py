"""The service's own records, split by job (see `runtime.store.schema`): the inbox of deliveries and
the per-issue turns, the journal of tracker writes, the issue ledger, and the audit log. One
database holds them all, so a delivery's outcome is committed in one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from policies.models import IssueRef
from runtime.store.audit import AuditLog
from runtime.store.database import open_database
from runtime.store.inbox import Final, Inbox
from runtime.store.journal import IssueJournal
from runtime.store.ledger import Ledger, LedgerUpdate, issue_key


class Store:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = open_database(url)
        self.inbox = Inbox(self.engine)
        self.ledger = Ledger(self.engine)
        self.audit = AuditLog(self.engine)

    def journal(
        self, ref: IssueRef, delivery: str, clock: Callable[[], dt.datetime], *, complete: bool
    ) -> IssueJournal:
        return IssueJournal(self.engine, issue_key(ref), delivery, clock, complete=complete)

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
        final status in the inbox (when it came through the inbox)."""
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
            if seq is not None:
                self.inbox.finish_in(db, seq, status, now, error)

"""The service's own records: deliveries seen, what it remembers of each issue, and the audit log.

SQLite in the data directory by default; any SQLAlchemy URL (PostgreSQL when scaled out).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from policies.models import (
    Action,
    Decision,
    IssueRef,
    RememberManualPriority,
    RememberState,
)

metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("source", String(20), nullable=False),
    Column("delivery_id", String(255), nullable=False),
    Column("event_name", String(100), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("status", String(20), nullable=False),
    Column("processed_at", DateTime(timezone=True)),
)

issues = Table(
    "issues",
    metadata,
    Column("ref", String(300), primary_key=True),
    Column("last_state", String(100)),
    Column("manual_priority", String(20)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("delivery_id", String(255), nullable=False),
    Column("source", String(20), nullable=False),
    Column("issue", String(300), nullable=False, index=True),
    Column("event", String(100), nullable=False),
    Column("rule_id", String(200)),
    Column("sop", String(10)),
    Column("passed", Boolean),
    Column("mode", String(10)),
    Column("reasons", JSON, nullable=False),
    Column("actions", JSON, nullable=False),
    Column("outcome", Text, nullable=False),
)


@dataclass(frozen=True)
class IssueMemory:
    last_state: str | None = None
    manual_priority: str | None = None


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    delivery_id: str
    source: str
    issue: str
    event: str
    rule_id: str | None
    sop: str | None
    passed: bool | None
    mode: str | None
    reasons: list[str]
    actions: list[dict[str, Any]]
    outcome: str


def issue_key(ref: IssueRef) -> str:
    return f"{ref.source}:{ref}"


def describe(action: Action) -> dict[str, Any]:
    """An action as JSON-friendly data for the audit log."""
    data = {
        key: sorted(value) if isinstance(value, frozenset) else value for key, value in asdict(action).items()
    }
    return {"type": type(action).__name__, **data}


class Store:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True)
        metadata.create_all(self.engine)

    # --- deliveries ---------------------------------------------------------------------

    def register_delivery(self, source: str, delivery_id: str, event_name: str, now: dt.datetime) -> bool:
        """Claim a delivery before queueing it; `False` when it was queued before (a redelivery).

        A claim whose delivery never reached the queue (the process died in between) stays
        `received`, and a redelivery takes it over, so nothing is lost.
        """
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(deliveries).values(
                        key=f"{source}:{delivery_id}",
                        source=source,
                        delivery_id=delivery_id,
                        event_name=event_name,
                        received_at=now,
                        status="received",
                    )
                )
        except IntegrityError:
            return self.delivery_status(source, delivery_id) == "received"
        return True

    def mark_queued(self, source: str, delivery_id: str) -> None:
        """Confirm a claim once the delivery is in the queue (unless a worker already finished it)."""
        key = f"{source}:{delivery_id}"
        with self.engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.key == key, deliveries.c.status == "received")
                .values(status="queued")
            )

    def forget_delivery(self, source: str, delivery_id: str) -> None:
        """Undo `register_delivery` when the delivery could not be queued, so a retry is accepted."""
        with self.engine.begin() as db:
            db.execute(deliveries.delete().where(deliveries.c.key == f"{source}:{delivery_id}"))

    def delivery_status(self, source: str, delivery_id: str) -> str | None:
        with self.engine.connect() as db:
            row = db.execute(select(deliveries.c.status).where(deliveries.c.key == f"{source}:{delivery_id}"))
            return row.scalar_one_or_none()

    # --- issues ---------------------------------------------------------------------------

    def memory(self, ref: IssueRef) -> IssueMemory:
        with self.engine.connect() as db:
            row = db.execute(select(issues).where(issues.c.ref == issue_key(ref))).mappings().first()
        return IssueMemory(row["last_state"], row["manual_priority"]) if row else IssueMemory()

    def remember_state(self, ref: IssueRef, state: str, now: dt.datetime) -> None:
        """Record an issue's SOP state directly (a backfill from the tracker, or an admin's correction)."""
        with self.engine.begin() as db:
            self._remember(db, ref, [RememberState("backfill", state)], now)

    def _remember(self, db: Connection, ref: IssueRef, actions: Sequence[Action], now: dt.datetime) -> None:
        changes: dict[str, Any] = {}
        for action in actions:
            if isinstance(action, RememberState):
                changes["last_state"] = action.state
            elif isinstance(action, RememberManualPriority):
                changes["manual_priority"] = action.level
        if not changes:
            return
        key = issue_key(ref)
        updated = db.execute(update(issues).where(issues.c.ref == key).values(**changes, updated_at=now))
        if updated.rowcount == 0:
            db.execute(insert(issues).values(ref=key, **changes, updated_at=now))

    # --- decisions -------------------------------------------------------------------------

    def record_decision(
        self,
        *,
        source: str,
        delivery_id: str,
        event_name: str,
        ref: IssueRef,
        decision: Decision,
        outcomes: dict[str, str],
        now: dt.datetime,
    ) -> None:
        """Write the audit rows, update the issue's memory and close the delivery, in one transaction.

        `outcomes` maps a rule id to what became of its actions (applied, recorded, failed: ...).
        """
        rows = [
            {
                "rule_id": result.rule_id,
                "sop": result.sop,
                "passed": result.passed,
                "mode": str(result.mode),
                "reasons": list(result.reasons),
                "actions": [describe(a) for a in decision.actions if result.rule_id in a.rule_id.split("+")],
                "outcome": outcomes.get(result.rule_id, "no action"),
            }
            for result in decision.results
        ] or [
            {
                "rule_id": None,
                "sop": None,
                "passed": None,
                "mode": None,
                "reasons": [decision.note] if decision.note else [],
                "actions": [],
                "outcome": "no action",
            }
        ]
        common = {
            "at": now,
            "delivery_id": delivery_id,
            "source": source,
            "issue": str(ref),
            "event": event_name,
        }
        with self.engine.begin() as db:
            db.execute(insert(audit), [{**common, **row} for row in rows])
            self._remember(db, ref, decision.actions, now)
            self._finish(db, source, delivery_id, "processed", now)

    def mark_delivery(self, source: str, delivery_id: str, status: str, now: dt.datetime) -> None:
        with self.engine.begin() as db:
            self._finish(db, source, delivery_id, status, now)

    @staticmethod
    def _finish(db: Connection, source: str, delivery_id: str, status: str, now: dt.datetime) -> None:
        db.execute(
            update(deliveries)
            .where(deliveries.c.key == f"{source}:{delivery_id}")
            .values(status=status, processed_at=now)
        )

    def audit_entries(self, issue: str | None = None, limit: int = 200) -> Iterator[AuditEntry]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if issue:
            query = query.where(audit.c.issue == issue)
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        for row in reversed(rows):
            yield AuditEntry(**{k: v for k, v in row.items() if k != "id"})


def to_json(entry: AuditEntry) -> str:
    return json.dumps({**asdict(entry), "at": entry.at.isoformat()}, ensure_ascii=False)

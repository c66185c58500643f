"""The service's own records: deliveries seen, what it remembers of each issue, and the audit log.

SQLite in the data directory by default; any SQLAlchemy URL (PostgreSQL when scaled out).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
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

from policies.ledger import IssueFacts
from policies.models import (
    Action,
    Decision,
    IssueRef,
    RememberManualPriority,
    RememberState,
    RuleResult,
)
from policies.sla import (
    Closed,
    Commented,
    Created,
    DelayAnnounced,
    PriorityChanged,
    Rated,
    Reopened,
    StateChanged,
    TimelineEvent,
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
    Column("source", String(20)),
    Column("scope", String(255)),
    Column("key", String(100)),
    Column("last_state", String(100)),
    Column("manual_priority", String(20)),
    Column("priority", String(20)),
    Column("is_open", Boolean, index=True),
    Column("reporter", String(255)),
    Column("reporter_id", String(255)),
    Column("assignees", JSON),
    Column("labels", JSON),
    Column("context", JSON),
    Column("next_due_at", DateTime(timezone=True), index=True),
    Column("history_before", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

timeline = Table(
    "timeline",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ref", String(300), nullable=False, index=True),
    Column("entry", JSON, nullable=False),
)

notifications = Table(
    "notifications",
    metadata,
    Column("ref", String(300), primary_key=True),
    Column("target", String(100), primary_key=True),
    Column("cycle", Integer, primary_key=True),
    Column("threshold", String(20), primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
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
    priority: str | None = None


@dataclass(frozen=True)
class LedgerUpdate:
    """What one delivery teaches the service about its issue (see `policies.ledger`)."""

    facts: IssueFacts
    entries: Sequence[TimelineEvent]
    context: Mapping[str, Any]
    next_due_at: dt.datetime | None = None
    # First seen after its creation: the tracker's history before this instant is still to be read.
    history_before: dt.datetime | None = None


@dataclass(frozen=True)
class FollowedIssue:
    """An open issue as the ledger knows it: enough for a sweep to act without reading the tracker."""

    ref: IssueRef
    facts: IssueFacts
    context: Mapping[str, Any]
    timeline: tuple[TimelineEvent, ...]
    notified: frozenset[tuple[str, int, str]]
    history_before: dt.datetime | None = None


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


def as_utc(instant: dt.datetime | None) -> dt.datetime | None:
    """Instants are stored in UTC: SQLite keeps no offset, so a zone's wall time would compare wrongly."""
    return instant.astimezone(dt.UTC) if instant is not None else None


def _aware(instant: dt.datetime | None) -> dt.datetime | None:
    """SQLite returns the stored UTC instants without their zone."""
    if instant is None or instant.tzinfo is not None:
        return instant
    return instant.replace(tzinfo=dt.UTC)


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
        return (
            IssueMemory(row["last_state"], row["manual_priority"], row["priority"]) if row else IssueMemory()
        )

    def remember_state(self, ref: IssueRef, state: str, now: dt.datetime) -> None:
        """Record an issue's SOP state directly (a backfill from the tracker, or an admin's correction)."""
        with self.engine.begin() as db:
            self._remember(db, ref, [RememberState("backfill", state)], now)

    def _remember(
        self,
        db: Connection,
        ref: IssueRef,
        actions: Sequence[Action],
        now: dt.datetime,
        ledger: LedgerUpdate | None = None,
    ) -> None:
        changes: dict[str, Any] = {"source": ref.source, "scope": ref.scope, "key": ref.key}
        if ledger is not None:
            facts = ledger.facts
            changes |= {
                "priority": facts.priority,
                "is_open": facts.is_open,
                "reporter": facts.reporter,
                "reporter_id": facts.reporter_id,
                "assignees": list(facts.assignees),
                "labels": sorted(facts.labels),
                "context": dict(ledger.context),
                "next_due_at": as_utc(ledger.next_due_at),
            }
            if ledger.history_before is not None:
                changes["history_before"] = as_utc(ledger.history_before)
            if ledger.entries:
                db.execute(
                    insert(timeline), [{"ref": issue_key(ref), "entry": encode(e)} for e in ledger.entries]
                )
        for action in actions:
            if isinstance(action, RememberState):
                changes["last_state"] = action.state
            elif isinstance(action, RememberManualPriority):
                changes["manual_priority"] = action.level
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
        ledger: LedgerUpdate | None = None,
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
            self._remember(db, ref, decision.actions, now, ledger)
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

    # --- the ledger, for sweeps and reports ----------------------------------------------------

    def followed_issues(
        self,
        *,
        open_only: bool = True,
        due_before: dt.datetime | None = None,
        ref: IssueRef | None = None,
        history_pending: bool = False,
    ) -> list[FollowedIssue]:
        """Issues the ledger follows: open ones, or those with an SLA notice due by `due_before`, or
        one issue; loaded in three queries whatever their number."""
        query = select(issues).where(issues.c.source.is_not(None))
        if open_only:
            query = query.where(issues.c.is_open.is_(True))
        if due_before is not None:
            query = query.where(issues.c.next_due_at <= as_utc(due_before))
        if ref is not None:
            query = query.where(issues.c.ref == issue_key(ref))
        if history_pending:
            query = query.where(issues.c.history_before.is_not(None))
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
            keys = [row["ref"] for row in rows]
            entries: dict[str, list[TimelineEvent]] = {key: [] for key in keys}
            done: dict[str, set[tuple[str, int, str]]] = {key: set() for key in keys}
            for chunk in (keys[i : i + 500] for i in range(0, len(keys), 500)):
                for owner, entry in db.execute(
                    select(timeline.c.ref, timeline.c.entry)
                    .where(timeline.c.ref.in_(chunk))
                    .order_by(timeline.c.id)
                ):
                    entries[owner].append(decode(entry))
                claimed = select(
                    notifications.c.ref,
                    notifications.c.target,
                    notifications.c.cycle,
                    notifications.c.threshold,
                ).where(notifications.c.ref.in_(chunk))
                for owner, target, cycle, threshold in db.execute(claimed):
                    done[owner].add((target, cycle, threshold))
        return [
            FollowedIssue(
                ref=IssueRef(row["source"], row["scope"], row["key"]),
                facts=IssueFacts(
                    is_open=bool(row["is_open"]),
                    priority=row["priority"],
                    reporter=row["reporter"] or "",
                    assignees=tuple(row["assignees"] or ()),
                    labels=frozenset(row["labels"] or ()),
                    reporter_id=row["reporter_id"] or "",
                ),
                context=row["context"] or {},
                timeline=tuple(entries[row["ref"]]),
                notified=frozenset(done[row["ref"]]),
                history_before=_aware(row["history_before"]),
            )
            for row in rows
        ]

    def replace_beginning(self, ref: IssueRef, beginning: Sequence[TimelineEvent]) -> None:
        """Put the history read from the tracker in place of the creation assumed when the issue was
        first seen, and mark the history as read."""
        key = issue_key(ref)
        with self.engine.begin() as db:
            for row_id, entry in db.execute(
                select(timeline.c.id, timeline.c.entry).where(timeline.c.ref == key)
            ):
                if entry.get("type") == "Created":
                    db.execute(timeline.delete().where(timeline.c.id == row_id))
            if beginning:
                db.execute(insert(timeline), [{"ref": key, "entry": encode(e)} for e in beginning])
            db.execute(update(issues).where(issues.c.ref == key).values(history_before=None))

    def set_next_due(self, ref: IssueRef, when: dt.datetime | None) -> None:
        with self.engine.begin() as db:
            db.execute(update(issues).where(issues.c.ref == issue_key(ref)).values(next_due_at=as_utc(when)))

    def record_notice(
        self, ref: IssueRef, result: RuleResult, actions: Sequence[Action], outcome: str, now: dt.datetime
    ) -> None:
        """An SLA notice in the audit log, beside the decisions on deliveries."""
        row = {
            "at": now,
            "delivery_id": "sla-sweep",
            "source": ref.source,
            "issue": str(ref),
            "event": f"sla.{result.rule_id}",
            "rule_id": result.rule_id,
            "sop": result.sop,
            "passed": result.passed,
            "mode": str(result.mode),
            "reasons": list(result.reasons),
            "actions": [describe(a) for a in actions],
            "outcome": outcome,
        }
        with self.engine.begin() as db:
            db.execute(insert(audit), [row])

    def release_notifications(self, ref: IssueRef, claims: Sequence[tuple[str, int, str]]) -> None:
        """Give claims back when their notice could not be posted, so a later sweep tries again."""
        with self.engine.begin() as db:
            for target, cycle, threshold in claims:
                db.execute(
                    notifications.delete().where(
                        notifications.c.ref == issue_key(ref),
                        notifications.c.target == target,
                        notifications.c.cycle == cycle,
                        notifications.c.threshold == threshold,
                    )
                )

    def claim_notification(
        self, ref: IssueRef, target: str, cycle: int, threshold: str, now: dt.datetime
    ) -> bool:
        """Claim one SLA notice; `False` when another sweep (or an earlier one) already claimed it."""
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(notifications).values(
                        ref=issue_key(ref), target=target, cycle=cycle, threshold=threshold, at=now
                    )
                )
        except IntegrityError:
            return False
        return True

    def audit_entries(self, issue: str | None = None, limit: int = 200) -> Iterator[AuditEntry]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if issue:
            query = query.where(audit.c.issue == issue)
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        for row in reversed(rows):
            yield AuditEntry(**{k: v for k, v in row.items() if k != "id"})


_TIMELINE_TYPES: dict[str, type[TimelineEvent]] = {
    cls.__name__: cls
    for cls in (Created, StateChanged, Commented, PriorityChanged, Closed, Reopened, DelayAnnounced, Rated)
}


def encode(entry: TimelineEvent) -> dict[str, Any]:
    """A timeline event as JSON: its type and fields, instants in ISO 8601."""
    fields = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in asdict(entry).items()}
    return {"type": type(entry).__name__, **fields}


def decode(data: Mapping[str, Any]) -> TimelineEvent:
    fields: dict[str, Any] = {k: v for k, v in data.items() if k != "type"}
    fields["at"] = dt.datetime.fromisoformat(fields["at"])
    return _TIMELINE_TYPES[data["type"]](**fields)


def to_json(entry: AuditEntry) -> str:
    return json.dumps({**asdict(entry), "at": entry.at.isoformat()}, ensure_ascii=False)

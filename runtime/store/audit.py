"""The audit log: every decision, SLA notice and failed delivery, with the rule and SOP clause."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.engine import Connection, RowMapping

from policies.models import Action, Adopt, Decision, IssueRef, RuleResult
from runtime.store.database import as_utc, aware
from runtime.store.schema import audit


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


def describe(action: Action) -> dict[str, Any]:
    """An action as JSON-friendly data for the audit log (an adoption's timeline as its size)."""
    if isinstance(action, Adopt):
        return {
            "type": "Adopt",
            "rule_id": action.rule_id,
            "at": action.at.isoformat(),
            "state": action.state,
            "timeline_entries": len(action.beginning),
            "claimed_quietly": [list(claim) for claim in action.claims],
        }
    data = {
        key: sorted(value) if isinstance(value, frozenset) else value for key, value in asdict(action).items()
    }
    return {"type": type(action).__name__, **data}


def to_json(entry: AuditEntry) -> str:
    return json.dumps({**asdict(entry), "at": entry.at.isoformat()}, ensure_ascii=False)


def decision_rows(decision: Decision, outcomes: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per rule considered (`outcomes`: rule id -> what became of its actions)."""
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
    ]
    return rows or [
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


def _entry(row: RowMapping) -> AuditEntry:
    fields = {k: v for k, v in row.items() if k != "id"}
    fields["at"] = aware(fields["at"])
    return AuditEntry(**fields)


class AuditLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @staticmethod
    def write(
        db: Connection,
        rows: Sequence[Mapping[str, Any]],
        *,
        at: dt.datetime,
        delivery_id: str,
        source: str,
        issue: str,
        event: str,
    ) -> None:
        common = {
            "at": as_utc(at),
            "delivery_id": delivery_id,
            "source": source,
            "issue": issue,
            "event": event,
        }
        db.execute(insert(audit), [{**common, **row} for row in rows])

    def record_notice(
        self, ref: IssueRef, result: RuleResult, actions: Sequence[Action], outcome: str, now: dt.datetime
    ) -> None:
        """An SLA notice in the audit log, beside the decisions on deliveries."""
        row = {
            "rule_id": result.rule_id,
            "sop": result.sop,
            "passed": result.passed,
            "mode": str(result.mode),
            "reasons": list(result.reasons),
            "actions": [describe(a) for a in actions],
            "outcome": outcome,
        }
        with self.engine.begin() as db:
            self.write(
                db,
                [row],
                at=now,
                delivery_id="sla-sweep",
                source=ref.source,
                issue=str(ref),
                event=f"sla.{result.rule_id}",
            )

    def entries(self, issue: str | None = None, limit: int = 200) -> Iterator[AuditEntry]:
        query = select(audit).order_by(audit.c.id.desc()).limit(limit)
        if issue:
            query = query.where(audit.c.issue == issue)
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        for row in reversed(rows):
            yield _entry(row)

    def between(self, since: dt.datetime, until: dt.datetime, page: int = 1000) -> Iterator[AuditEntry]:
        """Every row dated in `[since, until)`, oldest first, read a page at a time (for the report)."""
        last = 0
        while True:
            query = (
                select(audit)
                .where(audit.c.at >= as_utc(since), audit.c.at < as_utc(until), audit.c.id > last)
                .order_by(audit.c.id)
                .limit(page)
            )
            with self.engine.connect() as db:
                rows = db.execute(query).mappings().all()
            yield from (_entry(row) for row in rows)
            if len(rows) < page:
                return
            last = rows[-1]["id"]

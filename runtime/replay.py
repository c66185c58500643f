"""`sopguard replay`: what a candidate policy would have decided on the deliveries of a period.

The inbox keeps every delivery's body as it came. Each issue that had a delivery in the period is
run again, in the order received, from its first recorded delivery (so it reaches the period
knowing what the ledger knew), through the worker's own steps (`runtime.worker.run`: normalise,
what the ledger knows, `evaluate`, the ledger update) with the candidate policy, on a scratch
database of its own and a dry-run connector: nothing is written to a tracker or to the service's
database, and nothing is read from a tracker. Each delivery is judged at the time it was judged.

The period's decisions are then compared with the audit log, delivery by delivery: refusals (a
rule that failed) that are new or gone, another priority, comments posted or no longer posted.
A comment of a refusal that is new or gone is part of that refusal, not listed again.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

from sqlalchemy import Engine, select

from config.i18n import say
from config.schema import Locale, Policy
from config.settings import Settings
from connector.base import Connector
from connector.dry_run import DryRunConnector
from connector.errors import BadPayload, Ignored
from policies.engine import SELF_CAUSED
from policies.models import Source
from runtime.services import Services
from runtime.store import Store
from runtime.store.database import aware
from runtime.store.inbox import Received, received_from
from runtime.store.schema import audit, deliveries
from runtime.worker import parse, run

FINISHED = ("processed", "ignored", "failed")
CHUNK = 500  # delivery ids per query of the audit log
Row = Mapping[Any, Any]  # an audit row, as the database gives it
Rows = Sequence[Row]


class CannotReplay(Exception):
    """The deliveries cannot be read again (their bodies are not in the database)."""


@dataclass(frozen=True)
class Refusal:
    rule_id: str
    sop: str
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"rule": self.rule_id, "sop": self.sop, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class Judgement:
    """What mattered of one delivery's decision, from its audit rows."""

    refusals: Mapping[str, Refusal]
    priority: str | None
    comments: Mapping[str, str]  # marker -> the rule (or rules, `a+b`) that posted it

    @classmethod
    def of(cls, rows: Rows, policy: Policy) -> Judgement:
        refusals = {
            str(row["rule_id"]): Refusal(str(row["rule_id"]), str(row["sop"] or ""), tuple(row["reasons"]))
            for row in rows
            if row["rule_id"] and row["passed"] is False
        }
        actions = [action for row in rows for action in row["actions"]]
        comments = {str(a["marker"]): str(a["rule_id"]) for a in actions if a["type"] == "PostComment"}
        return cls(refusals, _priority(actions, policy), comments)


def _priority(actions: Iterable[Mapping[str, Any]], policy: Policy) -> str | None:
    """The level the priority rule set: Jira's `SetPriority`, or a GitHub priority label added."""
    prefix = policy.trackers.github.priority_label_prefix
    for action in actions:
        if action["type"] == "SetPriority":
            return str(action["level"])
        if action["type"] == "ChangeLabels" and policy.priority.id in str(action["rule_id"]).split("+"):
            added = [str(label) for label in action["add"] if str(label).startswith(prefix)]
            if added:
                return added[0].removeprefix(prefix)
    return None


@dataclass(frozen=True)
class Difference:
    """One delivery decided otherwise by the candidate policy."""

    delivery_id: str
    event: str
    at: dt.datetime
    new_refusals: tuple[Refusal, ...] = ()
    refusals_gone: tuple[Refusal, ...] = ()
    priority: tuple[str | None, str | None] | None = None  # (was, would be)
    new_comments: tuple[str, ...] = ()
    comments_gone: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"delivery": self.delivery_id, "event": self.event, "at": self.at.isoformat()}
        if self.new_refusals:
            data["new_refusals"] = [r.as_dict() for r in self.new_refusals]
        if self.refusals_gone:
            data["refusals_gone"] = [r.as_dict() for r in self.refusals_gone]
        if self.priority is not None:
            data["priority"] = {"was": self.priority[0], "would_be": self.priority[1]}
        if self.new_comments:
            data["new_comments"] = list(self.new_comments)
        if self.comments_gone:
            data["comments_gone"] = list(self.comments_gone)
        return data


def compare(delivery: Received, was: Judgement, would: Judgement, at: dt.datetime) -> Difference | None:
    new = tuple(would.refusals[r] for r in sorted(would.refusals.keys() - was.refusals.keys()))
    gone = tuple(was.refusals[r] for r in sorted(was.refusals.keys() - would.refusals.keys()))
    changed = {r.rule_id for r in (*new, *gone)}

    def own_comment(rule_ids: str) -> bool:  # the comment of a refusal listed above
        return bool(set(rule_ids.split("+")) & changed)

    new_comments = tuple(
        sorted(m for m in would.comments.keys() - was.comments.keys() if not own_comment(would.comments[m]))
    )
    comments_gone = tuple(
        sorted(m for m in was.comments.keys() - would.comments.keys() if not own_comment(was.comments[m]))
    )
    priority = (was.priority, would.priority) if was.priority != would.priority else None
    if not (new or gone or priority or new_comments or comments_gone):
        return None
    event = f"{delivery.source} {delivery.event_name}"
    return Difference(delivery.delivery_id, event, at, new, gone, priority, new_comments, comments_gone)


@dataclass
class ReplayReport:
    since: dt.date
    until: dt.date
    deliveries: int = 0  # of the period, compared
    warm_up: int = 0  # earlier deliveries of the same issues, replayed first
    issues: int = 0
    unrecorded: int = 0  # of the period, with no decision in the audit log to compare with
    differences: dict[str, list[Difference]] = field(default_factory=dict)

    def totals(self) -> dict[str, int]:
        found = [d for ds in self.differences.values() for d in ds]
        return {
            "deliveries": self.deliveries,
            "issues": self.issues,
            "issues_decided_otherwise": len(self.differences),
            "deliveries_decided_otherwise": len(found),
            "new_refusals": sum(len(d.new_refusals) for d in found),
            "refusals_gone": sum(len(d.refusals_gone) for d in found),
            "other_priorities": sum(1 for d in found if d.priority is not None),
            "new_comments": sum(len(d.new_comments) for d in found),
            "comments_gone": sum(len(d.comments_gone) for d in found),
            "without_recorded_decision": self.unrecorded,
        }


def period_bounds(since: dt.date, until: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """`since` 00:00 to the end of `until` (both days included), UTC."""
    start = dt.datetime.combine(since, dt.time(), dt.UTC)
    return start, dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC)


def replay(
    settings: Settings,
    store: Store,
    candidate: Policy,
    recorded_by: Policy,
    since: dt.date,
    until: dt.date,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayReport:
    """Run the period's deliveries through `candidate` and compare with the audit log (whose
    priorities are read by `recorded_by`, the policy in force). `progress(done, total)`."""
    if settings.resolved_queue_url:
        raise CannotReplay(
            "the inbox is in Redis (SOPGUARD_QUEUE_URL), which does not keep the bodies of processed "
            "deliveries: replay needs the inbox in the database"
        )
    start, end = period_bounds(since, until)
    report = ReplayReport(since, until)
    issues = _issues_received(store.engine, start, end)
    todo = _deliveries_of(store.engine, issues, end)
    in_period = [d.received for d in todo if d.received.received_at >= start]
    report.issues, report.deliveries, report.warm_up = len(issues), len(in_period), len(todo) - len(in_period)
    recorded = _recorded(store.engine, [d.delivery_id for d in in_period])
    accounts = _own_accounts(store.engine, todo)
    with tempfile.TemporaryDirectory(prefix="sopguard-replay-") as scratch:
        candidate_rows = _run_all(settings, candidate, Path(scratch), todo, progress, accounts)
    for received in in_period:
        key = (received.source, received.delivery_id)
        if key not in recorded:
            report.unrecorded += 1
            continue
        at, rows = recorded[key]
        would = Judgement.of(candidate_rows.get(key, ()), candidate)
        difference = compare(received, Judgement.of(rows, recorded_by), would, at)
        if difference is not None:
            report.differences.setdefault(received.issue, []).append(difference)
    return report


class _Clock:
    """The time each delivery was judged, for the worker's `services.clock`."""

    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


@dataclass(frozen=True)
class Recorded:
    """A delivery as the inbox keeps it, and when it was judged (its last run)."""

    received: Received
    judged_at: dt.datetime


def _run_all(
    settings: Settings,
    policy: Policy,
    scratch: Path,
    todo: Sequence[Recorded],
    progress: Callable[[int, int], None] | None,
    accounts: frozenset[str],
) -> dict[tuple[str, str], Rows]:
    """Each delivery through the worker with `policy`, on a scratch database; their audit rows."""
    store = Store(f"sqlite:///{scratch / 'replay.db'}")
    clock = _Clock()
    connectors: dict[Source, Connector] = {
        "github": DryRunConnector(accounts),
        "jira": DryRunConnector(accounts),
    }
    services = Services(settings, policy, store, connectors, clock=clock)
    try:
        for done, recorded in enumerate(todo, 1):
            clock.now = recorded.judged_at
            run(services, recorded.received, "replay#")
            if progress is not None:
                progress(done, len(todo))
        return {key: rows for key, (_, rows) in _recorded(store.engine, None).items()}
    finally:
        store.engine.dispose()


def _own_accounts(engine: Engine, todo: Sequence[Recorded]) -> frozenset[str]:
    """Who the service acted as, as its audit log tells: the actors of the deliveries it judged to
    be about its own changes (the login a real connector learned from the tracker, which a dry run
    cannot ask)."""
    own = {say(locale, SELF_CAUSED) for locale in get_args(Locale)}
    recorded = _recorded(engine, [d.received.delivery_id for d in todo])
    accounts: set[str] = set()
    for item in todo:
        found = recorded.get((item.received.source, item.received.delivery_id))
        if found is None or not any(own & set(row["reasons"] or ()) for row in found[1]):
            continue
        try:
            event, _ = parse(item.received).normalize()
        except (BadPayload, Ignored):
            continue
        accounts.update(filter(None, (event.actor.login, event.actor.id)))
    return frozenset(accounts)


def _issues_received(engine: Engine, start: dt.datetime, end: dt.datetime) -> list[str]:
    query = (
        select(deliveries.c.issue)
        .where(
            deliveries.c.received_at >= start,
            deliveries.c.received_at < end,
            deliveries.c.status.in_(FINISHED),
            deliveries.c.issue != "",  # not about an issue (an installation event)
        )
        .distinct()
    )
    with engine.connect() as db:
        return sorted(str(issue) for issue in db.execute(query).scalars())


def _deliveries_of(engine: Engine, issues: Sequence[str], end: dt.datetime) -> list[Recorded]:
    """The finished deliveries of `issues` received before `end`, in the order received."""
    found: list[Recorded] = []
    for chunk in _chunks(issues):
        query = (
            select(deliveries)
            .where(
                deliveries.c.issue.in_(chunk),
                deliveries.c.received_at < end,
                deliveries.c.status.in_(FINISHED),
                deliveries.c.body.is_not(None),
            )
            .order_by(deliveries.c.seq)
        )
        with engine.connect() as db:
            found.extend(_from_inbox(row) for row in db.execute(query).mappings())
    return sorted(found, key=lambda d: d.received.seq)


def _from_inbox(row: Row) -> Recorded:
    received_at = _utc(row["received_at"])
    received = replace(received_from(row, received_at), attempts=0, failing_since=None)  # as first received
    return Recorded(received, _utc(row["processed_at"] or row["received_at"]))


def _recorded(
    engine: Engine, delivery_ids: Sequence[str] | None
) -> dict[tuple[str, str], tuple[dt.datetime, Rows]]:
    """Per (source, delivery id), the audit rows of its last decision (a delivery run again after
    a failure has the rows of each run) and when it was made; `None`: every delivery's."""
    rows: dict[tuple[str, str], tuple[dt.datetime, list[Row]]] = {}
    for query in _audit_queries(delivery_ids):
        with engine.connect() as db:
            for row in db.execute(query).mappings():
                key, at = (str(row["source"]), str(row["delivery_id"])), _utc(row["at"])
                last = rows.get(key)
                if last is None or at > last[0]:
                    rows[key] = (at, [row])
                elif at == last[0]:
                    last[1].append(row)
    return {key: (at, tuple(found)) for key, (at, found) in rows.items()}


def _utc(instant: dt.datetime) -> dt.datetime:
    found = aware(instant)
    assert found is not None
    return found


def _audit_queries(delivery_ids: Sequence[str] | None) -> Iterator[Any]:
    columns = select(audit).where(audit.c.delivery_id != "sla-sweep").order_by(audit.c.id)
    if delivery_ids is None:
        yield columns
        return
    for chunk in _chunks(sorted(set(delivery_ids))):
        yield columns.where(audit.c.delivery_id.in_(chunk))


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for first in range(0, len(items), CHUNK):
        yield items[first : first + CHUNK]


def as_json(report: ReplayReport, candidate: str) -> str:
    issues = [
        {"issue": issue, "deliveries": [d.as_dict() for d in found]}
        for issue, found in sorted(report.differences.items())
    ]
    period = {"since": report.since.isoformat(), "until": report.until.isoformat()}
    return json.dumps(
        {"policy": candidate, **period, "issues": issues, "totals": report.totals()},
        indent=2,
        ensure_ascii=False,
    )


def _refusal_text(refusal: Refusal) -> str:
    reasons = f": {'; '.join(refusal.reasons)}" if refusal.reasons else ""
    return f"`{refusal.rule_id}` (SOP {refusal.sop}){reasons}"


def _difference_lines(difference: Difference) -> Iterator[str]:
    yield f"- {difference.at:%Y-%m-%d %H:%M} UTC, {difference.event} `{difference.delivery_id}`:"
    for refusal in difference.new_refusals:
        yield f"  - new refusal: {_refusal_text(refusal)}"
    for refusal in difference.refusals_gone:
        yield f"  - refusal gone: {_refusal_text(refusal)}"
    if difference.priority is not None:
        was, would = (level or "none" for level in difference.priority)
        yield f"  - priority: {would} instead of {was}"
    for marker in difference.new_comments:
        yield f"  - new comment: `{marker}`"
    for marker in difference.comments_gone:
        yield f"  - comment no longer posted: `{marker}`"


def as_markdown(report: ReplayReport, candidate: str) -> str:
    lines = [
        f"# Replay of {report.since} to {report.until} with {candidate}",
        "",
        f"{report.deliveries} delivery(ies) on {report.issues} issue(s) replayed "
        f"({report.warm_up} earlier delivery(ies) of the same issues replayed first).",
        "",
    ]
    for issue, found in sorted(report.differences.items()):
        lines += [
            f"## {issue.split(':', 1)[-1]} ({issue.split(':', 1)[0]})",
            "",
            *(line for difference in found for line in _difference_lines(difference)),
            "",
        ]
    if not report.differences:
        lines += ["No delivery would have been decided otherwise.", ""]
    totals = report.totals()
    lines += ["## Totals", "", "| | count |", "|---|---:|"]
    lines += [f"| {name.replace('_', ' ')} | {count} |" for name, count in totals.items()]
    return "\n".join(lines) + "\n"

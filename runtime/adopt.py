"""`sopguard adopt`: take on every open issue of a repository or project before the first delivery.

Each open issue the tracker lists (GitHub: the issues list; Jira: a JQL search; both paged) that the
policy's adoption rule covers and the ledger does not follow yet is adopted as a delivery would
adopt it (`policies.adoption`): its history read, its state taken as it stands, its clocks rebuilt,
the thresholds already crossed claimed as said. Nothing is posted on the tracker. A dry run reads
the same and records nothing. An issue the ledger already follows is left as it is, so a second
run adopts only what the first did not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from connector.delivery import Delivery
from policies import adoption
from policies.context import is_service_request
from policies.engine import evaluate
from policies.models import (
    TRACKER_ACTIONS,
    Actor,
    Decision,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    Source,
)
from policies.needs import needs
from policies.sla import ClockReading
from runtime.services import Services, worker_name
from runtime.store.audit import decision_rows
from runtime.store.ledger import IssueMemory, LedgerUpdate, issue_key
from runtime.worker import ledger_update

SERVICE = Actor("sopguard", is_bot=True)
Verdict = Literal["adopted", "would adopt", "already followed", "outside adoption", "not judged", "busy"]


@dataclass(frozen=True)
class Adopted:
    """One open issue as `sopguard adopt` found it, and what became of it."""

    ref: IssueRef
    verdict: Verdict
    reasons: tuple[str, ...]
    state: str | None = None
    clocks: tuple[ClockReading, ...] = ()
    next_notice: dt.datetime | None = None
    posts: tuple[str, ...] = ()  # what it posts on the tracker: an adoption posts nothing


def _event(ref: IssueRef, delivery_id: str, now: dt.datetime) -> Event:
    """What stands for the adoption in the engine: not an opening, not a change by anyone."""
    return Event(ref.source, frozenset({EventKind.OTHER}), delivery_id, SERVICE, ref, name="adopt", at=now)


def _plan(
    services: Services,
    delivery_id: str,
    payload: Mapping[str, Any],
    snapshot: IssueSnapshot,
    now: dt.datetime,
) -> tuple[Adopted, Decision, LedgerUpdate | None]:
    ref = snapshot.ref
    scoped = services.policy.for_issue(ref.source, ref.scope, snapshot.request_type)
    if not is_service_request(scoped, snapshot):
        return Adopted(ref, "not judged", ("a checklist item or sub-task: its parent is",)), Decision(), None
    inside, why = adoption.covers(scoped, ref.source, snapshot)
    if not inside:
        return Adopted(ref, "outside adoption", (why,)), Decision(), None
    delivery = Delivery(ref.source, delivery_id, "adopt", dict(payload))
    event = _event(ref, delivery_id, now)
    snapshot = replace(snapshot, first_seen=True)
    connector = services.connectors[ref.source]
    snapshot = connector.complete(delivery, event, snapshot, needs(services.policy, event, snapshot))
    decision = evaluate(services.policy, event, snapshot, now)
    assert not any(isinstance(a, TRACKER_ACTIONS) for a in decision.actions), "an adoption posts nothing"
    update = ledger_update(services, delivery, event, snapshot, decision, None, IssueMemory(), now)
    clocks = (
        services.clocks(ref, update.entries, now, snapshot.request_type)
        if update and update.facts and update.facts.is_open
        else ()
    )
    state = update.state if update else None
    reasons = tuple(r for result in decision.results for r in result.reasons)
    found = Adopted(ref, "would adopt", reasons, state, clocks, update.next_due_at if update else None)
    return found, decision, update


def adopt(
    services: Services,
    scope: str,
    *,
    dry_run: bool,
    context: Mapping[str, Any] | None = None,
    progress: Callable[[Adopted], object] | None = None,
) -> Iterator[Adopted]:
    """Adopt (or, with `dry_run`, plan the adoption of) every open issue of `scope`: `owner/name`
    on GitHub, a project key on Jira."""
    source: Source = "github" if "/" in scope else "jira"
    connector = services.connectors[source]
    store, owner = services.store, worker_name()
    lease = dt.timedelta(seconds=services.settings.turn_lease)
    for delivery, snapshot in connector.open_issues(scope, context or {}):
        now = services.clock()
        ref = snapshot.ref
        if store.ledger.one(ref) is not None:
            found = Adopted(ref, "already followed", ("the ledger follows it already",))
        elif dry_run:
            found = _plan(services, delivery.delivery_id, delivery.payload, snapshot, now)[0]
        else:
            found = _adopt_one(services, delivery.delivery_id, delivery.payload, snapshot, now, owner, lease)
        if progress is not None:
            progress(found)
        yield found


def _adopt_one(
    services: Services,
    delivery_id: str,
    payload: Mapping[str, Any],
    snapshot: IssueSnapshot,
    now: dt.datetime,
    owner: str,
    lease: dt.timedelta,
) -> Adopted:
    """Adopt one issue with its turn held, so no delivery about it runs meanwhile."""
    store, ref = services.store, snapshot.ref
    key = issue_key(ref)
    if not store.inbox.turns.take(key, owner, now, lease):
        return Adopted(ref, "busy", ("a delivery holds its turn: adopted by that delivery, or by a re-run",))
    try:
        if store.inbox.has_unfinished(key) or store.ledger.one(ref) is not None:
            return Adopted(ref, "busy", ("a delivery about it waits: it adopts the issue, or a re-run does",))
        found, decision, update = _plan(services, delivery_id, payload, snapshot, now)
        if found.verdict != "would adopt":
            return found
        store.record(
            seq=None,
            status="processed",
            error=None,
            source=ref.source,
            delivery_id=delivery_id,
            event_name="adopt",
            ref=ref,
            audit_rows=decision_rows(decision, {}),
            ledger=update,
            now=now,
        )
        return replace(found, verdict="adopted")
    finally:
        store.inbox.turns.give_back(key, owner)

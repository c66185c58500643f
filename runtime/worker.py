"""Run one queued delivery through the engine and hand the actions to the tracker's connector."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from connector.base import Applied, Connector
from connector.delivery import Delivery
from connector.errors import BadPayload, Ignored
from connector.factory import build_connectors
from policies.context import is_service_request
from policies.engine import evaluate
from policies.ledger import facts_after, timeline_entries
from policies.models import TRACKER_ACTIONS, Decision, Event, EventKind, IssueRef, IssueSnapshot, Source
from policies.needs import needs
from policies.sla import ClockReading, Created, TimelineEvent, read_clocks, rules_for
from policies.sla_notices import next_due
from runtime.store import LedgerUpdate, Store

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Services:
    """Everything a delivery needs once it is out of the queue, built once per process."""

    settings: Settings
    policy: Policy
    store: Store
    connectors: Mapping[Source, Connector]
    clock: Callable[[], dt.datetime] = field(default=utc_now)

    def clocks(
        self, ref: IssueRef, timeline: Sequence[TimelineEvent], now: dt.datetime
    ) -> tuple[ClockReading, ...]:
        """The issue's SLA clocks at `now`; none before the ledger knows when it was created."""
        if not any(isinstance(entry, Created) for entry in timeline):
            return ()
        return read_clocks(rules_for(self.policy.for_issue(ref.source, ref.scope).sla), timeline, now)


def build_services(settings: Settings) -> Services:
    """Load the policy, open the database and choose a connector per tracker."""
    policy = load_policy(settings.policy)
    return Services(
        settings, policy, Store(settings.resolved_database_url), build_connectors(settings, policy)
    )


def _outcomes(applied: list[Applied]) -> dict[str, str]:
    """Per rule id, what became of its actions: each distinct outcome once, failures first, then
    the most informative (`applied (3 created)` before a bare `applied`)."""
    summary: dict[str, list[str]] = {}
    for item in applied:
        for rule_id in item.action.rule_id.split("+"):
            seen = summary.setdefault(rule_id, [])
            if item.outcome not in seen:
                seen.append(item.outcome)
    return {
        rule_id: "; ".join(sorted(outcomes, key=lambda o: (not o.startswith("failed"), -len(o))))
        for rule_id, outcomes in summary.items()
    }


def process_delivery(services: Services, delivery: Delivery) -> Decision | None:
    """Decide and act on one delivery; `None` when it was already processed or is ignored."""
    store = services.store
    if store.delivery_status(delivery.source, delivery.delivery_id) == "processed":
        log.info("delivery %s already processed; skipped", delivery.delivery_id)
        return None
    connector = services.connectors[delivery.source]
    accounts = {*services.settings.service_accounts, *connector.service_accounts(delivery)}
    try:
        event, snapshot = delivery.normalize(accounts)
    except (Ignored, BadPayload) as reason:
        log.info("delivery %s ignored: %s", delivery.delivery_id, reason)
        store.mark_delivery(delivery.source, delivery.delivery_id, "ignored", services.clock())
        return None
    memory = store.memory(event.issue)
    snapshot = replace(snapshot, last_state=memory.last_state, manual_priority=memory.manual_priority)
    snapshot = connector.complete(delivery, event, snapshot, needs(services.policy, event, snapshot))
    now = services.clock()
    decision = evaluate(services.policy, event, snapshot, now)
    tracker_actions = [a for a in decision.actions if isinstance(a, TRACKER_ACTIONS)]
    applied = connector.apply(delivery, event, snapshot, tracker_actions)
    ledger = _ledger_update(services, delivery, event, snapshot, decision, memory.priority, now)
    store.record_decision(
        source=delivery.source,
        delivery_id=delivery.delivery_id,
        event_name=event.name,
        ref=event.issue,
        decision=decision,
        outcomes=_outcomes(applied),
        now=now,
        ledger=ledger,
    )
    log.info(
        "delivery %s on %s: %d rule(s), %d action(s) %s",
        delivery.delivery_id,
        event.issue,
        len(decision.results),
        len(tracker_actions),
        connector.name,
    )
    return decision


def _ledger_update(
    services: Services,
    delivery: Delivery,
    event: Event,
    snapshot: IssueSnapshot,
    decision: Decision,
    previous_priority: str | None,
    now: dt.datetime,
) -> LedgerUpdate | None:
    """What the ledger learns from this delivery; nothing for checklist items and sub-tasks, nor
    for an issue named only by its id (an old Server comment event), which would be followed twice."""
    scoped = services.policy.for_issue(event.issue.source, event.issue.scope)
    if not is_service_request(scoped, snapshot) or not event.issue.scope:
        return None
    known = services.store.followed_issues(open_only=False, ref=event.issue)
    facts = facts_after(services.policy, event, snapshot, decision, known[0].facts if known else None)
    earlier = known[0].timeline if known else ()
    entries = timeline_entries(
        scoped,
        event,
        snapshot,
        decision,
        facts,
        previous_priority,
        now,
        followed=any(isinstance(entry, Created) for entry in earlier),
    )
    notified = known[0].notified if known else frozenset()
    as_of = max(now, event.at) if event.at else now  # a delivery may be processed before its own clock
    clocks = services.clocks(event.issue, (*earlier, *entries), as_of) if facts.is_open else ()
    first_seen_late = not earlier and EventKind.OPENED not in event.kinds
    return LedgerUpdate(
        facts,
        entries,
        delivery.context(),
        next_due(scoped, clocks, notified, as_of),
        history_before=(event.at or now) if first_seen_late else None,
    )

"""Caught up after an outage: the changes that no delivery brought, found on the trackers and
processed once, like deliveries.

GitHub never sends a failed delivery again by itself and Jira tries only a few times, so after an
outage some changes never arrive. A reconcile lists, for every repository and project the ledger
knows, the issues updated since the last reconcile (GitHub `since=`, Jira JQL `updated >=`, paged),
compares each with what the ledger knows, and for each difference puts a delivery made up from the
tracker's record into the inbox (see `connector.base.Reconciling.missed`). It then runs in the
issue's turn like any delivery. Its id is deterministic, so a change found twice is a duplicate at
the inbox; once processed, the ledger knows it and no later reconcile finds it again.

Two things keep a reconcile from racing the deliveries: it looks only at changes older than
`SETTLE` (a delivery of a change that recent may still be on its way), and it leaves alone an issue
that has a delivery still to run in the inbox (that delivery may bring the change; the issue is
looked at again next time, as the mark stops before it).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from connector.base import KnownIssue, Reconciling
from connector.delivery import Delivery
from connector.errors import BadPayload, Ignored
from policies.models import IssueRef
from policies.sla import Commented
from runtime.services import Services

log = logging.getLogger(__name__)

SETTLE = dt.timedelta(minutes=2)  # a change younger than this may still be on its way as a delivery
FIRST_LOOKBACK = dt.timedelta(days=1)  # how far back the first reconcile of a scope looks


@dataclass
class ScopeReconciled:
    """One repository or project: from when to when it was compared, what was queued."""

    scope: str
    since: dt.datetime
    until: dt.datetime
    queued: list[str] = field(default_factory=list)
    duplicates: int = 0
    waiting: list[str] = field(default_factory=list)  # issues left for later: a delivery is queued
    error: str | None = None


@dataclass
class ReconcileReport:
    scopes: list[ScopeReconciled] = field(default_factory=list)

    @property
    def queued(self) -> int:
        return sum(len(scope.queued) for scope in self.scopes)


def reconcile(services: Services, now: dt.datetime, since: dt.datetime | None = None) -> ReconcileReport:
    """Compare every known repository and project with its tracker from `since` (default: where
    the last reconcile of each stopped) and queue the changes the ledger does not have."""
    services = services.in_force()  # the policy in force now, and connectors that follow it
    report = ReconcileReport()
    until = now - SETTLE
    for key in services.store.ledger.scopes():
        source, _, scope = key.partition(":")
        connector = services.connectors.get("github" if source == "github" else "jira")
        if not isinstance(connector, Reconciling):  # a dry run: no tracker to ask
            continue
        last = services.store.reconciles.last(key)
        start = since or last or until - FIRST_LOOKBACK
        done = ScopeReconciled(key, start, until)
        report.scopes.append(done)
        try:
            mark = _reconcile_scope(services, connector, source, scope, done, now)
        except Exception as error:  # an outage, refused credentials: the mark stays, next time retries
            log.warning("reconcile of %s failed: %s: %s", key, type(error).__name__, error)
            done.error = f"{type(error).__name__}: {error}"
            continue
        if since is None or last is None or since <= last:  # never skip over what was not reconciled
            services.store.reconciles.done(key, max(mark, last) if last else mark)  # never back
        log.info("reconciled %s since %s: %d change(s) queued", key, start.isoformat(), len(done.queued))
    return report


def _reconcile_scope(
    services: Services,
    connector: Reconciling,
    source: str,
    scope: str,
    done: ScopeReconciled,
    now: dt.datetime,
) -> dt.datetime:
    """Queue the scope's missed changes; the instant the next reconcile of it starts from."""
    store = services.store
    context = store.ledger.scope_context(source, scope)
    mark = done.until
    queued_here: set[str] = set()  # issues this reconcile queued a change of (not waiting for it)
    for delivery in connector.missed(scope, done.since, done.until, context, _known(services)):
        issue = delivery.issue_key()
        if issue in done.waiting or (issue not in queued_here and store.inbox.has_unfinished(issue)):
            if issue not in done.waiting:
                done.waiting.append(issue)
                mark = min(mark, _updated_at(delivery) or done.since)
            continue
        body = orjson.dumps(delivery.payload)
        put = store.inbox.put(delivery.source, delivery.delivery_id, delivery.event_name, issue, body, now)
        if put == "duplicate":
            done.duplicates += 1
        else:
            done.queued.append(delivery.delivery_id)
            queued_here.add(issue)
    return max(mark, done.since)


def _updated_at(delivery: Delivery) -> dt.datetime | None:
    """When the issue of a made-up delivery was last updated, as the tracker said."""
    try:
        _, snapshot = delivery.normalize()
    except (Ignored, BadPayload):
        return None
    return snapshot.updated_at


def _known(services: Services) -> Callable[[IssueRef], KnownIssue | None]:
    def known(ref: IssueRef) -> KnownIssue | None:
        followed = services.store.ledger.one(ref)
        if followed is None:
            return None
        return KnownIssue(
            is_open=followed.facts.is_open,
            labels=followed.facts.labels,
            priority=followed.facts.priority,
            comment_ids=frozenset(
                entry.comment_id
                for entry in followed.timeline
                if isinstance(entry, Commented) and entry.comment_id
            ),
            gone=followed.memory.gone is not None,
            state=followed.memory.last_state,
        )

    return known


def reconcile_every(services: Services, stop: threading.Event) -> None:
    """Reconcile every `SOPGUARD_RECONCILE_INTERVAL` seconds until `stop` is set (the consumer
    process runs this in a thread of its own; an interval of 0 turns it off)."""
    interval = services.settings.reconcile_interval
    if interval <= 0:
        return
    while not stop.wait(interval):
        try:
            reconcile(services, services.clock())
        except Exception:
            log.exception("the reconcile failed")

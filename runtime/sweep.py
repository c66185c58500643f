"""The SLA sweep: warn before, and at, a missed target, on quiet issues too. No tracker reads.

The ledger keeps, per issue, when its next notice is due; a sweep lists only those issues and, for
each, takes the issue's turn (so a sweep and a delivery never interleave on one issue), reads the
issue again now that nothing else can change it, reads its clocks from the ledger's timeline,
claims each notice in the database (so concurrent sweeps never post twice) and hands the comment
(and breach label) to the tracker's connector, through the journal.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from config.schema import Mode
from connector.base import Applied
from connector.delivery import Delivery
from policies import adoption
from policies.models import Actor, Event, EventKind, IssueRef, IssueSnapshot, RuleResult
from policies.sla import Created
from policies.sla_notices import Notice, due_notices, next_due
from runtime.services import Services, worker_name
from runtime.store.ledger import FollowedIssue, LedgerUpdate, issue_key

log = logging.getLogger(__name__)
SERVICE = Actor("sopguard", is_bot=True)


@dataclass
class SweepReport:
    due: int = 0
    notices: int = 0
    skipped: int = 0
    busy: int = 0
    applied: list[Applied] = field(default_factory=list)


def _as_service(issue: FollowedIssue, purpose: str) -> tuple[Delivery, Event]:
    """A delivery and an event by the service itself, for acting on an issue outside any webhook."""
    ref = issue.ref
    delivery = Delivery(ref.source, f"{purpose}:{ref}", purpose, dict(issue.context))
    event = Event(
        ref.source, frozenset({EventKind.OTHER}), delivery.delivery_id, SERVICE, ref, by_service=True
    )
    return delivery, event


def _act(services: Services, issue: FollowedIssue, notice: Notice, now: dt.datetime) -> list[Applied]:
    ref, facts = issue.ref, issue.facts
    delivery, event = _as_service(issue, f"sla-sweep:{notice.claims[-1]}")
    snapshot = IssueSnapshot(
        ref=ref,
        is_open=facts.is_open,
        labels=facts.labels,
        assignees=facts.assignees,
        reporter=facts.reporter,
    )
    journal = services.store.journal(ref, delivery.delivery_id, services.clock, complete=True)
    return services.connectors[ref.source].apply(delivery, event, snapshot, notice.actions, journal)


def _claim(services: Services, issue: FollowedIssue, notice: Notice, now: dt.datetime) -> bool:
    """The highest threshold decides who speaks; the lower ones it covers are claimed quietly."""
    top, *covered = reversed(notice.claims)
    if not services.store.ledger.claim_notification(issue.ref, *top, now):
        return False
    for claim in covered:
        services.store.ledger.claim_notification(issue.ref, *claim, now)
    return True


def sweep_issue(services: Services, issue: FollowedIssue, now: dt.datetime, report: SweepReport) -> None:
    scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope)
    clocks = services.clocks(issue.ref, issue.timeline, now)
    said = set(issue.notified)
    for notice in due_notices(scoped, issue.ref, issue.facts, clocks, issue.notified):
        target = next(t for t in scoped.sla.targets if t.id == notice.target_id)
        if notice.failure:
            _template_failed(services, issue, notice, scoped.mode_of(target), target.sop, now)
            continue  # not claimed: posted by the first sweep after the policy is mended
        said.update(notice.claims)
        if not _claim(services, issue, notice, now):
            report.skipped += 1
            continue
        try:
            applied = _act(services, issue, notice, now)
        except Exception as error:  # whatever it was, the notice is released and tried again
            log.warning("SLA notice %s on %s not posted: %s", notice.target_id, issue.ref, error)
            applied = [Applied(action, f"failed: {error}") for action in notice.actions]
        report.applied.extend(applied)
        if any(a.outcome.startswith("failed") for a in applied):
            # Due again now: the next sweep retries it, and the journal skips the parts that landed.
            services.store.ledger.release_notifications(issue.ref, notice.claims)
            said.difference_update(notice.claims)
        else:
            report.notices += 1
        outcome = "; ".join(dict.fromkeys(a.outcome for a in applied)) or "no action"
        reasons = (f"{notice.threshold:.0%} of the target used",)
        result = RuleResult(target.id, target.sop, notice.threshold < 1.0, scoped.mode_of(target), reasons)
        services.store.audit.record_notice(issue.ref, result, notice.actions, outcome, now)
    services.store.ledger.set_next_due(issue.ref, next_due(scoped, clocks, said, now))


def _template_failed(
    services: Services, issue: FollowedIssue, notice: Notice, mode: Mode, sop: str, now: dt.datetime
) -> None:
    """A notice whose comment cannot be rendered: audited once per threshold, tried every sweep."""
    log.error("SLA notice %s on %s cannot be rendered: %s", notice.target_id, issue.ref, notice.failure)
    target, cycle, threshold = notice.claims[-1]
    if services.store.ledger.claim_notification(issue.ref, target, cycle, f"unrendered:{threshold}", now):
        result = RuleResult(notice.target_id, sop, False, mode, (notice.failure,), broken=True)
        services.store.audit.record_notice(issue.ref, result, (), f"failed: {notice.failure}", now)


def _with_turn(services: Services, ref: IssueRef, owner: str, work: Callable[[FollowedIssue], None]) -> bool:
    """Run `work` on the issue as the ledger has it once its turn is taken; `False` when a
    delivery holds the turn (the issue is left for the next sweep)."""
    inbox, key = services.store.inbox, issue_key(ref)
    lease = dt.timedelta(seconds=services.settings.turn_lease)
    if not inbox.turns.take(key, owner, services.clock(), lease):
        return False
    if inbox.has_unfinished(key):  # a delivery waits (maybe after a back-off): it goes first
        inbox.turns.give_back(key, owner)
        return False
    try:
        issue = services.store.ledger.one(ref)
        if issue is not None:
            work(issue)
    finally:
        inbox.turns.give_back(key, owner)
    return True


def _read_history(services: Services, issue: FollowedIssue, now: dt.datetime) -> None:
    """An issue an earlier release first saw mid-life (its `history_before` is set): its beginning
    rebuilt from the tracker's history as an adoption does, the thresholds crossed by then said."""
    created = min((e.at for e in issue.timeline if isinstance(e, Created)), default=None)
    if created is None or issue.history_before is None:
        return
    delivery, event = _as_service(issue, "history")
    history = services.connectors[issue.ref.source].history(delivery, event)
    if history is None:
        return  # a dry run, or unreadable: followed from its creation; tried again next time
    scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope)
    facts, before = issue.facts, issue.history_before
    known = IssueSnapshot(
        ref=issue.ref,
        is_open=facts.is_open,
        labels=facts.labels,
        reporter=facts.reporter,
        reporter_id=facts.reporter_id,
        created_at=created,
        history=history,
    )
    entries, _ = adoption.beginning(scoped, known, issue.memory.last_state, before)
    ledger = services.store.ledger
    ledger.replace_beginning(issue.ref, entries)
    said = adoption.crossed_claims(services.clocks(issue.ref, entries, before))
    with services.store.engine.begin() as db:
        ledger.write(db, issue.ref, LedgerUpdate(None, (), {}, quiet_claims=said), now)
    refreshed = ledger.one(issue.ref)
    if refreshed is not None:
        clocks = services.clocks(issue.ref, refreshed.timeline, now)
        ledger.set_next_due(issue.ref, next_due(scoped, clocks, refreshed.notified, now))


def read_histories(services: Services, now: dt.datetime, owner: str | None = None) -> int:
    """Issues first seen after their creation get their beginning from the tracker's history, once
    (one read per issue); their clocks then count the pauses that happened before."""
    owner = owner or worker_name()
    pending = services.store.ledger.followed(history_pending=True)
    return sum(
        _with_turn(services, issue.ref, owner, lambda fresh: _read_history(services, fresh, now))
        for issue in pending
    )


def sweep(
    services: Services,
    now: dt.datetime,
    progress: Callable[[IssueRef], None] | None = None,
    *,
    owner: str | None = None,
) -> SweepReport:
    """Every notice due at `now`, each once. Safe to run from several workers at a time."""
    owner = owner or worker_name()
    read_histories(services, now, owner)
    due = services.store.ledger.due_refs(now)
    report = SweepReport(due=len(due))
    for ref in due:
        try:
            if not _with_turn(services, ref, owner, lambda issue: sweep_issue(services, issue, now, report)):
                report.busy += 1
        except Exception:
            log.exception("SLA sweep failed for %s", ref)
        if progress is not None:
            progress(ref)
    if report.notices:
        log.info("SLA sweep at %s: %d notice(s) on %d issue(s)", now.isoformat(), report.notices, report.due)
    return report

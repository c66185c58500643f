"""The SLA sweep: warn before, and at, a missed target, on quiet issues too. No tracker reads.

The ledger keeps, per issue, when its next notice is due; a sweep loads only those issues, reads
their clocks from the ledger's timeline, claims each notice in the database (so concurrent sweeps
never post twice) and hands the comment (and breach label) to the tracker's connector.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from connector.base import Applied
from connector.delivery import Delivery
from policies.ledger import backfill
from policies.models import Actor, Event, EventKind, IssueSnapshot, RuleResult
from policies.sla import Created
from policies.sla_notices import Notice, due_notices, next_due
from runtime.store import FollowedIssue
from runtime.worker import Services

log = logging.getLogger(__name__)
SERVICE = Actor("sopguard", is_bot=True)


@dataclass
class SweepReport:
    due: int = 0
    notices: int = 0
    skipped: int = 0
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
    return services.connectors[ref.source].apply(delivery, event, snapshot, notice.actions)


def _claim(services: Services, issue: FollowedIssue, notice: Notice, now: dt.datetime) -> bool:
    """The highest threshold decides who speaks; the lower ones it covers are claimed quietly."""
    top, *covered = reversed(notice.claims)
    if not services.store.claim_notification(issue.ref, *top, now):
        return False
    for claim in covered:
        services.store.claim_notification(issue.ref, *claim, now)
    return True


def sweep_issue(services: Services, issue: FollowedIssue, now: dt.datetime, report: SweepReport) -> None:
    scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope)
    clocks = services.clocks(issue.ref, issue.timeline, now)
    said = set(issue.notified)
    for notice in due_notices(scoped, issue.ref, issue.facts, clocks, issue.notified):
        said.update(notice.claims)
        if not _claim(services, issue, notice, now):
            report.skipped += 1
            continue
        applied = _act(services, issue, notice, now)
        report.applied.extend(applied)
        if applied and all(a.outcome.startswith("failed") for a in applied):
            services.store.release_notifications(issue.ref, notice.claims)
            said.difference_update(notice.claims)  # due again now: the next sweep retries it
        else:
            report.notices += 1
        target = next(t for t in scoped.sla.targets if t.id == notice.target_id)
        outcome = "; ".join(dict.fromkeys(a.outcome for a in applied)) or "no action"
        reasons = (f"{notice.threshold:.0%} of the target used",)
        result = RuleResult(target.id, target.sop, notice.threshold < 1.0, scoped.mode_of(target), reasons)
        services.store.record_notice(issue.ref, result, notice.actions, outcome, now)
    services.store.set_next_due(issue.ref, next_due(scoped, clocks, said, now))


def read_histories(services: Services, now: dt.datetime) -> int:
    """Issues first seen after their creation get their beginning from the tracker's history, once
    (one read per issue); their clocks then count the pauses that happened before."""
    read = 0
    for issue in services.store.followed_issues(history_pending=True):
        created = min((e.at for e in issue.timeline if isinstance(e, Created)), default=None)
        if created is None or issue.history_before is None:
            continue
        delivery, event = _as_service(issue, "history")
        history = services.connectors[issue.ref.source].history(delivery, event)
        if history is None:
            continue  # a dry run, or unreadable: followed from its creation; tried again next time
        scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope)
        earlier = [change for change in history if change.at < issue.history_before]
        services.store.replace_beginning(issue.ref, backfill(scoped, created, earlier))
        (refreshed,) = services.store.followed_issues(open_only=False, ref=issue.ref)
        clocks = services.clocks(issue.ref, refreshed.timeline, now)
        services.store.set_next_due(issue.ref, next_due(scoped, clocks, refreshed.notified, now))
        read += 1
    return read


def sweep(
    services: Services, now: dt.datetime, progress: Callable[[FollowedIssue], None] | None = None
) -> SweepReport:
    """Every notice due at `now`, each once. Safe to run from several workers at a time."""
    read_histories(services, now)
    due = services.store.followed_issues(due_before=now)
    report = SweepReport(due=len(due))
    for issue in due:
        try:
            sweep_issue(services, issue, now, report)
        except Exception:
            log.exception("SLA sweep failed for %s", issue.ref)
        if progress is not None:
            progress(issue)
    if report.notices:
        log.info("SLA sweep at %s: %d notice(s) on %d issue(s)", now.isoformat(), report.notices, report.due)
    return report

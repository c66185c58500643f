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
from policies.models import Actor, Event, EventKind, IssueSnapshot, RuleResult
from policies.sla_notices import Notice, due_notices, next_due
from webhooks.delivery import Delivery
from webhooks.store import FollowedIssue
from webhooks.worker import Services

log = logging.getLogger(__name__)
SERVICE = Actor("sopguard", is_bot=True)


@dataclass
class SweepReport:
    due: int = 0
    notices: int = 0
    skipped: int = 0
    applied: list[Applied] = field(default_factory=list)


def _act(services: Services, issue: FollowedIssue, notice: Notice, now: dt.datetime) -> list[Applied]:
    ref, facts = issue.ref, issue.facts
    delivery = Delivery(ref.source, f"sla-sweep:{ref}:{notice.claims[-1]}", "sla-sweep", dict(issue.context))
    event = Event(
        ref.source, frozenset({EventKind.OTHER}), delivery.delivery_id, SERVICE, ref, by_service=True
    )
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


def sweep(
    services: Services, now: dt.datetime, progress: Callable[[FollowedIssue], None] | None = None
) -> SweepReport:
    """Every notice due at `now`, each once. Safe to run from several workers at a time."""
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

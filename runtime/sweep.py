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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from config import i18n
from config.schema import Locale, Mode, Policy, SlaTarget
from connector.base import Applied, IssueGone, TrackerUnavailable
from connector.delivery import Delivery
from connector.jira import events as jira_events
from policies import adoption
from policies.models import (
    Action,
    Actor,
    ChangeLabels,
    Event,
    EventKind,
    IssueRef,
    IssueSnapshot,
    PostComment,
    RuleResult,
)
from policies.sla import Created
from policies.sla_notices import Notice, due_notices, next_due
from runtime import metrics
from runtime.services import Services, worker_name
from runtime.store.ledger import FollowedIssue, LedgerUpdate, Unfinished, issue_key

log = logging.getLogger(__name__)
SERVICE = Actor("sopguard", is_bot=True)
RETRY_FIRST = dt.timedelta(minutes=1)
RETRY_MAX = dt.timedelta(minutes=30)  # a part waits no longer than this between tries
MAX_PART_ATTEMPTS = 6  # refusals: about half an hour of them, then given up with an audit row
HISTORY_PAGE = 200  # issues whose history is still to read, listed at a time
HISTORY_BUDGET = 30.0  # seconds of history reads per sweep at most: half the sweep's interval


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


@dataclass(frozen=True)
class Tried:
    """What became of a notice's actions. `outage`: the tracker could not be reached (5xx, 429,
    timeouts: `TrackerUnavailable`), so the actions that failed were not refused."""

    applied: list[Applied]
    outage: bool = False


def _act(
    services: Services,
    issue: FollowedIssue,
    delivery_id: str,
    actions: Sequence[Action],
    *,
    again: bool = False,
) -> Tried:
    """Carry out a notice's actions (`again`: parts of one tried before, a refused write made again)."""
    ref, facts = issue.ref, issue.facts
    delivery = Delivery(ref.source, delivery_id, delivery_id.split(":", 1)[0], dict(issue.context))
    event = Event(ref.source, frozenset({EventKind.OTHER}), delivery_id, SERVICE, ref, by_service=True)
    snapshot = IssueSnapshot(
        ref=ref,
        is_open=facts.is_open,
        labels=facts.labels,
        assignees=facts.assignees,
        reporter=facts.reporter,
        request_type=request_type(issue),
    )
    journal = services.store.journal(ref, delivery_id, services.clock, complete=True, retry_refused=again)
    try:
        return Tried(services.connectors[ref.source].apply(delivery, event, snapshot, actions, journal))
    except IssueGone:
        raise
    except TrackerUnavailable as error:  # not a refusal: tried again, later each time, never given up
        log.warning("notice on %s not carried out, the tracker is unavailable: %s", ref, error)
        return Tried([Applied(action, f"failed: {error}") for action in actions], outage=True)
    except Exception as error:  # whatever it was, the parts are tried again; the journal knows what landed
        log.warning("notice on %s not carried out: %s", ref, error)
        return Tried([Applied(action, f"failed: {error}") for action in actions])


def retry_at(tries: int, now: dt.datetime) -> dt.datetime:
    """When a part that failed `tries` times is tried again: 1, 2, 4, 8, 16, then 30 minutes later."""
    return now + min(RETRY_FIRST * (1 << min(tries - 1, 16)), RETRY_MAX)


def unfinished_parts(
    applied: Sequence[Applied],
    delivery_id: str,
    rules: Mapping[str, tuple[str, str]],
    now: dt.datetime,
    *,
    outage: bool = False,
    threshold: float | None = None,
) -> list[Unfinished]:
    """The comments and breach labels of a notice that did not land, to be tried again by the sweep;
    `rules` gives each rule's SOP clause and mode, for the audit rows of the tries. A refusal is the
    first attempt; a part the tracker could not be reached for (`outage`) has had none."""
    return [
        Unfinished(
            a.action,
            delivery_id,
            *rules.get(a.action.rule_id, ("", "enforce")),
            attempts=0 if outage else 1,
            next_at=retry_at(1, now),
            outages=int(outage),
            threshold=threshold,
        )
        for a in applied
        if a.outcome.startswith("failed") and isinstance(a.action, PostComment | ChangeLabels)
    ]


def _landed(ref: IssueRef, threshold: float | None, report: SweepReport) -> None:
    """A notice all of whose parts landed, counted once (`threshold` None: a delivery's comment)."""
    report.notices += 1
    if threshold is not None:
        metrics.sla_notice(ref.source, threshold)


def _try_again(
    services: Services, issue: FollowedIssue, item: Unfinished, locale: Locale, now: dt.datetime
) -> tuple[Tried, Unfinished | None, RuleResult, str]:
    """One more try of a part: what became of it, the part as it is left to try (None: landed or
    given up), and its audit row's result and outcome."""
    tried = _act(services, issue, item.delivery, [item.part], again=True)
    (applied,) = tried.applied
    landed, outcome = not applied.outcome.startswith("failed"), applied.outcome
    left: Unfinished | None = None
    if tried.outage and not landed:
        outages = item.outages + 1
        left = replace(item, outages=outages, next_at=retry_at(item.attempts + outages, now))
        reason = i18n.say(locale, "tried again while the tracker is unavailable: not counted as an attempt")
    else:
        attempts = item.attempts + 1
        reason = i18n.say(
            locale, "tried again: attempt %(attempt)s of a part that did not land", attempt=attempts
        )
        if not landed and attempts >= MAX_PART_ATTEMPTS:
            given_up = i18n.say(locale, "given up after %(attempts)s attempts", attempts=attempts)
            outcome = f"{outcome}; {given_up}"
        elif not landed:
            left = replace(item, attempts=attempts, next_at=retry_at(attempts + item.outages, now))
    result = RuleResult(item.part.rule_id, item.sop, landed, Mode(item.mode), (reason,))
    return tried, left, result, outcome


def _finish(
    services: Services, issue: FollowedIssue, locale: Locale, now: dt.datetime, report: SweepReport
) -> list[Unfinished]:
    """Each notice part still to land whose time has come, tried again (each once: the journal),
    and the parts left saved at once; one audit row per try. A refusal is an attempt, and after
    MAX_PART_ATTEMPTS the part is given up, said so. A tracker that cannot be reached is waited
    out: each try later than the one before, up to RETRY_MAX, never given up for it."""
    left = dict(enumerate(issue.unfinished))
    for index, item in enumerate(issue.unfinished):
        if item.next_at > now:
            continue
        tried, still, result, outcome = _try_again(services, issue, item, locale, now)
        if still is None:
            del left[index]
        else:
            left[index] = still
        services.store.ledger.keep_unfinished(issue.ref, list(left.values()))
        if result.passed and all(u.delivery != item.delivery for u in left.values()):
            _landed(issue.ref, item.threshold, report)  # the last of the notice's parts
        metrics.actions_done(issue.ref.source, tried.applied)
        services.store.audit.record_notice(issue.ref, result, [item.part], outcome, now)
    return list(left.values())


def _parts(notice: Notice, delivery_id: str, sop: str, mode: Mode, now: dt.datetime) -> list[Unfinished]:
    """A notice's comment and breach label, still to land from the moment it is claimed."""
    return [
        Unfinished(action, delivery_id, sop, str(mode), 0, retry_at(1, now), threshold=notice.threshold)
        for action in notice.actions
        if isinstance(action, PostComment | ChangeLabels)
    ]


def _claim(
    services: Services,
    issue: FollowedIssue,
    notice: Notice,
    unfinished: Sequence[Unfinished],
    now: dt.datetime,
) -> bool:
    """The highest threshold decides who speaks; the lower ones it covers are claimed quietly. The
    claim and `unfinished` (with the notice's parts) are saved together: a sweep that fails or is
    killed before it saved what landed leaves the parts to the next (the journal knows what landed)."""
    return services.store.ledger.claim_notice(issue.ref, list(reversed(notice.claims)), unfinished, now)


def sweep_issue(services: Services, issue: FollowedIssue, now: dt.datetime, report: SweepReport) -> None:
    try:
        _sweep_issue(services, issue, now, report)
    except IssueGone as gone:
        stop_following(services, issue.ref, gone, now)


def request_type(issue: FollowedIssue) -> str:
    """A Jira Service Management request's type, as its last delivery that showed it said (it
    decides the request's scope)."""
    return str(issue.context.get(jira_events.REQUEST_TYPE, ""))


def _sweep_issue(services: Services, issue: FollowedIssue, now: dt.datetime, report: SweepReport) -> None:
    scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope, request_type(issue))
    clocks = services.clocks(issue.ref, issue.timeline, now, request_type(issue))
    unfinished = _finish(services, issue, scoped.locale, now, report)
    said = set(issue.notified)
    for notice in due_notices(scoped, issue.ref, issue.facts, clocks, issue.notified, issue.timeline):
        target = next(t for t in scoped.sla.targets if t.id == notice.target_id)
        if notice.failure:
            _template_failed(services, issue, notice, scoped.mode_of(target), target.sop, now)
            continue  # not claimed: posted by the first sweep after the policy is mended
        said.update(notice.claims)
        unfinished = _announce(services, issue, scoped, notice, target, unfinished, now, report)
    due = [t for t in (next_due(scoped, clocks, said, now), *(u.next_at for u in unfinished)) if t]
    services.store.ledger.set_next_due(issue.ref, min(due, default=None))


def _announce(
    services: Services,
    issue: FollowedIssue,
    scoped: Policy,
    notice: Notice,
    target: SlaTarget,
    unfinished: list[Unfinished],
    now: dt.datetime,
    report: SweepReport,
) -> list[Unfinished]:
    """Claim and post one notice; the issue's parts still to land after it (saved already)."""
    mode = scoped.mode_of(target)
    delivery_id = f"sla-sweep:{notice.claims[-1]}:{issue.ref}"
    if not _claim(
        services, issue, notice, [*unfinished, *_parts(notice, delivery_id, target.sop, mode, now)], now
    ):
        report.skipped += 1
        return unfinished
    tried = _act(services, issue, delivery_id, notice.actions)
    report.applied.extend(tried.applied)
    # Said once: a part that did not land is tried again by the next sweeps, the others never.
    rules = {target.id: (target.sop, str(mode))}
    failed = unfinished_parts(
        tried.applied, delivery_id, rules, now, outage=tried.outage, threshold=notice.threshold
    )
    unfinished = [*unfinished, *failed]
    services.store.ledger.keep_unfinished(issue.ref, unfinished)
    if not failed:
        _landed(issue.ref, notice.threshold, report)
    metrics.actions_done(issue.ref.source, tried.applied)
    outcome = "; ".join(dict.fromkeys(a.outcome for a in tried.applied)) or "no action"
    used = i18n.percent(notice.threshold, scoped.locale)
    reasons = (i18n.say(scoped.locale, "%(percent)s of the target used", percent=used),)
    result = RuleResult(target.id, target.sop, notice.threshold < 1.0, mode, reasons)
    services.store.audit.record_notice(issue.ref, result, notice.actions, outcome, now)
    return unfinished


def stop_following(
    services: Services, ref: IssueRef, gone: IssueGone, now: dt.datetime, actions: Sequence[Action] = ()
) -> None:
    """The tracker says the issue is gone: no more sweeps of it, and one audit row that says why."""
    scoped = services.policy.for_issue(ref.source, ref.scope)
    rule = scoped.workflow.rule
    reason = i18n.say(scoped.locale, "%(reason)s: no longer followed", reason=str(gone))
    services.store.ledger.stop_following(ref, reason, now)
    result = RuleResult(rule.id, rule.sop, False, scoped.mode_of(rule), (reason,))
    services.store.audit.record_notice(ref, result, actions, f"failed: {reason}", now)


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
        if issue is not None and issue.memory.gone is None:
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
    try:
        history = services.connectors[issue.ref.source].history(delivery, event)
    except IssueGone as gone:
        stop_following(services, issue.ref, gone, now)
        return
    if history is None:
        return  # a dry run, or unreadable: followed from its creation; tried again next time
    scoped = services.policy.for_issue(issue.ref.source, issue.ref.scope, request_type(issue))
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
    said = adoption.crossed_claims(services.clocks(issue.ref, entries, before, request_type(issue)))
    with services.store.engine.begin() as db:
        ledger.write(db, issue.ref, LedgerUpdate(None, (), {}, quiet_claims=said), now)
    refreshed = ledger.one(issue.ref)
    if refreshed is not None:
        clocks = services.clocks(issue.ref, refreshed.timeline, now, request_type(issue))
        ledger.set_next_due(issue.ref, next_due(scoped, clocks, refreshed.notified, now))


def read_histories(
    services: Services, now: dt.datetime, owner: str | None = None, *, budget: float | None = None
) -> int:
    """Issues first seen after their creation get their beginning from the tracker's history, once
    (one read per issue); their clocks then count the pauses that happened before. Read a page at a
    time; with `budget`, for about that many seconds at most (the rest in the next sweeps)."""
    owner = owner or worker_name()
    deadline = None if budget is None else time.monotonic() + budget
    read, after = 0, None
    while True:
        page = services.store.ledger.followed(history_pending=True, after=after, limit=HISTORY_PAGE)
        for issue in page:
            if deadline is not None and time.monotonic() > deadline:
                return read
            read += _with_turn(services, issue.ref, owner, lambda fresh: _read_history(services, fresh, now))
        if len(page) < HISTORY_PAGE:
            return read
        after = issue_key(page[-1].ref)


def _history_first(services: Services, issue: FollowedIssue, now: dt.datetime) -> FollowedIssue | None:
    """A due issue whose beginning is still to be read gets it first, so that its clocks count the
    pauses before it was first seen; the issue as the ledger has it then (None: no longer followed)."""
    if issue.history_before is None:
        return issue
    _read_history(services, issue, now)
    fresh = services.store.ledger.one(issue.ref)
    return fresh if fresh is not None and fresh.memory.gone is None else None


def _sweep_due(services: Services, issue: FollowedIssue, now: dt.datetime, report: SweepReport) -> None:
    fresh = _history_first(services, issue, now)
    if fresh is not None:
        sweep_issue(services, fresh, now, report)


def sweep(
    services: Services,
    now: dt.datetime,
    progress: Callable[[IssueRef], None] | None = None,
    *,
    owner: str | None = None,
    history_budget: float | None = HISTORY_BUDGET,
) -> SweepReport:
    """Every notice due at `now`, each once, the most overdue first; then, for at most
    `history_budget` seconds, the histories still to read of issues not due (so that a backlog of
    issues first seen late never holds up a due notice). Safe to run from several workers at a time."""
    owner = owner or worker_name()
    report = SweepReport()

    def sweep_in_force(issue: FollowedIssue) -> None:  # a policy reloaded meanwhile: from the next issue
        _sweep_due(services.in_force(), issue, now, report)

    for page in services.store.ledger.due_pages(now):
        report.due += len(page)
        for ref in page:
            try:
                if not _with_turn(services, ref, owner, sweep_in_force):
                    report.busy += 1
            except Exception:
                log.exception("SLA sweep failed for %s", ref)
            if progress is not None:
                progress(ref)
    read_histories(services.in_force(), now, owner, budget=history_budget)
    if report.notices:
        log.info("SLA sweep at %s: %d notice(s) on %d issue(s)", now.isoformat(), report.notices, report.due)
    return report

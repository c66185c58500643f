"""One delivery, taken from the inbox with its issue's turn: judge it, act on it, record what happened.

A delivery walks a straight line: parse and normalise -> read what the ledger knows of the issue
once -> fill in what the payload lacks -> `evaluate` -> apply through the journal -> record the
audit rows, the ledger update and the final status in one transaction. Nothing is silent:
- a failure the tracker may get over puts the delivery back in the inbox, to run again after a
  back-off, until the retry horizon (an hour by default) has passed; then it is `failed`;
- anything unexpected, bad data in a signed delivery, or a rule whose comment could not be
  rendered ends the delivery `failed` with its reason in the audit log and the inbox (`/healthz`
  turns `degraded`; `sopguard retry` runs it again once the cause is fixed);
- a delivery older than what the ledger already knows of its issue is recorded as history: it
  undoes nothing and replaces no newer state.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from config import i18n
from connector.base import Applied, DeliveryRefused, IssueGone, TrackerUnavailable
from connector.delivery import Delivery, parse_body
from connector.errors import BadPayload, Ignored
from connector.jira import events as jira_events
from policies import adoption
from policies.context import is_service_request
from policies.engine import evaluate
from policies.ledger import IssueFacts, facts_after, shows_whole_issue, timeline_entries, what_happened
from policies.models import (
    TRACKER_ACTIONS,
    Action,
    Adopt,
    Decision,
    Event,
    IssueRef,
    IssueSnapshot,
    PostComment,
    RememberManualPriority,
    RememberState,
    RuleResult,
    Source,
    StopFollowing,
)
from policies.needs import Needs, comments_still_needed, needs
from policies.sla import Commented, Created, DelayAnnounced, PlanWritten, SectionWritten, TimelineEvent
from policies.sla_notices import next_due
from runtime import metrics
from runtime.observability import delivery_context
from runtime.services import Services
from runtime.store.audit import decision_rows
from runtime.store.inbox import Final, Received
from runtime.store.ledger import FollowedIssue, IssueMemory, LedgerUpdate, ref_from_key
from runtime.sweep import unfinished_parts

log = logging.getLogger(__name__)

BACKOFF_FIRST = 5.0  # seconds before the first retry; doubled each time, up to BACKOFF_MAX
BACKOFF_MAX = 600.0
MAX_ATTEMPTS = 10  # a delivery whose worker died this many times is failed (it may be what kills it)


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended this time: a final status, or `retry` at `retry_at`."""

    status: Final | None
    reason: str = ""
    retry_at: dt.datetime | None = None


def parse(received: Received) -> Delivery:
    """The delivery as the tracker sent it; raises `BadPayload` for a body that is not a JSON object."""
    payload = parse_body(received.body)
    source: Source = "github" if received.source == "github" else "jira"
    return Delivery(source, received.delivery_id, received.event_name, payload)


def run(services: Services, received: Received, owner: str) -> Outcome:
    """Process one delivery taken from the inbox (its issue's turn is held) and record the outcome;
    every log line meanwhile names the delivery and its issue, and the time it took is measured. It
    is judged by the policy in force when it starts, to its end (a reload applies from the next)."""
    services = services.in_force()
    started, waited = time.monotonic(), (services.clock() - received.received_at).total_seconds()
    with delivery_context(received.delivery_id, received.issue):
        outcome = _run(services, received, owner)
    metrics.processed(received.source, outcome.status or "retry", time.monotonic() - started, waited)
    return outcome


def _run(services: Services, received: Received, owner: str) -> Outcome:
    store, now = services.store, services.clock()
    try:
        if received.attempts > MAX_ATTEMPTS:
            reason = f"given up: its worker stopped {received.attempts - 1} times before it was done"
            return _fail(services, received, None, reason)
        delivery = parse(received)
        return process(services, delivery, received)
    except TrackerUnavailable as unavailable:
        return _retry_later(services, received, unavailable, now)
    except BadPayload as problem:
        return _fail(services, received, None, f"bad payload: {problem}")
    except DeliveryRefused as refused:
        return _fail(services, received, None, str(refused))
    except Exception as error:  # a bug or an unforeseen answer: recorded, never lost, never looping
        log.error(
            "delivery %s failed: %s: %s",
            received.delivery_id,
            type(error).__name__,
            error,
        )
        return _fail(services, received, None, f"unexpected error: {type(error).__name__}: {error}")
    finally:
        try:
            store.inbox.turns.give_back(received.issue, owner)
        except Exception as error:  # its lease runs out instead: nothing renews it any more
            log.error("could not give back the turn of %s: %s", received.issue, error)


def process(services: Services, delivery: Delivery, received: Received) -> Outcome:
    """Decide and act on one delivery, then record it; raises `TrackerUnavailable` to retry later."""
    store = services.store
    seq = received.seq
    connector = services.connectors[delivery.source]
    accounts = {*services.settings.service_accounts, *connector.service_accounts(delivery)}
    try:
        event, snapshot = delivery.normalize(accounts)
    except Ignored as reason:
        _record(
            services,
            delivery,
            seq,
            "ignored",
            str(reason),
            ref_from_key(received.issue),
            delivery.event_name,
            Decision(note=str(reason)),
            {},
            None,
        )
        return Outcome("ignored", str(reason))
    now = services.clock()
    _follow_the_move(services, event, now)
    known = store.ledger.one(event.issue)  # the one read of what the ledger knows of the issue
    memory = known.memory if known is not None else IssueMemory()
    if memory.gone is not None:
        locale = services.policy.for_issue(event.issue.source, event.issue.scope).locale
        note = i18n.say(locale, "no longer followed here (%(reason)s): nothing done", reason=memory.gone)
        _record(
            services, delivery, seq, "ignored", note, event.issue, event.name, Decision(note=note), {}, None
        )
        return Outcome("ignored", note)
    if _is_history(memory, snapshot):
        # A late comment still counts for the clocks, so whose it is and whether the customer reads
        # it are looked up (only that).
        wanted = needs(services.policy, event, snapshot)
        who = Needs(teams=wanted.teams, visibility=wanted.visibility)
        snapshot = connector.complete(delivery, event, snapshot, who) if who != Needs() else snapshot
        return _record_history(services, delivery, seq, event, snapshot, known, memory, now)
    snapshot = replace(
        snapshot,
        last_state=memory.last_state,
        manual_priority=memory.manual_priority,
        timeline=known.timeline if known is not None else (),
        first_seen=not memory.known,
        adopted=memory.adopted,
        known_labels=known.facts.labels if known is not None and known.labels_known else None,
    )
    if known is not None:
        snapshot = _shown_or_known(event, snapshot, known.facts)
    if (
        known is not None and not snapshot.request_type
    ):  # a Jira comment event does not show it, unless it is gone
        snapshot = replace(
            snapshot, request_type=str(_context(delivery, known).get(jira_events.REQUEST_TYPE, ""))
        )
    asked = needs(services.policy, event, snapshot)
    snapshot = connector.complete(delivery, event, snapshot, asked)
    if (more := comments_still_needed(services.policy, event, snapshot, asked)) != Needs():
        snapshot = connector.complete(delivery, event, snapshot, more)
    decision = evaluate(services.policy, event, snapshot, now)
    tracker_actions = [a for a in decision.actions if isinstance(a, TRACKER_ACTIONS)]
    journal = store.journal(
        event.issue,
        f"{delivery.source}:{delivery.delivery_id}",
        services.clock,
        complete=memory.journaled,
    )
    try:
        applied = connector.apply(delivery, event, snapshot, tracker_actions, journal)
    except IssueGone as gone:
        decision, applied = _gone(services, event, decision, tracker_actions, str(gone))
    metrics.actions_done(delivery.source, applied)
    happened = what_happened(decision, [(a.action, a.outcome) for a in applied])
    ledger = ledger_update(services, delivery, event, snapshot, happened, known, memory, now)
    ledger = _with_unfinished(ledger, known, delivery.delivery_id, decision, applied, now)
    broken = decision.broken
    status: Final = "failed" if broken else "processed"
    why = "; ".join(f"{r.rule_id}: {'; '.join(r.reasons)}" for r in broken)
    _record(
        services,
        delivery,
        seq,
        status,
        why or None,
        event.issue,
        event.name,
        decision,
        _outcomes(applied),
        ledger,
    )
    log.info(
        "delivery %s on %s: %d rule(s), %d action(s) %s",
        delivery.delivery_id,
        event.issue,
        len(decision.results),
        len(tracker_actions),
        connector.name,
    )
    return Outcome(status, why)


def _shown_or_known(event: Event, snapshot: IssueSnapshot, facts: IssueFacts) -> IssueSnapshot:
    """What a Jira comment event does not show, as the ledger last knew it: the reporter, and (a
    Data Center `comment_created` shows no field at all) the labels, assignees and whether open."""
    if not snapshot.reporter:
        snapshot = replace(snapshot, reporter=facts.reporter, reporter_id=facts.reporter_id)
    if shows_whole_issue(event):
        return snapshot
    return replace(
        snapshot,
        labels=snapshot.labels or facts.labels,
        assignees=snapshot.assignees or facts.assignees,
        is_open=snapshot.is_open if snapshot.status is not None else facts.is_open,
    )


def _follow_the_move(services: Services, event: Event, now: dt.datetime) -> None:
    """An issue that changed its name (a GitHub transfer, seen from either end; a Jira issue moved
    to another project) is followed on under the new one, whichever delivery arrives first."""
    for old, new in ((event.moved_from, event.issue), (event.issue, event.moved_to)):
        if old is not None and new is not None and services.store.ledger.rename(old, new, now):
            log.info("%s is followed on as %s", old, new, extra={"issue": str(new)})


def _gone(
    services: Services, event: Event, decision: Decision, actions: Sequence[Action], reason: str
) -> tuple[Decision, list[Applied]]:
    """The tracker says the issue is gone: none of the writes happened, and it is no longer followed."""
    scoped = services.policy.for_issue(event.issue.source, event.issue.scope)
    rule = scoped.workflow.rule
    why = i18n.say(scoped.locale, "%(reason)s: no longer followed", reason=reason)
    stop = StopFollowing(rule.id, why)
    result = RuleResult(rule.id, rule.sop, False, scoped.mode_of(rule), (why,))
    gone = replace(decision, actions=(*decision.actions, stop), results=(*decision.results, result))
    return gone, [Applied(action, f"failed: {reason}") for action in actions]


def _with_unfinished(
    ledger: LedgerUpdate | None,
    known: FollowedIssue | None,
    delivery_id: str,
    decision: Decision,
    applied: Sequence[Applied],
    now: dt.datetime,
) -> LedgerUpdate | None:
    """A comment of this delivery the tracker refused (a receipt, a checklist or rejection comment)
    is tried again by the sweep until it lands; one it posted now replaces an older failed try."""
    if ledger is None or ledger.gone is not None:
        return ledger
    rules = {r.rule_id: (r.sop, str(r.mode)) for r in decision.results}
    comments = [a for a in applied if isinstance(a.action, PostComment)]
    failed = unfinished_parts(comments, delivery_id, rules, now)
    tried = {f"comment:{a.action.marker}" for a in applied if isinstance(a.action, PostComment)}
    earlier = known.unfinished if known is not None else ()
    kept = [item for item in earlier if item.name not in tried]
    unfinished = (*kept, *failed)
    changed = bool(failed) or len(kept) != len(earlier)
    due = [t for t in (ledger.next_due_at, *(item.next_at for item in unfinished)) if t]
    return replace(ledger, unfinished=unfinished if changed else None, next_due_at=min(due, default=None))


def _is_history(memory: IssueMemory, snapshot: IssueSnapshot) -> bool:
    """Older than what the ledger already knows of the issue (a late or replayed delivery)."""
    return memory.as_of is not None and snapshot.updated_at is not None and snapshot.updated_at < memory.as_of


def _record_history(
    services: Services,
    delivery: Delivery,
    seq: int | None,
    event: Event,
    snapshot: IssueSnapshot,
    followed: FollowedIssue | None,
    memory: IssueMemory,
    now: dt.datetime,
) -> Outcome:
    """A late delivery changes no state; a comment it brings is still a fact for the clocks."""
    locale = services.policy.for_issue(event.issue.source, event.issue.scope).locale
    known_as_of = i18n.instant(memory.as_of, locale) if memory.as_of else "-"
    note = i18n.say(
        locale,
        "older than what sopguard knows of the issue (as of %(instant)s): "
        "recorded as history, nothing undone or replaced",
        instant=known_as_of,
    )
    ledger = None
    if followed is not None:
        # Who wrote what stays a fact: its comment and the delay notice it gave (judged against
        # the clocks as they stood when it was given), and who wrote a section of the issue's own
        # text (the latest record of it counts, so a late one changes nothing newer).
        scoped = services.policy.for_issue(event.issue.source, event.issue.scope)
        known = replace(snapshot, timeline=followed.timeline)
        entries = [
            e
            for e in timeline_entries(
                scoped, event, known, Decision(), followed.facts, followed.facts.priority, now
            )
            if isinstance(e, Commented | DelayAnnounced | PlanWritten | SectionWritten)
        ]
        if entries:
            ledger = LedgerUpdate(None, _new_comments(entries, followed.timeline), {})
    _record(
        services, delivery, seq, "processed", None, event.issue, event.name, Decision(note=note), {}, ledger
    )
    return Outcome("processed", note)


def _new_comments(entries: Sequence[TimelineEvent], known: Sequence[TimelineEvent]) -> list[TimelineEvent]:
    """Timeline entries without the comments the ledger already has (a replayed comment event)."""
    seen = {e.comment_id for e in known if isinstance(e, Commented) and e.comment_id}
    return [e for e in entries if not (isinstance(e, Commented) and e.comment_id and e.comment_id in seen)]


def _record(
    services: Services,
    delivery: Delivery,
    seq: int | None,
    status: Final,
    error: str | None,
    ref: IssueRef,
    event_name: str,
    decision: Decision,
    outcomes: dict[str, str],
    ledger: LedgerUpdate | None,
) -> None:
    services.store.record(
        seq=seq,
        status=status,
        error=error,
        source=delivery.source,
        delivery_id=delivery.delivery_id,
        event_name=event_name,
        ref=ref,
        audit_rows=decision_rows(decision, outcomes),
        ledger=ledger,
        now=services.clock(),
    )


def _fail(services: Services, received: Received, ref: IssueRef | None, reason: str) -> Outcome:
    """A delivery that will not succeed by being tried again: failed, with its reason, audited."""
    now = services.clock()
    issue = ref or IssueRef(
        "github" if received.source == "github" else "jira", "", received.issue.split(":", 1)[-1]
    )
    row = {
        "rule_id": None,
        "sop": None,
        "passed": None,
        "mode": None,
        "reasons": [reason],
        "actions": [],
        "outcome": f"failed: {reason}",
    }
    services.store.record(
        seq=received.seq,
        status="failed",
        error=reason,
        source=received.source,
        delivery_id=received.delivery_id,
        event_name=received.event_name,
        ref=issue,
        audit_rows=[row],
        ledger=None,
        now=now,
    )
    return Outcome("failed", reason)


def _retry_later(
    services: Services, received: Received, unavailable: TrackerUnavailable, now: dt.datetime
) -> Outcome:
    """Back off and run it again later; past the horizon, give up with the last error. Not while
    the tracker itself names the wait (a rate limit, `Retry-After`): a spent quota comes back by the
    tracker's clock, so the delivery waits as told however long that takes, and is never dropped."""
    since = received.failing_since or now
    horizon = dt.timedelta(seconds=services.settings.retry_horizon)
    reason = f"the tracker is unavailable: {unavailable}"
    if now - since >= horizon and unavailable.wait is None:
        return _fail(
            services,
            received,
            None,
            f"{reason} (still failing after {received.attempts} attempts over {horizon})",
        )
    # Each wait as long as the failure has lasted so far: 5 s, 5 s, 10 s, 20 s, ... up to 10 min.
    failing_for = (now - since).total_seconds()
    backoff = min(max(failing_for, BACKOFF_FIRST), BACKOFF_MAX) * random.uniform(0.8, 1.2)
    retry_at = now + dt.timedelta(seconds=max(backoff, unavailable.wait or 0.0))
    services.store.inbox.postpone(received.seq, retry_at, reason, since)
    log.warning(
        "delivery %s: %s; trying again at %s",
        received.delivery_id,
        reason,
        retry_at.isoformat(),
    )
    return Outcome(None, reason, retry_at)


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


def _context(delivery: Delivery, known: FollowedIssue | None) -> dict[str, Any]:
    """What the ledger keeps for acting on the issue later: the delivery's, and on Jira what an
    earlier delivery said that this one does not (a comment event carries no request type)."""
    if delivery.source == "jira" and known is not None:
        return jira_events.kept_context(known.context, delivery.payload)
    return delivery.context()


def ledger_update(
    services: Services,
    delivery: Delivery,
    event: Event,
    snapshot: IssueSnapshot,
    decision: Decision,
    known: FollowedIssue | None,
    memory: IssueMemory,
    now: dt.datetime,
) -> LedgerUpdate | None:
    """What the ledger learns from this delivery (`decision` as it happened); nothing for checklist
    items and sub-tasks, for an issue named only by its id (an old Server comment event), nor for
    an issue outside the policy's adoption rule."""
    scoped = services.policy.for_issue(event.issue.source, event.issue.scope, snapshot.request_type)
    if not is_service_request(scoped, snapshot) or not event.issue.scope:
        return None
    stopped = [a.reason for a in decision.actions if isinstance(a, StopFollowing)]
    if stopped:
        return LedgerUpdate(None, (), {}, gone=stopped[-1], as_of=memory.as_of)
    if known is None and not adoption.covers(scoped, event.source, snapshot)[0]:
        return None
    facts = facts_after(services.policy, event, snapshot, decision, known.facts if known else None)
    earlier = known.timeline if known else ()
    entries = _new_comments(
        timeline_entries(
            scoped,
            event,
            snapshot,
            decision,
            facts,
            memory.priority,
            now,
            followed=any(isinstance(entry, Created) for entry in earlier),
        ),
        earlier,
    )
    adopted = next((a for a in decision.actions if isinstance(a, Adopt)), None)
    quiet = adopted.claims if adopted else ()
    notified = (known.notified if known else frozenset()) | frozenset(quiet)
    as_of = max(now, event.at) if event.at else now  # a delivery may be processed before its own clock
    clocks = (
        services.clocks(event.issue, (*earlier, *entries), as_of, snapshot.request_type)
        if facts.is_open
        else ()
    )
    states = [a.state for a in decision.actions if isinstance(a, RememberState)]
    manual = [a.level for a in decision.actions if isinstance(a, RememberManualPriority)]
    version = max(filter(None, (memory.as_of, snapshot.updated_at)), default=None)
    return LedgerUpdate(
        facts,
        entries,
        _context(delivery, known),
        next_due(scoped, clocks, notified, as_of),
        state=states[-1] if states else None,
        manual_priority=(manual[-1],) if manual else None,
        as_of=version,
        adopted_at=adopted.at if adopted else None,
        quiet_claims=quiet,
    )

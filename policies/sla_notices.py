"""SLA notices (S1.4, S3.3, P1): which thresholds of an issue's clocks call for a comment now.

Pure: the clocks are read by `policies.sla`; this decides what to say and to whom. Each threshold
is said once per clock cycle: the caller claims `Notice.claims` before acting on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from config import i18n
from config.schema import Locale, Mode, Policy, SlaTarget
from config.templates import Markdown, mention
from policies.ledger import IssueFacts
from policies.models import Action, ChangeLabels, CommentPolicy, IssueRef, PostComment
from policies.render import TemplateFailed, render
from policies.sla import ClockReading, DelayAnnounced, Phase, TimelineEvent
from policies.visibility import is_public

Claim = tuple[str, int, str]


@dataclass(frozen=True)
class Notice:
    """A comment (and, at breach, a label) for one clock; `claims` are every threshold it covers.

    `failure` says why the comment template could not be rendered; such a notice has no actions.
    """

    target_id: str
    threshold: float
    claims: tuple[Claim, ...]
    actions: tuple[Action, ...]
    failure: str = ""


def threshold_key(threshold: float) -> str:
    return f"{threshold:g}"


def show_duration(span: dt.timedelta, locale: Locale) -> Markdown:
    """Working time as the locale says it, to the minute: `3 minutes`, `50小时44分钟`."""
    return Markdown(i18n.duration(span, locale))


def show_instant(instant: dt.datetime, locale: Locale) -> Markdown:
    """A deadline in the calendar's zone, as the locale writes it, with the zone named."""
    return Markdown(i18n.instant(instant, locale))


def _escalation(policy: Policy, ref: IssueRef) -> Markdown:
    """Whom the policy names to escalate to (`@acme/leads`): its own text, a deliberate mention."""
    return Markdown(policy.sla.escalation.get(ref.source, ""))


def _who(policy: Policy, ref: IssueRef, facts: IssueFacts) -> Markdown:
    """The assignees, each mentioned (their logins are the tracker's text), else the escalation."""
    if facts.assignees:
        return Markdown(", ".join(mention(name) for name in facts.assignees))
    return _escalation(policy, ref)


def delay_notice_before(timeline: Sequence[TimelineEvent], clock: ClockReading) -> DelayAnnounced | None:
    """The last delay notice (S3.3) given in the clock's cycle before its deadline: only valid
    ones are in the timeline (`policies.ledger.delay_notice`)."""
    given = [
        e for e in timeline if isinstance(e, DelayAnnounced) and clock.cycle_start <= e.at <= clock.deadline
    ]
    return max(given, key=lambda e: e.at) if given else None


def _shown_date(iso: str, locale: Locale) -> Markdown:
    try:
        return Markdown(i18n.day(dt.date.fromisoformat(iso), locale))
    except ValueError:  # an entry of an earlier release, with no date
        return Markdown()


def _notice(
    policy: Policy,
    ref: IssueRef,
    facts: IssueFacts,
    target: SlaTarget,
    clock: ClockReading,
    threshold: float,
    claims: tuple[Claim, ...],
    timeline: Sequence[TimelineEvent] = (),
) -> Notice:
    breached = threshold >= 1.0
    variables = {
        "target": Markdown(target.name.get(policy.locale)),
        "kind": target.kind,
        "level": clock.level,
        "deadline": show_instant(clock.deadline, policy.locale),
        "who": _who(policy, ref, facts),
    }
    if breached:
        escalation = _escalation(policy, ref)
        late = -clock.remaining
        notice = delay_notice_before(timeline, clock) if target.kind == "resolution" else None
        body = render(
            policy,
            "sla-breached",
            target,
            **variables,
            overdue=show_duration(late, policy.locale) if late >= dt.timedelta(minutes=1) else "",
            escalation=escalation if escalation != variables["who"] else Markdown(),
            delay_notice=notice is not None,
            new_date=_shown_date(notice.new_date, policy.locale) if notice else Markdown(),
        )
    else:
        body = render(
            policy,
            "sla-warning",
            target,
            **variables,
            percent=Markdown(i18n.percent(threshold, policy.locale)),
            remaining=show_duration(clock.remaining, policy.locale),
        )
    marker = f"sla:{target.id}:{clock.cycle}:{threshold_key(threshold)}"
    comment = PostComment(
        target.id, marker, body, CommentPolicy.NEW, kind="sla-breached" if breached else "sla-warning"
    )
    actions: list[Action] = [replace(comment, public=is_public(policy, comment))]
    if breached and policy.mode_of(target) == Mode.ENFORCE and policy.sla.breach_label not in facts.labels:
        actions.append(ChangeLabels(target.id, add=frozenset({policy.sla.breach_label})))
    return Notice(target.id, threshold, claims, tuple(actions))


def due_notices(
    policy: Policy,
    ref: IssueRef,
    facts: IssueFacts,
    clocks: Sequence[ClockReading],
    notified: Iterable[Claim],
    timeline: Sequence[TimelineEvent] = (),
) -> list[Notice]:
    """One notice per running clock whose crossed thresholds were not all said yet: the highest one.

    A sweep that was down while two thresholds passed says only the later one (a breach makes the
    warning moot) and claims both. `timeline`: the issue's, where the breach of its resolution
    finds the delay notice given before it.
    """
    said = set(notified)
    targets = {target.id: target for target in policy.sla.targets}
    notices = []
    for clock in clocks:
        target = targets.get(clock.target_id)
        if target is None or clock.phase is Phase.STOPPED or policy.mode_of(target) == Mode.OFF:
            continue
        pending = [t for t in clock.crossed if (clock.target_id, clock.cycle, threshold_key(t)) not in said]
        if not pending:
            continue
        claims = tuple((clock.target_id, clock.cycle, threshold_key(t)) for t in pending)
        try:
            notices.append(_notice(policy, ref, facts, target, clock, max(pending), claims, timeline))
        except TemplateFailed as failure:  # this clock's notice only; the other clocks still speak
            notices.append(Notice(target.id, max(pending), claims, (), failure=failure.reason))
    return notices


def next_due(
    policy: Policy, clocks: Sequence[ClockReading], notified: Iterable[Claim], now: dt.datetime
) -> dt.datetime | None:
    """When a sweep next has something to say for this issue: now if a crossed threshold is unsaid,
    else the earliest upcoming threshold of a running clock (a paused or stopped clock wakes only
    with a new event, and every event recomputes this). Targets switched off never wake it."""
    said = set(notified)
    live = {t.id for t in policy.sla.targets if policy.mode_of(t) != Mode.OFF}
    running = [c for c in clocks if c.phase is Phase.RUNNING and c.target_id in live]
    if any((c.target_id, c.cycle, threshold_key(t)) not in said for c in running for t in c.crossed):
        return now
    return min((c.next_threshold_at for c in running if c.next_threshold_at), default=None)

"""What the service remembers of an issue after each event: its timeline (for the SLA clocks) and
the facts a sweep needs to act without reading the tracker. Pure: derived from the event, the
snapshot and the decision, with `now` standing in when a delivery carries no time."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from config.schema import Policy
from policies import commands, followup, people, priority, workflow
from policies.context import Context
from policies.models import (
    Action,
    Actor,
    Adopt,
    Change,
    ChangeLabels,
    Comment,
    Decision,
    Event,
    EventKind,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
    RememberManualPriority,
    RememberState,
    SetPriority,
)
from policies.sla import (
    AdoptedIn,
    Closed,
    Commented,
    Created,
    DelayAnnounced,
    PlanWritten,
    PriorityChanged,
    Rated,
    Reopened,
    SectionWritten,
    StateChanged,
    TimelineEvent,
)


@dataclass(frozen=True)
class IssueFacts:
    """The issue as the service last saw it, after its own actions."""

    is_open: bool
    priority: str | None
    reporter: str
    assignees: tuple[str, ...]
    labels: frozenset[str]
    reporter_id: str = ""

    def is_reporter(self, author: Actor) -> bool:
        """By account id where both are known (Jira Cloud shows names inconsistently), else by login."""
        if author.id and self.reporter_id:
            return author.id == self.reporter_id
        return bool(self.reporter) and author.login == self.reporter


def what_happened(decision: Decision, outcomes: Sequence[tuple[Action, str]]) -> Decision:
    """The decision as the tracker carried it out: tracker actions that failed are dropped, and where
    a rule's undo failed, the state the person's change left is what the ledger records."""
    failed = [action for action, outcome in outcomes if outcome.startswith("failed")]
    undo_failed = {
        rule for action in failed if not isinstance(action, PostComment) for rule in action.rule_id.split("+")
    }
    kept: list[Action] = []
    for action in decision.actions:
        if isinstance(action, RememberState) and action.if_undo_fails:
            if action.rule_id in undo_failed:
                kept.append(replace(action, if_undo_fails=False))
        elif action not in failed:
            kept.append(action)
    return replace(decision, actions=tuple(kept))


def shows_whole_issue(event: Event) -> bool:
    """A Jira comment event may carry the issue without its reporter, labels or assignee."""
    return not (event.source == "jira" and event.kinds == {EventKind.COMMENTED})


def _labels_after(snapshot: IssueSnapshot, decision: Decision) -> frozenset[str]:
    labels = snapshot.labels
    for change in decision.actions:
        if isinstance(change, ChangeLabels):
            labels = change.applied_to(labels)
    return labels


def _vouched_labels(policy: Policy, event: Event, snapshot: IssueSnapshot) -> frozenset[str]:
    """The delivery's labels, less the restricted ones (`by`/`not_by`) sopguard does not know of
    and this event did not add: a delivery older than sopguard's removal of one still shows it
    (GitHub sends labels picked together as one delivery each, each showing them all)."""
    known = snapshot.known_labels
    if known is None:
        return snapshot.labels
    added = people.labels_added(event)
    stale = {label for label in people.guarded_labels(policy) if label not in known and label not in added}
    return snapshot.labels - stale


def facts_after(
    policy: Policy,
    event: Event,
    snapshot: IssueSnapshot,
    decision: Decision,
    previous: IssueFacts | None = None,
) -> IssueFacts:
    """The issue once the decision's actions are applied (the priority as the tracker shows it);
    what a partial delivery does not show is kept from `previous`, with the labels its decision
    changed (a command's)."""
    if previous is not None and not shows_whole_issue(event):
        known = replace(snapshot, labels=previous.labels)
        return replace(previous, labels=_labels_after(known, decision))
    labels = _labels_after(replace(snapshot, labels=_vouched_labels(policy, event, snapshot)), decision)
    chosen = [a.name for a in decision.actions if isinstance(a, SetPriority)]
    after = IssueSnapshot(
        ref=snapshot.ref, labels=labels, priority=chosen[-1] if chosen else snapshot.priority
    )
    scoped = policy.for_issue(event.source, event.issue.scope, snapshot.request_type)
    level = priority.current_level(Context(scoped, event, after, dt.datetime.min))
    manual = [a.level for a in decision.actions if isinstance(a, RememberManualPriority)]
    moved = [
        a.status for a in decision.actions if isinstance(a, MoveToStatus) and a.status in ("open", "closed")
    ]
    return IssueFacts(
        is_open=moved[-1] == "open" if event.source == "github" and moved else snapshot.is_open,
        priority=manual[-1] if manual and manual[-1] != priority.OUTSIDE_MAPPING else level,
        reporter=snapshot.reporter or (previous.reporter if previous else ""),
        assignees=snapshot.assignees,
        labels=labels,
        reporter_id=snapshot.reporter_id or (previous.reporter_id if previous else ""),
    )


def timeline_entries(
    policy: Policy,
    event: Event,
    snapshot: IssueSnapshot,
    decision: Decision,
    facts: IssueFacts,
    previous_priority: str | None,
    now: dt.datetime,
    *,
    followed: bool = True,
) -> list[TimelineEvent]:
    """The timeline events this delivery adds; events the service caused itself add nothing.

    An adopted issue (the decision's `Adopt`) begins with the timeline its adoption rebuilt. Else
    the first delivery the service sees of an issue (`followed` is false), whatever its kind, gives
    the issue its one `Created`, at the tracker's creation time and in the state the service now
    knows; a late `opened` adds none.
    """
    adopted = [a for a in decision.actions if isinstance(a, Adopt)]
    if event.by_service and not adopted:
        return []
    at = event.at or now
    states = [a.state for a in decision.actions if isinstance(a, RememberState) and not a.if_undo_fails]
    entries: list[TimelineEvent] = []
    if adopted:
        entries.extend(adopted[0].beginning)
        entries.append(AdoptedIn(at=adopted[0].at, state=adopted[0].state))
        states = []
    elif not followed:
        known = states[0] if states else snapshot.last_state
        entries.append(Created(at=snapshot.created_at or at, state=known))
        states = states[1:]
    elif event.status_before == "closed" and event.status_after == "open" and facts.is_open:
        entries.append(Reopened(at=at, state=states[-1] if states else None))
        states = []
    elif event.source == "github" and event.status_after == "closed" and not facts.is_open:
        entries.append(Closed(at=at))
    entries.extend(StateChanged(at=at, state=state) for state in states)
    context = Context(policy, event, snapshot, at)
    # Who wrote the plan, and each section a guard asks who wrote, of the issue's own text.
    if (author := people.body_section_writer(context, policy.workflow.plan_headings)) is not None:
        entries.append(PlanWritten(at=at, author=author.login, author_id=author.id))
    for guard in people.restricted_sections(policy):
        if (author := people.body_section_writer(context, guard.headings, at_opening=True)) is not None:
            entries.append(
                SectionWritten(
                    at=at,
                    guard=guard.id,
                    author=author.login,
                    author_id=author.id,
                    association=author.association,
                )
            )
    entries.extend(_comment_entries(policy, event, snapshot, facts, (*snapshot.timeline, *entries), at))
    if facts.priority != previous_priority:
        entries.append(PriorityChanged(at=at, priority=facts.priority))
    return entries


def _comment_entries(
    policy: Policy,
    event: Event,
    snapshot: IssueSnapshot,
    facts: IssueFacts,
    recorded: Sequence[TimelineEvent],
    at: dt.datetime,
) -> list[TimelineEvent]:
    """What a comment adds: its delay notice, rating and the comment itself. One the timeline has
    already (Jira delivers each twice: `comment_created` and an `issue_commented` update) adds no
    second rating, delay notice or reply; an edit of it may put right a notice that did not count,
    recorded once, at the edit's time."""
    comment = event.comment
    if comment is None or EventKind.COMMENTED not in event.kinds:
        return []
    context = Context(policy, event, snapshot, at)
    listed = {e.comment_id for e in recorded if isinstance(e, Commented) and e.comment_id}
    if comment.id and comment.id in listed:
        fixed = followup.edited(event) and not followup.announced(recorded, comment)
        return _announced(context, comment) if fixed else []
    entries = _announced(context, comment)
    if (score := followup.rating(policy, snapshot, comment)) is not None:
        entries.append(Rated(at=comment.at or at, score=score))
    author = comment.author
    entries.append(
        Commented(
            at=comment.at or at,
            author=author.login,
            is_reporter=facts.is_reporter(author),
            is_bot=author.is_bot,
            public=snapshot.is_public(comment),
            comment_id=comment.id,
            by_responder=people.is_responder(context, author),
        )
    )
    return entries


def _announced(ctx: Context, comment: Comment) -> list[TimelineEvent]:
    notice = delay_notice(ctx, comment)
    if notice is None:
        return []
    return [
        DelayAnnounced(
            at=followup.given_at(ctx, comment),
            author=comment.author.login,
            new_date=notice.new_date.isoformat() if notice.new_date else "",
            reason=notice.reason,
            comment_id=comment.id or "",
        )
    ]


def delay_notice(ctx: Context, comment: Comment) -> followup.DelayNotice | None:
    """The comment's delay notice that counts (S3.3), a `### Delay` section or a `/delay` command;
    one that does not is recorded nowhere but in the audit log, with the answer that says why."""
    for notice in (followup.section_notice(ctx, comment), commands.delay_given(ctx, comment)):
        if notice is not None and notice.valid:
            return notice
    return None


def backfill(policy: Policy, created_at: dt.datetime, history: Sequence[Change]) -> list[TimelineEvent]:
    """The timeline of an issue the service did not follow from its creation, rebuilt from the
    tracker's history, so its clocks count what really happened (pauses included)."""
    entries: list[TimelineEvent] = [Created(at=created_at, state=policy.workflow.initial)]
    state, labels = policy.workflow.initial, frozenset[str]()
    for change in sorted(history, key=lambda c: c.at):
        if change.kind in ("closed", "reopened"):
            entries.append(Closed(at=change.at) if change.kind == "closed" else Reopened(at=change.at))
            continue
        if change.kind == "status":
            new = workflow.jira_state(policy, change.value)
        else:
            labels = labels | {change.value} if change.kind == "labeled" else labels - {change.value}
            present = workflow.label_states(policy, labels)
            new = present[-1] if present else None
        if new is not None and new != state:
            entries.append(StateChanged(at=change.at, state=new))
            state = new
    return entries

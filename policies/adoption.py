"""Adoption: which issues sopguard applies to, and how it takes on one it first meets mid-life.

Installed on a tracker with a past, sopguard meets issues whose history it never saw. Such an issue,
if the policy's `adoption` section covers it, is *adopted* by the first delivery about it (or by
`sopguard adopt`): its state is what its labels or status say now, nothing is undone and nothing
is posted; its clocks are rebuilt from the tracker's history (status and label changes, closes,
comments) when the connector could read it, and otherwise start at the adoption; every SLA
threshold already crossed then is claimed as said, so that a target missed before the adoption is
recorded in the audit log, not announced as a fresh breach. An issue outside is not touched.

Pure: the history arrives in the snapshot, read by the connector.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from config.schema import Policy
from policies import priority, workflow
from policies.context import Context
from policies.ledger import IssueFacts, backfill
from policies.models import (
    Actor,
    Adopt,
    Decision,
    EventKind,
    IssueSnapshot,
    RememberState,
    RuleResult,
    Source,
)
from policies.sla import (
    ClockReading,
    Closed,
    Commented,
    Created,
    PriorityChanged,
    Reopened,
    StateChanged,
    TimelineEvent,
    read_clocks,
    rules_for,
)
from policies.sla_notices import Claim, show_instant, threshold_key

RULE_ID = "adoption"


# --- what sopguard applies to ------------------------------------------------------------------


def _criteria(policy: Policy, source: Source, snapshot: IssueSnapshot) -> Iterator[tuple[bool, str]]:
    """Each criterion the policy gives: whether the issue meets it, and why (or why not)."""
    adoption = policy.adoption
    if adoption.created_after is not None:
        created = snapshot.created_at
        since = f"{adoption.created_after:%Y-%m-%d %H:%M} UTC"
        if created is None:
            yield False, "its creation time is not known"
        elif created >= adoption.created_after:
            yield True, f"created on or after {since}"
        else:
            yield False, f"created {created:%Y-%m-%d}, before {since}"
    if adoption.labels:
        found = sorted(set(adoption.labels) & snapshot.labels)
        yield (
            (True, f"labelled {found[0]}") if found else (False, f"no label of {', '.join(adoption.labels)}")
        )
    if adoption.issue_types:
        wanted = {t.casefold() for t in adoption.issue_types}
        kind = snapshot.issue_type
        if kind and kind.casefold() in wanted:
            yield True, f"of type {kind}"
        else:
            yield False, f"of type {kind or '(none)'}, not {' or '.join(adoption.issue_types)}"
    if adoption.form:
        if from_form(policy, source, snapshot):
            yield True, "filed through the issue form"
        else:
            yield False, "not filed through the issue form"


def from_form(policy: Policy, source: Source, snapshot: IssueSnapshot) -> bool:
    """GitHub renders every field of an issue form as a heading, an empty one as `_No response_`:
    a body with every intake heading came through the generated form. Jira has no such form, and
    a policy with no intake fields generates none."""
    headings = [field.github.heading for field in policy.intake.fields]
    return source == "github" and bool(headings) and all(heading in snapshot.fields for heading in headings)


def covers(policy: Policy, source: Source, snapshot: IssueSnapshot) -> tuple[bool, str]:
    """Whether the policy's adoption rule takes in the issue, and why (for the audit log)."""
    verdicts = list(_criteria(policy, source, snapshot))
    if not verdicts:
        return True, "every issue is in scope"
    met = [why for ok, why in verdicts if ok]
    unmet = [why for ok, why in verdicts if not ok]
    inside = not unmet if policy.adoption.require == "all" else bool(met)
    return inside, "; ".join(met if inside else unmet)


# --- the state it is adopted in ----------------------------------------------------------------


def adopted_state(policy: Policy, source: Source, snapshot: IssueSnapshot) -> tuple[str | None, str]:
    """The SOP state the issue's labels or status show now, and how it was read."""
    if source == "jira":
        state = workflow.jira_state(policy, snapshot.status)
        if state is None:
            return None, f"its status {snapshot.status or '(none)'} stands for no state of the policy"
        return state, f"from its status {snapshot.status}"
    github = policy.trackers.github
    if not snapshot.is_open:
        return github.closed_states[0], "closed on GitHub"
    present = workflow.label_states(policy, snapshot.labels)
    if not present:
        return policy.workflow.initial, "open, with no status label"
    label = github.status_label(present[-1])
    if len(present) > 1:
        return present[-1], f"from {label}, the furthest of its {len(present)} status labels"
    return present[0], f"from its label {label}"


# --- its clocks --------------------------------------------------------------------------------


# GitHub's associations of the people the built-in `team-members` stands for.
TEAM_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


def _may_have_answered(policy: Policy, author: Actor) -> bool:
    """Whether a comment in the history counts as the team's first response (S1.4). When the
    policy names its responders, a GitHub comment whose author GitHub shows as no owner, member or
    collaborator (a passer-by's "+1") does not; where the history does not say who someone is
    (Jira, or no association given), the comment counts, so that sopguard stays quiet rather than
    announce a response missing that may well have been given."""
    if not policy.sla.responders or not author.association:
        return True
    return author.association in TEAM_ASSOCIATIONS


def beginning(
    policy: Policy, snapshot: IssueSnapshot, state: str | None, at: dt.datetime
) -> tuple[list[TimelineEvent], str]:
    """The issue's timeline up to its adoption at `at`, and where it came from.

    From the tracker's history when it was read: the creation, each change of state, close and
    reopen (`policies.ledger.backfill`) and each comment; then the state as it stands now, where
    the history ends elsewhere (labels win: they are what people see). Otherwise the clocks start
    at the adoption, in the state the issue is in.
    """
    history = snapshot.history
    if history is None or snapshot.created_at is None:
        return [Created(at=at, state=state)], "history not read: the clocks start at the adoption"
    created = min(snapshot.created_at, at)
    entries = backfill(policy, created, [c for c in history.changes if c.at <= at])
    last_state, closed = _end_of(entries)
    if snapshot.is_open and closed:
        entries.append(Reopened(at=at, state=state))
    elif not snapshot.is_open and not closed:
        entries.append(Closed(at=at))
    if state is not None and state != last_state:
        entries.append(StateChanged(at=at, state=state))
    facts = IssueFacts(
        snapshot.is_open, None, snapshot.reporter, snapshot.assignees, snapshot.labels, snapshot.reporter_id
    )
    entries.extend(
        Commented(
            at=comment.at,
            author=comment.author.login,
            is_reporter=facts.is_reporter(comment.author),
            is_bot=comment.author.is_bot,
            public=comment.public is not False,  # read with its properties: it says
            comment_id=comment.id,
            by_responder=_may_have_answered(policy, comment.author),
        )
        for comment in history.comments
        if comment.at is not None and comment.at <= at
    )
    answered = sum(1 for e in entries if isinstance(e, Commented))
    return (
        entries,
        f"rebuilt from the tracker's history ({len(history.changes)} change(s), {answered} comment(s))",
    )


def _end_of(entries: Sequence[TimelineEvent]) -> tuple[str | None, bool]:
    """The state and the closed flag at the end of a backfilled timeline."""
    state: str | None = None
    closed = False
    for entry in entries:
        if isinstance(entry, Created | StateChanged):
            state = entry.state
        elif isinstance(entry, Closed):
            closed = True
        elif isinstance(entry, Reopened):
            closed = False
    return state, closed


def crossed_claims(clocks: Sequence[ClockReading]) -> tuple[Claim, ...]:
    """Every threshold the clocks have crossed: said already, as far as the notices go."""
    return tuple((c.target_id, c.cycle, threshold_key(t)) for c in clocks for t in c.crossed)


def _missed(ctx: Context, clocks: Sequence[ClockReading]) -> list[str]:
    targets = {t.id: t for t in ctx.policy.sla.targets}
    return [
        ctx.tell(
            "%(target)s target (%(level)s) missed before the adoption, due %(due)s: recorded, not announced",
            target=targets[c.target_id].name.get(ctx.policy.locale),
            level=c.level,
            due=show_instant(c.deadline, ctx.policy.locale),
        )
        for c in clocks
        if c.breached and c.target_id in targets
    ]


# --- the decision ------------------------------------------------------------------------------


def adopt(ctx: Context) -> Decision:
    """Take the issue on as it stands: record its state and its clocks; no tracker action."""
    policy, event, snapshot = ctx.policy, ctx.event, ctx.snapshot
    at = ctx.now
    state, read_as = adopted_state(policy, event.source, snapshot)
    entries, origin = beginning(policy, snapshot, state, at)
    level = priority.current_level(ctx)
    clocks = read_clocks(rules_for(policy.sla), [*entries, PriorityChanged(at=at, priority=level)], at)
    known = policy.workflow.state(state) if state else None
    title = known.title.get(policy.locale) if known else None
    reasons = [
        f"adopted in {title or 'no known state'} ({read_as}); its history before is not judged",
        f"clocks {origin}",
        *_missed(ctx, clocks),
    ]
    actions: list[RememberState | Adopt] = [Adopt(RULE_ID, at, tuple(entries), crossed_claims(clocks), state)]
    if state is not None:
        actions.insert(0, RememberState(RULE_ID, state))
    lifecycle = policy.workflow.rule
    result = RuleResult(RULE_ID, lifecycle.sop, True, policy.mode_of(lifecycle), tuple(reasons))
    return Decision(actions=tuple(actions), results=(result,))


def is_adoption(ctx: Context) -> bool:
    """A delivery (or `sopguard adopt`) about an issue sopguard has no record of, other than its
    opening or its end here (deleted, transferred away: nothing to adopt): sopguard meets it mid-life."""
    return ctx.snapshot.first_seen and not ctx.event.kinds & {EventKind.OPENED, EventKind.REMOVED}

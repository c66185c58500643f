"""S1.4: confirm receipt with the priority, the next step and the deadlines, in one comment that a
later change of priority edits instead of repeating. Our comments never count as a response."""

from __future__ import annotations

from collections.abc import Iterator

from config.schema import Mode
from config.templates import Markdown
from policies import priority
from policies.context import Context, Outcome, outcome
from policies.models import CommentPolicy, EventKind, PostComment
from policies.render import render
from policies.router import Router
from policies.sla import ClockReading, Created, PriorityChanged, issue_clocks
from policies.sla_notices import show_instant

router = Router()


def _level_before(ctx: Context) -> str | None:
    """The priority before this event: from the change itself when a priority was changed, else
    the issue's (an edit may change impact or urgency, and so the priority this decision sets)."""
    event = ctx.event
    if EventKind.OPENED in event.kinds:
        return None
    if EventKind.PRIORITY_CHANGED in event.kinds and event.source == "jira":
        return priority.jira_level(ctx.policy, event.priority_before)
    if EventKind.LABELS_CHANGED in event.kinds and event.source == "github":
        levels = priority.label_levels(ctx.policy, event.labels_before)
        return levels[0] if levels else None
    return priority.current_level(ctx)


def _clocks(ctx: Context, level: str | None) -> tuple[ClockReading, ...]:
    """The clocks the sweep reads, from the ledger's timeline (pauses included) with this
    decision's priority; a new issue's timeline is its creation."""
    created = ctx.snapshot.created_at or ctx.event.at or ctx.now
    now = max(ctx.now, created)
    known = ctx.snapshot.timeline
    if not any(isinstance(entry, Created) for entry in known):
        known = (Created(at=created, state=ctx.policy.workflow.initial),)
    return issue_clocks(ctx.policy.sla, (*known, PriorityChanged(at=now, priority=level)), now)


@router.register(EventKind.OPENED, EventKind.EDITED, EventKind.LABELS_CHANGED, EventKind.PRIORITY_CHANGED)
def confirm_receipt(ctx: Context) -> Iterator[Outcome]:
    rule = ctx.policy.sla.receipt
    if rule is None or ctx.mode(rule) == Mode.OFF:
        return
    level, computed = priority.resulting_level(ctx)
    if EventKind.OPENED not in ctx.event.kinds and (level is None or level == _level_before(ctx)):
        return
    clocks = _clocks(ctx, level)
    targets = {t.id: t for t in ctx.policy.sla.targets}
    workflow = ctx.policy.workflow
    state = ctx.snapshot.last_state or workflow.initial
    next_steps = [ctx.text(s.title) for t in workflow.transitions_from(state) if (s := workflow.state(t.to))]
    body = render(
        ctx.policy,
        "receipt",
        rule,
        reason=priority.shown(ctx, computed) if computed else None,
        level=clocks[0].level if clocks else level,
        assumed=bool(clocks and clocks[0].level_assumed),
        next_steps=next_steps,
        deadlines=[
            {
                "target": Markdown(targets[c.target_id].name.get(ctx.policy.locale)),
                "deadline": show_instant(c.deadline, ctx.policy.locale),
            }
            for c in clocks
        ],
    )
    yield outcome(
        rule,
        ctx.mode(rule),
        passed=True,
        actions=[PostComment(rule.id, "receipt", body, CommentPolicy.UPSERT, kind="receipt")],
    )

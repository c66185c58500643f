"""S3.2: a change of an approved plan needs approval again.

An edit that changes the plan section (of the issue's body or of a comment), or a new comment
with a plan section, while the plan carries its approval or a label that waived its review (an
approver's low-risk judgement, S2.2: it judged the plan before): those labels are removed, the
"changed" label added, and a comment says why. During implementation the work stands; a guard on
the changed label keeps the issue from moving on until the plan is approved again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from config.schema import Mode
from policies import people
from policies.context import Context, Outcome, outcome
from policies.models import ChangeLabels, EventKind, PostComment
from policies.render import render
from policies.router import Router
from policies.text import find_section

router = Router()


def _plan_changed(ctx: Context) -> bool:
    event, headings = ctx.event, ctx.policy.workflow.plan_headings
    comment = event.comment
    if comment is not None and EventKind.COMMENTED in event.kinds:
        after = find_section(comment.body, headings, event.source)
        if event.name.endswith(".created") or event.name == "comment_created":
            return bool(after)
        before = (
            find_section(event.body_before, headings, event.source) if event.body_before is not None else ""
        )
        return bool(after) and after != before
    return people.body_plan_edited(ctx)


def _marker(ctx: Context) -> str:
    """A plan in a comment is told of once per comment and plan text: Jira delivers each comment
    and each edit of one twice (`comment_created` or `comment_updated`, and an issue update)."""
    comment = ctx.event.comment
    if comment is None or not comment.id or EventKind.COMMENTED not in ctx.event.kinds:
        return f"plan-changed:{ctx.event.delivery_id}"
    plan = find_section(comment.body, ctx.policy.workflow.plan_headings, ctx.event.source)
    return f"plan-changed:{comment.id}:{hashlib.sha256(plan.encode()).hexdigest()[:16]}"


@router.register(EventKind.EDITED, EventKind.COMMENTED)
def withdraw_approval(ctx: Context) -> Iterator[Outcome]:
    rule = ctx.policy.plan_changes
    if rule is None:
        return
    labels = ctx.snapshot.labels
    approved = rule.approval_label in labels
    waived = [label for label in rule.waiver_labels if label in labels]
    if not (approved or waived) or not _plan_changed(ctx):
        return
    mode = ctx.mode(rule)
    if mode == Mode.OFF:
        return
    person = people.subject(ctx.event)
    body = render(
        ctx.policy,
        "plan-changed",
        rule,
        actor=person.login,
        approval_label=rule.approval_label,
        approved=approved,
        waiver_labels=waived,
        changed_label=rule.changed_label,
        during_work=ctx.snapshot.last_state == "in-progress",
    )
    actions: list[ChangeLabels | PostComment] = [
        PostComment(rule.id, _marker(ctx), body, kind="plan-changed")
    ]
    if mode == Mode.ENFORCE:
        withdrawn = frozenset({*([rule.approval_label] if approved else []), *waived})
        change = ChangeLabels(rule.id, add=frozenset({rule.changed_label}), remove=withdrawn)
        actions.insert(0, change)
    yield outcome(
        rule,
        mode,
        passed=False,
        reasons=[
            ctx.tell("the approved plan was changed by %(login)s", login=person.login)
            if approved
            else ctx.tell("the plan whose review was waived was changed by %(login)s", login=person.login)
        ],
        actions=actions,
    )

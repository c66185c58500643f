"""S1.2: the information a request must carry from first contact."""

from __future__ import annotations

from collections.abc import Iterator

from config.schema import IntakeField, Mode
from policies.context import Context, Outcome, outcome
from policies.models import Action, ChangeLabels, CommentPolicy, EventKind, PostComment
from policies.render import render
from policies.router import Router

router = Router()


def missing_fields(ctx: Context) -> list[IntakeField]:
    return [f for f in ctx.policy.intake.fields if f.required and not ctx.field_value(f.id)]


@router.register(EventKind.OPENED, EventKind.EDITED)
def check_intake(ctx: Context) -> Iterator[Outcome]:
    rule = ctx.policy.intake
    mode = ctx.mode(rule)
    if mode == Mode.OFF:
        return
    missing = [ctx.text(f.title) for f in missing_fields(ctx)]
    labelled = rule.needs_info_label in ctx.snapshot.labels
    body = render(ctx.policy, "intake-missing", rule, missing=missing)
    actions: list[Action] = []
    if missing:
        if mode == Mode.ENFORCE and not labelled:
            actions.append(ChangeLabels(rule.id, add=frozenset({rule.needs_info_label})))
        actions.append(PostComment(rule.id, rule.id, body, CommentPolicy.UPSERT))
    elif labelled:
        # The label says we asked for information: take it back and say thank you in the same comment.
        if mode == Mode.ENFORCE:
            actions.append(ChangeLabels(rule.id, remove=frozenset({rule.needs_info_label})))
        actions.append(PostComment(rule.id, rule.id, body, CommentPolicy.UPDATE_ONLY))
    yield outcome(rule, mode, passed=not missing, reasons=missing, actions=actions)

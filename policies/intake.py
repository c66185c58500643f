"""S1.2: the information a request must carry from first contact."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from config.schema import IntakeField, Mode, Option
from config.templates import Markdown
from policies.context import Context, Outcome, outcome
from policies.models import Action, ChangeLabels, CommentPolicy, EventKind, PostComment
from policies.render import render
from policies.router import Router

router = Router()


def is_option(field: IntakeField, value: str) -> bool:
    """Whether `value` may be given for `field`: any value where the policy lists no options,
    else one of them (in any case, as the priority matrix compares them)."""
    return not field.options or field.option(value) is not None


def missing_fields(ctx: Context) -> list[IntakeField]:
    return [f for f in ctx.policy.intake.fields if f.required and not ctx.field_value(f.id)]


def invalid_fields(ctx: Context) -> list[tuple[IntakeField, str]]:
    """Fields whose value is not one of their options, with the value as the tracker has it."""
    values = ((f, ctx.field_value(f.id)) for f in ctx.policy.intake.fields)
    return [(f, value) for f, value in values if value and not is_option(f, value)]


def incomplete_fields(ctx: Context) -> list[IntakeField]:
    """What keeps the intake from being complete: required fields left empty, values not allowed."""
    return [*missing_fields(ctx), *(f for f, _ in invalid_fields(ctx))]


def _option_choice(ctx: Context, option: Option) -> Markdown:
    """An option as someone correcting a field needs it: its title, and the value to enter
    when the title is another text (`服务降级（Degraded service）`)."""
    title = option.shown(ctx.policy.locale)
    if title == option.value:
        return Markdown(title)
    return Markdown(ctx.tell("%(title)s (%(value)s)", title=title, value=option.value))


def _invalid_variable(ctx: Context) -> list[dict[str, Any]]:
    return [
        {"field": ctx.text(f.title), "value": value, "options": [_option_choice(ctx, o) for o in f.options]}
        for f, value in invalid_fields(ctx)
    ]


def _asked_for(ctx: Context) -> bool:
    """Intake is demanded of open issues only; of an adopted one only where the policy says so,
    or once sopguard has asked for it (the needs-info label is on)."""
    snapshot = ctx.snapshot
    if not snapshot.is_open:
        return False
    if snapshot.adopted and not ctx.policy.adoption.intake_for_adopted:
        return ctx.policy.intake.needs_info_label in snapshot.labels
    return True


@router.register(EventKind.OPENED, EventKind.EDITED)
def check_intake(ctx: Context) -> Iterator[Outcome]:
    rule = ctx.policy.intake
    mode = ctx.mode(rule)
    if mode == Mode.OFF or not _asked_for(ctx):
        return
    missing = [ctx.text(f.title) for f in missing_fields(ctx)]
    invalid = _invalid_variable(ctx)
    reasons = [*missing, *(ctx.tell("%(field)s: not one of its options", field=i["field"]) for i in invalid)]
    labelled = rule.needs_info_label in ctx.snapshot.labels
    body = render(ctx.policy, "intake-missing", rule, missing=missing, invalid=invalid)
    actions: list[Action] = []
    if reasons:
        if mode == Mode.ENFORCE and not labelled:
            actions.append(ChangeLabels(rule.id, add=frozenset({rule.needs_info_label})))
        actions.append(PostComment(rule.id, rule.id, body, CommentPolicy.UPSERT, kind="intake-missing"))
    elif labelled:
        # The label says we asked for information: take it back and say thank you in the same comment.
        if mode == Mode.ENFORCE:
            actions.append(ChangeLabels(rule.id, remove=frozenset({rule.needs_info_label})))
        actions.append(PostComment(rule.id, rule.id, body, CommentPolicy.UPDATE_ONLY, kind="intake-missing"))
    yield outcome(rule, mode, passed=not reasons, reasons=reasons, actions=actions)

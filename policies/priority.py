"""S1.3: priority from impact, urgency and customer tier; a person's own choice is respected (P5)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from config import i18n
from config.schema import Mode, Policy
from config.templates import Markdown
from policies.context import Context, Outcome, outcome
from policies.intake import is_option
from policies.models import (
    Action,
    ChangeLabels,
    EventKind,
    PostComment,
    RememberManualPriority,
    SetPriority,
)
from policies.render import render
from policies.router import Router

router = Router()


@dataclass(frozen=True)
class Computed:
    level: str
    impact: str
    urgency: str
    tier: str
    raised: bool


def _lookup(table: dict[str, dict[str, str]] | dict[str, str], key: str) -> str | dict[str, str] | None:
    folded = key.casefold()
    return next((value for name, value in table.items() if name.casefold() == folded), None)


def not_options(ctx: Context) -> list[str]:
    """The titles of the matrix's fields (impact, urgency, tier) whose value is not one of their options."""
    rule = ctx.policy.priority
    fields = (ctx.policy.intake.field(f) for f in (rule.impact_field, rule.urgency_field, rule.tier_field))
    given = ((f, ctx.field_value(f.id)) for f in fields if f)
    return [ctx.text(f.title) for f, value in given if value and not is_option(f, value)]


def compute(ctx: Context) -> Computed | None:
    """The level the matrix gives, raised one step for a top tier; `None` without impact or urgency,
    or when impact, urgency or tier is a value their options do not list (nobody knows what it means)."""
    rule = ctx.policy.priority
    if not_options(ctx):
        return None
    impact, urgency, tier = (
        ctx.field_value(f) for f in (rule.impact_field, rule.urgency_field, rule.tier_field)
    )
    row = _lookup(rule.matrix, impact)
    level = _lookup(row, urgency) if isinstance(row, dict) else None
    if not isinstance(level, str):
        return None
    raised = tier.casefold() in {t.casefold() for t in rule.top_tiers} and rule.levels.index(level) > 0
    if raised:
        level = rule.levels[rule.levels.index(level) - 1]
    return Computed(level, impact, urgency, tier, raised)


def shown(ctx: Context, computed: Computed) -> dict[str, str | bool]:
    """The computation as comments tell it: impact, urgency and tier by their options' titles."""
    rule = ctx.policy.priority
    return {
        "level": Markdown(computed.level),
        "impact": ctx.shown_value(rule.impact_field, computed.impact),
        "urgency": ctx.shown_value(rule.urgency_field, computed.urgency),
        "tier": ctx.shown_value(rule.tier_field, computed.tier),
        "raised": computed.raised,
    }


def label_levels(policy: Policy, labels: frozenset[str]) -> list[str]:
    github = policy.trackers.github
    return [level for level in policy.priority.levels if github.priority_label(level) in labels]


def jira_level(policy: Policy, name: str | None) -> str | None:
    return next(
        (
            level
            for level, n in policy.trackers.jira.priorities.items()
            if name and n.casefold() == name.casefold()
        ),
        None,
    )


OUTSIDE_MAPPING = "unmapped"
"""The manual priority recorded when a person chose one the mapping does not know (a Jira "Blocker",
a GitHub `priority/urgent` label): their choice is kept, never overridden by the matrix, and the
guard that asks for a priority holds; the SLA targets are those of an issue with no known level."""


def current_level(ctx: Context) -> str | None:
    if ctx.event.source == "jira":
        return jira_level(ctx.policy, ctx.snapshot.priority)
    levels = label_levels(ctx.policy, ctx.snapshot.labels)
    return levels[0] if levels else None


def unmapped_labels(policy: Policy, labels: frozenset[str]) -> list[str]:
    """GitHub priority labels (the prefix) that name no level of the policy, sorted."""
    github = policy.trackers.github
    known = {github.priority_label(level) for level in policy.priority.levels}
    return sorted(lb for lb in labels if lb.startswith(github.priority_label_prefix) and lb not in known)


def unmapped_priority(ctx: Context) -> str | None:
    """The tracker's own priority when the mapping does not know it, as the tracker names it."""
    if ctx.event.source == "jira":
        name = ctx.snapshot.priority
        return name if name and jira_level(ctx.policy, name) is None else None
    if label_levels(ctx.policy, ctx.snapshot.labels):
        return None
    unknown = unmapped_labels(ctx.policy, ctx.snapshot.labels)
    return unknown[0] if unknown else None


def is_set(ctx: Context) -> bool:
    """A priority is set: a level of the mapping, or one a person chose outside it and still shows."""
    if current_level(ctx) is not None:
        return True
    by_person, chosen = chosen_by_person(ctx)
    manual = chosen if by_person else ctx.snapshot.manual_priority
    return manual == OUTSIDE_MAPPING and unmapped_priority(ctx) is not None


def chosen_by_person(ctx: Context) -> tuple[bool, str | None]:
    """Whether this event is a person changing the priority, and the level they chose
    (`OUTSIDE_MAPPING` for a priority the mapping does not know; `None` when they removed it)."""
    event = ctx.event
    if event.source == "jira":
        if EventKind.PRIORITY_CHANGED not in event.kinds:
            return False, None
        level = jira_level(ctx.policy, event.priority_after)
        return True, level or (OUTSIDE_MAPPING if event.priority_after else None)
    changed = event.labels_after ^ event.labels_before
    if not label_levels(ctx.policy, changed) and not unmapped_labels(ctx.policy, changed):
        return False, None
    added = event.labels_after - event.labels_before
    if levels := label_levels(ctx.policy, added):
        return True, levels[0]
    if unmapped_labels(ctx.policy, added):
        return True, OUTSIDE_MAPPING
    return True, current_level(ctx) or (OUTSIDE_MAPPING if unmapped_priority(ctx) else None)


def _chosen_name(ctx: Context, chosen: str) -> str:
    """The priority as the person chose it: the level, or the tracker's own name outside the mapping."""
    if chosen != OUTSIDE_MAPPING:
        return chosen
    if ctx.event.source == "jira":
        return ctx.event.priority_after or ""
    added = unmapped_labels(ctx.policy, ctx.event.labels_after - ctx.event.labels_before)
    return (added or unmapped_labels(ctx.policy, ctx.snapshot.labels) or [""])[0]


def _apply(ctx: Context, level: str) -> list[Action]:
    rule_id, policy = ctx.policy.priority.id, ctx.policy
    if ctx.event.source == "github":
        github = policy.trackers.github
        stale = frozenset(github.priority_label(lv) for lv in label_levels(policy, ctx.snapshot.labels)) - {
            github.priority_label(level)
        }
        return [ChangeLabels(rule_id, add=frozenset({github.priority_label(level)}), remove=stale)]
    jira = policy.trackers.jira
    label = f"{jira.priority_label_prefix}{level}"
    stale = frozenset(lb for lb in ctx.snapshot.labels if lb.startswith(jira.priority_label_prefix)) - {label}
    return [
        SetPriority(rule_id, level, jira.priorities[level]),
        ChangeLabels(rule_id, add=frozenset({label}), remove=stale),
    ]


def _kept(ctx: Context, chosen: str | None, computed: Computed | None) -> Outcome:
    """A person's choice of priority: recorded as manual (kept from now on) and acknowledged."""
    rule = ctx.policy.priority
    actions: list[Action] = [RememberManualPriority(rule.id, chosen)]
    if chosen and ctx.event.source == "github":
        stale = _apply(ctx, chosen)[0] if chosen != OUTSIDE_MAPPING else _unlabel_levels(ctx)
        actions.extend(a for a in [stale] if isinstance(a, ChangeLabels) and a.remove)
    name = _chosen_name(ctx, chosen) if chosen else ""
    if chosen:
        body = render(
            ctx.policy,
            "priority-override",
            rule,
            level=Markdown(chosen) if chosen != OUTSIDE_MAPPING else name,
            actor=ctx.event.actor.login,
            computed=Markdown(computed.level if computed else ""),
        )
        actions.append(
            PostComment(
                rule.id, f"priority-override:{chosen}:{ctx.event.delivery_id}", body, kind="priority-override"
            )
        )
    login = ctx.event.actor.login
    if chosen == OUTSIDE_MAPPING:
        reason = ctx.tell(
            "priority %(level)s chosen by %(login)s, not in the mapping: kept as manual",
            level=name,
            login=login,
        )
    elif chosen:
        reason = ctx.tell("priority %(level)s chosen by %(login)s", level=chosen, login=login)
    else:
        reason = ctx.tell("priority removed by %(login)s", login=login)
    reasons = [reason]
    return outcome(rule, ctx.mode(rule), passed=True, reasons=reasons, actions=actions)


def _unlabel_levels(ctx: Context) -> ChangeLabels:
    """The mapped priority labels, removed: a person's label outside the mapping replaces them."""
    github = ctx.policy.trackers.github
    levels = label_levels(ctx.policy, ctx.snapshot.labels)
    return ChangeLabels(ctx.policy.priority.id, remove=frozenset(github.priority_label(lv) for lv in levels))


def resulting_level(ctx: Context) -> tuple[str | None, Computed | None]:
    """The priority level the issue has once this event is handled, and the computation behind it
    when the matrix decided it: a person's choice, else a kept manual choice, else the matrix."""
    by_person, chosen = chosen_by_person(ctx)
    if by_person:
        return (None if chosen == OUTSIDE_MAPPING else chosen), None
    computed = compute(ctx)
    if ctx.snapshot.manual_priority or computed is None:
        return current_level(ctx), None
    return computed.level, computed


def _should_be(ctx: Context, current: str | None, level: str) -> str:
    if current is None:
        return ctx.tell("priority is not set, should be %(level)s", level=level)
    return ctx.tell("priority is %(current)s, should be %(level)s", current=current, level=level)


@router.register(EventKind.OPENED, EventKind.EDITED, EventKind.LABELS_CHANGED, EventKind.PRIORITY_CHANGED)
def set_priority(ctx: Context) -> Iterator[Outcome]:
    rule = ctx.policy.priority
    mode = ctx.mode(rule)
    if mode == Mode.OFF:
        return
    by_person, chosen = chosen_by_person(ctx)
    computed = compute(ctx)
    if by_person:
        yield _kept(ctx, chosen, computed)
        return
    if not ctx.event.kinds & {EventKind.OPENED, EventKind.EDITED}:
        return
    if computed is None:
        invalid = not_options(ctx)
        reason = (
            ctx.tell(
                "%(fields)s: not one of the options, so no priority is computed",
                fields=i18n.listing(invalid, ctx.policy.locale),
            )
            if invalid
            else ctx.tell("impact and urgency are needed to set a priority")
        )
        yield outcome(rule, mode, passed=False, reasons=[reason])
        return
    current = current_level(ctx)
    if ctx.snapshot.manual_priority or current == computed.level:
        reason = (
            ctx.tell("kept %(level)s, chosen by a person", level=current or unmapped_priority(ctx) or "—")
            if ctx.snapshot.manual_priority
            else ctx.tell("already %(level)s", level=current)
        )
        yield outcome(rule, mode, passed=True, reasons=[reason])
        return
    applied = mode == Mode.ENFORCE
    receipt = ctx.policy.sla.receipt
    if applied and receipt is not None and ctx.mode(receipt) != Mode.OFF:
        # The receipt comment (S1.4) states the priority and why; no second comment for it.
        reasons = [_should_be(ctx, current, computed.level)]
        yield outcome(rule, mode, passed=False, reasons=reasons, actions=_apply(ctx, computed.level))
        return
    told = shown(ctx, computed)
    body = render(
        ctx.policy,
        "priority-set",
        rule,
        **{**told, "tier": told["tier"] or Markdown("-")},
        applied=applied,
    )
    comment = PostComment(rule.id, f"priority-set:{computed.level}", body, kind="priority-set")
    actions = [*_apply(ctx, computed.level), comment] if applied else [comment]
    yield outcome(
        rule,
        mode,
        passed=False,
        reasons=[_should_be(ctx, current, computed.level)],
        actions=actions,
    )

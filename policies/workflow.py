"""The lifecycle (S1-S5): recognise a change of stage, check it, and undo it when it breaks the SOP."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from config.schema import (
    AssigneeGuard,
    ChecklistGuard,
    Guard,
    IntakeGuard,
    LabelGuard,
    Mode,
    NoLabelGuard,
    Policy,
    PriorityGuard,
    Rule,
    SectionGuard,
    Transition,
)
from config.templates import Markdown
from policies import checklists, followup, priority
from policies.context import Context, Outcome, outcome
from policies.intake import incomplete_fields
from policies.models import (
    Action,
    ChangeLabels,
    EventKind,
    MoveToStatus,
    PostComment,
    RememberState,
)
from policies.render import contained, render
from policies.router import Router
from policies.text import find_section

router = Router()


@dataclass(frozen=True)
class StateChange:
    before: str
    after: str


# --- where the issue was and where it is now ------------------------------------------------


def label_states(policy: Policy, labels: frozenset[str]) -> list[str]:
    github = policy.trackers.github
    return [
        state.id
        for state in policy.workflow.states
        if github.status_label(state.id) in labels and state.id not in github.closed_states
    ]


def _github_state_after(ctx: Context) -> str | None:
    policy, event, snapshot = ctx.policy, ctx.event, ctx.snapshot
    closed_states = policy.trackers.github.closed_states
    if not snapshot.is_open:
        return closed_states[0]
    if event.status_before == "closed":
        reopen_targets = {t.to for t in policy.workflow.transitions if set(t.from_) & set(closed_states)}
        if len(reopen_targets) == 1:
            return reopen_targets.pop()
    present = label_states(policy, snapshot.labels)
    added = label_states(policy, event.labels_after - event.labels_before)
    if added:
        return added[-1]
    if len(present) == 1:
        return present[0]
    if not present:
        # The old status label was removed before the new one was added: no change yet.
        return snapshot.last_state or policy.workflow.initial
    return snapshot.last_state if snapshot.last_state in present else None


def _github_state_before(ctx: Context) -> str | None:
    policy, event = ctx.policy, ctx.event
    if event.status_before == "closed":
        return policy.trackers.github.closed_states[0]
    earlier = label_states(policy, event.labels_before)
    return earlier[0] if len(earlier) == 1 else policy.workflow.initial if not earlier else None


def jira_state(policy: Policy, status: str | None) -> str | None:
    """The SOP state a Jira status name stands for (names compare case-insensitively)."""
    if status is None:
        return None
    wanted = status.casefold()
    return next(
        (
            state
            for state, names in policy.trackers.jira.statuses.items()
            if wanted in {n.casefold() for n in names}
        ),
        None,
    )


def state_change(ctx: Context) -> StateChange | None:
    """The stage the issue left and the one it entered; `None` when that cannot be told."""
    event, snapshot, workflow = ctx.event, ctx.snapshot, ctx.policy.workflow
    if event.source == "jira":
        if not event.kinds & {EventKind.STATUS_CHANGED, EventKind.OPENED}:
            return None  # Jira reports every change of status in the changelog; nothing else moves it
        after = jira_state(ctx.policy, event.status_after or snapshot.status)
        before = jira_state(ctx.policy, event.status_before) if event.status_before else snapshot.last_state
    else:
        after = _github_state_after(ctx)
        before = snapshot.last_state or _github_state_before(ctx)
    if EventKind.OPENED in event.kinds:
        before = workflow.initial
    if before is None or after is None:
        return None
    return StateChange(before, after)


# --- guards ---------------------------------------------------------------------------------


def _applies(guard: Guard, ctx: Context) -> bool:
    return guard.when_label is None or guard.when_label in ctx.snapshot.labels


def _guard_holds(guard: Guard, ctx: Context) -> tuple[bool, tuple[str, ...]]:
    """Whether the guard holds and, if not, the particulars missing (field names, open items)."""
    snapshot = ctx.snapshot
    match guard:
        case IntakeGuard():
            missing = tuple(ctx.text(f.title) for f in incomplete_fields(ctx))
            return not missing, missing
        case AssigneeGuard():
            return bool(snapshot.assignees), ()
        case PriorityGuard():
            return priority.current_level(ctx) is not None, ()
        case LabelGuard():
            return guard.label in snapshot.labels, ()
        case NoLabelGuard():
            return guard.label not in snapshot.labels, ()
        case ChecklistGuard():
            still_open = checklists.open_items(ctx, guard.checklist)
            return not still_open, still_open
        case SectionGuard():
            texts = [snapshot.body, *(c.body for c in snapshot.comments)]
            if ctx.event.comment:
                texts.append(ctx.event.comment.body)
            return any(find_section(text, guard.headings, ctx.event.source) for text in texts), ()
    raise AssertionError(f"unhandled guard {guard!r}")


@dataclass(frozen=True)
class _GuardVerdict:
    guard: Guard
    mode: Mode
    details: tuple[str, ...]


def _check_guards(transition: Transition, ctx: Context) -> tuple[list[Outcome], list[_GuardVerdict]]:
    outcomes, failed = [], []
    for guard in transition.guards:
        mode = ctx.mode(guard)
        if mode == Mode.OFF or not _applies(guard, ctx):
            continue
        holds, details = _guard_holds(guard, ctx)
        outcomes.append(
            outcome(
                guard, mode, passed=holds, reasons=() if holds else (ctx.text(guard.requirement), *details)
            )
        )
        if not holds:
            failed.append(_GuardVerdict(guard, mode, details))
    return outcomes, failed


# --- the handler ----------------------------------------------------------------------------


@router.register(EventKind.OPENED, EventKind.LABELS_CHANGED, EventKind.STATUS_CHANGED)
def check_transition(ctx: Context) -> Iterator[Outcome]:
    change = state_change(ctx)
    if change is None:
        return
    workflow = ctx.policy.workflow
    if change.before == change.after:
        if EventKind.OPENED in ctx.event.kinds:
            yield outcome(
                workflow.rule,
                ctx.mode(workflow.rule),
                passed=True,
                actions=_enter(ctx, workflow.rule, change.after),
            )
        return
    transition = workflow.transition(change.before, change.after)
    rule: Rule = transition or workflow.rule
    mode = ctx.mode(rule)
    failed: list[_GuardVerdict] = []
    if transition is None:
        broken, undo = mode != Mode.OFF, mode == Mode.ENFORCE
        reasons = [f"{change.before} -> {change.after} is not an allowed transition"]
    else:
        guard_outcomes, failed = _check_guards(transition, ctx) if mode != Mode.OFF else ([], [])
        yield from guard_outcomes
        broken = bool(failed)
        undo = mode == Mode.ENFORCE and any(v.mode == Mode.ENFORCE for v in failed)
        reasons = [f"{v.guard.id} ({v.guard.sop})" for v in failed]
    # Each rule below renders its own comment; `contained` keeps one's broken template from the others.
    if not broken:
        yield outcome(rule, mode, passed=True, actions=_enter(ctx, rule, change.after))
        yield from contained(_checklists(ctx, change.after))
        if change.after in ctx.policy.trackers.github.closed_states:
            yield from contained(followup.ask_for_rating(ctx))
        return
    if not undo:
        yield from contained(_checklists(ctx, change.after))
    actions = _reject(ctx, rule, change, failed, undo=undo)  # last: the engine contains its failure
    yield outcome(
        rule,
        mode,
        passed=False,
        reasons=reasons,
        actions=actions if undo else [*actions, *_enter(ctx, rule, change.after)],
    )


# --- actions --------------------------------------------------------------------------------


def state_title(ctx: Context, state_id: str) -> Markdown:
    state = ctx.policy.workflow.state(state_id)
    return ctx.text(state.title) if state else Markdown(state_id)


def _skipped_states(ctx: Context, change: StateChange) -> list[str]:
    """The stages on the shortest allowed path between the two states, excluding both ends.

    Pause states (waiting for the customer) are detours, not stages, so the path avoids them.
    """
    workflow, detours = ctx.policy.workflow, set(ctx.policy.sla.pause_states)
    previous: dict[str, str] = {}
    queue = deque([change.before])
    while queue:
        state = queue.popleft()
        for transition in workflow.transitions_from(state):
            if transition.to not in previous and transition.to not in detours | {change.before}:
                previous[transition.to] = state
                queue.append(transition.to)
    if change.after not in previous:
        return []
    path, state = [], previous[change.after]
    while state != change.before:
        path.append(state)
        state = previous[state]
    return path[::-1]


def _entry_states(ctx: Context, target: str) -> list[str]:
    """The states a transition into `target` may start from, in workflow order."""
    sources = {s for t in ctx.policy.workflow.transitions if t.to == target for s in t.from_}
    return [state.id for state in ctx.policy.workflow.states if state.id in sources]


def _reject(
    ctx: Context, rule: Rule, change: StateChange, failed: list[_GuardVerdict], *, undo: bool
) -> list[Action]:
    """Undo (when `undo`) and explain; actions carry `rule`, the transition or the lifecycle rule.

    Only the actor's login comes from the tracker; the rest is the policy's text.
    """
    policy = ctx.policy
    lifecycle = policy.workflow.rule
    stage = [policy.workflow.state(s) for s in _skipped_states(ctx, change)] if not failed else []
    variables: dict[str, Any] = {
        "undone": undo,
        "actor": ctx.event.actor.login,
        "from_state": state_title(ctx, change.before),
        "to_state": state_title(ctx, change.after),
        "entry_from": [] if failed else [state_title(ctx, s) for s in _entry_states(ctx, change.after)],
        "skipped": [
            {"title": ctx.text(s.title), "sop": Markdown(s.sop), "clause": Markdown(policy.clause(s.sop))}
            for s in stage
            if s
        ],
        "violations": [
            {
                "rule_id": Markdown(v.guard.id),
                "sop": Markdown(v.guard.sop),
                "clause": Markdown(policy.clause(v.guard.sop)),
                "requirement": ctx.text(v.guard.requirement),
                "details": list(v.details),
            }
            for v in failed
        ],
        "allowed": [state_title(ctx, t.to) for t in policy.workflow.transitions_from(change.before)],
    }
    marker = f"transition-rejected:{change.before}:{change.after}:{ctx.event.delivery_id}"
    body = render(policy, "transition-rejected", lifecycle, **variables)
    kept = render(policy, "transition-rejected", lifecycle, **{**variables, "undone": False}) if undo else ""
    actions: list[Action] = [PostComment(rule.id, marker, body, body_if_not_undone=kept)]
    if undo:
        stands = RememberState(rule.id, change.after, if_undo_fails=True)
        actions = [*move_into(ctx, rule.id, change.before, restoring=True), *actions, stands]
    return actions


def move_into(ctx: Context, rule_id: str, target: str, *, restoring: bool) -> list[Action]:
    """Tracker changes that put the issue into `target` (status label, open/closed, Jira status)."""
    if ctx.event.source == "jira":
        if restoring and ctx.event.status_before:
            return [MoveToStatus(rule_id, ctx.event.status_before)]
        return []
    github = ctx.policy.trackers.github
    wanted = github.status_label(target)
    stale = frozenset(github.status_label(s.id) for s in ctx.policy.workflow.states) & ctx.snapshot.labels
    actions: list[Action] = []
    if wanted not in ctx.snapshot.labels or stale - {wanted}:
        actions.append(ChangeLabels(rule_id, add=frozenset({wanted}) - stale, remove=stale - {wanted}))
    target_closed = target in github.closed_states
    if target_closed == ctx.snapshot.is_open:
        actions.append(MoveToStatus(rule_id, "closed" if target_closed else "open"))
    return actions


def _enter(ctx: Context, rule: Rule, state_id: str) -> list[Action]:
    """What a valid (or merely warned) change of stage leads to: a tidy status, and the ledger."""
    return [*move_into(ctx, rule.id, state_id, restoring=False), RememberState(rule.id, state_id)]


def _checklists(ctx: Context, state_id: str) -> Iterator[Outcome]:
    """The checklists of the state entered (S4), each its own rule in the decision and the audit."""
    state = ctx.policy.workflow.state(state_id)
    for checklist_id in state.checklists if state else []:
        checklist = ctx.policy.checklist(checklist_id)
        actions = checklists.create(ctx, checklist_id)
        if checklist is not None and actions:
            mode = ctx.mode(checklist)
            reason = "items created" if mode == Mode.ENFORCE else "items listed in a comment (warn mode)"
            yield outcome(checklist, mode, passed=True, reasons=[reason], actions=actions)

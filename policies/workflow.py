"""The lifecycle (S1-S5): recognise a change of stage, check it, and undo it when it breaks the SOP."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
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
from policies import checklists, followup, people, priority
from policies.context import Context, Outcome, outcome
from policies.intake import incomplete_fields
from policies.models import (
    Action,
    ChangeLabels,
    EventKind,
    MoveToStatus,
    PostComment,
    RememberState,
    StopFollowing,
)
from policies.render import contained, render
from policies.router import Router
from policies.sla import AdoptedIn, Created, Reopened, StateChanged, TimelineEvent
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


def current_state(ctx: Context) -> str | None:
    """The stage the issue shows now, from its status label or Jira status; else what the ledger
    remembers. For an issue that arrived under a new name: taken as it is, never undone."""
    snapshot = ctx.snapshot
    if ctx.event.source == "jira":
        return jira_state(ctx.policy, snapshot.status) or snapshot.last_state
    if not snapshot.is_open:
        return ctx.policy.trackers.github.closed_states[0]
    present = label_states(ctx.policy, snapshot.labels)
    if len(present) == 1:
        return present[0]
    return snapshot.last_state if snapshot.last_state in present or not present else None


def unmapped_status(ctx: Context) -> str | None:
    """The Jira status the issue entered when the policy maps it to no state ("Backlog", "Paused",
    a renamed status); `None` otherwise. Such an issue is held in its last state (`held_state`)."""
    event = ctx.event
    if event.source != "jira" or not event.kinds & {EventKind.STATUS_CHANGED, EventKind.OPENED}:
        return None
    status = event.status_after or ctx.snapshot.status
    return status if status and jira_state(ctx.policy, status) is None else None


def held_state(ctx: Context) -> str:
    """The state an issue in an unmapped status is held in: the one it left, as the event or else
    the service's records know it (the initial state for a new issue)."""
    if EventKind.OPENED in ctx.event.kinds:
        return ctx.policy.workflow.initial
    left = jira_state(ctx.policy, ctx.event.status_before)
    return left or ctx.snapshot.last_state or ctx.policy.workflow.initial


def state_change(ctx: Context) -> StateChange | None:
    """The stage the issue left and the one it entered; `None` when that cannot be told.

    On Jira, leaving a status the policy does not map is a move from the state the issue was held
    in meanwhile (its last known one), so an unmapped status is never a way round the guards.
    """
    event, snapshot, workflow = ctx.event, ctx.snapshot, ctx.policy.workflow
    if EventKind.REMOVED in event.kinds:
        return None
    if EventKind.MOVED in event.kinds:
        now = current_state(ctx)
        return StateChange(now, now) if now is not None else None
    if event.source == "jira":
        if not event.kinds & {EventKind.STATUS_CHANGED, EventKind.OPENED}:
            return None  # Jira reports every change of status in the changelog; nothing else moves it
        after = jira_state(ctx.policy, event.status_after or snapshot.status)
        before = (
            jira_state(ctx.policy, event.status_before) or snapshot.last_state
            if event.status_before
            else snapshot.last_state
        )
    else:
        after = _github_state_after(ctx)
        before = snapshot.last_state or _github_state_before(ctx)
    if EventKind.OPENED in event.kinds:
        before = workflow.initial
    if before is None or after is None:
        return None
    return StateChange(before, after)


def paused_from(policy: Policy, timeline: tuple[TimelineEvent, ...]) -> str | None:
    """The stage an issue now in a pause state (waiting for the customer) came from, read from the
    ledger's timeline; `None` when it is not paused or where it came from is not known."""
    pauses = set(policy.sla.pause_states)
    state: str | None = None
    origin: str | None = None
    ordered = sorted(timeline, key=lambda entry: (entry.at, not isinstance(entry, Created)))
    for entry in ordered:
        if isinstance(entry, Created | StateChanged | Reopened) and entry.state is not None:
            if entry.state in pauses and state not in pauses:
                origin = state
            state = entry.state
    return origin if state in pauses else None


def _return_from_pause(ctx: Context, change: StateChange) -> str | None:
    """Where an issue leaving a pause state must go back to: the stage it came from, when known."""
    pauses = set(ctx.policy.sla.pause_states)
    if change.before not in pauses or change.after in pauses:
        return None
    return paused_from(ctx.policy, ctx.snapshot.timeline)


def is_return_from_pause(ctx: Context, change: StateChange) -> bool:
    """Back from waiting for the customer to the stage it came from: allowed, whatever the
    policy's transitions say."""
    return _return_from_pause(ctx, change) == change.after


# --- guards ---------------------------------------------------------------------------------


def _applies(guard: Guard, ctx: Context) -> bool:
    return guard.when_label is None or guard.when_label in ctx.snapshot.labels


def _first_checked_in(policy: Policy, guard_id: str) -> str | None:
    """The earliest stage (in workflow order) that a transition with this guard leaves from."""
    sources = {
        s for t in policy.workflow.transitions if any(g.id == guard_id for g in t.guards) for s in t.from_
    }
    return next((state.id for state in policy.workflow.states if state.id in sources), None)


def _adopted_past(ctx: Context, guard_id: str, change: StateChange) -> bool:
    """Whether the issue was adopted past the earliest stage (in workflow order) the guard is
    checked on and has not been back at or before it since: what the guard asks for was done
    before sopguard saw it. An issue adopted while paused counts from the stage it was paused
    from. One adopted by an earlier release (no record of the stage), or in a stage the policy
    does not know, is judged by the stage it leaves now."""
    first = _first_checked_in(ctx.policy, guard_id)
    timeline = ctx.snapshot.timeline
    marks = [index for index, entry in enumerate(timeline) if isinstance(entry, AdoptedIn)]
    order = [state.id for state in ctx.policy.workflow.states]
    if first is None or not marks:
        return change.before != first
    adopted = timeline[marks[-1]]
    assert isinstance(adopted, AdoptedIn)
    pauses = set(ctx.policy.sla.pause_states)
    adopted_in = paused_from(ctx.policy, timeline[: marks[-1]]) if adopted.state in pauses else adopted.state
    if adopted_in not in order:
        return change.before != first
    since = [
        entry.state
        for entry in timeline[marks[-1] + 1 :]
        if isinstance(entry, StateChanged | Reopened) and entry.state is not None
    ]
    stages = [s for s in (adopted_in, *since, change.before) if s in order and s not in pauses]
    return all(order.index(stage) > order.index(first) for stage in stages)


def _waived(guard: Guard, ctx: Context, change: StateChange) -> str | None:
    """Why a guard with `unless_label` (a review a judgement may waive: S2.2's) is not demanded at
    this move, `None` when it is. Waived while the label counts; otherwise demanded when the work
    first starts: not again on a return from waiting to the stage the issue was in (an issue
    followed since before the guard existed started without it), nor of an issue adopted past the
    earliest stage the guard is checked on (its plan was made before sopguard saw it)."""
    if guard.unless_label is None:
        return None
    if people.waived_by(ctx, guard.unless_label):
        return ctx.tell("waived: the issue carries %(label)s", label=guard.unless_label)
    if is_return_from_pause(ctx, change):
        return ctx.tell("back from waiting to the stage it was in: not demanded again")
    if ctx.snapshot.adopted and _adopted_past(ctx, guard.id, change):
        return ctx.tell("adopted after the stage it is first checked on: not demanded")
    return None


def _guard_holds(guard: Guard, ctx: Context, change: StateChange) -> tuple[bool, tuple[str, ...]]:
    """Whether the guard holds and, if not, the particulars missing (field names, open items).
    A guard that holds only by a waiver says why."""
    snapshot = ctx.snapshot
    if (why := _waived(guard, ctx, change)) is not None:
        return True, (why,)
    match guard:
        case IntakeGuard():
            missing = tuple(ctx.text(f.title) for f in incomplete_fields(ctx))
            return not missing, missing
        case AssigneeGuard():
            return bool(snapshot.assignees), ()
        case PriorityGuard():
            return priority.is_set(ctx), ()
        case LabelGuard() if guard.by or guard.not_by:
            return guard.label in snapshot.labels and people.vouched_for(ctx, guard.label), ()
        case LabelGuard():
            return guard.label in snapshot.labels, ()
        case NoLabelGuard():
            return guard.label not in snapshot.labels, ()
        case ChecklistGuard():
            still_open = checklists.open_items(ctx, guard.checklist)
            if still_open and not checklists.owed(ctx, guard.checklist, change.before):
                return True, (ctx.tell("adopted after the stage that makes its checklist: not demanded"),)
            if still_open and is_return_from_pause(ctx, change):
                # Back to the stage it was in: held to the checklist when it first got there
                # (an issue followed since before the checklist guarded that stage was not).
                return True, (ctx.tell("back from waiting to the stage it was in: not demanded again"),)
            return not still_open, still_open
        case SectionGuard() if guard.restricted:
            return people.section_counts(ctx, guard)
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


def _check_guards(
    transition: Transition, ctx: Context, change: StateChange
) -> tuple[list[Outcome], list[_GuardVerdict]]:
    outcomes, failed = [], []
    for guard in transition.guards:
        mode = ctx.mode(guard)
        if mode == Mode.OFF or not _applies(guard, ctx):
            continue
        holds, details = _guard_holds(guard, ctx, change)
        outcomes.append(
            outcome(
                guard,
                mode,
                passed=holds,
                reasons=details if holds else (ctx.text(guard.requirement), *details),
            )
        )
        if not holds:
            failed.append(_GuardVerdict(guard, mode, details))
    return outcomes, failed


# --- the handler ----------------------------------------------------------------------------


@router.register(EventKind.REMOVED)
def stop_following(ctx: Context) -> Iterator[Outcome]:
    """A deleted issue, or one transferred away: the service stops following it here."""
    event, rule = ctx.event, ctx.policy.workflow.rule
    reason = (
        ctx.tell("transferred to %(place)s", place=str(event.moved_to))
        if event.moved_to
        else ctx.tell("deleted")
    )
    yield outcome(
        rule,
        ctx.mode(rule),
        passed=True,
        reasons=[ctx.tell("%(reason)s: no longer followed here", reason=reason)],
        actions=[StopFollowing(rule.id, reason)],
    )


@router.register(EventKind.OPENED, EventKind.LABELS_CHANGED, EventKind.STATUS_CHANGED, EventKind.MOVED)
def check_transition(ctx: Context) -> Iterator[Outcome]:
    if (status := unmapped_status(ctx)) is not None:
        yield from _held(ctx, status)
        return
    change = state_change(ctx)
    if change is None:
        return
    workflow = ctx.policy.workflow
    if change.before == change.after:
        if ctx.event.kinds & {EventKind.OPENED, EventKind.MOVED}:
            yield outcome(
                workflow.rule,
                ctx.mode(workflow.rule),
                passed=True,
                actions=_enter(ctx, workflow.rule, change.after),
            )
        return
    transition = workflow.transition(change.before, change.after)
    origin = _return_from_pause(ctx, change)
    if origin is not None and origin != change.after:
        transition = None  # waiting for the customer is a detour: back to the stage it left, not beyond
    rule: Rule = transition or workflow.rule
    mode = ctx.mode(rule)
    failed: list[_GuardVerdict] = []
    if transition is None and origin == change.after:
        broken = undo = False  # back to the stage it came from, though no transition names it
        reasons: list[str] = []
    elif transition is None:
        broken, undo = mode != Mode.OFF, mode == Mode.ENFORCE
        reasons = [
            ctx.tell(
                "%(from)s -> %(to)s: an issue waiting for the customer returns to %(origin)s",
                **{"from": change.before, "to": change.after, "origin": origin},
            )
            if origin
            else ctx.tell(
                "%(from)s -> %(to)s is not an allowed transition",
                **{"from": change.before, "to": change.after},
            )
        ]
    else:
        guard_outcomes, failed = _check_guards(transition, ctx, change) if mode != Mode.OFF else ([], [])
        yield from guard_outcomes
        broken = bool(failed)
        undo = mode == Mode.ENFORCE and any(v.mode == Mode.ENFORCE for v in failed)
        reasons = [ctx.tell("%(rule)s (%(sop)s)", rule=v.guard.id, sop=v.guard.sop) for v in failed]
    if broken and _closing_adopted(ctx, change):
        reason = ctx.tell("an adopted issue's close stands: its stages before the adoption were not seen")
        yield outcome(rule, mode, passed=True, reasons=[reason], actions=_enter(ctx, rule, change.after))
        return
    # Each rule below renders its own comment; `contained` keeps one's broken template from the others.
    if not broken:
        yield outcome(rule, mode, passed=True, actions=_enter(ctx, rule, change.after))
        yield from contained(_checklists(ctx, change.after))
        if change.after in ctx.policy.trackers.github.closed_states:
            yield from contained(followup.ask_for_rating(ctx))
        return
    if not undo:
        yield from contained(_checklists(ctx, change.after))
    else:
        # Back in the stage it left: a checklist it was held to is made where its items are
        # missing, whatever that stage (followed since before planning made it, adopted in
        # planning, its creation failed, its items deleted): else nothing could ever meet the guard.
        demanded = [v.guard.checklist for v in failed if isinstance(v.guard, ChecklistGuard)]
        yield from contained(_made(ctx, dict.fromkeys(demanded), missing_only=True))
    actions = _reject(ctx, rule, change, failed, undo=undo, returns_to=origin)  # last: contained
    yield outcome(
        rule,
        mode,
        passed=False,
        reasons=reasons,
        actions=actions if undo else [*actions, *_enter(ctx, rule, change.after)],
    )


def _held(ctx: Context, status: str) -> Iterator[Outcome]:
    """An issue moved into a Jira status the policy does not map: audited under the lifecycle rule,
    held in its last state (its clocks and the next move's guards go by that state), and in
    enforce mode explained once on the issue, with what the admin must do. Nothing is undone: the
    status may well be right, and only the mapping is missing."""
    rule = ctx.policy.workflow.rule
    mode = ctx.mode(rule)
    if mode == Mode.OFF:
        return
    state = held_state(ctx)
    reason = ctx.tell(
        "Jira status '%(status)s' is not mapped to any state (trackers.jira.statuses): "
        "held in %(state)s until it moves to a mapped status",
        status=status,
        state=state,
    )
    actions: list[Action] = []
    if EventKind.OPENED in ctx.event.kinds:
        actions.append(RememberState(rule.id, state))
    if mode == Mode.ENFORCE:
        body = render(
            ctx.policy,
            "status-unmapped",
            rule,
            status=status,
            state=state_title(ctx, state),
            actor=ctx.event.actor.login,
        )
        actions.append(
            PostComment(rule.id, f"status-unmapped:{status.casefold()}", body, kind="status-unmapped")
        )
    yield outcome(rule, mode, passed=False, reasons=[reason], actions=actions)


def _closing_adopted(ctx: Context, change: StateChange) -> bool:
    """An issue sopguard adopted mid-life, being closed: never reopened for stages it may have
    gone through before sopguard saw it (a legacy clean-up closes such issues)."""
    return ctx.snapshot.adopted and change.after in ctx.policy.trackers.github.closed_states


# --- actions --------------------------------------------------------------------------------


def state_title(ctx: Context, state_id: str) -> Markdown:
    state = ctx.policy.workflow.state(state_id)
    return ctx.text(state.title) if state else Markdown(state_id)


def _skipped_states(ctx: Context, change: StateChange) -> list[str]:
    return skipped_states(ctx.policy, change.before, change.after)


def skipped_states(policy: Policy, before: str, after: str) -> list[str]:
    """The stages on the shortest allowed path between the two states, excluding both ends.

    Pause states (waiting for the customer) are detours, not stages, so the path avoids them.
    """
    workflow, detours = policy.workflow, set(policy.sla.pause_states)
    previous: dict[str, str] = {}
    queue = deque([before])
    while queue:
        state = queue.popleft()
        for transition in workflow.transitions_from(state):
            if transition.to not in previous and transition.to not in detours | {before}:
                previous[transition.to] = state
                queue.append(transition.to)
    if after not in previous:
        return []
    path, state = [], previous[after]
    while state != before:
        path.append(state)
        state = previous[state]
    return path[::-1]


def _entry_states(ctx: Context, target: str) -> list[str]:
    """The states a transition into `target` may start from, in workflow order."""
    sources = {s for t in ctx.policy.workflow.transitions if t.to == target for s in t.from_}
    return [state.id for state in ctx.policy.workflow.states if state.id in sources]


def _reject(
    ctx: Context,
    rule: Rule,
    change: StateChange,
    failed: list[_GuardVerdict],
    *,
    undo: bool,
    returns_to: str | None = None,
) -> list[Action]:
    """Undo (when `undo`) and explain; actions carry `rule`, the transition or the lifecycle rule.

    `returns_to`: the stage a paused issue came from, the only one it may go back to; the stages
    skipped are then counted from there. Only the actor's login comes from the tracker; the rest is
    the policy's text.
    """
    policy = ctx.policy
    lifecycle = policy.workflow.rule
    counted_from = StateChange(returns_to, change.after) if returns_to else change
    stage = [policy.workflow.state(s) for s in _skipped_states(ctx, counted_from)] if not failed else []
    entry_from = (
        [] if failed or returns_to else [state_title(ctx, s) for s in _entry_states(ctx, change.after)]
    )
    allowed = (
        [state_title(ctx, returns_to)]
        if returns_to
        else [state_title(ctx, t.to) for t in policy.workflow.transitions_from(change.before)]
    )
    variables: dict[str, Any] = {
        "undone": undo,
        "actor": ctx.event.actor.login,
        "from_state": state_title(ctx, change.before),
        "to_state": state_title(ctx, change.after),
        "entry_from": entry_from,
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
        "allowed": allowed,
    }
    marker = f"transition-rejected:{change.before}:{change.after}:{ctx.event.delivery_id}"
    body = render(policy, "transition-rejected", lifecycle, **variables)
    kept = render(policy, "transition-rejected", lifecycle, **{**variables, "undone": False}) if undo else ""
    actions: list[Action] = [
        PostComment(rule.id, marker, body, body_if_not_undone=kept, kind="transition-rejected")
    ]
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
    """The checklists of the state entered (S3.1, S4), each its own rule in the decision and the
    audit."""
    state = ctx.policy.workflow.state(state_id)
    yield from _made(ctx, state.checklists if state else [])


def _made(ctx: Context, checklist_ids: Iterable[str], *, missing_only: bool = False) -> Iterator[Outcome]:
    """These checklists made under the issue; `missing_only`: only those with an item not there."""
    for checklist_id in checklist_ids:
        if missing_only and not checklists.missing_items(ctx, checklist_id):
            continue
        checklist = ctx.policy.checklist(checklist_id)
        actions = checklists.create(ctx, checklist_id)
        if checklist is not None and actions:
            mode = ctx.mode(checklist)
            created = mode == Mode.ENFORCE
            reason = (
                ctx.tell("items created") if created else ctx.tell("items listed in a comment (warn mode)")
            )
            yield outcome(checklist, mode, passed=True, reasons=[reason], actions=actions)

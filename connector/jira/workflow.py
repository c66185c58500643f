"""`sopguard export jira-workflow`: the Jira workflow that matches the policy, for an admin to create.

Statuses come from the policy's status mapping (`trackers.jira.statuses`: the first name of each
state is the one to create, the others are recognised too), transitions from the workflow. Guards
become Jira expressions for Cloud workflow validators (apps such as ScriptRunner or JMWE, or a
Forge `jira:workflowValidator`, evaluate them), so a transition that breaks a guard is blocked
before it happens and sopguard's revert is only the safety net. Data Center has no Jira expressions:
there, the "undo" transitions listed let sopguard move an issue back.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass

from config.schema import (
    AssigneeGuard,
    ChecklistGuard,
    Guard,
    IntakeGuard,
    LabelGuard,
    NoLabelGuard,
    Policy,
    PriorityGuard,
    SectionGuard,
    Transition,
)
from policies.checklists import item_titles
from policies.context import Context
from policies.models import Actor, Event, IssueRef, IssueSnapshot

_CUSTOM_FIELD = re.compile(r"^customfield_\d+$")
# System fields whose Jira-expression property is their field id.
_SYSTEM_FIELDS = frozenset({"summary", "description", "environment"})


@dataclass(frozen=True)
class StatusRow:
    state: str
    title: str
    sop: str
    status: str
    category: str
    also: tuple[str, ...]


@dataclass(frozen=True)
class TransitionRow:
    id: str
    name: str
    sop: str
    from_: tuple[str, ...]
    to: str
    purpose: str  # "procedure", "return" (from a pause to the stage it left) or "undo"


@dataclass(frozen=True)
class ValidatorRow:
    transition: str
    guard: str
    sop: str
    requirement: str
    expression: str | None
    reason: str = ""  # why no expression can check the guard


@dataclass(frozen=True)
class JiraWorkflow:
    statuses: tuple[StatusRow, ...]
    transitions: tuple[TransitionRow, ...]
    validators: tuple[ValidatorRow, ...]


def status_name(policy: Policy, state_id: str) -> str:
    names = policy.trackers.jira.statuses.get(state_id)
    if names:
        return names[0]
    state = policy.workflow.state(state_id)
    return state.title.en if state else state_id


def _category(policy: Policy, state_id: str) -> str:
    """Jira's three status categories: the initial state, the closed states, and the rest."""
    if state_id == policy.workflow.initial:
        return "To Do"
    return "Done" if state_id in policy.trackers.github.closed_states else "In Progress"


def _humanize(ident: str) -> str:
    words = ident.replace("-", " ")
    return words[:1].upper() + words[1:]


def statuses(policy: Policy) -> list[StatusRow]:
    rows = []
    for state in policy.workflow.states:
        names = policy.trackers.jira.statuses.get(state.id) or []
        rows.append(
            StatusRow(
                state=state.id,
                title=state.title.get(policy.locale),
                sop=state.sop,
                status=status_name(policy, state.id),
                category=_category(policy, state.id),
                also=tuple(names[1:]),
            )
        )
    return rows


def pause_returns(policy: Policy) -> list[tuple[Transition, str, str]]:
    """(the transition into a pause state, the pause state, a stage it comes from) for every way
    back the engine allows and no transition of the policy names: an issue leaving waiting for the
    customer returns to the stage it came from, so Jira must offer a move to each."""
    pauses = set(policy.sla.pause_states)
    named = {(s, t.to) for t in policy.workflow.transitions for s in t.from_}
    returns: dict[tuple[str, str], Transition] = {}
    for transition in policy.workflow.transitions:
        if transition.to not in pauses:
            continue
        for source in transition.from_:
            if source not in pauses and (transition.to, source) not in named:
                returns.setdefault((transition.to, source), transition)
    return [(transition, pause, source) for (pause, source), transition in returns.items()]


def transitions(policy: Policy) -> list[TransitionRow]:
    """The procedure's transitions, one "return" from a pause to each stage it may come from, then
    one "undo" per guarded step that has no way back yet."""
    rows = [
        TransitionRow(
            id=t.id,
            name=_humanize(t.id),
            sop=t.sop,
            from_=tuple(status_name(policy, s) for s in t.from_),
            to=status_name(policy, t.to),
            purpose="procedure",
        )
        for t in policy.workflow.transitions
    ]
    existing = {(s, t.to) for t in policy.workflow.transitions for s in t.from_}
    for transition, pause, source in pause_returns(policy):
        existing.add((pause, source))
        rows.append(
            TransitionRow(
                id=f"return-{transition.id}",
                name=f"Back to {status_name(policy, source)}",
                sop=transition.sop,
                from_=(status_name(policy, pause),),
                to=status_name(policy, source),
                purpose="return",
            )
        )
    for transition in policy.workflow.transitions:
        if not transition.guards:
            continue
        for source in transition.from_:
            if (transition.to, source) in existing:
                continue
            existing.add((transition.to, source))
            rows.append(
                TransitionRow(
                    id=f"undo-{transition.id}",
                    name=f"Back to {status_name(policy, source)}",
                    sop=transition.sop,
                    from_=(status_name(policy, transition.to),),
                    to=status_name(policy, source),
                    purpose="undo",
                )
            )
    return rows


# --- guards as Jira expressions ------------------------------------------------------------------


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_quote(i) for i in items) + "]"


def _field_property(name: str, field_ids: Mapping[str, str]) -> str | None:
    """How a Jira expression reads a field: `issue.customfield_10010`, `issue.description`."""
    field_id = name if _CUSTOM_FIELD.match(name) or name in _SYSTEM_FIELDS else field_ids.get(name)
    return f"issue.{field_id}" if field_id else None


def _context(policy: Policy) -> Context:
    """What `item_titles` needs to spell checklist items as the engine does (nothing issue-specific)."""
    ref = IssueRef("jira", "", "")
    event = Event(source="jira", kinds=frozenset(), delivery_id="", actor=Actor(""), issue=ref)
    return Context(policy, event, IssueSnapshot(ref), dt.datetime.min)


def expression(policy: Policy, guard: Guard, field_ids: Mapping[str, str]) -> tuple[str | None, str]:
    """The guard as a Jira expression, or `None` and the reason it cannot be one."""
    match guard:
        case AssigneeGuard():
            return "issue.assignee != null", ""
        case PriorityGuard():
            names = _list(policy.trackers.jira.priorities.values())
            return f"issue.priority != null && {names}.includes(issue.priority.name)", ""
        case LabelGuard():
            return f"issue.labels.includes({_quote(guard.label)})", ""
        case NoLabelGuard():
            return f"!issue.labels.includes({_quote(guard.label)})", ""
        case ChecklistGuard():
            checklist = policy.checklist(guard.checklist)
            titles = _list(item_titles(_context(policy), checklist) if checklist else [])
            return (
                f"{titles}.every(title => issue.subtasks.some("
                'task => task.summary == title && task.status.category.key == "done"))',
                "",
            )
        case IntakeGuard():
            required = [f.jira.field for f in policy.intake.fields if f.required]
            found = {name: _field_property(name, field_ids) for name in required}
            unknown = [name for name, prop in found.items() if prop is None]
            if unknown:
                return None, (
                    "needs the field ids of " + ", ".join(unknown) + " (pass --fields with the JSON of "
                    "GET /rest/api/2/field)"
                )
            return " && ".join(f"{prop} != null" for prop in found.values()), ""
        case SectionGuard():
            return None, (
                "a heading in the description or a comment: Jira expressions read rich text as plain "
                "text, where a heading cannot be told from a sentence"
            )
    raise AssertionError(f"unhandled guard {guard!r}")


def _conditional(guard: Guard, text: str) -> str:
    """The guard's expression as Jira should hold it: only while its `when_label` is there, never
    while its `unless_label` is."""
    if guard.unless_label is not None:
        text = f"issue.labels.includes({_quote(guard.unless_label)}) || ({text})"
    if guard.when_label is None:
        return text
    return f"!issue.labels.includes({_quote(guard.when_label)}) || ({text})"


def validators(policy: Policy, field_ids: Mapping[str, str]) -> list[ValidatorRow]:
    rows = []
    for transition in policy.workflow.transitions:
        for guard in transition.guards:
            text, reason = expression(policy, guard, field_ids)
            rows.append(
                ValidatorRow(
                    transition=transition.id,
                    guard=guard.id,
                    sop=guard.sop,
                    requirement=guard.requirement.get(policy.locale),
                    expression=_conditional(guard, text) if text else None,
                    reason=reason,
                )
            )
    return rows


def jira_workflow(policy: Policy, field_ids: Mapping[str, str] | None = None) -> JiraWorkflow:
    """Everything an admin needs to make the Jira workflow match the policy."""
    return JiraWorkflow(
        tuple(statuses(policy)), tuple(transitions(policy)), tuple(validators(policy, field_ids or {}))
    )


def field_ids_from(fields: Sequence[object]) -> dict[str, str]:
    """Field name -> id from the JSON of `GET /rest/api/2/field`."""
    return {
        str(f["name"]): str(f["id"]) for f in fields if isinstance(f, dict) and f.get("name") and f.get("id")
    }


# --- output ----------------------------------------------------------------------------------------


def as_json(workflow: JiraWorkflow) -> str:
    data = asdict(workflow)
    for row in data["transitions"]:
        row["from"] = row.pop("from_")
    return json.dumps(data, indent=2, ensure_ascii=False)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [list(header), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in body) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in body]
    return [lines[0], "  ".join("-" * w for w in widths), *lines[1:]]


def _transition_rows(rows: Iterable[TransitionRow]) -> list[list[str]]:
    return [[t.name, ", ".join(t.from_), t.to, t.sop, t.id] for t in rows]


def as_table(workflow: JiraWorkflow) -> str:
    procedure = [t for t in workflow.transitions if t.purpose == "procedure"]
    returns = [t for t in workflow.transitions if t.purpose == "return"]
    undo = [t for t in workflow.transitions if t.purpose == "undo"]
    checked = [v for v in workflow.validators if v.expression]
    unchecked = [v for v in workflow.validators if not v.expression]
    lines = ["Statuses (create the first name; the others are recognised as the same stage)", ""]
    lines += _table(
        ["Jira status", "category", "SOP stage", "SOP", "also recognised"],
        [[s.status, s.category, s.title, s.sop, ", ".join(s.also)] for s in workflow.statuses],
    )
    lines += ["", "Transitions of the procedure", ""]
    lines += _table(["transition", "from", "to", "SOP", "policy id"], _transition_rows(procedure))
    lines += ["", "Transitions back from a pause to the stage the issue left (the only way out)", ""]
    lines += _table(["transition", "from", "to", "SOP", "policy id"], _transition_rows(returns))
    lines += ["", "Transitions sopguard uses to move an issue back when a guard fails", ""]
    lines += _table(["transition", "from", "to", "SOP", "undoes"], _transition_rows(undo))
    lines += ["", "Validators (Jira Cloud: a Jira-expression validator on the transition)", ""]
    for v in checked:
        lines += [f"{v.transition} / {v.guard} (SOP {v.sop}): {v.requirement}", f"    {v.expression}", ""]
    lines += ["Guards no Jira expression can check (sopguard's revert enforces them)", ""]
    lines += [f"- {v.transition} / {v.guard} (SOP {v.sop}): {v.reason}" for v in unchecked]
    return "\n".join(lines) + "\n"

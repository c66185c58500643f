"""Cross-reference checks: rules that relate one part of a policy to another.

Each check needs some top-level sections and yields `(location, message)` pairs; it runs only when
those sections validated, so one broken section does not hide the problems of the others. A
problem inside a comment template also says where in the template (`spot`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, TypeVar, get_args

import holidays

from config.schema import (
    BUILT_IN_PEOPLE,
    TEAM_MEMBERS,
    ChecklistGuard,
    Guard,
    LabelGuard,
    MessageKind,
    Rule,
    SectionGuard,
    Workflow,
    apply_scope,
)
from config.template_checks import Spot, template_problems

Loc = tuple[str | int, ...]
Sections = Mapping[str, Any]


class CheckError(NamedTuple):
    loc: Loc
    message: str
    at_key: bool = False  # point at the mapping key itself (`triag:`), not at its value
    spot: Spot | None = None  # for a template: the line and column within its text


Found = tuple[Loc, str] | CheckError
Check = Callable[[Sections], Iterator[Found]]

_CHECKS: list[tuple[tuple[str, ...], Check]] = []


def _needs(*names: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        _CHECKS.append((names, check))
        return check

    return register


_T = TypeVar("_T", bound=Hashable)


def _duplicates(ids: Sequence[_T]) -> set[_T]:
    return {value for value, count in Counter(ids).items() if count > 1}


@_needs("workflow")
def _workflow_states(s: Sections) -> Iterator[Found]:
    workflow = s["workflow"]
    state_ids = [state.id for state in workflow.states]
    for index, state in enumerate(workflow.states):
        if state.id in _duplicates(state_ids):
            yield ("workflow", "states", index, "id"), f"state '{state.id}' is defined twice"
    known = set(state_ids)
    if workflow.initial not in known:
        yield ("workflow", "initial"), _unknown("state", workflow.initial, known)
    for index, transition in enumerate(workflow.transitions):
        for position, source in enumerate(transition.from_):
            if source not in known:
                yield ("workflow", "transitions", index, "from", position), _unknown("state", source, known)
        if transition.to not in known:
            yield ("workflow", "transitions", index, "to"), _unknown("state", transition.to, known)
    pairs = [(source, t.to) for t in workflow.transitions for source in t.from_]
    for index, transition in enumerate(workflow.transitions):
        for source in transition.from_:
            if (source, transition.to) in _duplicates(pairs):
                yield (
                    ("workflow", "transitions", index),
                    f"transition {source} -> {transition.to} is defined more than once",
                )
                break


@_needs("workflow", "checklists")
def _checklist_references(s: Sections) -> Iterator[Found]:
    known = {c.id for c in s["checklists"]}
    used: set[str] = set()
    for index, state in enumerate(s["workflow"].states):
        used.update(state.checklists)
        for position, checklist_id in enumerate(state.checklists):
            if checklist_id not in known:
                yield (
                    ("workflow", "states", index, "checklists", position),
                    _unknown("checklist", checklist_id, known),
                )
    for t_index, transition in enumerate(s["workflow"].transitions):
        for g_index, guard in enumerate(transition.guards):
            if isinstance(guard, ChecklistGuard) and guard.checklist not in known:
                yield (
                    ("workflow", "transitions", t_index, "guards", g_index, "checklist"),
                    _unknown("checklist", guard.checklist, known),
                )
    for index, checklist in enumerate(s["checklists"]):
        if checklist.id not in used:
            yield ("checklists", index, "id"), f"checklist '{checklist.id}' is not used by any state"


@_needs("intake", "priority")
def _priority_fields(s: Sections) -> Iterator[Found]:
    intake, priority = s["intake"], s["priority"]
    ids = [f.id for f in intake.fields]
    for index, field_id in enumerate(ids):
        if field_id in _duplicates(ids):
            yield ("intake", "fields", index, "id"), f"intake field '{field_id}' is defined twice"
    for key in ("impact_field", "urgency_field", "tier_field"):
        if intake.field(getattr(priority, key)) is None:
            yield ("priority", key), _unknown("intake field", getattr(priority, key), set(ids))
    impact, urgency = intake.field(priority.impact_field), intake.field(priority.urgency_field)
    if impact and impact.options and set(priority.matrix) != set(impact.values):
        yield ("priority", "matrix"), _coverage("impact", impact.values, priority.matrix)
    for row_key, row in priority.matrix.items():
        if urgency and urgency.options and set(row) != set(urgency.values):
            yield ("priority", "matrix", row_key), _coverage("urgency", urgency.values, row)
        for column, level in row.items():
            if level not in priority.levels:
                yield (
                    ("priority", "matrix", row_key, column),
                    _unknown("priority level", level, set(priority.levels)),
                )


@_needs("priority", "sla", "workflow")
def _sla_references(s: Sections) -> Iterator[Found]:
    levels, sla = s["priority"].levels, s["sla"]
    calendars = {c.id for c in sla.calendars}
    states = {state.id for state in s["workflow"].states}
    for index, state in enumerate(sla.pause_states):
        if state not in states:
            yield ("sla", "pause_states", index), _unknown("state", state, states)
    supported = holidays.list_supported_countries()
    for index, calendar in enumerate(sla.calendars):
        source = calendar.holidays
        if source is None:
            continue
        if source.country not in supported:
            loc: Loc = ("sla", "calendars", index, "holidays", "country")
            yield loc, f"the holidays library does not know country '{source.country}'"
        elif source.subdivision and source.subdivision not in supported[source.country]:
            loc = ("sla", "calendars", index, "holidays", "subdivision")
            yield (
                loc,
                _unknown(
                    f"subdivision of {source.country}", source.subdivision, set(supported[source.country])
                ),
            )
    for index, target in enumerate(sla.targets):
        if target.calendar and target.calendar not in calendars:
            yield ("sla", "targets", index, "calendar"), _unknown("calendar", target.calendar, calendars)
        for level in levels:
            if level not in target.by_priority:
                yield (
                    ("sla", "targets", index, "by_priority"),
                    f"priority {level} has no {target.kind} target",
                )
        for level in target.by_priority:
            if level not in levels:
                loc = ("sla", "targets", index, "by_priority", level)
                yield CheckError(loc, _unknown("priority level", level, set(levels)), True)


@_needs("trackers", "workflow", "priority")
def _tracker_mapping(s: Sections) -> Iterator[Found]:
    jira, github = s["trackers"].jira, s["trackers"].github
    states = [state.id for state in s["workflow"].states]
    for state in jira.statuses:
        if state not in states:
            yield CheckError(
                ("trackers", "jira", "statuses", state), _unknown("state", state, set(states)), True
            )
    for state in states:
        if state not in jira.statuses:
            yield ("trackers", "jira", "statuses"), f"state '{state}' has no Jira status"
    names = [name for group in jira.statuses.values() for name in group]
    for name in _duplicates(names):
        yield ("trackers", "jira", "statuses"), f"Jira status '{name}' is mapped to more than one state"
    for level in s["priority"].levels:
        if level not in jira.priorities:
            yield ("trackers", "jira", "priorities"), f"priority {level} has no Jira priority name"
    for level in jira.priorities:
        if level not in s["priority"].levels:
            loc = ("trackers", "jira", "priorities", level)
            yield CheckError(loc, _unknown("priority level", level, set(s["priority"].levels)), True)
    for index, state in enumerate(github.closed_states):
        if state not in states:
            yield ("trackers", "github", "closed_states", index), _unknown("state", state, set(states))


@_needs("workflow", "intake", "priority", "checklists", "sla", "rule_modes", "sop_clauses", "commands")
def _rules(s: Sections) -> Iterator[Found]:
    rules = list(all_rules(s))
    ids = [rule.id for _, rule in rules]
    # One guard of a guard set, used on several transitions, is one rule.
    distinct = [rule.id for rule in {r.model_dump_json(): r for _, r in rules}.values()]
    for loc, rule in rules:
        if rule.id in _duplicates(distinct):
            yield (*loc, "id"), f"rule id '{rule.id}' is used by more than one rule"
        if rule.sop not in s["sop_clauses"]:
            yield (*loc, "sop"), f"clause {rule.sop} has no text in sop_clauses"
    for rule_id in s["rule_modes"]:
        if rule_id not in ids:
            yield CheckError(("rule_modes", rule_id), _unknown("rule", rule_id, set(ids)), True)


@_needs("trackers", "workflow", "intake", "priority", "checklists", "sla", "commands", "messages")
def _service_desk(s: Sections) -> Iterator[Found]:
    """A comment named by kind or by the rule that posts it; tiers and fields the intake knows."""
    desk = s["trackers"].jira.service_desk
    loc: Loc = ("trackers", "jira", "service_desk")
    kinds = set(get_args(MessageKind)) | set(s["messages"].templates)
    rules = {rule.id for _, rule in all_rules(s)}
    for name in desk.comments:
        if name not in kinds | rules:
            listed = ", ".join(sorted(kinds))
            message = f"'{name}' is neither a kind of comment ({listed}) nor the id of a rule of this policy"
            yield CheckError((*loc, "comments", name), message, True)
    intake = s["intake"]
    tier = intake.field(s["priority"].tier_field)
    for organization, value in desk.organizations.items():
        if tier is not None and tier.options and tier.option(value) is None:
            message = _unknown(f"option of the tier field '{tier.id}'", value, set(tier.values))
            yield (*loc, "organizations", organization), message
    for request_type, values in desk.request_types.items():
        for field_id, value in values.items():
            field = intake.field(field_id)
            if field is None:
                fields = {f.id for f in intake.fields}
                yield CheckError(
                    (*loc, "request_types", request_type, field_id),
                    _unknown("intake field", field_id, fields),
                    True,
                )
            elif field.options and field.option(value) is None:
                message = _unknown(f"option of the intake field '{field_id}'", value, set(field.values))
                yield (*loc, "request_types", request_type, field_id), message


@_needs("workflow", "commands")
def _commands(s: Sections) -> Iterator[Found]:
    states = {state.id for state in s["workflow"].states}
    names = [command.name for command in s["commands"]]
    for index, command in enumerate(s["commands"]):
        if command.name in _duplicates(names):
            yield ("commands", index, "name"), f"command /{command.name} is defined more than once"
        for where, state in [
            *(("from", f) for f in command.from_),
            *([("to", command.to)] if command.to else []),
        ]:
            if state not in states:
                yield ("commands", index, where), _unknown("state", state, states)


@_needs("workflow", "sla", "teams", "commands", "checklists", "restricted_labels")
def _people(s: Sections) -> Iterator[Found]:
    """Every name a guard or the SLA gives for people is a team of `teams:` or a built-in."""
    known = set(s["teams"]) | set(BUILT_IN_PEOPLE)
    for name in s["teams"]:
        if name in BUILT_IN_PEOPLE and name != TEAM_MEMBERS:
            yield CheckError(("teams", name), f"'{name}' is a built-in and cannot be a team's name", True)
    named: list[tuple[Loc, list[str]]] = [(("sla", "responders"), s["sla"].responders)]
    if (notice := s["sla"].delay_notice) is not None:
        named += [
            (("sla", "delay_notice", "by"), notice.by),
            (("sla", "delay_notice", "not_by"), notice.not_by),
        ]
    for loc, guard in _guards_where_written(s["workflow"]):
        if isinstance(guard, LabelGuard | SectionGuard):
            named += [((*loc, "by"), guard.by), ((*loc, "not_by"), guard.not_by)]
    for index, command in enumerate(s["commands"]):
        named += [(("commands", index, "by"), command.by), (("commands", index, "not_by"), command.not_by)]
    for index, restricted in enumerate(s["restricted_labels"]):
        loc = ("restricted_labels", index)
        named += [((*loc, "by"), restricted.by), ((*loc, "not_by"), restricted.not_by)]
    for c_index, checklist in enumerate(s["checklists"]):
        for i_index, item in enumerate(checklist.items):
            loc = ("checklists", c_index, "items", i_index)
            named += [((*loc, "by"), item.by), ((*loc, "not_by"), item.not_by)]
    for loc, names in named:
        for index, name in enumerate(names):
            if name not in known:
                yield (*loc, index), _unknown("team", name, known)


@_needs("workflow", "restricted_labels")
def _restricted_labels(s: Sections) -> Iterator[Found]:
    """A label is restricted in one place: a label guard's `by`/`not_by`, or `restricted_labels`."""
    by_guards: dict[str, str] = {}
    for transition in s["workflow"].transitions:
        for guard in transition.guards:
            if isinstance(guard, LabelGuard) and (guard.by or guard.not_by):
                by_guards.setdefault(guard.label, guard.id)
    labels = [restricted.label for restricted in s["restricted_labels"]]
    for index, label in enumerate(labels):
        if label in by_guards:
            message = f"label '{label}' is restricted already, by guard '{by_guards[label]}'"
            yield ("restricted_labels", index, "label"), message
        elif label in _duplicates(labels):
            yield ("restricted_labels", index, "label"), f"label '{label}' is restricted more than once"
    restricted = {*by_guards, *labels}
    for loc, guard in _guards_where_written(s["workflow"]):
        waiver = guard.unless_label
        if waiver is None:
            continue
        if waiver == getattr(guard, "label", None):
            yield (*loc, "unless_label"), f"guard '{guard.id}' is waived by the very label it asks for"
        elif waiver not in restricted:
            yield (
                (*loc, "unless_label"),
                (
                    f"label '{waiver}' waives guard '{guard.id}' but nothing restricts who may add it, so "
                    "anyone could: name who may under restricted_labels"
                ),
            )


def _guards_where_written(workflow: Workflow) -> Iterator[tuple[Loc, Guard]]:
    """Each guard once, where the policy writes it: in a guard set, or in its transition."""
    for name, guards in workflow.guard_sets.items():
        for index, guard in enumerate(guards):
            yield ("workflow", "guard_sets", name, index), guard
    in_sets = {g.id for guards in workflow.guard_sets.values() for g in guards}
    for t_index, transition in enumerate(workflow.transitions):
        for g_index, guard in enumerate(transition.guards):
            if guard.id not in in_sets:
                yield ("workflow", "transitions", t_index, "guards", g_index), guard


@_needs("messages")
def _templates(s: Sections) -> Iterator[Found]:
    templates = s["messages"].templates
    for kind in get_args(MessageKind):
        if kind not in templates:
            yield ("messages", "templates"), f"no template for '{kind}'"
    for kind, text in templates.items():
        for locale, source in (("en", text.en), ("zh-CN", text.zh_cn)):
            for problem in template_problems(kind, source) if source is not None else ():
                yield CheckError(("messages", "templates", kind, locale), problem.message, spot=problem.spot)


def all_rules(s: Sections) -> Iterator[tuple[Loc, Rule]]:
    """Every rule of a policy (or of its validated sections) with its location in the file."""
    workflow = s["workflow"]
    yield ("workflow", "rule"), workflow.rule
    for t_index, transition in enumerate(workflow.transitions):
        yield ("workflow", "transitions", t_index), transition
        for g_index, guard in enumerate(transition.guards):
            yield ("workflow", "transitions", t_index, "guards", g_index), guard
    yield ("intake",), s["intake"]
    yield ("priority",), s["priority"]
    for index, checklist in enumerate(s["checklists"]):
        yield ("checklists", index), checklist
    for index, target in enumerate(s["sla"].targets):
        yield ("sla", "targets", index), target
    for name in ("receipt", "delay_notice", "satisfaction"):
        if (rule := getattr(s["sla"], name)) is not None:
            yield ("sla", name), rule
    for index, command in enumerate(s.get("commands", [])):
        yield ("commands", index), command
    if s.get("plan_changes") is not None:
        yield ("plan_changes",), s["plan_changes"]
    for index, restricted in enumerate(s.get("restricted_labels", [])):
        yield ("restricted_labels", index), restricted


def _unknown(kind: str, value: str, known: set[str]) -> str:
    listed = ", ".join(sorted(known)) or "none defined"
    return f"unknown {kind} '{value}' (known: {listed})"


def _coverage(axis: str, options: list[str], given: Mapping[str, Any]) -> str:
    missing = [o for o in options if o not in given]
    extra = [g for g in given if g not in options]
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"not options: {', '.join(extra)}" if extra else "",
    ]
    return f"must have one entry per {axis} option ({'; '.join(p for p in parts if p)})"


def _run_checks(sections: Sections) -> Iterator[CheckError]:
    for needed, check in _CHECKS:
        if all(name in sections for name in needed):
            yield from (CheckError(*error) for error in check(sections))


def cross_reference_errors(sections: Sections) -> list[CheckError]:
    """Every cross-reference problem of a policy and of each of its scopes.

    A scope's problem is reported under the scope: at its own node when it lies in a section the
    scope replaced, otherwise at the scope itself, naming where in the default it shows.
    """
    errors = list(_run_checks(sections))
    in_default = {(error.loc, error.message) for error in errors}
    for index, scope in enumerate(sections.get("scopes", [])):
        own = {name for name, value in scope if value not in (None, {}) and name != "match"}
        for error in _run_checks(apply_scope(sections, scope)):
            if (error.loc, error.message) in in_default:
                continue
            if error.loc[0] in own:
                errors.append(error._replace(loc=("scopes", index, *error.loc)))
            else:
                where = ".".join(str(step) for step in error.loc)
                message = f"with this scope's sections, {where}: {error.message}"
                errors.append(CheckError(("scopes", index, "match"), message))
    return list(dict.fromkeys(errors))

"""`sopguard check` on Jira: the project's statuses, transitions, priorities, fields and sub-task type
against the policy's mapping (`trackers.jira`, the intake fields, the workflow).

Requests, all reads: `GET /project/{key}`, `GET /project/{key}/statuses`, `GET /priority`, `GET /field`,
`GET /serverInfo` and, on Cloud, `POST /rest/api/3/workflows` (the workflows of the project's issue
types, with their transitions). Data Center has no REST call that lists a workflow's transitions, so
there they are not compared (the report says so).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from config.schema import Mode, Policy, Transition
from connector.check import CheckReport, Mismatch, counted
from connector.jira.api import JiraApi, Json
from connector.jira.connector import FieldIndex

EXPORT_HINT = "sopguard export jira-workflow --scope {key} lists every transition the policy needs"


@dataclass(frozen=True)
class JiraProject:
    """What a Jira project offers, as read from its REST API; names as Jira spells them.

    `transitions`: (from status, to status) pairs, `None` as the source of a global transition
    (from any status); `None` altogether when they could not be read (Data Center).
    """

    key: str
    statuses: tuple[str, ...]
    subtask_types: tuple[str, ...]
    priorities: tuple[str, ...]
    fields: FieldIndex
    field_ids: frozenset[str]
    transitions: frozenset[tuple[str | None, str]] | None


def _names(items: Iterable[Json]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(i["name"]) for i in items if i.get("name")))


def workflow_transitions(answer: Json) -> frozenset[tuple[str | None, str]]:
    """The (from, to) status names of every transition in `POST /workflows`' answer; a global
    transition (or one with no links) goes from any status. The initial "Create" one is not a move."""
    names = {str(s.get("statusReference")): str(s.get("name", "")) for s in answer.get("statuses") or []}
    pairs: set[tuple[str | None, str]] = set()
    for workflow in answer.get("workflows") or []:
        for transition in workflow.get("transitions") or []:
            target = names.get(str(transition.get("toStatusReference")))
            if target is None or transition.get("type") == "INITIAL":
                continue
            links = transition.get("links") or []
            if transition.get("type") == "GLOBAL" or not links:
                pairs.add((None, target))
            for link in links:
                source = names.get(str(link.get("fromStatusReference")))
                if source is not None:
                    pairs.add((source, target))
    return frozenset(pairs)


def read_project(api: JiraApi, key: str) -> JiraProject:
    """Everything the comparison needs, in six reads or fewer."""
    project = api.project(key)
    by_type = api.project_statuses(key)
    standard = [t for t in by_type if not t.get("subtask")]
    fields = api.fields()
    transitions = None
    if api.server_info().get("deploymentType") == "Cloud":
        type_ids = [str(t["id"]) for t in standard if t.get("id")]
        transitions = workflow_transitions(api.workflows(str(project.get("id", "")), type_ids))
    return JiraProject(
        key=key,
        statuses=_names(s for t in standard for s in t.get("statuses") or []),
        subtask_types=_names(t for t in by_type if t.get("subtask")),
        priorities=_names(api.priorities()),
        fields=FieldIndex.of(fields, 0.0),
        field_ids=frozenset(str(f["id"]) for f in fields if f.get("id")),
        transitions=transitions,
    )


def check(policy: Policy, project: JiraProject) -> CheckReport:
    """The policy (as it applies to this project) against the project."""
    scoped = policy.for_issue("jira", project.key)
    mismatches = [
        *_statuses(scoped, project),
        *_transitions(scoped, project),
        *_priorities(scoped, project),
        *_fields(scoped, project),
        *_subtask_type(scoped, project),
    ]
    checked = [
        counted(len(project.statuses), "status", "statuses"),
        counted(len(scoped.trackers.jira.priorities), "priority", "priorities"),
        counted(len(scoped.intake.fields), "field"),
    ]
    notes = []
    if project.transitions is None:
        notes.append(
            "transitions not compared: this Jira (Data Center) has no REST call that lists them; "
            + EXPORT_HINT.format(key=project.key)
        )
    else:
        checked.insert(1, counted(len(_needed_transitions(scoped)), "transition"))
    return CheckReport(f"Jira project {project.key}", mismatches, checked, notes)


def _present(project: JiraProject, names: Iterable[str]) -> set[str]:
    """Of a state's mapped status names, those the project has (compared case-insensitively)."""
    have = {s.casefold() for s in project.statuses}
    return {n.casefold() for n in names if n.casefold() in have}


def _statuses(policy: Policy, project: JiraProject) -> Iterator[Mismatch]:
    mapping = policy.trackers.jira.statuses
    for state in policy.workflow.states:
        names = mapping.get(state.id, [])
        if not _present(project, names):
            yield Mismatch(
                f"state '{state.id}' (SOP {state.sop}) has none of its Jira statuses "
                f"({', '.join(names) or 'none mapped'}) in project {project.key}'s workflow",
                f"add one to the workflow, or set trackers.jira.statuses.{state.id} to the project's status "
                "that means this stage",
            )
    mapped = {n.casefold() for names in mapping.values() for n in names}
    for status in project.statuses:
        if status.casefold() not in mapped:
            yield Mismatch(
                f"Jira status '{status}' of project {project.key} is not mapped to any state",
                "add it to trackers.jira.statuses under the state it means (until then an issue moved "
                "into it is held in its last state, and, in enforce mode, the move is explained on the issue)",
            )


def _needed_transitions(policy: Policy) -> list[tuple[Transition, str, str, bool]]:
    """(policy transition, from state, to state, is an undo) for every move Jira must allow:
    each transition of the workflow, and the way back from each guarded one that is enforced
    (the connector undoes a rejected change with it)."""
    forward = [(t, source, t.to, False) for t in policy.workflow.transitions for source in t.from_]
    pairs = {(source, target) for _, source, target, _ in forward}
    undo = [
        (t, t.to, source, True)
        for t in policy.workflow.transitions
        if any(policy.mode_of(g) == Mode.ENFORCE for g in t.guards)
        for source in t.from_
        if (t.to, source) not in pairs
    ]
    return forward + list({(t.id, s, e): (t, s, e, u) for t, s, e, u in undo}.values())


def _transitions(policy: Policy, project: JiraProject) -> Iterator[Mismatch]:
    if project.transitions is None:
        return
    mapping = policy.trackers.jira.statuses
    pairs = {(s.casefold() if s else None, t.casefold()) for s, t in project.transitions}
    for transition, source, target, undo in _needed_transitions(policy):
        sources, targets = (
            _present(project, mapping.get(source, [])),
            _present(project, mapping.get(target, [])),
        )
        if not sources or not targets:
            continue  # the missing status is reported once, above
        if any((s is None or s in sources) and t in targets for s, t in pairs):
            continue
        purpose = f"to undo a rejected '{transition.id}'" if undo else f"policy transition '{transition.id}'"
        yield Mismatch(
            f"project {project.key}'s workflow has no transition from {_shown(mapping[source])} to "
            f"{_shown(mapping[target])} ({purpose}, SOP {transition.sop})",
            f"add it to the workflow; {EXPORT_HINT.format(key=project.key)}",
        )


def _shown(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} (or {', '.join(names[1:])})"


def _priorities(policy: Policy, project: JiraProject) -> Iterator[Mismatch]:
    have = {p.casefold() for p in project.priorities}
    for level, name in policy.trackers.jira.priorities.items():
        if name.casefold() not in have:
            yield Mismatch(
                f"priority {level} maps to the Jira priority '{name}', which this Jira does not have",
                f"set trackers.jira.priorities.{level} to one of: {', '.join(project.priorities) or 'none'}",
            )


def _fields(policy: Policy, project: JiraProject) -> Iterator[Mismatch]:
    for index, field in enumerate(policy.intake.fields):
        name = field.jira.field
        if name in project.field_ids or project.fields.knows(name):
            continue
        yield Mismatch(
            f"intake field '{field.id}' is read from the Jira field '{name}', which this Jira does not have",
            f"create the field, or set intake.fields[{index}].jira.field to the name or id "
            "(customfield_N) of the field that holds it",
        )


def _subtask_type(policy: Policy, project: JiraProject) -> Iterator[Mismatch]:
    wanted = policy.trackers.jira.subtask_issue_type
    if not policy.checklists or wanted.casefold() in {t.casefold() for t in project.subtask_types}:
        return
    yield Mismatch(
        f"checklist items are created as '{wanted}' issues, a sub-task type project {project.key} does not have",
        f"set trackers.jira.subtask_issue_type to one of: {', '.join(project.subtask_types) or 'none (enable sub-tasks)'}",
    )

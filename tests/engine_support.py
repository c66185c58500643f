"""Builders for engine tests: events and snapshots that satisfy or break a transition's guards."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

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
from policies.engine import evaluate
from policies.models import Actor, Decision, Event, EventKind, IssueRef, IssueSnapshot, Source, Subtask
from policies.people import person_key

NOW = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
GITHUB_REF = IssueRef(
    "github", "acme/service-desk", "42", "4200", "https://github.com/acme/service-desk/issues/42"
)
JIRA_REF = IssueRef("jira", "OPS", "OPS-7", "10007")
PERSON = Actor("alice")


def ref_for(source: Source) -> IssueRef:
    return GITHUB_REF if source == "github" else JIRA_REF


def complete_fields(policy: Policy, source: Source) -> dict[str, str]:
    """Every intake field filled with a valid value (the first option where there are options)."""
    values = {}
    for field in policy.intake.fields:
        key = field.github.heading if source == "github" else field.jira.field
        values[key] = field.values[0] if field.options else f"some {field.id}"
    return values


def _context(policy: Policy, source: Source) -> Context:
    event = Event(source=source, kinds=frozenset(), delivery_id="x", actor=PERSON, issue=ref_for(source))
    return Context(policy, event, IssueSnapshot(ref=ref_for(source)), NOW)


def satisfy(policy: Policy, guard: Guard, snapshot: IssueSnapshot, source: Source) -> IssueSnapshot:
    """The snapshot changed just enough for `guard` to hold (and to apply, for conditional guards)."""
    labels = set(snapshot.labels) | ({guard.when_label} if guard.when_label else set())
    match guard:
        case IntakeGuard():
            return replace(snapshot, labels=frozenset(labels), fields=complete_fields(policy, source))
        case PriorityGuard() if source == "github":
            labels.add(policy.trackers.github.priority_label("P2"))
        case PriorityGuard():
            snapshot = replace(snapshot, priority=policy.trackers.jira.priorities["P2"])
        case AssigneeGuard():
            snapshot = replace(snapshot, assignees=("alice",))
        case LabelGuard():
            labels.add(guard.label)
        case NoLabelGuard():
            labels.discard(guard.label)
        case ChecklistGuard():
            checklist = policy.checklist(guard.checklist)
            assert checklist is not None
            done = [Subtask(title, done=True) for title in item_titles(_context(policy, source), checklist)]
            snapshot = replace(snapshot, subtasks=(*snapshot.subtasks, *done))
        case SectionGuard():
            heading = f"### {guard.headings[0]}" if source == "github" else f"h3. {guard.headings[0]}"
            snapshot = replace(snapshot, body=f"{snapshot.body}\n\n{heading}\n\nWritten down.\n")
            if guard.restricted:  # written by the reporter, one of the people the guard allows
                writer = person_key(Actor(snapshot.reporter, id=snapshot.reporter_id))
                snapshot = replace(
                    snapshot, writer_teams={**snapshot.writer_teams, writer: frozenset(guard.by)}
                )
    return replace(snapshot, labels=frozenset(labels))


def break_guard(policy: Policy, guard: Guard, snapshot: IssueSnapshot, source: Source) -> IssueSnapshot:
    """The snapshot changed so that `guard` applies and does not hold."""
    labels = set(snapshot.labels) | ({guard.when_label} if guard.when_label else set())
    labels.discard(guard.unless_label or "")
    match guard:
        case IntakeGuard():
            snapshot = replace(snapshot, fields={})
        case PriorityGuard() if source == "github":
            labels -= {policy.trackers.github.priority_label(level) for level in policy.priority.levels}
        case PriorityGuard():
            snapshot = replace(snapshot, priority=None)
        case AssigneeGuard():
            snapshot = replace(snapshot, assignees=())
        case LabelGuard():
            labels.discard(guard.label)
        case NoLabelGuard():
            labels.add(guard.label)
        case ChecklistGuard():
            checklist = policy.checklist(guard.checklist)
            assert checklist is not None
            first = item_titles(_context(policy, source), checklist)[0]
            snapshot = replace(
                snapshot,
                subtasks=tuple(replace(s, done=False) if s.title == first else s for s in snapshot.subtasks),
            )
        case SectionGuard():
            snapshot = replace(snapshot, body="Nothing written yet.")
    return replace(snapshot, labels=frozenset(labels))


def snapshot_meeting(policy: Policy, transition: Transition, source: Source) -> IssueSnapshot:
    snapshot = IssueSnapshot(ref=ref_for(source), reporter="carol")
    for guard in transition.guards:
        snapshot = satisfy(policy, guard, snapshot, source)
    return snapshot


def move(
    policy: Policy, source: Source, before: str, after: str, snapshot: IssueSnapshot, *, delivery: str = "d-1"
) -> tuple[Decision, IssueSnapshot]:
    """A person moves the issue from one SOP state to another, as each tracker reports it.

    Returns the decision and the snapshot it was made on (the issue as the person left it).
    """
    closed = policy.trackers.github.closed_states
    if source == "jira":
        statuses = policy.trackers.jira.statuses
        status_before, status_after = statuses[before][0], statuses[after][0]
        event = Event(
            source="jira",
            kinds=frozenset({EventKind.STATUS_CHANGED}),
            delivery_id=delivery,
            actor=PERSON,
            issue=JIRA_REF,
            status_before=status_before,
            status_after=status_after,
        )
        state = replace(snapshot, status=status_after, last_state=before)
        return evaluate(policy, event, state, NOW), state
    github = policy.trackers.github
    old, new = github.status_label(before), github.status_label(after)
    if after in closed or before in closed:
        labels = snapshot.labels | {old}
        event = Event(
            source="github",
            kinds=frozenset({EventKind.STATUS_CHANGED}),
            delivery_id=delivery,
            actor=PERSON,
            issue=GITHUB_REF,
            status_before="closed" if before in closed else "open",
            status_after="closed" if after in closed else "open",
            labels_before=frozenset(labels),
            labels_after=frozenset(labels),
        )
        state = replace(snapshot, labels=frozenset(labels), is_open=after not in closed, last_state=before)
        return evaluate(policy, event, state, NOW), state
    labels_after = snapshot.labels | {old, new}
    event = Event(
        source="github",
        kinds=frozenset({EventKind.LABELS_CHANGED}),
        delivery_id=delivery,
        actor=PERSON,
        issue=GITHUB_REF,
        labels_before=frozenset(labels_after - {new}),
        labels_after=frozenset(labels_after),
    )
    state = replace(snapshot, labels=frozenset(labels_after), last_state=before)
    return evaluate(policy, event, state, NOW), state

"""What the rules will read that a delivery may not carry, so a connector fetches only that."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from config.schema import AUTHOR_OF_PLAN, ChecklistGuard, Mode, Policy, SectionGuard, Team
from policies import adoption, checklists, commands, people
from policies.context import Context, is_service_request
from policies.models import Actor, Event, EventKind, IssueSnapshot
from policies.text import find_section
from policies.workflow import is_return_from_pause, state_change


@dataclass(frozen=True)
class Needs:
    """`subtasks`: the issue's child issues; `comments`: its comments (for plan / root-cause sections);
    `teams`: the policy teams whose membership of the event's actor (a comment's author) to look up,
    into `IssueSnapshot.actor_teams`; `history`: the tracker's history of an issue sopguard adopts
    (its changes and comments); `closers`: the titles of closed subtasks whose closer to read
    (`Subtask.closed_by`, items that say who may close them), and `closer_teams` the teams to
    look the closers up in (`Subtask.closer_teams`); `visibility`: whether the customer reads the
    event's comment, where the delivery does not say (`Comment.public` is `None`: a Jira Data Center
    comment), into `IssueSnapshot.visibility`; `sections`: the guards that ask who wrote their
    section, whose writers (`writers`) the connector looks up in `writer_teams`, into
    `IssueSnapshot.writer_teams`."""

    subtasks: bool = False
    comments: bool = False
    teams: Mapping[str, Team] = field(default_factory=dict)
    history: bool = False
    closers: frozenset[str] = frozenset()
    closer_teams: Mapping[str, Team] = field(default_factory=dict)
    visibility: bool = False
    sections: tuple[SectionGuard, ...] = ()
    writer_teams: Mapping[str, Team] = field(default_factory=dict)

    def writers(self, event: Event, snapshot: IssueSnapshot) -> list[Actor]:
        """Who wrote the sections of `sections` the issue has, read once its comments are in `snapshot`."""
        return [
            person for guard in self.sections for person in people.writers_to_look_up(event, snapshot, guard)
        ]


def visibility_needed(event: Event, snapshot: IssueSnapshot) -> bool:
    """Whether the rules read the visibility of the event's comment and the delivery does not say
    it: only a comment that could answer the customer (S1.4) is asked about."""
    comment = event.comment
    return (
        comment is not None
        and comment.public is None
        and EventKind.COMMENTED in event.kinds
        and people.may_answer_the_customer(comment, snapshot)
    )


def needs(policy: Policy, event: Event, snapshot: IssueSnapshot) -> Needs:
    """Decided from the change of stage the event may be: its guards and the checklists it creates."""
    scoped = policy.for_issue(event.source, event.issue.scope, snapshot.request_type)
    if event.by_service or not is_service_request(scoped, snapshot):
        return Needs()
    context = Context(scoped, event, snapshot, dt.datetime.min)  # no rule here reads the time
    visibility = visibility_needed(event, snapshot)
    if snapshot.first_seen:
        if not adoption.covers(scoped, event.source, snapshot)[0]:
            return Needs()
        if adoption.is_adoption(context):
            return Needs(history=True, visibility=visibility)
    names = people.teams_to_look_up(scoped, event, snapshot) | commands.teams_to_look_up(context)
    teams = {name: team for name in names if (team := scoped.team(name))}
    plan_author = people.needs_plan_author(scoped, event) or commands.need_plan_author(context)
    change = state_change(context)
    if change is None or change.before == change.after:
        return Needs(comments=plan_author, teams=teams, visibility=visibility)
    transition = scoped.workflow.transition(change.before, change.after)
    target = scoped.workflow.state(change.after)
    guards = transition.guards if transition else []
    # A change that is not a transition is undone in enforce mode, so its checklists are not created.
    entered = (
        transition is not None
        or is_return_from_pause(context, change)
        or scoped.mode_of(scoped.workflow.rule) != Mode.ENFORCE
    )
    restricted = [
        item
        for g in guards
        if isinstance(g, ChecklistGuard)
        for item in checklists.restricted_items(context, g.checklist)
    ]
    closer_names = [name for _, item in restricted for name in (*item.by, *item.not_by)]
    sections = tuple(
        g
        for g in guards
        if isinstance(g, SectionGuard)
        and g.restricted
        and scoped.mode_of(g) != Mode.OFF
        and (g.when_label is None or g.when_label in snapshot.labels)
    )
    writer_names = [name for g in sections for name in (*g.by, *g.not_by)]
    return Needs(
        subtasks=any(isinstance(g, ChecklistGuard) for g in guards)
        or bool(entered and target and target.checklists),
        comments=plan_author
        or AUTHOR_OF_PLAN in closer_names
        or AUTHOR_OF_PLAN in writer_names
        or any(
            isinstance(g, SectionGuard) and not find_section(snapshot.body, g.headings, event.source)
            for g in guards
        ),
        teams=teams,
        closers=frozenset(title for title, _ in restricted),
        closer_teams={n: team for n in people.looked_up(closer_names) if (team := scoped.team(n))},
        visibility=visibility,
        sections=sections,
        writer_teams={n: team for n in people.looked_up(writer_names) if (team := scoped.team(n))},
    )


def comments_still_needed(policy: Policy, event: Event, snapshot: IssueSnapshot, asked: Needs) -> Needs:
    """What to read next, once `asked` is read: the comments (and who wrote their sections), when a
    guard that asks who wrote its section finds one only in the issue's own text, by someone it
    does not allow; a comment may still hold one that counts. Nothing, when that text settles it
    (the comments are read only when they could change the verdict)."""
    if not asked.sections or asked.comments:
        return Needs()
    scoped = policy.for_issue(event.source, event.issue.scope, snapshot.request_type)
    context = Context(scoped, event, snapshot, dt.datetime.min)  # no rule here reads the time
    if all(people.section_counts(context, guard)[0] for guard in asked.sections):
        return Needs()
    return Needs(comments=True, sections=asked.sections, writer_teams=asked.writer_teams)

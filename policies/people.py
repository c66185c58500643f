"""Who did it: the people a policy names, and the labels only some of them may add (S2.2, S1.4).

Pure, like the rest of the engine: whether the event's actor belongs to a team of the policy is
looked up by the connector (for the teams `teams_to_look_up` names) and handed in as
`IssueSnapshot.actor_teams`; the built-ins are read from the issue itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

from config import i18n
from config.i18n import marked
from config.schema import (
    ASSIGNEE,
    AUTHOR_OF_PLAN,
    BUILT_IN_PEOPLE,
    REPORTER,
    TEAM_MEMBERS,
    DelayNotice,
    LabelGuard,
    Mode,
    Policy,
    RestrictedLabel,
    SectionGuard,
)
from config.templates import Markdown
from policies.context import Context, Outcome, outcome
from policies.models import Actor, ChangeLabels, Comment, Event, EventKind, IssueSnapshot, PostComment
from policies.render import render
from policies.router import Router
from policies.sla import PlanWritten, SectionWritten
from policies.text import find_section

router = Router()

# How comments name the built-in people (in the policy's locale, `config.i18n`); a team of
# `teams:` is named by its `title`, else as the policy names it.
_SHOWN_AS = {
    REPORTER: marked("the reporter"),
    ASSIGNEE: marked("the assignee"),
    AUTHOR_OF_PLAN: marked("the plan's author"),
    TEAM_MEMBERS: marked("the service team"),
}


# --- who is who -----------------------------------------------------------------------------


def subject(event: Event) -> Actor:
    """Whose membership the connector looks up: a comment's author, or whoever made the change."""
    return event.comment.author if event.comment is not None else event.actor


def same_person(person: Actor, login: str, account_id: str = "") -> bool:
    """By account id where both are known (Jira Cloud shows names inconsistently), else by login."""
    if person.id and account_id:
        return person.id == account_id
    return bool(login) and person.login.casefold() == login.casefold()


def body_section_edited(event: Event, snapshot: IssueSnapshot, headings: Sequence[str]) -> bool:
    """Whether this event is an edit of the issue's own text that changes its section of `headings`."""
    if EventKind.EDITED not in event.kinds or event.body_before is None:
        return False
    before = find_section(event.body_before, headings, event.source)
    return before != find_section(snapshot.body, headings, event.source)


def body_plan_edited(ctx: Context) -> bool:
    """Whether this event is an edit of the issue's own text that changes its plan section."""
    return body_section_edited(ctx.event, ctx.snapshot, ctx.policy.workflow.plan_headings)


def body_section_writer(ctx: Context, headings: Sequence[str], *, at_opening: bool = False) -> Actor | None:
    """Who this event makes the writer of the section of `headings` in the issue's own text, for
    the ledger: the editor, or nobody (`Actor("")`) when the edit takes it out; with `at_opening`,
    also whoever opens an issue with it; `None` when the event does not change it."""
    event = ctx.event
    if at_opening and EventKind.OPENED in event.kinds and event.moved_from is None:
        return event.actor if find_section(ctx.snapshot.body, headings, event.source) else None
    if not body_section_edited(event, ctx.snapshot, headings):
        return None
    kept = find_section(ctx.snapshot.body, headings, event.source)
    return event.actor if kept else Actor("")


Written = tuple[dt.datetime, Actor]
"""A ledger record of who wrote a section into the issue's own text (`PlanWritten`,
`SectionWritten`), and when: the latest counts, whatever order late deliveries recorded them in."""


def _body_section_author(
    event: Event, snapshot: IssueSnapshot, headings: Sequence[str], written: Sequence[Written], unknown: Actor
) -> Actor | None:
    """Who wrote the section of `headings` in the issue's own text, `None` when it has none:
    whoever last edited it in (this event, else the latest of the ledger's records `written`),
    else `unknown`. A Jira comment event does not show the description: there the ledger's
    record of it stands."""
    has_section = bool(find_section(snapshot.body, headings, event.source))
    if body_section_edited(event, snapshot, headings):
        return event.actor if has_section else None
    unseen = event.source == "jira" and event.kinds == {EventKind.COMMENTED}
    latest = max(written, key=lambda record: record[0])[1] if written else None
    if latest is not None and latest.login and (has_section or unseen):
        return latest
    return unknown if has_section else None


def section_authors(
    event: Event,
    snapshot: IssueSnapshot,
    headings: Sequence[str],
    written: Sequence[Written],
    unknown: Actor,
) -> list[Actor]:
    """Who wrote each text (the issue's own, then each comment, the event's included) with a
    section of `headings`, in that order; `written`: the ledger's records of who wrote it into the
    issue's own text, `unknown` who did when they say nothing."""
    comments: list[Comment] = list(snapshot.comments)
    if event.comment is not None and all(c.id != event.comment.id for c in comments):
        comments.append(event.comment)
    in_body = _body_section_author(event, snapshot, headings, written, unknown)
    return [
        *([in_body] if in_body else []),
        *(c.author for c in comments if find_section(c.body, headings, event.source)),
    ]


def author_of_plan(ctx: Context) -> Actor | None:
    """Who wrote the plan in force: the author of the last text (body or comment) with a plan
    section; the issue's own text is the reporter's unless the ledger saw someone edit the plan in."""
    snapshot = ctx.snapshot
    written = [
        (e.at, Actor(e.author, id=e.author_id)) for e in snapshot.timeline if isinstance(e, PlanWritten)
    ]
    reporter = Actor(snapshot.reporter, id=snapshot.reporter_id)
    authors = section_authors(ctx.event, snapshot, ctx.policy.workflow.plan_headings, written, reporter)
    return authors[-1] if authors else None


def is_one_of(ctx: Context, person: Actor, names: Iterable[str], teams: frozenset[str] | None = None) -> bool:
    """Whether `person` is one of the people `names` stand for; `teams`: the policy teams the
    connector found `person` in (by default the event's `subject`'s, `actor_teams`)."""
    snapshot = ctx.snapshot
    teams = snapshot.actor_teams if teams is None else teams
    for name in names:
        if name == REPORTER and same_person(person, snapshot.reporter, snapshot.reporter_id):
            return True
        if name == ASSIGNEE and any(same_person(person, login) for login in snapshot.assignees):
            return True
        if name == AUTHOR_OF_PLAN:
            author = author_of_plan(ctx)
            if author is not None and same_person(person, author.login, author.id):
                return True
        if name in teams:
            return True
    return False


def allowed(
    ctx: Context,
    person: Actor,
    by: Sequence[str],
    not_by: Sequence[str],
    teams: frozenset[str] | None = None,
) -> bool:
    """In `by` (when it names anyone) and not in `not_by`."""
    return (not by or is_one_of(ctx, person, by, teams)) and not is_one_of(ctx, person, not_by, teams)


def tell_who_may(
    ctx: Context, by: Sequence[str], not_by: Sequence[str], sentences: tuple[str, str, str], **values: str
) -> str:
    """Of `sentences` (for `by` and `not_by` both named, `by` alone, `not_by` alone), the one that
    fits, in the policy's locale, with the people of `by` and `not_by` named in it."""
    locale = ctx.policy.locale
    names = {"by": i18n.listing(shown(ctx, by), locale), "not_by": i18n.listing(shown(ctx, not_by), locale)}
    sentence = sentences[0] if by and not_by else sentences[1] if by else sentences[2]
    return ctx.tell(sentence, **values, **names)


def shown(ctx: Context, names: Iterable[str]) -> list[Markdown]:
    """People's names as comments show them: a team's `title` in the locale, a built-in's name
    in the locale, else the name as the policy writes it."""
    found = []
    for name in names:
        team = ctx.policy.teams.get(name)
        if team is not None and team.title is not None:
            found.append(ctx.text(team.title))
        elif name in _SHOWN_AS:
            found.append(Markdown(ctx.tell(_SHOWN_AS[name])))
        else:
            found.append(Markdown(name))
    return found


def is_responder(ctx: Context, person: Actor) -> bool:
    """Whether a public comment of `person` answers the customer (S1.4): the policy's responders,
    or, when it names none, anyone (the clock leaves out the reporter and bots itself)."""
    responders = ctx.policy.sla.responders
    return not responders or is_one_of(ctx, person, responders)


def looked_up(names: Iterable[str]) -> frozenset[str]:
    """The names whose membership a connector looks up: teams, and the service team."""
    return frozenset(n for n in names if n not in BUILT_IN_PEOPLE or n == TEAM_MEMBERS)


# --- labels only some people may add --------------------------------------------------------


LabelRestriction = LabelGuard | RestrictedLabel
"""A rule that says who may add a label: a label guard's `by`/`not_by`, or `restricted_labels`."""


def guarded_labels(policy: Policy) -> dict[str, LabelRestriction]:
    """Each label a guard (`by`/`not_by`) or `restricted_labels` restricts, with the rule cited
    (of a label several guards restrict, the first)."""
    found: dict[str, LabelRestriction] = {}
    for transition in policy.workflow.transitions:
        for guard in transition.guards:
            if isinstance(guard, LabelGuard) and (guard.by or guard.not_by):
                found.setdefault(guard.label, guard)
    for restricted in policy.restricted_labels:
        found.setdefault(restricted.label, restricted)
    return found


def waived_by(ctx: Context, label: str | None) -> bool:
    """Whether the issue carries `label`, a guard's `unless_label`, and it counts (`vouched_for`)."""
    return label is not None and label in ctx.snapshot.labels and vouched_for(ctx, label)


def labels_added(event: Event) -> frozenset[str]:
    """The labels this event's actor added: those of a change of labels, and those an issue is
    created with (a Jira create screen, a clone; a GitHub issue opened with labels), but not those
    an issue brings along when it is moved or transferred here."""
    if EventKind.OPENED in event.kinds and event.moved_from is None:
        return event.labels_after
    if EventKind.LABELS_CHANGED in event.kinds:
        return event.labels_after - event.labels_before
    return frozenset()


def _added_guarded(policy: Policy, event: Event) -> list[LabelRestriction]:
    guarded = guarded_labels(policy)
    return [guarded[label] for label in sorted(labels_added(event)) if label in guarded]


def vouched_for(ctx: Context, label: str) -> bool:
    """Whether a label a guard restricts counts: not added now by someone who may not, nor shown
    by a delivery that is older than sopguard's removal of it (labels added at once on GitHub
    arrive as several deliveries, each showing them all)."""
    if label in refused_labels(ctx):
        return False
    known = ctx.snapshot.known_labels
    return known is None or label in known or label in labels_added(ctx.event)


def refused_labels(ctx: Context) -> frozenset[str]:
    """The restricted labels this event added that its actor may not add: they satisfy no guard,
    not even of a move made in the same change (a Jira transition screen with the Labels field)."""
    return frozenset(
        guard.label
        for guard in _added_guarded(ctx.policy, ctx.event)
        if ctx.mode(guard) != Mode.OFF and not allowed(ctx, ctx.event.actor, guard.by, guard.not_by)
    )


def teams_to_look_up(policy: Policy, event: Event, snapshot: IssueSnapshot) -> frozenset[str]:
    """The teams the rules will ask about for this event, so that the connector looks up no other.

    A comment's author is looked up only where it could be the first response: a comment not
    known to be an internal note, by neither a bot nor the reporter.
    """
    names: list[str] = []
    for guard in _added_guarded(policy, event):
        names.extend([*guard.by, *guard.not_by])
    comment = event.comment
    if (
        comment is not None
        and EventKind.COMMENTED in event.kinds
        and comment.public is not False
        and may_answer_the_customer(comment, snapshot)
    ):
        names.extend(policy.sla.responders)
    if (rule := _delay_notice_in(policy, event)) is not None:
        names.extend([*rule.by, *rule.not_by])
    return looked_up(names)


def may_answer_the_customer(comment: Comment, snapshot: IssueSnapshot) -> bool:
    """Whether `comment`, if public, could be a response to the customer: by neither a bot nor
    the reporter."""
    author = comment.author
    return not author.is_bot and not same_person(author, snapshot.reporter, snapshot.reporter_id)


def _delay_notice_in(policy: Policy, event: Event) -> DelayNotice | None:
    """The policy's delay notice when the event's comment has its section: its author is judged."""
    rule, comment = policy.sla.delay_notice, event.comment
    if rule is None or comment is None or EventKind.COMMENTED not in event.kinds:
        return None
    return rule if find_section(comment.body, rule.headings, event.source) else None


def needs_plan_author(policy: Policy, event: Event) -> bool:
    notice = _delay_notice_in(policy, event)
    named = [*notice.by, *notice.not_by] if notice else []
    return AUTHOR_OF_PLAN in named or any(
        AUTHOR_OF_PLAN in (*g.by, *g.not_by) for g in _added_guarded(policy, event)
    )


@router.register(EventKind.LABELS_CHANGED, EventKind.OPENED)
def check_labels_added(ctx: Context) -> Iterator[Outcome]:
    """A restricted label added by someone not allowed to is removed (enforce) and explained."""
    person = ctx.event.actor
    for guard in _added_guarded(ctx.policy, ctx.event):
        mode = ctx.mode(guard)
        if mode == Mode.OFF:
            continue
        if allowed(ctx, person, guard.by, guard.not_by):
            yield outcome(
                guard,
                mode,
                passed=True,
                reasons=[ctx.tell("%(label)s added by %(login)s", label=guard.label, login=person.login)],
            )
            continue
        yield outcome(
            guard,
            mode,
            passed=False,
            reasons=[ctx.tell("%(login)s may not add %(label)s", login=person.login, label=guard.label)],
            actions=_refuse(ctx, guard, undo=mode == Mode.ENFORCE),
        )


def _refuse(ctx: Context, guard: LabelRestriction, *, undo: bool) -> list[ChangeLabels | PostComment]:
    variables = {
        "undone": undo,
        "actor": ctx.event.actor.login,
        "label": guard.label,
        "by": shown(ctx, guard.by),
        "not_by": shown(ctx, guard.not_by),
        "requirement": ctx.text(guard.requirement),
    }
    marker = f"label-refused:{guard.label}:{ctx.event.delivery_id}"
    body = render(ctx.policy, "label-refused", guard, **variables)
    kept = render(ctx.policy, "label-refused", guard, **{**variables, "undone": False}) if undo else ""
    comment = PostComment(guard.id, marker, body, body_if_not_undone=kept, kind="label-refused")
    if not undo:
        return [comment]
    return [ChangeLabels(guard.id, remove=frozenset({guard.label})), comment]


# --- sections only some people may write ----------------------------------------------------


def person_key(person: Actor) -> str:
    """How `IssueSnapshot.writer_teams` names a person: by account id where known, else by login."""
    return f"id:{person.id}" if person.id else f"login:{person.login.casefold()}"


def restricted_sections(policy: Policy) -> list[SectionGuard]:
    """The section guards that say who may write their section (`by`/`not_by`), each once."""
    found: dict[str, SectionGuard] = {}
    for transition in policy.workflow.transitions:
        for guard in transition.guards:
            if isinstance(guard, SectionGuard) and guard.restricted:
                found.setdefault(guard.id, guard)
    return list(found.values())


UNKNOWN_WRITER = Actor("", id="(not seen written)")
"""The writer of a section of the issue's own text that sopguard did not see written: there when
it first met the issue (adopted, or followed before it recorded who wrote the section). Told
apart by identity: an anonymous author (Jira's, `Actor("")`) is someone, not this."""


def section_writers(event: Event, snapshot: IssueSnapshot, guard: SectionGuard) -> list[Actor]:
    """Who wrote each section of the guard the issue has, each person once (as GitHub's
    association shows them, where one of their texts has it)."""
    written = [
        (e.at, Actor(e.author, id=e.author_id, association=e.association))
        for e in snapshot.timeline
        if isinstance(e, SectionWritten) and e.guard == guard.id
    ]
    unique: dict[str, Actor] = {}
    for person in section_authors(event, snapshot, guard.headings, written, UNKNOWN_WRITER):
        key = person_key(person)
        if key not in unique or (person.association and not unique[key].association):
            unique[key] = person
    return list(unique.values())


def _may_write(ctx: Context, guard: SectionGuard, person: Actor) -> bool:
    """Whether the guard allows `person`'s section; one whose writer is unknown counts (quiet
    rather than untrue: nobody can be told they wrote it)."""
    if person is UNKNOWN_WRITER:
        return True
    teams = ctx.snapshot.writer_teams.get(person_key(person), frozenset())
    return allowed(ctx, person, guard.by, guard.not_by, teams)


def _wrongly_written(ctx: Context, guard: SectionGuard, person: Actor) -> str:
    """Why a section does not count: who wrote it and who may."""
    sentences = (
        marked("a %(heading)s section by @%(login)s: only %(by)s may write it, never %(not_by)s"),
        marked("a %(heading)s section by @%(login)s: only %(by)s may write it"),
        marked("a %(heading)s section by @%(login)s, who may not write it: %(not_by)s"),
    )
    login = person.login or ctx.tell("anonymous")
    return tell_who_may(ctx, guard.by, guard.not_by, sentences, heading=guard.headings[0], login=login)


def section_counts(ctx: Context, guard: SectionGuard) -> tuple[bool, tuple[str, ...]]:
    """Whether the issue has the guard's section written by someone it allows (`by`/`not_by`)
    and, when not, who wrote the sections it has."""
    writers = section_writers(ctx.event, ctx.snapshot, guard)
    if any(_may_write(ctx, guard, person) for person in writers):
        return True, ()
    return False, tuple(_wrongly_written(ctx, guard, person) for person in writers)


def writers_to_look_up(event: Event, snapshot: IssueSnapshot, guard: SectionGuard) -> list[Actor]:
    """The writers of the guard's sections whose teams the connector looks up (known ones)."""
    return [person for person in section_writers(event, snapshot, guard) if person is not UNKNOWN_WRITER]

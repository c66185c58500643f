"""Who did it: the people a policy names, and the labels only some of them may add (S2.2, S1.4).

Pure, like the rest of the engine: whether the event's actor belongs to a team of the policy is
looked up by the connector (for the teams `teams_to_look_up` names) and handed in as
`IssueSnapshot.actor_teams`; the built-ins are read from the issue itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from config.schema import (
    ASSIGNEE,
    AUTHOR_OF_PLAN,
    BUILT_IN_PEOPLE,
    REPORTER,
    TEAM_MEMBERS,
    LabelGuard,
    Mode,
    Policy,
)
from config.templates import Markdown
from policies.context import Context, Outcome, outcome
from policies.models import Actor, ChangeLabels, Comment, Event, EventKind, IssueSnapshot, PostComment
from policies.render import render
from policies.router import Router
from policies.text import find_section

router = Router()


# --- who is who -----------------------------------------------------------------------------


def subject(event: Event) -> Actor:
    """Whose membership the connector looks up: a comment's author, or whoever made the change."""
    return event.comment.author if event.comment is not None else event.actor


def same_person(person: Actor, login: str, account_id: str = "") -> bool:
    """By account id where both are known (Jira Cloud shows names inconsistently), else by login."""
    if person.id and account_id:
        return person.id == account_id
    return bool(login) and person.login.casefold() == login.casefold()


def author_of_plan(ctx: Context) -> Actor | None:
    """Who wrote the plan in force: the author of the last text (body or comment) with a plan section."""
    snapshot, event = ctx.snapshot, ctx.event
    texts: list[tuple[Actor, str]] = [(Actor(snapshot.reporter, id=snapshot.reporter_id), snapshot.body)]
    comments: list[Comment] = list(snapshot.comments)
    if event.comment is not None and all(c.id != event.comment.id for c in comments):
        comments.append(event.comment)
    texts.extend((c.author, c.body) for c in comments)
    headings = ctx.policy.workflow.plan_headings
    authors = [who for who, text in texts if find_section(text, headings, event.source)]
    return authors[-1] if authors else None


def is_one_of(ctx: Context, person: Actor, names: Iterable[str]) -> bool:
    """Whether `person` (the event's `subject`) is one of the people `names` stand for."""
    snapshot = ctx.snapshot
    for name in names:
        if name == REPORTER and same_person(person, snapshot.reporter, snapshot.reporter_id):
            return True
        if name == ASSIGNEE and any(same_person(person, login) for login in snapshot.assignees):
            return True
        if name == AUTHOR_OF_PLAN:
            author = author_of_plan(ctx)
            if author is not None and same_person(person, author.login, author.id):
                return True
        if name in snapshot.actor_teams:
            return True
    return False


def allowed(ctx: Context, person: Actor, by: Sequence[str], not_by: Sequence[str]) -> bool:
    """In `by` (when it names anyone) and not in `not_by`."""
    return (not by or is_one_of(ctx, person, by)) and not is_one_of(ctx, person, not_by)


def is_responder(ctx: Context, person: Actor) -> bool:
    """Whether a public comment of `person` answers the customer (S1.4): the policy's responders,
    or, when it names none, anyone (the clock leaves out the reporter and bots itself)."""
    responders = ctx.policy.sla.responders
    return not responders or is_one_of(ctx, person, responders)


def looked_up(names: Iterable[str]) -> frozenset[str]:
    """The names whose membership a connector looks up: teams, and the service team."""
    return frozenset(n for n in names if n not in BUILT_IN_PEOPLE or n == TEAM_MEMBERS)


# --- labels only some people may add --------------------------------------------------------


def guarded_labels(policy: Policy) -> dict[str, LabelGuard]:
    """Each label a guard restricts (`by`/`not_by`), with the first such guard: the one cited."""
    found: dict[str, LabelGuard] = {}
    for transition in policy.workflow.transitions:
        for guard in transition.guards:
            if isinstance(guard, LabelGuard) and (guard.by or guard.not_by):
                found.setdefault(guard.label, guard)
    return found


def _added_guarded(policy: Policy, event: Event) -> list[LabelGuard]:
    if EventKind.LABELS_CHANGED not in event.kinds:
        return []
    guarded = guarded_labels(policy)
    return [guarded[label] for label in sorted(event.labels_after - event.labels_before) if label in guarded]


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
    return looked_up(names)


def may_answer_the_customer(comment: Comment, snapshot: IssueSnapshot) -> bool:
    """Whether `comment`, if public, could be a response to the customer: by neither a bot nor
    the reporter."""
    author = comment.author
    return not author.is_bot and not same_person(author, snapshot.reporter, snapshot.reporter_id)


def needs_plan_author(policy: Policy, event: Event) -> bool:
    return any(AUTHOR_OF_PLAN in (*g.by, *g.not_by) for g in _added_guarded(policy, event))


@router.register(EventKind.LABELS_CHANGED)
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


def _refuse(ctx: Context, guard: LabelGuard, *, undo: bool) -> list[ChangeLabels | PostComment]:
    variables = {
        "undone": undo,
        "actor": ctx.event.actor.login,
        "label": guard.label,
        "by": [Markdown(name) for name in guard.by],
        "not_by": [Markdown(name) for name in guard.not_by],
        "requirement": ctx.text(guard.requirement),
    }
    marker = f"label-refused:{guard.label}:{ctx.event.delivery_id}"
    body = render(ctx.policy, "label-refused", guard, **variables)
    kept = render(ctx.policy, "label-refused", guard, **{**variables, "undone": False}) if undo else ""
    comment = PostComment(guard.id, marker, body, body_if_not_undone=kept, kind="label-refused")
    if not undo:
        return [comment]
    return [ChangeLabels(guard.id, remove=frozenset({guard.label})), comment]

"""S3.1, S4: checklists (preparation, self-check, acceptance), one subtask per item under the
issue; an item can say who may close it."""

from __future__ import annotations

from config.i18n import marked
from config.schema import Checklist, ChecklistItem, Mode
from config.templates import Markdown
from policies import people
from policies.context import Context
from policies.models import Action, CreateSubtasks, PostComment, Subtask
from policies.render import render


def item_titles(ctx: Context, checklist: Checklist) -> list[Markdown]:
    """Subtask titles: `<checklist>: <item>`, which is also how existing items are recognised."""
    prefix = ctx.text(checklist.title)
    return [Markdown(f"{prefix}: {ctx.text(item)}") for item in checklist.items]


def restricted_items(ctx: Context, checklist_id: str) -> list[tuple[Markdown, ChecklistItem]]:
    """The items that say who may close them (`by`/`not_by`), with their titles."""
    checklist = ctx.policy.checklist(checklist_id)
    if checklist is None:
        return []
    return [(t, i) for t, i in zip(item_titles(ctx, checklist), checklist.items, strict=True) if i.restricted]


def _closed_rightly(ctx: Context, item: ChecklistItem, subtask: Subtask) -> bool:
    """Closed by someone the item allows; when the connector could not tell who, it counts (quiet
    rather than untrue: the tracker may not say, as for an account since deleted)."""
    closer = subtask.closed_by
    if not item.restricted or closer is None:
        return True
    return people.allowed(ctx, closer, item.by, item.not_by, subtask.closer_teams)


def _wrongly_closed(ctx: Context, title: str, item: ChecklistItem, subtask: Subtask) -> str:
    """Why a closed item does not count: who closed it and who may."""
    sentences = (
        marked("%(item)s (closed by @%(login)s: only %(by)s may close it, never %(not_by)s)"),
        marked("%(item)s (closed by @%(login)s: only %(by)s may close it)"),
        marked("%(item)s (closed by @%(login)s, who may not: %(not_by)s)"),
    )
    login = subtask.closed_by.login if subtask.closed_by else ""
    return people.tell_who_may(ctx, item.by, item.not_by, sentences, item=title, login=login)


def open_items(ctx: Context, checklist_id: str) -> tuple[str, ...]:
    """Items of the checklist that are not yet done (including items never created), each by its
    title; one closed by someone it does not allow is not done, and says who closed it."""
    checklist = ctx.policy.checklist(checklist_id)
    if checklist is None:
        return ()
    found: list[str] = []
    for title, item in zip(item_titles(ctx, checklist), checklist.items, strict=True):
        closed = [s for s in ctx.snapshot.subtasks if s.title == title and s.done]
        if not closed:
            found.append(title)
        elif not any(_closed_rightly(ctx, item, s) for s in closed):
            found.append(_wrongly_closed(ctx, title, item, closed[0]))
    return tuple(found)


def missing_items(ctx: Context, checklist_id: str) -> tuple[str, ...]:
    """Items of the checklist not under the issue at all (never created, or deleted)."""
    checklist = ctx.policy.checklist(checklist_id)
    if checklist is None:
        return ()
    existing = {s.title for s in ctx.snapshot.subtasks}
    return tuple(title for title in item_titles(ctx, checklist) if title not in existing)


def owed(ctx: Context, checklist_id: str, left: str) -> bool:
    """Whether a guard demands the checklist of the issue. Always, unless the issue was adopted
    past the stage that makes it: an adopted issue none of whose items exist, leaving a stage
    that does not make them (adopted in progress, back from waiting), was never given them, and
    is not blocked for it. Leaving a stage that makes them, it is held to them. An issue that is
    held to a checklist it lacks is given it when its move is undone, whatever the stage."""
    if not ctx.snapshot.adopted:
        return True
    checklist = ctx.policy.checklist(checklist_id)
    made_in = {s.id for s in ctx.policy.workflow.states if checklist_id in s.checklists}
    none_made = checklist is not None and len(missing_items(ctx, checklist_id)) == len(checklist.items)
    return not none_made or left in made_in


def create(ctx: Context, checklist_id: str) -> list[Action]:
    """Create the items not yet under the issue; in `warn` mode only list them in a comment."""
    checklist = ctx.policy.checklist(checklist_id)
    mode = ctx.mode(checklist) if checklist else Mode.OFF
    if checklist is None or mode == Mode.OFF:
        return []
    titles = missing_items(ctx, checklist_id)
    created = mode == Mode.ENFORCE
    body = render(
        ctx.policy,
        "checklist-created",
        checklist,
        checklist=ctx.text(checklist.title),
        item_kind=Markdown("sub-issue" if ctx.event.source == "github" else "sub-task"),
        items=[ctx.text(i) for i in checklist.items],
        created=created,
    )
    comment = PostComment(checklist.id, f"checklist:{checklist.id}", body, kind="checklist-created")
    if not created:
        return [comment]
    labels = (
        frozenset({ctx.policy.trackers.github.checklist_label})
        if ctx.event.source == "github"
        else frozenset()
    )
    # The comment comes after the items, so it is true when it is read. It is planned even when
    # every item is there: a delivery run again after its items were created (a tracker failure
    # postponed it) still owes it; its marker keeps it to one comment per issue.
    return [CreateSubtasks(checklist.id, checklist.id, titles, labels), comment] if titles else [comment]

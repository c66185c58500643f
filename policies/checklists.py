"""S4: acceptance checklists, kept as one subtask per item under the issue."""

from __future__ import annotations

from config.schema import Checklist, Mode
from config.templates import Markdown
from policies.context import Context
from policies.models import Action, CreateSubtasks, PostComment
from policies.render import render


def item_titles(ctx: Context, checklist: Checklist) -> list[Markdown]:
    """Subtask titles: `<checklist>: <item>`, which is also how existing items are recognised."""
    prefix = ctx.text(checklist.title)
    return [Markdown(f"{prefix}: {ctx.text(item)}") for item in checklist.items]


def open_items(ctx: Context, checklist_id: str) -> tuple[str, ...]:
    """Items of the checklist that are not yet done (including items never created)."""
    checklist = ctx.policy.checklist(checklist_id)
    if checklist is None:
        return ()
    done = {s.title for s in ctx.snapshot.subtasks if s.done}
    return tuple(title for title in item_titles(ctx, checklist) if title not in done)


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
    is not blocked for it. Leaving a stage that makes them, it is held to them (and the undo
    makes them)."""
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
    comment = PostComment(checklist.id, f"checklist:{checklist.id}", body)
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

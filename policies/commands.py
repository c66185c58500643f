"""Slash commands in comments (`/approve-plan`, `/accept`, `/reject "reason"`...), in Prow's manner.

A command is a line of its own that starts with `/name`; its arguments follow on the line, a
reason in double quotes. Each is checked against who may give it and when (the policy's
`commands:`), carried out by sopguard (so a label it adds stays), answered with a reaction on
GitHub or a short comment on Jira, and, when refused, with a short comment why. Every command
given is a result in the decision, so the audit log has it with its rule and clause.
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from config.schema import AUTHOR_OF_PLAN, TEAM_MEMBERS, Command, Mode
from config.templates import Markdown
from policies import followup, people, workflow
from policies.context import Context, Outcome, outcome
from policies.models import (
    Action,
    ChangeLabels,
    Comment,
    EventKind,
    MoveToStatus,
    PostComment,
    React,
    RememberState,
    Source,
)
from policies.render import render
from policies.router import Router
from policies.text import own_lines

router = Router()

_LINE = re.compile(r"^/(?P<name>[a-z][a-z0-9-]*)(?:[ \t]+(?P<args>.*))?$")
# A comment edited, as each tracker names the event: GitHub's `issue_comment.edited`, Jira's
# `comment_updated` webhook and the `issue_comment_edited` type of a `jira:issue_updated`.
_JIRA_COMMENT_EDITS = frozenset({"comment_updated", "issue_comment_edited"})


@dataclass(frozen=True)
class Given:
    """A command as written: its name and the words after it (a quoted reason is one word)."""

    name: str
    args: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class Parsed:
    """A command's arguments read as its policy asks, or the problem with them."""

    choice: str = ""
    date: dt.date | None = None
    reason: str = ""
    problem: str = ""


def given(body: str, markup: Source) -> list[Given]:
    """Every command line of a comment, in order, outside its code and quotes (a reply quoting
    `/accept` accepts nothing); quotes that do not close make one plain word list."""
    found = []
    for line in own_lines(body, markup):
        match = _LINE.match(line.strip())
        if match is None:
            continue
        raw = match.group("args") or ""
        try:
            args = tuple(shlex.split(raw))
        except ValueError:
            args = tuple(raw.split())
        found.append(Given(match.group("name"), args, line.strip()))
    return found


def parse(command: Command, args: tuple[str, ...]) -> Parsed:
    """`choices`, then `date`, then `reason`, each when the command asks for it."""
    rest = list(args)
    choice = ""
    if command.choices:
        choice = rest.pop(0) if rest else ""
        if choice not in command.choices:
            return Parsed(problem="usage")
    day = None
    if command.date:
        try:
            day = dt.date.fromisoformat(rest.pop(0) if rest else "")
        except ValueError:
            return Parsed(problem="usage")
    reason = " ".join(rest).strip()
    if command.reason and not reason:
        return Parsed(problem="usage")
    return Parsed(choice, day, reason)


def usage(command: Command) -> str:
    parts = [f"/{command.name}"]
    if command.choices:
        parts.append("|".join(command.choices))
    if command.date:
        parts.append("YYYY-MM-DD")
    if command.reason:
        parts.append('"reason"')
    return " ".join(parts)


def commands_in(ctx: Context) -> list[tuple[Command, Given]]:
    """The policy's commands a new comment gives. An edited comment gives none: its author is who
    wrote it first, while the edit may be anyone's (a Jira admin, a GitHub maintainer)."""
    event = ctx.event
    comment = event.comment
    if comment is None or EventKind.COMMENTED not in event.kinds or _is_comment_edit(event.name):
        return []
    found = []
    for line in given(comment.body, event.source):
        command = ctx.policy.command(line.name)
        if command is not None:
            found.append((command, line))
    return found


def _is_comment_edit(event_name: str) -> bool:
    return event_name.endswith(".edited") or event_name in _JIRA_COMMENT_EDITS


def teams_to_look_up(ctx: Context) -> frozenset[str]:
    """The teams the commands given name; on Jira also `team-members` when any is given: whether
    its answer is public follows from whether its author is a customer (`policies.visibility`)."""
    given = commands_in(ctx)
    answered = [TEAM_MEMBERS] if given and ctx.event.source == "jira" else []
    return people.looked_up(
        [*answered, *(name for command, _ in given for name in (*command.by, *command.not_by))]
    )


def need_plan_author(ctx: Context) -> bool:
    return any(AUTHOR_OF_PLAN in (*command.by, *command.not_by) for command, _ in commands_in(ctx))


def delay_given(ctx: Context, comment: Comment) -> followup.DelayNotice | None:
    """The delay notice of a delay command its author may give, well written (S3.3), whether it
    counts or not; `None` when the comment gives none."""
    for command, line in commands_in(ctx):
        parsed = parse(command, line.args)
        if command.delay_notice and not parsed.problem and _problem(ctx, command, comment) == "":
            return followup.check_notice(ctx, comment, parsed.date, parsed.reason)
    return None


def _problem(ctx: Context, command: Command, comment: Comment) -> str:
    """`not-allowed`, `not-now` (not in one of its stages), or empty when it may be given."""
    if not people.allowed(ctx, comment.author, command.by, command.not_by):
        return "not-allowed"
    state = _current_state(ctx)
    closed = ctx.policy.trackers.github.closed_states
    if (command.from_ and state not in command.from_) or (not command.from_ and state in closed):
        return "not-now"
    return ""


def _current_state(ctx: Context) -> str | None:
    """The stage the issue is in as the tracker shows it, else as the ledger last knew it."""
    snapshot, policy = ctx.snapshot, ctx.policy
    if ctx.event.source == "jira":
        return workflow.jira_state(policy, snapshot.status) or snapshot.last_state
    if not snapshot.is_open:
        return policy.trackers.github.closed_states[0]
    present = workflow.label_states(policy, snapshot.labels)
    return present[0] if len(present) == 1 else snapshot.last_state


@router.register(EventKind.COMMENTED)
def run_commands(ctx: Context) -> Iterator[Outcome]:
    comment = ctx.event.comment
    for command, line in commands_in(ctx):
        mode = ctx.mode(command)
        if mode == Mode.OFF or comment is None:
            continue
        parsed = parse(command, line.args)
        problem = _problem(ctx, command, comment) or parsed.problem
        notice = (
            followup.check_notice(ctx, comment, parsed.date, parsed.reason)
            if command.delay_notice and not problem
            else None
        )
        if notice is not None and not notice.valid:
            refusal = followup.refuse_notice(ctx, command, notice, comment)
            reason = followup.refusal_reason(ctx, notice)
            yield outcome(command, mode, passed=False, reasons=[reason], actions=[refusal])
            continue
        if problem:
            actions = [_answer(ctx, command, problem)]
            reason = _refusal(ctx, command, problem, comment)
            yield outcome(command, mode, passed=False, reasons=[reason], actions=actions)
            continue
        if mode != Mode.ENFORCE:
            given_only = ctx.tell("/%(command)s given (warn mode: not carried out)", command=command.name)
            yield outcome(command, mode, passed=True, reasons=[given_only])
            continue
        yield outcome(
            command,
            mode,
            passed=True,
            reasons=[_what(ctx, command, parsed, comment)],
            actions=[*_effects(ctx, command, parsed), _acknowledge(ctx, command, comment)],
        )


def _refusal(ctx: Context, command: Command, problem: str, comment: Comment) -> str:
    """The audit reason of a refused command, in the policy's locale."""
    if problem == "not-allowed":
        return ctx.tell(
            "/%(command)s refused: %(login)s may not give it",
            command=command.name,
            login=comment.author.login,
        )
    if problem == "not-now":
        return ctx.tell("/%(command)s refused: not in one of its stages", command=command.name)
    return ctx.tell(
        "/%(command)s refused: not written as %(usage)s", command=command.name, usage=usage(command)
    )


def _what(ctx: Context, command: Command, parsed: Parsed, comment: Comment) -> str:
    details = [parsed.choice, parsed.date.isoformat() if parsed.date else "", parsed.reason]
    shown = " ".join(d for d in details if d)
    login = comment.author.login
    if shown:
        return ctx.tell(
            "/%(command)s by %(login)s: %(details)s", command=command.name, login=login, details=shown
        )
    return ctx.tell("/%(command)s by %(login)s", command=command.name, login=login)


def _effects(ctx: Context, command: Command, parsed: Parsed) -> list[Action]:
    labels = ctx.snapshot.labels
    add = frozenset(label.replace("{choice}", parsed.choice) for label in command.add_labels) - labels
    remove = frozenset(command.remove_labels) & labels - add
    actions: list[Action] = []
    if add or remove:
        actions.append(ChangeLabels(command.id, add=add, remove=remove))
    if command.to is not None:
        actions.extend(_move_to(ctx, command, command.to))
    return actions


def _move_to(ctx: Context, command: Command, target: str) -> list[Action]:
    if ctx.event.source == "jira":
        names = ctx.policy.trackers.jira.statuses.get(target, [])
        moves: list[Action] = [MoveToStatus(command.id, names[0])] if names else []
        return [*moves, RememberState(command.id, target)]
    return [*workflow.move_into(ctx, command.id, target, restoring=False), RememberState(command.id, target)]


def _acknowledge(ctx: Context, command: Command, comment: Comment) -> Action:
    """A reaction where the tracker has them (GitHub), else one short comment."""
    if ctx.event.source == "github" and comment.id:
        return React(command.id, comment.id, "+1")
    return _answer(ctx, command, "")


def _answer(ctx: Context, command: Command, problem: str) -> PostComment:
    policy = ctx.policy
    states = [workflow.state_title(ctx, state) for state in command.from_]
    body = render(
        policy,
        "command-answer",
        command,
        command=Markdown(command.name),
        actor=ctx.event.comment.author.login if ctx.event.comment else ctx.event.actor.login,
        problem=problem,
        by=people.shown(ctx, command.by),
        not_by=people.shown(ctx, command.not_by),
        states=states,
        usage=Markdown(usage(command)),
    )
    comment_id = ctx.event.comment.id if ctx.event.comment else ""
    return PostComment(
        command.id,
        f"command:{command.name}:{comment_id or ctx.event.delivery_id}",
        body,
        kind="command-answer",
    )

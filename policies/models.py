"""Tracker-neutral, immutable values that flow through the engine.

Receivers turn a webhook delivery into an `Event` and an `IssueSnapshot`; the engine turns them into
a `Decision`; connectors apply the decision's actions. Nothing here knows about HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

from config.schema import Mode
from policies.sla import TimelineEvent

Source = Literal["github", "jira"]

EMPTY_FIELDS: Mapping[str, str] = MappingProxyType({})


class EventKind(StrEnum):
    """What happened to the issue, as far as the SOP cares."""

    OPENED = "opened"
    EDITED = "edited"
    LABELS_CHANGED = "labels_changed"
    STATUS_CHANGED = "status_changed"
    ASSIGNEE_CHANGED = "assignee_changed"
    PRIORITY_CHANGED = "priority_changed"
    COMMENTED = "commented"
    # The issue arrived under a new name (a GitHub transfer into this repository, a Jira issue moved
    # to another project): followed on under the new name, in the state it is in, never undone.
    MOVED = "moved"
    # The issue is gone from here (deleted, or transferred to another repository): no longer followed.
    REMOVED = "removed"
    OTHER = "other"


@dataclass(frozen=True)
class IssueRef:
    """Where an issue lives: `scope` is `owner/name` on GitHub or the project key on Jira."""

    source: Source
    scope: str
    key: str
    id: str = ""
    url: str = ""

    def __str__(self) -> str:
        if self.source == "github":
            return f"{self.scope}#{self.key}"
        return self.key


@dataclass(frozen=True)
class Actor:
    """A person or app. `association`: GitHub's `author_association` where the delivery shows it."""

    login: str
    is_bot: bool = False
    id: str = ""
    association: str = ""


@dataclass(frozen=True)
class Comment:
    """`public` is false for Jira internal notes, `None` where the delivery does not say (a Jira
    Data Center comment): read it through `IssueSnapshot.is_public`."""

    author: Actor
    body: str
    id: str = ""
    public: bool | None = True
    at: dt.datetime | None = None


@dataclass(frozen=True)
class Subtask:
    """A child issue (GitHub sub-issue, Jira sub-task); checklist items are recognised by title.

    `closed_by`: who closed it, read by the connector only for items that say who may
    (`policies.needs.Needs.closers`), with the policy teams they belong to in `closer_teams`.
    """

    title: str
    done: bool
    key: str = ""
    closed_by: Actor | None = None
    closer_teams: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Event:
    """One change to one issue; `kinds` says what changed (a Jira update can change several things).

    `status_before`/`status_after` are the tracker's own status words (a Jira status name, or
    GitHub's `open`/`closed`); the engine maps them, and the labels, onto SOP states.
    """

    source: Source
    kinds: frozenset[EventKind]
    delivery_id: str
    actor: Actor
    issue: IssueRef
    name: str = ""
    status_before: str | None = None
    status_after: str | None = None
    labels_before: frozenset[str] = frozenset()
    labels_after: frozenset[str] = frozenset()
    priority_before: str | None = None
    priority_after: str | None = None
    comment: Comment | None = None
    by_service: bool = False
    at: dt.datetime | None = None
    # The text an edit replaced (the issue's body, or the edited comment's), where the delivery says.
    body_before: str | None = None
    # The issue's earlier name (MOVED) or its new one (REMOVED by a transfer), when the tracker says.
    moved_from: IssueRef | None = None
    moved_to: IssueRef | None = None


@dataclass(frozen=True)
class Change:
    """One entry of a tracker's own history of an issue: a status change (Jira), a label added or
    removed, or the issue closed or reopened (GitHub)."""

    at: dt.datetime
    kind: Literal["status", "labeled", "unlabeled", "closed", "reopened"]
    value: str = ""


@dataclass(frozen=True)
class History:
    """What the tracker recorded of an issue before sopguard met it: its changes and its comments."""

    changes: tuple[Change, ...] = ()
    comments: tuple[Comment, ...] = ()


@dataclass(frozen=True)
class IssueSnapshot:
    """The issue as it stands after the event, plus what the service remembers of it.

    `fields` holds the tracker-side values keyed as the policy addresses them: issue-form headings
    on GitHub, field ids and names on Jira. `last_state` and `manual_priority` come from the
    service's own records, so the engine can see a transition that arrives in two label events.
    """

    ref: IssueRef
    title: str = ""
    is_open: bool = True
    status: str | None = None
    labels: frozenset[str] = frozenset()
    assignees: tuple[str, ...] = ()
    reporter: str = ""
    reporter_id: str = ""
    priority: str | None = None
    fields: Mapping[str, str] = field(default_factory=lambda: EMPTY_FIELDS)
    body: str = ""
    comments: tuple[Comment, ...] = ()
    subtasks: tuple[Subtask, ...] = ()
    created_at: dt.datetime | None = None
    # The instant of the issue as the delivery shows it (GitHub `updated_at`, Jira's event time):
    # a delivery older than what the ledger knows is judged as history.
    updated_at: dt.datetime | None = None
    last_state: str | None = None
    manual_priority: str | None = None
    is_subtask: bool = False
    # The policy teams the event's actor (for a comment: its author) belongs to, as the connector
    # looked them up for the teams `policies.needs` named; the engine reads nothing else of it.
    actor_teams: frozenset[str] = frozenset()
    # The policy teams of the people who wrote a section a guard asks who wrote (`SectionGuard.by`),
    # by `policies.people.person_key`, as the connector looked them up for `Needs.writers`.
    writer_teams: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # The issue's SLA timeline as the ledger has it before this event: the receipt reads the same
    # clocks from it as the sweep does, and the lifecycle finds where a pause came from.
    timeline: tuple[TimelineEvent, ...] = ()
    issue_type: str = ""  # GitHub's issue type, Jira's issue type name
    # The ledger has no record of the issue: a delivery other than its opening adopts it.
    first_seen: bool = False
    adopted: bool = False  # sopguard met the issue mid-life and adopted it (kept by the ledger)
    history: History | None = None  # read for a first-seen issue; None when not read or unreadable
    # Whether the customer reads each comment whose delivery did not say (`Comment.public` is
    # `None`), by comment id, as the connector found out for `Needs.visibility`.
    visibility: Mapping[str, bool] = field(default_factory=dict)

    def is_public(self, comment: Comment) -> bool:
        """Whether the customer reads `comment`: as its delivery says, else as the connector found
        out. One nobody found out about counts as internal: it is no answer to the customer (S1.4)
        unless they surely read it."""
        if comment.public is not None:
            return comment.public
        return self.visibility.get(comment.id, False)

    # Jira Service Management: the request's type (by name) and its customer organizations.
    request_type: str = ""
    organizations: tuple[str, ...] = ()
    # The labels as the service last left them (after its own changes); None: it knows none. A
    # delivery's labels may be older: a label it removed since may still be shown.
    known_labels: frozenset[str] | None = None


class CommentPolicy(StrEnum):
    """What to do when a comment with the same marker is already on the issue."""

    ONCE = "once"  # post unless it is there
    UPSERT = "upsert"  # edit it, or post when it is not there
    UPDATE_ONLY = "update-only"  # edit it; post nothing when it is not there
    NEW = "new"  # the caller already made sure it was never posted (an SLA notice's claim): just post


@dataclass(frozen=True)
class PostComment:
    """A comment identified by a hidden marker, so that it is never posted twice."""

    rule_id: str
    marker: str
    body: str
    on_existing: CommentPolicy = CommentPolicy.ONCE
    # The text to post instead when an earlier action of the same rule failed: the undo did not
    # happen, so the comment must not say it did. Empty: post `body` whatever happened.
    body_if_not_undone: str = ""
    # The template the text comes from (`messages.templates`): who reads it follows from it.
    kind: str = ""
    # Whether the customer reads it too: on a Jira Service Management project a comment that is not
    # public is an internal note (GitHub has no such thing: every comment there is public). Internal
    # unless decided (`policies.visibility`): a comment built outside that decision fails closed.
    public: bool = False


@dataclass(frozen=True)
class React:
    """A reaction on a comment (GitHub's `+1`, `confused`...): the answer to a command."""

    rule_id: str
    comment_id: str
    content: str = "+1"


@dataclass(frozen=True)
class ChangeLabels:
    """Labels to add and remove; a connector applies both in one request where it can."""

    rule_id: str
    add: frozenset[str] = frozenset()
    remove: frozenset[str] = frozenset()

    def applied_to(self, labels: Set[str]) -> frozenset[str]:
        """The labels an issue has once this change is made."""
        return frozenset((set(labels) - self.remove) | self.add)


@dataclass(frozen=True)
class SetPriority:
    """Set the tracker's own priority field (Jira), by the name the policy maps the level to."""

    rule_id: str
    level: str
    name: str


@dataclass(frozen=True)
class MoveToStatus:
    """Put the issue back into (or forward to) a tracker status; on GitHub `open`/`closed`."""

    rule_id: str
    status: str


@dataclass(frozen=True)
class CreateSubtasks:
    """One child issue per title, skipping titles that already exist under the parent."""

    rule_id: str
    checklist: str
    titles: tuple[str, ...]
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class RememberState:
    """Record the issue's SOP state in the service's ledger (not a tracker call).

    `if_undo_fails`: the state the person's change left, recorded only when the rule's undo did not
    happen, so that the ledger says what the tracker shows rather than what was planned.
    """

    rule_id: str
    state: str
    if_undo_fails: bool = False


@dataclass(frozen=True)
class RememberManualPriority:
    """Record that a person chose this priority, so later computations respect it."""

    rule_id: str
    level: str | None


@dataclass(frozen=True)
class StopFollowing:
    """The issue is gone from where the service followed it (`reason` says how): no more sweeps,
    clocks or notices for it under this name (not a tracker call)."""

    rule_id: str
    reason: str


@dataclass(frozen=True)
class Adopt:
    """Record an issue met mid-life as adopted (not a tracker call): its timeline up to now, as
    the tracker's history tells it (or starting now), and the SLA thresholds already crossed, to
    be claimed as said so that no notice announces time before the adoption."""

    rule_id: str
    at: dt.datetime
    beginning: tuple[TimelineEvent, ...]
    claims: tuple[tuple[str, int, str], ...] = ()
    state: str | None = None  # the stage it was adopted in


Action = (
    PostComment
    | React
    | ChangeLabels
    | SetPriority
    | MoveToStatus
    | CreateSubtasks
    | RememberState
    | RememberManualPriority
    | StopFollowing
    | Adopt
)
TRACKER_ACTIONS = (PostComment, React, ChangeLabels, SetPriority, MoveToStatus, CreateSubtasks)


@dataclass(frozen=True)
class RuleResult:
    """One rule considered for one event: whether it held and, if not, what was missing.

    `broken`: the rule could not be applied at all (its comment template failed); it has not
    passed, its reasons say why, and it asked for no actions.
    """

    rule_id: str
    sop: str
    passed: bool
    mode: Mode
    reasons: tuple[str, ...] = ()
    broken: bool = False  # the rule could not be carried out (its comment template failed to render)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = ()
    results: tuple[RuleResult, ...] = ()
    note: str = ""

    @property
    def violations(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def broken(self) -> tuple[RuleResult, ...]:
        """Rules that failed to apply; the runtime applies the other actions, then fails the delivery."""
        return tuple(r for r in self.results if r.broken)

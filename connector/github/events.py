"""GitHub deliveries as engine inputs: an explicit table of handled events, an explicit ignore list."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection
from dataclasses import replace
from typing import Annotated, Any

from pydantic import Field, PlainValidator

from connector.errors import BadPayload, Ignored
from connector.payload import Identifier, Lenient, Name, Time, shape_error, shown, validated
from policies.models import Actor, Comment, Event, EventKind, IssueRef, IssueSnapshot
from policies.text import sections

Payload = dict[str, Any]

# GitHub's own alphabet and lengths (an owner has at most 39 characters, a name 100): a name with a
# NUL or a lone surrogate could not be stored, and a longer one would not fit the inbox's issue key.
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_LARGEST_NUMBER = 2**63 - 1

# (event, action) -> what it means for the SOP
HANDLED: dict[tuple[str, str], EventKind] = {
    ("issues", "opened"): EventKind.OPENED,
    ("issues", "edited"): EventKind.EDITED,
    ("issues", "labeled"): EventKind.LABELS_CHANGED,
    ("issues", "unlabeled"): EventKind.LABELS_CHANGED,
    ("issues", "closed"): EventKind.STATUS_CHANGED,
    ("issues", "reopened"): EventKind.STATUS_CHANGED,
    ("issues", "deleted"): EventKind.REMOVED,
    ("issues", "transferred"): EventKind.REMOVED,  # on the old repository; `opened` on the new one
    ("issues", "assigned"): EventKind.ASSIGNEE_CHANGED,
    ("issues", "unassigned"): EventKind.ASSIGNEE_CHANGED,
    ("issue_comment", "created"): EventKind.COMMENTED,
    ("issue_comment", "edited"): EventKind.COMMENTED,
}

# Events we know and deliberately do nothing with; anything else is reported as unknown.
IGNORED_EVENTS = frozenset(
    {
        "ping",
        "installation",
        "installation_repositories",
        "installation_target",
        "github_app_authorization",
        "sub_issues",
        "label",
        "milestone",
        "push",
        "pull_request",
        "check_suite",
        "check_run",
        "deployment",
        "deployment_status",
        "status",
        "meta",
    }
)


KNOWN_EVENTS = IGNORED_EVENTS | {name for name, _ in HANDLED}


def _issue_number(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _LARGEST_NUMBER:
        return value
    raise shape_error("must be a positive integer")


def _repository_name(value: object) -> str:
    if isinstance(value, str) and _REPOSITORY_NAME.fullmatch(value):
        return value
    raise shape_error('must be "owner/name"')


IssueNumber = Annotated[int, PlainValidator(_issue_number)]
RepositoryName = Annotated[str, PlainValidator(_repository_name)]


def classify(event_name: str, payload: Payload) -> EventKind:
    """The kind of a delivery we act on; `Ignored` (with the reason) for the rest."""
    if event_name not in KNOWN_EVENTS:
        raise Ignored(f"unknown GitHub event '{event_name}'")
    action = payload.get("action", "")
    if not isinstance(action, str):  # not printed: a list nested 900 deep does not even print
        raise BadPayload(f"action must be a string, not {shown(action)}")
    kind = HANDLED.get((event_name, action))
    if kind is None:
        what = f"{event_name}.{action}" if action else event_name
        raise Ignored(f"'{what}' does not affect the service procedure")
    if not isinstance(payload.get("issue"), dict) or not isinstance(payload.get("repository"), dict):
        raise BadPayload(f"a '{event_name}' delivery must carry 'issue' and 'repository' objects")
    if isinstance(payload["issue"].get("pull_request"), dict):
        raise Ignored("comments and changes on pull requests are outside the service procedure")
    return kind


class User(Lenient):
    login: Name = ""
    id: Identifier = ""
    type: str | None = None


class Label(Lenient):
    name: str | None = None


class IssueType(Lenient):
    """GitHub's issue type (an organisation's Bug, Task, Feature, ...)."""

    name: str = ""


class Issue(Lenient):
    number: IssueNumber
    id: Identifier = ""
    title: str = ""
    body: str | None = None
    state: str = "open"
    html_url: str = ""
    user: User | None = None
    author_association: str | None = None
    labels: list[Label] = Field(default_factory=list)
    assignees: list[User] = Field(default_factory=list)
    created_at: Time = None
    updated_at: Time = None
    closed_at: Time = None
    type: IssueType | None = None


class Repository(Lenient):
    full_name: RepositoryName


class IssueComment(Lenient):
    id: Identifier = ""
    body: str | None = None
    user: User | None = None
    author_association: str | None = None
    created_at: Time = None
    updated_at: Time = None


class _Before(Lenient):
    # `from` is a Python keyword; the payload's name is kept through the alias.
    before: str | None = Field(default=None, alias="from")


class _OtherIssue(Lenient):
    """The issue at the other end of a transfer."""

    number: IssueNumber
    id: Identifier = ""
    html_url: str = ""


class Changes(Lenient):
    """What an `edited` action replaced (`changes.body.from`), and a transfer's two ends: `new_*`
    on the old repository's `transferred`, `old_*` on the new repository's `opened`."""

    body: _Before | None = None
    new_issue: _OtherIssue | None = None
    new_repository: Repository | None = None
    old_issue: _OtherIssue | None = None
    old_repository: Repository | None = None


class DeliveryBody(Lenient):
    """The parts of an `issues` or `issue_comment` delivery's body the service reads."""

    action: str = ""
    issue: Issue
    repository: Repository
    sender: User | None = None
    comment: IssueComment | None = None
    label: Label | None = None
    changes: Changes | None = None


class _NumberedIssue(Lenient):
    number: IssueNumber


class _Identity(Lenient):
    """Just enough of a delivery to name its issue; the rest is read (and checked) by `to_event`."""

    issue: _NumberedIssue
    repository: Repository


def issue_key(event_name: str, payload: Payload) -> str:
    """`github:owner/name#123`: which issue a delivery is about, to order its deliveries.

    Cheap enough for the receiver to call after `classify` (whose arguments it takes, the event
    name unused); `BadPayload` when it cannot be told.
    """
    identity = validated(_Identity, payload)
    return f"github:{identity.repository.full_name}#{identity.issue.number}"


def actor(user: User | Payload | None, association: str = "") -> Actor:
    """A GitHub account; also read from the API's `raw_data`, hence the plain mapping.

    `association`: the `author_association` GitHub gives with a comment or an issue, for its author.
    """
    if user is None:
        return Actor(login="")
    person = user if isinstance(user, User) else validated(User, user, "user")
    return Actor(
        login=person.login,
        is_bot=person.type == "Bot" or person.login.endswith("[bot]"),
        id=person.id,
        association=association,
    )


def _sender(delivery: DeliveryBody) -> Actor:
    """Who made the change; their association is known when they wrote the comment or the issue."""
    sender = actor(delivery.sender)
    for author, association in (
        (
            delivery.comment.user if delivery.comment else None,
            (delivery.comment.author_association or "") if delivery.comment else "",
        ),
        (delivery.issue.user, delivery.issue.author_association or ""),
    ):
        if author is not None and author.login and author.login == sender.login and association:
            return replace(sender, association=association)
    return sender


def _labels(issue: Issue) -> frozenset[str]:
    return frozenset(label.name for label in issue.labels if label.name is not None)


def _event_time(delivery: DeliveryBody) -> dt.datetime | None:
    issue, comment, action = delivery.issue, delivery.comment, delivery.action
    if comment is not None:
        return comment.updated_at if action == "edited" else comment.created_at
    at = {"opened": issue.created_at, "closed": issue.closed_at}.get(action, issue.updated_at)
    return at or issue.updated_at


def snapshot(payload: Payload) -> IssueSnapshot:
    """The issue as the delivery shows it; nothing is fetched. `BadPayload` if it is malformed."""
    return _snapshot(validated(DeliveryBody, payload))


def _snapshot(delivery: DeliveryBody) -> IssueSnapshot:
    issue = delivery.issue
    body = issue.body or ""
    return IssueSnapshot(
        ref=_issue_ref(delivery),
        title=issue.title,
        is_open=issue.state == "open",
        status=issue.state,
        labels=_labels(issue),
        assignees=tuple(person.login for person in issue.assignees if person.login),
        reporter=issue.user.login if issue.user else "",
        reporter_id=issue.user.id if issue.user else "",
        fields=sections(body, "github"),
        body=body,
        created_at=issue.created_at,
        updated_at=issue.updated_at,
        issue_type=issue.type.name if issue.type else "",
    )


def _issue_ref(delivery: DeliveryBody) -> IssueRef:
    issue = delivery.issue
    return IssueRef(
        source="github",
        scope=delivery.repository.full_name,
        key=str(issue.number),
        id=issue.id,
        url=issue.html_url,
    )


def _label_change(delivery: DeliveryBody) -> tuple[frozenset[str], frozenset[str]]:
    after = _labels(delivery.issue)
    label = (delivery.label.name if delivery.label else None) or ""
    if delivery.action == "labeled":
        return after - {label}, after | {label}
    if delivery.action == "unlabeled":
        return after | {label}, after - {label}
    return after, after


def _other_end(issue: _OtherIssue | None, repository: Repository | None) -> IssueRef | None:
    if issue is None or repository is None:
        return None
    return IssueRef("github", repository.full_name, str(issue.number), issue.id, issue.html_url)


def _transfer(delivery: DeliveryBody) -> tuple[IssueRef | None, IssueRef | None]:
    """Where a transferred issue came from (on its new repository) and went to (on its old one)."""
    changes = delivery.changes or Changes()
    came_from = _other_end(changes.old_issue, changes.old_repository) if delivery.action == "opened" else None
    went_to = (
        _other_end(changes.new_issue, changes.new_repository) if delivery.action == "transferred" else None
    )
    return came_from, went_to


def _status_change(action: str) -> tuple[str | None, str | None]:
    if action == "closed":
        return "open", "closed"
    if action == "reopened":
        return "closed", "open"
    return None, None


def to_event(
    event_name: str, delivery_id: str, payload: Payload, service_logins: Collection[str] = ()
) -> tuple[Event, IssueSnapshot]:
    """Normalise one delivery; raises `Ignored` or `BadPayload` (naming the flaw), nothing else."""
    kind = classify(event_name, payload)
    delivery = validated(DeliveryBody, payload)
    moved_from, moved_to = _transfer(delivery)
    if moved_from is not None:
        kind = EventKind.MOVED  # a transfer, not a new request: its state is taken as it is
    sender = _sender(delivery)
    labels_before, labels_after = _label_change(delivery)
    status_before, status_after = _status_change(delivery.action)
    issue_snapshot = _snapshot(delivery)
    event = Event(
        source="github",
        kinds=frozenset({kind}),
        delivery_id=delivery_id,
        actor=sender,
        issue=issue_snapshot.ref,
        name=f"{event_name}.{delivery.action}",
        status_before=status_before,
        status_after=status_after,
        labels_before=labels_before,
        labels_after=labels_after,
        comment=_comment(delivery.comment) if delivery.comment else None,
        by_service=sender.login in service_logins,
        at=delivery.issue.updated_at if moved_from else _event_time(delivery),  # not its creation
        body_before=delivery.changes.body.before if delivery.changes and delivery.changes.body else None,
        moved_from=moved_from,
        moved_to=moved_to,
    )
    return event, issue_snapshot


def _comment(comment: IssueComment) -> Comment:
    author = actor(comment.user, comment.author_association or "")
    return Comment(author=author, body=comment.body or "", id=comment.id, at=comment.created_at)

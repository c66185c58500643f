"""Jira deliveries (Cloud and Data Center) as engine inputs."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import replace
from typing import Any

from connector.errors import BadPayload, Ignored
from policies.models import Actor, Comment, Event, EventKind, IssueRef, IssueSnapshot, Subtask
from policies.text import parse_time

Payload = dict[str, Any]

HANDLED = frozenset({"jira:issue_created", "jira:issue_updated", "comment_created", "comment_updated"})
IGNORED_EVENTS = frozenset(
    {
        "jira:issue_deleted",
        "comment_deleted",
        "issuelink_created",
        "issuelink_deleted",
        "worklog_created",
        "worklog_updated",
        "worklog_deleted",
        "sprint_started",
        "sprint_closed",
        "board_updated",
        "project_created",
        "project_updated",
        "user_created",
        "user_updated",
        "version_released",
    }
)

# Fields Jira changes by itself along with a transition (a close sets the resolution): not an edit.
WORKFLOW_BOOKKEEPING = frozenset(
    {"resolution", "resolutiondate", "rank", "workflow", "timespent", "worklogid"}
)

_ISSUE_ID_IN_URL = re.compile(r"/issue/(?P<id>[^/]+)/comment/")


def classify(payload: Payload) -> str:
    """The `webhookEvent` of a delivery we act on; `Ignored` or `BadPayload` otherwise."""
    name = payload.get("webhookEvent")
    if not isinstance(name, str) or not name:
        raise BadPayload("a Jira delivery must name its 'webhookEvent'")
    if name in IGNORED_EVENTS:
        raise Ignored(f"'{name}' does not affect the service procedure")
    if name not in HANDLED:
        raise Ignored(f"unknown Jira event '{name}'")
    if name.startswith("jira:issue") and not isinstance(payload.get("issue"), dict):
        raise BadPayload(f"a '{name}' delivery must carry an 'issue' object")
    if name.startswith("comment") and not isinstance(payload.get("comment"), dict):
        raise BadPayload(f"a '{name}' delivery must carry a 'comment' object")
    return name


def flatten(value: Any) -> str:
    """A Jira field value as text: options by value, users by name, lists joined."""
    if value is None:
        return ""
    if isinstance(value, dict):
        for key in ("value", "name", "displayName", "key"):
            if key in value:
                return flatten(value[key])
        return ""
    if isinstance(value, list):
        return ", ".join(text for text in (flatten(v) for v in value) if text)
    return str(value)


def actor(user: Payload | None) -> Actor:
    """A person or app; Cloud identifies by `accountId`, Data Center by `name`/`key`."""
    user = user or {}
    ident = str(user.get("accountId") or user.get("name") or user.get("key") or "")
    login = str(user.get("name") or user.get("displayName") or ident)
    return Actor(login=login, is_bot=user.get("accountType") == "app", id=ident)


def issue_ref(payload: Payload) -> IssueRef:
    issue = payload.get("issue")
    if isinstance(issue, dict):
        fields = issue.get("fields") or {}
        project = str((fields.get("project") or {}).get("key", "")) or str(issue.get("key", "")).split("-")[0]
        return IssueRef(
            "jira", project, str(issue.get("key", "")), str(issue.get("id", "")), str(issue.get("self", ""))
        )
    # An old Server-style comment event names its issue only in the comment's URL.
    match = _ISSUE_ID_IN_URL.search(str((payload.get("comment") or {}).get("self", "")))
    issue_id = match.group("id") if match else ""
    return IssueRef("jira", "", issue_id, issue_id)


def _subtask(item: Payload) -> Subtask:
    fields = item.get("fields") or {}
    category = ((fields.get("status") or {}).get("statusCategory") or {}).get("key")
    return Subtask(
        title=str(fields.get("summary", "")), done=category == "done", key=str(item.get("key", ""))
    )


def snapshot(payload: Payload) -> IssueSnapshot:
    """The issue as the delivery shows it; field values keyed by field id (names need the API)."""
    issue = payload.get("issue") or {}
    fields: Payload = issue.get("fields") or {}
    comments = ((fields.get("comment") or {}).get("comments")) or []
    return IssueSnapshot(
        ref=issue_ref(payload),
        title=flatten(fields.get("summary")),
        is_open=((fields.get("status") or {}).get("statusCategory") or {}).get("key") != "done",
        status=flatten(fields.get("status")) or None,
        labels=frozenset(str(label) for label in fields.get("labels") or []),
        assignees=(actor(fields["assignee"]).login,) if fields.get("assignee") else (),
        reporter=actor(fields.get("reporter")).login if fields.get("reporter") else "",
        reporter_id=actor(fields.get("reporter")).id if fields.get("reporter") else "",
        priority=flatten(fields.get("priority")) or None,
        fields={key: flatten(value) for key, value in fields.items()},
        body=flatten(fields.get("description")),
        comments=tuple(_comment(c) for c in comments if isinstance(c, dict)),
        subtasks=tuple(_subtask(s) for s in fields.get("subtasks") or [] if isinstance(s, dict)),
        created_at=parse_time(fields.get("created")),
        is_subtask=bool((fields.get("issuetype") or {}).get("subtask"))
        or isinstance(fields.get("parent"), dict),
    )


def _comment(comment: Payload) -> Comment:
    """Service-management projects mark internal notes with `jsdPublic: false`."""
    return Comment(
        author=actor(comment.get("author")),
        body=flatten(comment.get("body")),
        id=str(comment.get("id", "")),
        public=comment.get("jsdPublic") is not False,
        at=parse_time(comment.get("created")),
    )


def _changes(payload: Payload) -> dict[str, tuple[str | None, str | None]]:
    items = (payload.get("changelog") or {}).get("items") or []
    return {
        str(item.get("field", "")).casefold(): (item.get("fromString"), item.get("toString"))
        for item in items
        if isinstance(item, dict)
    }


def _kinds(name: str, changes: dict[str, tuple[str | None, str | None]], has_comment: bool) -> set[EventKind]:
    if name == "jira:issue_created":
        return {EventKind.OPENED}
    if name.startswith("comment"):
        return {EventKind.COMMENTED}
    kinds = {EventKind.COMMENTED} if has_comment else set()
    specific = {
        "status": EventKind.STATUS_CHANGED,
        "priority": EventKind.PRIORITY_CHANGED,
        "labels": EventKind.LABELS_CHANGED,
        "assignee": EventKind.ASSIGNEE_CHANGED,
    }
    for field in changes:
        if field not in WORKFLOW_BOOKKEEPING:
            kinds.add(specific.get(field, EventKind.EDITED))
    return kinds or {EventKind.OTHER}


def _version(payload: Payload) -> Any:
    """When the issue was as the delivery shows it: the event's time, else the issue's `updated`."""
    issue = payload.get("issue")
    updated = ((issue.get("fields") or {}).get("updated")) if isinstance(issue, dict) else None
    return parse_time(payload.get("timestamp")) or parse_time(updated)


def to_event(
    delivery_id: str, payload: Payload, service_accounts: Collection[str] = ()
) -> tuple[Event, IssueSnapshot]:
    """Normalise one delivery; raises `Ignored` or `BadPayload` for what we do not act on."""
    name = classify(payload)
    changes = _changes(payload)
    comment = payload.get("comment")
    who = actor(payload.get("user") or (comment or {}).get("author"))
    issue_snapshot = replace(snapshot(payload), updated_at=_version(payload))
    status_before, status_after = changes.get("status", (None, None))
    labels_before, labels_after = changes.get("labels", (None, None))
    priority_before, priority_after = changes.get("priority", (None, None))
    event = Event(
        source="jira",
        kinds=frozenset(_kinds(name, changes, isinstance(comment, dict))),
        delivery_id=delivery_id,
        actor=who,
        issue=issue_snapshot.ref,
        name=str(payload.get("issue_event_type_name") or name),
        status_before=status_before,
        status_after=status_after,
        labels_before=frozenset((labels_before or "").split())
        if "labels" in changes
        else issue_snapshot.labels,
        labels_after=frozenset((labels_after or "").split())
        if "labels" in changes
        else issue_snapshot.labels,
        priority_before=priority_before,
        priority_after=priority_after,
        comment=_comment(comment) if isinstance(comment, dict) else None,
        by_service=bool(who.id) and (who.id in service_accounts or who.login in service_accounts),
        at=parse_time(payload.get("timestamp")),
    )
    return event, issue_snapshot

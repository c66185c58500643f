"""GitHub deliveries as engine inputs: an explicit table of handled events, an explicit ignore list."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from typing import Any

from connector.errors import BadPayload, Ignored
from policies.models import Actor, Comment, Event, EventKind, IssueRef, IssueSnapshot
from policies.text import parse_time, sections

Payload = dict[str, Any]

# (event, action) -> what it means for the SOP
HANDLED: dict[tuple[str, str], EventKind] = {
    ("issues", "opened"): EventKind.OPENED,
    ("issues", "edited"): EventKind.EDITED,
    ("issues", "labeled"): EventKind.LABELS_CHANGED,
    ("issues", "unlabeled"): EventKind.LABELS_CHANGED,
    ("issues", "closed"): EventKind.STATUS_CHANGED,
    ("issues", "reopened"): EventKind.STATUS_CHANGED,
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


def classify(event_name: str, payload: Payload) -> EventKind:
    """The kind of a delivery we act on; `Ignored` (with the reason) for the rest."""
    action = str(payload.get("action", ""))
    kind = HANDLED.get((event_name, action))
    if kind is not None:
        if not isinstance(payload.get("issue"), dict) or not isinstance(payload.get("repository"), dict):
            raise BadPayload(f"a '{event_name}' delivery must carry 'issue' and 'repository' objects")
        if isinstance(payload["issue"].get("pull_request"), dict):
            raise Ignored("comments and changes on pull requests are outside the service procedure")
        return kind
    if event_name in KNOWN_EVENTS:
        what = f"{event_name}.{action}" if action else event_name
        raise Ignored(f"'{what}' does not affect the service procedure")
    raise Ignored(f"unknown GitHub event '{event_name}'")


def actor(user: Payload | None) -> Actor:
    user = user or {}
    login = str(user.get("login", ""))
    return Actor(
        login=login, is_bot=user.get("type") == "Bot" or login.endswith("[bot]"), id=str(user.get("id", ""))
    )


def _labels(issue: Payload) -> frozenset[str]:
    return frozenset(str(label["name"]) for label in issue.get("labels") or [] if "name" in label)


def _event_time(payload: Payload) -> dt.datetime | None:
    issue, comment, action = payload["issue"], payload.get("comment") or {}, payload.get("action")
    if comment:
        return parse_time(comment.get("updated_at") if action == "edited" else comment.get("created_at"))
    field = {"opened": "created_at", "closed": "closed_at"}.get(str(action), "updated_at")
    return parse_time(issue.get(field)) or parse_time(issue.get("updated_at"))


def snapshot(payload: Payload) -> IssueSnapshot:
    """The issue as the delivery shows it; nothing is fetched."""
    issue = payload["issue"]
    body = issue.get("body") or ""
    return IssueSnapshot(
        ref=issue_ref(payload),
        title=str(issue.get("title", "")),
        is_open=issue.get("state", "open") == "open",
        status=str(issue.get("state", "open")),
        labels=_labels(issue),
        assignees=tuple(str(a["login"]) for a in issue.get("assignees") or [] if "login" in a),
        reporter=str((issue.get("user") or {}).get("login", "")),
        reporter_id=str((issue.get("user") or {}).get("id", "")),
        fields=sections(body),
        body=body,
        created_at=parse_time(issue.get("created_at")),
        updated_at=parse_time(issue.get("updated_at")),
    )


def issue_ref(payload: Payload) -> IssueRef:
    issue, repository = payload["issue"], payload["repository"]
    return IssueRef(
        source="github",
        scope=str(repository.get("full_name", "")),
        key=str(issue.get("number", "")),
        id=str(issue.get("id", "")),
        url=str(issue.get("html_url", "")),
    )


def _label_change(payload: Payload) -> tuple[frozenset[str], frozenset[str]]:
    after = _labels(payload["issue"])
    label = str((payload.get("label") or {}).get("name", ""))
    if payload.get("action") == "labeled":
        return after - {label}, after | {label}
    if payload.get("action") == "unlabeled":
        return after | {label}, after - {label}
    return after, after


def _status_change(payload: Payload) -> tuple[str | None, str | None]:
    action = payload.get("action")
    if action == "closed":
        return "open", "closed"
    if action == "reopened":
        return "closed", "open"
    return None, None


def to_event(
    event_name: str, delivery_id: str, payload: Payload, service_logins: Collection[str] = ()
) -> tuple[Event, IssueSnapshot]:
    """Normalise one delivery; raises `Ignored` or `BadPayload` for what we do not act on."""
    kind = classify(event_name, payload)
    sender = actor(payload.get("sender"))
    labels_before, labels_after = _label_change(payload)
    status_before, status_after = _status_change(payload)
    comment = payload.get("comment")
    issue_snapshot = snapshot(payload)
    event = Event(
        source="github",
        kinds=frozenset({kind}),
        delivery_id=delivery_id,
        actor=sender,
        issue=issue_snapshot.ref,
        name=f"{event_name}.{payload.get('action')}",
        status_before=status_before,
        status_after=status_after,
        labels_before=labels_before,
        labels_after=labels_after,
        comment=_comment(comment) if isinstance(comment, dict) else None,
        by_service=sender.login in service_logins,
        at=_event_time(payload),
    )
    return event, issue_snapshot


def _comment(comment: Payload) -> Comment:
    return Comment(
        author=actor(comment.get("user")),
        body=str(comment.get("body") or ""),
        id=str(comment.get("id", "")),
        at=parse_time(comment.get("created_at")),
    )

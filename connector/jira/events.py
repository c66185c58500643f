"""Jira deliveries (Cloud and Data Center) as engine inputs."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from typing import Annotated, Any

from pydantic import Field, PlainValidator

from connector.errors import BadPayload, Ignored
from connector.payload import Identifier, Lenient, Name, Time, bounded_name, shape_error, shown, validated
from policies.models import Actor, Comment, Event, EventKind, IssueRef, IssueSnapshot, Subtask

Payload = dict[str, Any]

HANDLED = frozenset(
    {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created", "comment_updated"}
)
IGNORED_EVENTS = frozenset(
    {
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

# Bounded so that they fit the columns that keep them: an issue key at most 100 characters (a Jira
# project key has 10 by default; 80 leaves room for a site that allows longer ones), an issue
# number or id a 64-bit integer.
_ISSUE_ID_IN_URL = re.compile(r"/issue/(?P<id>[0-9]{1,19})/comment/")
_ISSUE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}-[0-9]{1,19}")
# Nesting no Jira field reaches (a document in Atlassian's format stays well within it).
_DEEPEST_FIELD = 64
_LONGEST_EVENT_NAME = 100  # what the audit log keeps of an event's name
_LONGEST_NAME = 255  # of a request type or an organization (Jira's own limit for names)
_ORGANIZATION_LINK = "/rest/servicedeskapi/organization/"
# The keys of what the ledger keeps of a Jira delivery (`context`): the project's type, the
# request's type and the id of the field that holds it (it varies by site).
PROJECT_TYPE, REQUEST_TYPE, REQUEST_TYPE_FIELD = "projectTypeKey", "requestType", "requestTypeField"
SERVICE_DESK = "service_desk"  # the `projectTypeKey` of a Jira Service Management project


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


def _issue_key(value: object) -> str:
    if isinstance(value, str) and _ISSUE_KEY.fullmatch(value):
        return value
    raise shape_error('must be an issue key like "PROJ-123"')


IssueKey = Annotated[str, PlainValidator(_issue_key)]


class User(Lenient):
    """A person or app; Cloud identifies by `accountId`, Data Center by `name`/`key`."""

    accountId: Name | None = None
    name: Name | None = None
    key: Name | None = None
    displayName: Name | None = None
    accountType: str | None = None


class StatusCategory(Lenient):
    key: str | None = None


class Status(Lenient):
    statusCategory: StatusCategory | None = None


class IssueType(Lenient):
    """`subtask` on every Jira; Cloud also gives the level in the hierarchy: -1 for sub-tasks,
    0 for standard types (Story, Task, Bug), 1 for Epics and higher levels above them."""

    subtask: bool | None = None
    hierarchyLevel: int | None = None
    name: str | None = None

    @property
    def is_subtask(self) -> bool:
        return self.subtask is True or (self.hierarchyLevel is not None and self.hierarchyLevel < 0)


class Project(Lenient):
    key: Name | None = None


class JiraComment(Lenient):
    id: Identifier = ""
    url: str = Field("", alias="self")
    author: User | None = None
    body: Any = None
    jsdPublic: bool | None = None
    properties: Any = None  # with `expand=properties`: Data Center shows an internal note only here
    created: Time = None

    @property
    def public(self) -> bool | None:
        """Whether the customer reads the comment, as far as the comment says: Cloud says
        `jsdPublic` (false for a Jira Service Management internal note); a list read with
        `expand=properties` shows the comment property `sd.public.comment` that makes a note
        internal (`{"internal": true}`). `None` where it says neither, as Data Center's comment
        deliveries and search results: the connector finds out (`Needs.visibility`)."""
        if self.jsdPublic is not None:
            return self.jsdPublic
        if not isinstance(self.properties, list):
            return None
        return not any(
            isinstance(p, dict)
            and p.get("key") == "sd.public.comment"
            and isinstance(p.get("value"), dict)
            and p["value"].get("internal") is True
            for p in self.properties
        )


class CommentPage(Lenient):
    comments: list[JiraComment] = Field(default_factory=list)


class SubtaskFields(Lenient):
    summary: str = ""
    status: Status | None = None


class SubtaskItem(Lenient):
    key: str = ""
    fields: SubtaskFields | None = None


class Fields(Lenient):
    """The fields we read by name; all of them (custom fields too) also become snapshot fields."""

    summary: str | None = None
    status: Status | None = None
    labels: list[str] = Field(default_factory=list)
    assignee: User | None = None
    reporter: User | None = None
    comment: CommentPage | None = None
    subtasks: list[SubtaskItem] = Field(default_factory=list)
    created: Time = None
    updated: Time = None
    issuetype: IssueType | None = None
    project: Project | None = None


class Issue(Lenient):
    id: Identifier = ""
    key: IssueKey = ""
    url: str = Field("", alias="self")
    fields: Fields | None = None


_NO_FIELDS = Fields()


class ChangeItem(Lenient):
    field: str = ""
    fromString: str | None = None
    toString: str | None = None


class Changelog(Lenient):
    items: list[ChangeItem] = Field(default_factory=list)


class DeliveryBody(Lenient):
    """The parts of a Jira delivery's body the service reads."""

    webhookEvent: str = ""
    timestamp: Time = None
    issue_event_type_name: Annotated[str, bounded_name(_LONGEST_EVENT_NAME)] | None = None
    user: User | None = None
    issue: Issue | None = None
    comment: JiraComment | None = None
    changelog: Changelog | None = None


class _KeyOnly(Lenient):
    key: IssueKey


class _CommentUrl(Lenient):
    url: str = Field("", alias="self")


def issue_key(event_name: str, payload: Payload) -> str:
    """`jira:PROJ-123`, or `jira:id:10013` for an old Server comment event that names its issue
    only in the comment's URL: which issue a delivery is about, to order its deliveries.

    Cheap enough for the receiver to call after `classify`; `BadPayload` when it cannot be told.
    """
    issue = payload.get("issue")
    if issue is not None:
        return f"jira:{validated(_KeyOnly, issue, 'issue').key}"
    comment = payload.get("comment")
    if comment is None:
        raise BadPayload(f"a '{event_name}' delivery names no issue: it has no 'issue' and no 'comment'")
    url = validated(_CommentUrl, comment, "comment").url
    match = _ISSUE_ID_IN_URL.search(url)
    if match is None:
        raise BadPayload(
            f"a '{event_name}' delivery names no issue: no 'issue', and comment.self is {shown(url)}"
        )
    return f"jira:id:{match.group('id')}"


def flatten(value: Any, where: str = "", depth: int = 0) -> str:
    """A Jira field value as text: options by value, users by name, lists joined.

    `BadPayload` (naming the field, `where`) for a value nested deeper than any field Jira writes,
    or too big a number to print.
    """
    if depth > _DEEPEST_FIELD:
        raise BadPayload(f"{where or 'a field'} is nested too deeply")
    if value is None:
        return ""
    if isinstance(value, dict):
        for key in ("value", "name", "displayName", "key"):
            if key in value:
                return flatten(value[key], where, depth + 1)
        return ""
    if isinstance(value, list):
        return ", ".join(text for text in (flatten(item, where, depth + 1) for item in value) if text)
    try:
        return str(value)
    except ValueError:  # an integer with more digits than Python will print
        raise BadPayload(f"{where or 'a field'} is too large a number") from None


def actor(user: User | None) -> Actor:
    """A person or app; Cloud identifies by `accountId`, Data Center by `name`/`key`."""
    if user is None:
        return Actor(login="")
    ident = user.accountId or user.name or user.key or ""
    return Actor(login=user.name or user.displayName or ident, is_bot=user.accountType == "app", id=ident)


def _issue_ref(delivery: DeliveryBody) -> IssueRef:
    issue = delivery.issue
    if issue is not None:
        project = (issue.fields or _NO_FIELDS).project
        scope = (project.key if project else None) or issue.key.split("-")[0]
        return IssueRef("jira", scope, issue.key, issue.id, issue.url)
    # An old Server-style comment event names its issue only in the comment's URL.
    match = _ISSUE_ID_IN_URL.search(delivery.comment.url if delivery.comment else "")
    issue_id = match.group("id") if match else ""
    return IssueRef("jira", "", issue_id, issue_id)


def _is_done(status: Status | None) -> bool:
    return bool(status and status.statusCategory and status.statusCategory.key == "done")


def _subtask(item: SubtaskItem) -> Subtask:
    fields = item.fields or SubtaskFields()
    return Subtask(title=fields.summary, done=_is_done(fields.status), key=item.key)


def snapshot(payload: Payload) -> IssueSnapshot:
    """The issue as a delivery (or the API's fields) shows it; `BadPayload` if it is malformed."""
    return _snapshot(validated(DeliveryBody, payload), payload)


def _snapshot(delivery: DeliveryBody, payload: Payload) -> IssueSnapshot:
    """Field values keyed by field id (names need the API)."""
    fields = (delivery.issue.fields if delivery.issue else None) or _NO_FIELDS
    raw_fields = (payload.get("issue") or {}).get("fields") or {}
    return IssueSnapshot(
        ref=_issue_ref(delivery),
        title=fields.summary or "",
        is_open=not _is_done(fields.status),
        status=flatten(raw_fields.get("status"), "issue.fields.status") or None,
        labels=frozenset(fields.labels),
        assignees=(actor(fields.assignee).login,) if fields.assignee else (),
        reporter=actor(fields.reporter).login if fields.reporter else "",
        reporter_id=actor(fields.reporter).id if fields.reporter else "",
        priority=flatten(raw_fields.get("priority"), "issue.fields.priority") or None,
        fields={key: flatten(value, f"issue.fields.{key}") for key, value in raw_fields.items()},
        body=flatten(raw_fields.get("description"), "issue.fields.description"),
        comments=tuple(_comment(c) for c in fields.comment.comments) if fields.comment else (),
        subtasks=tuple(_subtask(s) for s in fields.subtasks),
        created_at=fields.created,
        # When the issue was as the delivery shows it: the event's time, else the issue's `updated`.
        updated_at=delivery.timestamp or fields.updated,
        # By issue type, never by `parent`: a Story or Task under an Epic has a parent too.
        is_subtask=fields.issuetype is not None and fields.issuetype.is_subtask,
        issue_type=(fields.issuetype.name or "") if fields.issuetype else "",
        request_type=request_type(raw_fields),
        organizations=organizations(raw_fields),
    )


def project_type(payload: Payload) -> str:
    """The delivery's `issue.fields.project.projectTypeKey` (`service_desk` for Jira Service
    Management; Cloud's deliveries say it, Data Center's do not), or what a delivery rebuilt from
    the ledger's context says (`context`); else `""`."""
    issue = payload.get("issue")
    fields = issue.get("fields") if isinstance(issue, dict) else None
    project = fields.get("project") if isinstance(fields, dict) else None
    kind = project.get("projectTypeKey") if isinstance(project, dict) else payload.get(PROJECT_TYPE)
    return kind[:_LONGEST_NAME] if isinstance(kind, str) else ""


def context(payload: Payload) -> dict[str, str]:
    """What the ledger keeps of a delivery to act on its issue later without one: the project's type
    (a sweep's comment may be an internal note) and the request's type (it decides the scope)."""
    fields = _fields_of(payload)
    field_id = _request_type_field(fields)
    said = {
        PROJECT_TYPE: project_type(payload),
        REQUEST_TYPE: request_type(fields),
        REQUEST_TYPE_FIELD: field_id[:_LONGEST_NAME],
    }
    return {key: value for key, value in said.items() if value}


def kept_context(kept: Mapping[str, Any], payload: Payload) -> dict[str, Any]:
    """What the ledger keeps of an issue after a delivery: what the delivery says, over what was
    kept from earlier ones (a comment event shows no request type), except a request type the
    delivery shows gone: its Request Type field (as an earlier delivery showed it) is there and
    empty, the project is not a service one, or the issue moved to another project (it keeps only
    the type its delivery shows)."""
    said = context(payload)
    earlier = dict(kept)
    if REQUEST_TYPE not in said and _request_type_gone(earlier, payload):
        earlier.pop(REQUEST_TYPE, None)
    return {**earlier, **said}


def _request_type_gone(kept: Mapping[str, Any], payload: Payload) -> bool:
    fields = _fields_of(payload)
    field_id = kept.get(REQUEST_TYPE_FIELD)
    if isinstance(field_id, str) and field_id in fields and not fields[field_id]:
        return True
    if project_type(payload) not in ("", SERVICE_DESK):
        return True
    changelog = payload.get("changelog")
    items = changelog.get("items") if isinstance(changelog, dict) else None
    moved = {"project", "key"}
    return any(isinstance(i, dict) and str(i.get("field", "")).casefold() in moved for i in items or ())


def _fields_of(payload: Payload) -> Payload:
    issue = payload.get("issue")
    fields = issue.get("fields") if isinstance(issue, dict) else None
    return fields if isinstance(fields, dict) else {}


def _request_type_field(fields: Payload) -> str:
    """The id of the Request Type field (a custom field whose id varies by site): the only one whose
    value carries a `requestType` object; `""` when no field shows one."""
    for field_id, value in fields.items():
        kind = value.get("requestType") if isinstance(value, dict) else None
        if isinstance(kind, dict) and isinstance(kind.get("name"), str):
            return str(field_id)
    return ""


def request_type(fields: Payload) -> str:
    """The name of a Jira Service Management request's type (the value of its Request Type field)."""
    field_id = _request_type_field(fields)
    return str(fields[field_id]["requestType"]["name"])[:_LONGEST_NAME] if field_id else ""


def organizations(fields: Payload) -> tuple[str, ...]:
    """The customer organizations of a request, by name: the Organizations field (a custom field whose
    id varies by site) holds them as service-desk organization objects (their `_links.self` is under
    `/rest/servicedeskapi/organization/`)."""
    for value in fields.values():
        if not isinstance(value, list) or not value:
            continue
        named = [
            str(item["name"])[:_LONGEST_NAME]
            for item in value
            if isinstance(item, dict)
            and isinstance(item.get("name"), str)
            and _ORGANIZATION_LINK in str((item.get("_links") or {}).get("self", ""))
        ]
        if len(named) == len(value):
            return tuple(named)
    return ()


def _comment(comment: JiraComment) -> Comment:
    """Service-management projects mark internal notes (`JiraComment.public`)."""
    return Comment(
        author=actor(comment.author),
        body=flatten(comment.body, "comment.body"),
        id=comment.id,
        public=comment.public,
        at=comment.created,
    )


def comment_visibility(comments: Iterable[Payload]) -> dict[str, bool]:
    """Whether the customer reads each comment of a list (read with `expand=properties`), by id."""
    parsed = (validated(JiraComment, c, "comment") for c in comments if isinstance(c, dict))
    return {c.id: c.public is not False for c in parsed if c.id}


def _changes(delivery: DeliveryBody) -> dict[str, tuple[str | None, str | None]]:
    items = delivery.changelog.items if delivery.changelog else []
    return {item.field.casefold(): (item.fromString, item.toString) for item in items}


def _kinds(name: str, changes: dict[str, tuple[str | None, str | None]], has_comment: bool) -> set[EventKind]:
    if name == "jira:issue_created":
        return {EventKind.OPENED}
    if name == "jira:issue_deleted":
        return {EventKind.REMOVED}
    if name.startswith("comment"):
        return {EventKind.COMMENTED}
    kinds = {EventKind.COMMENTED} if has_comment else set()
    specific = {
        "status": EventKind.STATUS_CHANGED,
        "priority": EventKind.PRIORITY_CHANGED,
        "labels": EventKind.LABELS_CHANGED,
        "assignee": EventKind.ASSIGNEE_CHANGED,
        "key": EventKind.MOVED,  # moved to another project: the changelog names both keys
        "project": EventKind.MOVED,
    }
    for field in changes:
        if field not in WORKFLOW_BOOKKEEPING:
            kinds.add(specific.get(field, EventKind.EDITED))
    return kinds or {EventKind.OTHER}


def _moved_from(changes: dict[str, tuple[str | None, str | None]], now: IssueRef) -> IssueRef | None:
    """The key an issue moved to another project had before (the changelog's `Key` item)."""
    before = changes.get("key", (None, None))[0]
    if before is None or before == now.key or not _ISSUE_KEY.fullmatch(before):
        return None
    return IssueRef("jira", before.rsplit("-", 1)[0], before, now.id)


def to_event(
    delivery_id: str, payload: Payload, service_accounts: Collection[str] = ()
) -> tuple[Event, IssueSnapshot]:
    """Normalise one delivery; raises `Ignored` or `BadPayload` (naming the flaw), nothing else."""
    name = classify(payload)
    delivery = validated(DeliveryBody, payload)
    changes = _changes(delivery)
    comment = delivery.comment
    who = actor(delivery.user or (comment.author if comment else None))
    issue_snapshot = _snapshot(delivery, payload)
    status_before, status_after = changes.get("status", (None, None))
    labels_before, labels_after = changes.get("labels", (None, None))
    priority_before, priority_after = changes.get("priority", (None, None))
    event = Event(
        source="jira",
        kinds=frozenset(_kinds(name, changes, comment is not None)),
        delivery_id=delivery_id,
        actor=who,
        issue=issue_snapshot.ref,
        name=delivery.issue_event_type_name or name,
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
        comment=_comment(comment) if comment else None,
        by_service=bool(who.id) and (who.id in service_accounts or who.login in service_accounts),
        at=delivery.timestamp,
        body_before=changes["description"][0] or "" if "description" in changes else None,
        moved_from=_moved_from(changes, issue_snapshot.ref),
    )
    return event, issue_snapshot

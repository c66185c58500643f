"""A stateful stand-in for Jira's REST API (Cloud or Data Center) on `responses`, and sopguard wired to it.

The fake keeps one issue (the fixture's) with its status, labels, priority, comments, sub-tasks and
issue properties, so tests assert the resulting issue and not only the requests. `fail` makes a
route answer with errors (or raise, or carry out the write and then time out) before it works.
The scenarios here are the real Cloud and Data Center payloads, changed in memory where a scenario
needs another status or field; the benchmark (benchmarks/jira_api_calls.py) runs the same ones.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
from flask import Flask
from sqlalchemy import delete, select, update

from app import create_app
from config.loader import load_policy
from config.settings import Settings
from connector.base import Recorded
from connector.dry_run import DryRunConnector
from connector.jira.connector import JiraConnector
from policies.models import IssueRef
from policies.workflow import jira_state
from runtime.services import Services, utc_now
from runtime.store import Store
from runtime.store.schema import issues, writes
from tests.conftest import JIRA_SECRET, drain, fixture_json, jira_headers
from tests.openapi_check import Allowance, assert_requests_allowed, with_json_body
from webhooks.receivers import Intake

Json = dict[str, Any]
Reply = tuple[int, dict[str, str], str]
Fault = Reply | Exception | Callable[[requests.PreparedRequest, Any], Reply]

SPEC = "jira-cloud-v3.openapi.json"
PROPERTY = "sopguard"

# The field ids this Jira gives the policy's intake fields (`GET /field` lists them by name).
FIELD_IDS = {
    "Customer": "customfield_12001",
    "Customer tier": "customfield_12002",
    "Service object": "customfield_12003",
    "Time of occurrence": "customfield_12004",
    "Impact": "customfield_12005",
    "Impact scope": "customfield_12006",
    "Urgency": "customfield_12007",
    "Expected resolution time": "customfield_12008",
}
SELECT_FIELDS = frozenset({"Customer tier", "Impact", "Urgency"})
STATUS_IDS = {
    "To Do": "10000",
    "Open": "1",
    "Triage": "10101",
    "Diagnosis": "10102",
    "Planning": "10103",
    "Customer Confirmation": "10104",
    "In Progress": "3",
    "Reopened": "4",
    "Verification": "10105",
    "Acceptance": "10106",
    "Waiting for Customer": "10107",
    "Done": "10001",
    "Resolved": "5",
    "Closed": "6",
}
ROLE_IDS = {"Administrators": "10002", "Developers": "10001", "Service Desk Team": "10100"}
NEW_CATEGORY = frozenset({"To Do", "Open", "New"})
DONE_CATEGORY = frozenset({"Done", "Resolved", "Closed"})


# The requests a connector makes once per process (its identity, the field list, the deployment type).
MYSELF = "GET /rest/api/2/myself"
FIELDS = "GET /rest/api/2/field"
SERVER_INFO = "GET /rest/api/2/serverInfo"


# --- what differs between Cloud and Data Center --------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    name: str
    server: str
    server_info: Json
    myself: Json
    credentials: Json

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(update=self.credentials)


CLOUD = Deployment(
    name="cloud",
    server="https://some-instance-test.atlassian.net",
    server_info={"baseUrl": "https://some-instance-test.atlassian.net", "deploymentType": "Cloud"},
    myself={"accountId": "557058:sopguard-bot", "accountType": "atlassian", "displayName": "sopguard"},
    credentials={
        "jira_url": "https://some-instance-test.atlassian.net",
        "jira_email": "sopguard@example.com",
        "jira_api_token": "cloud-api-token",
    },
)
DATA_CENTER = Deployment(
    name="dc",
    server="http://some-instance-test.centralus.cloudapp.azure.com:8080",
    server_info={"deploymentType": "Server", "version": "9.12.0", "versionNumbers": [9, 12, 0]},
    myself={"name": "sopguard", "key": "JIRAUSER10900", "displayName": "sopguard"},
    credentials={
        "jira_url": "http://some-instance-test.centralus.cloudapp.azure.com:8080",
        "jira_pat": "dc-personal-access-token",
    },
)
DEPLOYMENTS = (CLOUD, DATA_CENTER)


# --- requests our client sends that the Cloud v3 description does not describe as such -----------

# Atlassian publishes REST v2 as the same operations as v3 ("the same collection of operations"),
# with wiki-markup strings where v3 has ADF documents; the v3 description leaves `Comment.body`
# untyped, so a v2 request is checked as its v3 twin. Only the path prefix changes.
V2_MIRRORS_V3 = Allowance(
    why="REST v2 paths mirror v3 (wiki strings instead of ADF); checked as the v3 operation",
    matches=lambda r: "/rest/api/2/" in (r.url or ""),
    rewrite=lambda r: _with_url(r, (r.url or "").replace("/rest/api/2/", "/rest/api/3/", 1)),
)
# jira's `transition_issue` sends the transition id as an integer; the schema wants a string
# (TRACKERS.md). Only that one value is rewritten.
TRANSITION_ID_AS_INT = Allowance(
    why="jira transition_issue sends transition.id as an integer",
    matches=lambda r: (
        r.method == "POST"
        and (r.url or "").split("?")[0].endswith("/transitions")
        and isinstance(_body(r).get("transition", {}).get("id"), int)
    ),
    rewrite=lambda r: with_json_body(r, _stringify_transition(_body(r))),
)
ALLOWANCES = (V2_MIRRORS_V3, TRANSITION_ID_AS_INT)
# `GET /rest/api/2/field` (the field list) is a documented Jira operation that the selected subset
# of the description does not contain (TRACKERS.md); such requests are checked by `_is_field_list`:
# exactly that method and path, no query, no body.
FIELD_LIST = re.compile(r"^/rest/api/2/field$")


def _with_url(request: requests.PreparedRequest, url: str) -> requests.PreparedRequest:
    copy_ = request.copy()
    copy_.url = url
    return copy_


def _raw(request: requests.PreparedRequest) -> bytes:
    body = request.body
    return body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else b""


def _body(request: requests.PreparedRequest) -> Json:
    raw = _raw(request)
    value = json.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {}


def _stringify_transition(body: Json) -> Json:
    return {**body, "transition": {**body["transition"], "id": str(body["transition"]["id"])}}


def _is_field_list(request: requests.PreparedRequest) -> bool:
    parts = urlsplit(request.url or "")
    return request.method == "GET" and bool(FIELD_LIST.match(parts.path)) and not parts.query


def _malformed_internal_note(properties: list[Json]) -> str:
    """Why a comment's `sd.public.comment` property is not the shape Jira Service Management reads
    (`{"internal": <boolean>}`), or `""`."""
    for prop in properties:
        if prop.get("key") != "sd.public.comment":
            continue
        value = prop.get("value")
        if not isinstance(value, dict) or not isinstance(value.get("internal"), bool):
            return f"sd.public.comment must be {{'internal': <boolean>}}, not {json.dumps(value)}"
    return ""


def _category(status: str) -> Json:
    key = "new" if status in NEW_CATEGORY else "done" if status in DONE_CATEGORY else "indeterminate"
    return {"key": key, "name": {"new": "To Do", "done": "Done"}.get(key, "In Progress")}


def status_json(name: str) -> Json:
    return {"id": STATUS_IDS.get(name, "99"), "name": name, "statusCategory": _category(name)}


def subtask_json(key: str, summary: str, status: str = "To Do") -> Json:
    return {
        "id": str(20000 + int(key.rsplit("-", 1)[-1])),
        "key": key,
        "fields": {"summary": summary, "status": status_json(status), "issuetype": {"name": "Sub-task"}},
    }


def done_then(outcome: Reply | Exception) -> Callable[[requests.PreparedRequest, Any], Reply]:
    """A fault: the server carries the request out, then answers `outcome` (or the client times out)."""

    def reply(request: requests.PreparedRequest, handler: Any) -> Reply:
        handler(request)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return reply


def partly_done(count: int, outcome: Reply | Exception) -> Callable[[requests.PreparedRequest, Any], Reply]:
    """A fault of `POST /issue/bulk`: the server creates the first `count` issues, then answers
    `outcome` (or the client times out)."""

    def reply(request: requests.PreparedRequest, handler: Any) -> Reply:
        body = _body(request)
        handler(with_json_body(request, {**body, "issueUpdates": body["issueUpdates"][:count]}))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return reply


# --- the fake ------------------------------------------------------------------------------------


@dataclass
class FakeJira:
    """One Jira site with one issue, as Jira would keep it; every status reachable unless removed."""

    mock: responses.RequestsMock
    deployment: Deployment
    key: str
    status: str
    labels: list[str] = field(default_factory=list)
    priority: str | None = None
    subtasks: list[Json] = field(default_factory=list)
    comments: list[Json] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    unreachable: set[str] = field(default_factory=set)
    changelog: list[Json] = field(default_factory=list)
    # Each sub-task's changelog, by its key (who moved it to its status); none: an empty one.
    subtask_changelogs: dict[str, list[Json]] = field(default_factory=dict)
    # Project roles (name -> users by account id or name, and groups) and each user's groups.
    roles: dict[str, Json] = field(default_factory=lambda: {name: {} for name in ROLE_IDS})
    groups: dict[str, list[str]] = field(default_factory=dict)
    refused_summaries: set[str] = field(default_factory=set)  # sub-tasks Jira would refuse to create
    # The project's type as `GET /project/{key}` answers it: `service_desk` for Jira Service Management.
    project_type: str = "software"
    listed: list[Json] = field(default_factory=list)  # what a JQL search finds (`sopguard adopt`)
    # A test's own answer to a JQL search, in place of `listed` (the issues as they stand when asked).
    search_reply: Callable[[requests.PreparedRequest], Reply] | None = None
    faults: defaultdict[tuple[str, str], deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    _next_id: int = 10010
    _next_subtask: int = 100

    def __post_init__(self) -> None:
        self.mock.assert_all_requests_are_fired = False  # routes simulate a server, they are not expectations
        api, issue = "/rest/api/2", f"/rest/api/2/issue/{self.key}"
        routes = [
            ("GET", f"{api}/serverInfo", self._server_info),
            ("GET", f"{api}/myself", self._myself),
            ("GET", f"{api}/field", self._fields),
            ("GET", issue, self._get_issue),
            ("PUT", issue, self._edit_issue),
            ("GET", f"{issue}/transitions", self._transitions),
            ("POST", f"{issue}/transitions", self._do_transition),
            ("GET", f"{issue}/comment", self._list_comments),
            ("POST", f"{issue}/comment", self._add_comment),
            ("POST", f"/rest/api/3/issue/{self.key}/comment", self._add_comment),
            ("GET", f"{issue}/properties/{PROPERTY}", self._get_property),
            ("GET", f"{issue}/changelog", self._changelog),
            ("PUT", f"{issue}/properties/{PROPERTY}", self._set_property),
            ("POST", f"{api}/issue", self._create_issue),
            ("GET", f"{api}/project/{self.project}", self._get_project),
            ("GET", f"{api}/project/{self.project}/role", self._list_roles),
            ("GET", f"{api}/project/{self.project}/role/", self._get_role),
            ("GET", f"{api}/user", self._get_user),
            ("POST", f"{api}/issue/bulk", self._create_issues),
            ("GET", f"{api}/search/jql", self._search),
            ("GET", f"{api}/search", self._search),
        ]
        for method, path, handler in routes:
            tail = r"[0-9]+(\?.*)?$" if path.endswith("/") else r"(\?.*)?$"
            pattern = re.compile(re.escape(self.deployment.server + path) + tail)
            self.mock.add_callback(method, pattern, callback=self._guarded(method, path, handler))
        for subtask in self.subtasks:
            self._serve_changelog_of(subtask["key"])

    @property
    def project(self) -> str:
        return self.key.split("-")[0]

    def in_role(self, role: str, *, users: Sequence[str] = (), groups: Sequence[str] = ()) -> None:
        """Give a project role to these users (account ids on Cloud, names on Data Center) and groups."""
        self.roles[role] = {"users": list(users), "groups": list(groups)}

    def _get_project(self, _: requests.PreparedRequest) -> Reply:
        return self._reply(
            {"id": "10000", "key": self.project, "name": self.project, "projectTypeKey": self.project_type}
        )

    def _list_roles(self, _: requests.PreparedRequest) -> Reply:
        base = f"{self.deployment.server}/rest/api/2/project/{self.project}/role"
        return self._reply({name: f"{base}/{ROLE_IDS[name]}" for name in self.roles})

    def _get_role(self, request: requests.PreparedRequest) -> Reply:
        role_id = urlsplit(request.url or "").path.rsplit("/", 1)[-1]
        name = next((n for n, i in ROLE_IDS.items() if i == role_id and n in self.roles), None)
        if name is None:
            return self._reply({"errorMessages": ["No project role"]}, 404)
        cloud = self.deployment is CLOUD
        users = [
            {"type": "atlassian-user-role-actor", "name": u, "actorUser": {"accountId": u}}
            if cloud
            else {"type": "atlassian-user-role-actor", "name": u}
            for u in self.roles[name].get("users", [])
        ]
        groups = [
            {"type": "atlassian-group-role-actor", "name": g, "actorGroup": {"name": g, "displayName": g}}
            for g in self.roles[name].get("groups", [])
        ]
        return self._reply({"self": "", "name": name, "id": int(role_id), "actors": users + groups})

    def _get_user(self, request: requests.PreparedRequest) -> Reply:
        query = parse_qs(urlsplit(request.url or "").query)
        who = (query.get("accountId") or query.get("username") or [""])[0]
        items = [{"name": g} for g in self.groups.get(who, [])]
        return self._reply({"accountId": who, "groups": {"size": len(items), "items": items}})

    def _search(self, request: requests.PreparedRequest) -> Reply:
        """Cloud's enhanced search pages by `nextPageToken`, Data Center's by `startAt`; 100 a page."""
        if self.search_reply is not None:
            return self.search_reply(request)
        query = parse_qs(urlsplit(request.url or "").query)
        cloud = urlsplit(request.url or "").path.endswith("/jql")
        start = int((query.get("nextPageToken") or query.get("startAt") or ["0"])[0])
        page = self.listed[start : start + 100]
        if cloud:
            more = start + 100 < len(self.listed)
            body: Json = {
                "issues": page,
                "isLast": not more,
                **({"nextPageToken": str(start + 100)} if more else {}),
            }
        else:
            body = {"issues": page, "startAt": start, "maxResults": 100, "total": len(self.listed)}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def _changelog(self, _: requests.PreparedRequest) -> Reply:
        page = {
            "startAt": 0,
            "maxResults": 100,
            "total": len(self.changelog),
            "isLast": True,
            "values": self.changelog,
        }
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    def _serve_changelog_of(self, key: str) -> None:
        """Answer `GET /issue/{key}/changelog` for one sub-task of the issue (only its own: other
        fakes of the same site answer for their issues)."""
        if key in self.subtask_changelogs:
            return
        self.subtask_changelogs[key] = []
        url = f"{self.deployment.server}/rest/api/2/issue/{key}/changelog"
        self.mock.add_callback(
            "GET", re.compile(re.escape(url) + r"(\?.*)?$"), callback=self._subtask_changelog
        )

    def _subtask_changelog(self, request: requests.PreparedRequest) -> Reply:
        key = urlsplit(request.url or "").path.split("/")[-2]
        values = self.subtask_changelogs.get(key, [])
        page = {"startAt": 0, "maxResults": 100, "total": len(values), "isLast": True, "values": values}
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    def closed_by(self, key: str, person: Json, status: str = "Done") -> None:
        """Record in the sub-task's changelog that `person` moved it to `status`."""
        self._serve_changelog_of(key)
        entry = {
            "id": str(30000 + len(self.subtask_changelogs[key])),
            "author": person,
            "created": "2025-03-01T10:00:00.000+0000",
            "items": [{"field": "status", "fieldtype": "jira", "fromString": "To Do", "toString": status}],
        }
        self.subtask_changelogs[key].append(entry)

    # --- fault injection ------------------------------------------------------------------

    def fail(self, method: str, path_suffix: str, *replies: Fault) -> None:
        """The next requests to the route ending in `path_suffix` get these replies first."""
        self.faults[(method, path_suffix)].extend(replies)

    def _guarded(self, method: str, path: str, handler: Callable[[requests.PreparedRequest], Reply]) -> Any:
        def respond(request: requests.PreparedRequest) -> Reply:
            for (fault_method, suffix), queue in self.faults.items():
                if fault_method == method and path.endswith(suffix) and queue:
                    reply = queue.popleft()
                    if isinstance(reply, Exception):
                        raise reply
                    if callable(reply):
                        return reply(request, handler)
                    return reply
            return handler(request)

        return respond

    # --- the API --------------------------------------------------------------------------

    @staticmethod
    def _reply(body: Any, status: int = 200) -> Reply:
        if body is None:
            return status, {}, ""
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _server_info(self, _: requests.PreparedRequest) -> Reply:
        return self._reply(self.deployment.server_info)

    def _myself(self, _: requests.PreparedRequest) -> Reply:
        return self._reply(self.deployment.myself)

    def _fields(self, _: requests.PreparedRequest) -> Reply:
        system = [
            {"id": "summary", "name": "Summary", "custom": False},
            {"id": "description", "name": "Description", "custom": False},
            {"id": "priority", "name": "Priority", "custom": False},
            {"id": "labels", "name": "Labels", "custom": False},
        ]
        custom = [{"id": i, "name": n, "custom": True} for n, i in FIELD_IDS.items()]
        return self._reply(system + custom)

    def _comment_page(self) -> Json:
        return {"comments": self._public(self.comments), "maxResults": 100, "total": len(self.comments)}

    def _get_issue(self, request: requests.PreparedRequest) -> Reply:
        query = parse_qs(urlsplit(request.url or "").query)
        wanted = ",".join(query.get("fields", [""])).split(",")
        every: Json = {
            "status": status_json(self.status),
            "labels": self.labels,
            "priority": {"name": self.priority} if self.priority else None,
            "subtasks": self.subtasks,
            "comment": self._comment_page(),
        }
        issue: Json = {"id": "10040", "key": self.key, "fields": {k: every[k] for k in wanted if k}}
        if "transitions" in ",".join(query.get("expand", [])).split(","):
            issue["transitions"] = self._available()
        return self._reply(issue)

    def _edit_issue(self, request: requests.PreparedRequest) -> Reply:
        body = _body(request)
        priority = (body.get("fields") or {}).get("priority")
        if priority:
            self.priority = priority["name"]
        for operation in (body.get("update") or {}).get("labels", []):
            if "add" in operation and operation["add"] not in self.labels:
                self.labels.append(operation["add"])
            if "remove" in operation and operation["remove"] in self.labels:
                self.labels.remove(operation["remove"])
        return self._reply(None, 204)

    @staticmethod
    def transition_id(target: str) -> str:
        """Every status has one (global) transition into it."""
        return str(11 + list(STATUS_IDS).index(target))

    def _available(self) -> list[Json]:
        return [
            {"id": self.transition_id(name), "name": f"Move to {name}", "to": status_json(name)}
            for name in STATUS_IDS
            if name != self.status and name not in self.unreachable
        ]

    def _transitions(self, _: requests.PreparedRequest) -> Reply:
        return self._reply({"expand": "transitions", "transitions": self._available()})

    def _do_transition(self, request: requests.PreparedRequest) -> Reply:
        wanted = str(_body(request)["transition"]["id"])
        chosen = next((t for t in self._available() if t["id"] == wanted), None)
        if chosen is None:
            return self._reply({"errorMessages": ["Transition id is not valid for this issue."]}, 400)
        self.status = chosen["to"]["name"]
        return self._reply(None, 204)

    @staticmethod
    def _public(comments: list[Json], expand: str = "") -> list[Json]:
        """Comments as the API lists them: properties only with `expand=properties`."""
        return [{k: v for k, v in c.items() if k != "properties" or "properties" in expand} for c in comments]

    def _list_comments(self, request: requests.PreparedRequest) -> Reply:
        query = parse_qs(urlsplit(request.url or "").query)
        start = int(query.get("startAt", ["0"])[0])
        ordered = self.comments[::-1] if query.get("orderBy") == ["-created"] else self.comments
        page = self._public(ordered, ",".join(query.get("expand", [])))[start : start + 100]
        return self._reply(
            {"startAt": start, "maxResults": 100, "total": len(self.comments), "comments": page}
        )

    def _add_comment(self, request: requests.PreparedRequest) -> Reply:
        body = _body(request)
        if malformed := _malformed_internal_note(body.get("properties") or []):
            # Jira would store any JSON and the note would silently be public: refused here instead.
            return self._reply({"errorMessages": [malformed]}, 400)
        self._next_id += 1
        comment = {
            "id": str(self._next_id),
            "author": self.deployment.myself,
            "body": body["body"],
            "properties": body.get("properties", []),
        }
        if self.deployment is CLOUD:  # Cloud lists what the property made of it; Data Center does not
            comment["jsdPublic"] = self.is_public(comment)
        self.comments.append(comment)
        return self._reply(self._public([comment])[0], 201)

    def _get_property(self, _: requests.PreparedRequest) -> Reply:
        if PROPERTY not in self.properties:
            return self._reply({"errorMessages": ["The property was not found."]}, 404)
        return self._reply({"key": PROPERTY, "value": self.properties[PROPERTY]})

    def _set_property(self, request: requests.PreparedRequest) -> Reply:
        created = PROPERTY not in self.properties
        self.properties[PROPERTY] = json.loads(_raw(request) or b"null")
        return self._reply(None, 201 if created else 200)

    def _create(self, fields: Json) -> Json | None:
        """The sub-task created from `fields`, or `None` when Jira would refuse them."""
        if fields.get("parent", {}).get("key") != self.key or fields["issuetype"] != {"name": "Sub-task"}:
            return None
        if fields["summary"] in self.refused_summaries:
            return None
        self._next_subtask += 1
        key = f"{self.key.split('-')[0]}-{self._next_subtask}"
        subtask = subtask_json(key, fields["summary"])
        self.subtasks.append(subtask)
        self._serve_changelog_of(key)
        return {"id": subtask["id"], "key": key, "self": f"{self.deployment.server}/issue/{key}"}

    def _create_issue(self, request: requests.PreparedRequest) -> Reply:
        created = self._create(_body(request)["fields"])
        if created is None:
            return self._reply({"errors": {"issuetype": "The issue type selected is invalid."}}, 400)
        return self._reply(created, 201)

    def _create_issues(self, request: requests.PreparedRequest) -> Reply:
        """`POST /issue/bulk`: each element created on its own; 201 if any was, 400 if none."""
        issues, errors = [], []
        for index, element in enumerate(_body(request)["issueUpdates"]):
            created = self._create(element["fields"])
            if created is None:
                refusal = {
                    "errorMessages": [],
                    "errors": {"issuetype": "The issue type selected is invalid."},
                }
                errors.append({"status": 400, "elementErrors": refusal, "failedElementNumber": index})
            else:
                issues.append(created)
        return self._reply({"issues": issues, "errors": errors}, 201 if issues else 400)

    # --- what happened --------------------------------------------------------------------

    def requests(self) -> list[requests.PreparedRequest]:
        return [call.request for call in self.mock.calls]

    def calls(self) -> list[str]:
        """`METHOD /path` of every request, in order."""
        return [f"{r.method} {urlsplit(r.url or '').path}" for r in self.requests()]

    def sent(self, method: str, path: str) -> list[Json]:
        """The JSON bodies of the requests to exactly this method and path."""
        return [
            _body(r) for r in self.requests() if r.method == method and urlsplit(r.url or "").path == path
        ]

    def query(self, method: str, path: str) -> list[dict[str, list[str]]]:
        """The query parameters of the requests to exactly this method and path."""
        return [
            parse_qs(urlsplit(r.url or "").query)
            for r in self.requests()
            if r.method == method and urlsplit(r.url or "").path == path
        ]

    def check_against_openapi(self) -> None:
        """Every request is allowed by Atlassian's description (or is the field list, see FIELD_LIST)."""
        checked = [r for r in self.requests() if not _is_field_list(r)]
        with warnings.catch_warnings():
            # A Data Center personal access token is a bearer token, which the description knows as
            # OAuth2: openapi-core accepts the scheme without checking it, and warns that it cannot.
            warnings.filterwarnings("ignore", "Unsupported scheme type", UserWarning)
            assert_requests_allowed(SPEC, self.deployment.server, checked, ALLOWANCES)

    @staticmethod
    def is_public(comment: Json) -> bool:
        """Whether the customer reads a comment on a Jira Service Management project: unless it was
        posted with the property `sd.public.comment: {"internal": true}`, an internal note."""
        return not any(
            p.get("key") == "sd.public.comment" and (p.get("value") or {}).get("internal") is True
            for p in comment.get("properties") or []
        )

    def our_comments(self) -> list[Any]:
        """The bodies of the comments sopguard posted (ADF documents on Cloud, wiki text on DC)."""
        return [c["body"] for c in self.comments if c["author"] == self.deployment.myself]

    def subtask_summaries(self) -> list[str]:
        return [s["fields"]["summary"] for s in self.subtasks]


def adf_text(node: Any) -> str:
    """The text of an ADF document, blocks on their own lines, mentions as their text."""
    if isinstance(node, list):
        return "".join(adf_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node["text"])
    if kind == "mention":
        return str(node["attrs"]["text"])
    if kind == "hardBreak":
        return "\n"
    inner = adf_text(node.get("content", []))
    return inner + "\n" if kind in ("paragraph", "heading") else inner


# --- payloads ---------------------------------------------------------------------------------------

CLOUD_TRANSITION = "mattermost__webhook-issue-updated-started-working.json"  # To Do -> In Progress
CLOUD_CLOSED = "mattermost__webhook-issue-updated-resolved.json"  # In Progress -> Done
CLOUD_CREATED = "mattermost__webhook-issue-created.json"
DC_STARTED = "mattermost__webhook-server-issue-updated-in-progress.json"  # Reopened -> In Progress
DC_CLOSED = "mattermost__webhook-server-issue-updated-resolved.json"  # In Progress -> Resolved

INTAKE_VALUES = {
    "Customer": "ACME Corp",
    "Customer tier": "Standard",
    "Service object": "Billing API",
    "Time of occurrence": "2025-03-01 09:30",
    "Impact": "Business outage",
    "Impact scope": "All 300 users of the billing portal",
    "Urgency": "High",
    "Expected resolution time": "Today 18:00",
}
# Impact and urgency that give each Jira priority of the default policy (a standard-tier customer).
SETTLED = {
    "Highest": ("Business outage", "High"),
    "High": ("Degraded service", "High"),
    "Medium": ("Minor", "High"),
    "Low": ("Minor", "Low"),
}


def with_status_change(payload: Json, before: str, after: str) -> Json:
    """The delivery as if the status had changed from `before` to `after`."""
    changed = copy.deepcopy(payload)
    changed["issue"]["fields"]["status"] = status_json(after)
    items = [i for i in changed["changelog"]["items"] if i.get("field") != "status"]
    items.append({"field": "status", "fieldtype": "jira", "fromString": before, "toString": after})
    changed["changelog"]["items"] = items
    return changed


def with_intake(payload: Json, values: dict[str, str] | None = None) -> Json:
    """The delivery with the policy's intake fields filled in (options as Jira sends them)."""
    changed = copy.deepcopy(payload)
    for name, value in (INTAKE_VALUES if values is None else values).items():
        changed["issue"]["fields"][FIELD_IDS[name]] = {"value": value} if name in SELECT_FIELDS else value
    return changed


def with_settled_intake(payload: Json) -> Json:
    """Every intake field filled in, impact and urgency giving the priority the issue already has."""
    impact, urgency = SETTLED[payload["issue"]["fields"]["priority"]["name"]]
    settled = with_intake(payload, {**INTAKE_VALUES, "Impact": impact, "Urgency": urgency})
    fields = settled["issue"]["fields"]
    fields["description"] = fields.get("description") or "The billing portal answers 502 to every request."
    return settled


def as_created(payload: Json) -> Json:
    """A Data Center `jira:issue_created` made from a DC update (no DC create was recorded)."""
    created = copy.deepcopy(payload)
    created["webhookEvent"] = "jira:issue_created"
    created["issue_event_type_name"] = "issue_created"
    created["issue"]["fields"]["status"] = status_json("Open")
    created.pop("changelog", None)
    return created


def as_edit(payload: Json, labels: list[str]) -> Json:
    """A later `jira:issue_updated` of the same issue: its description edited, its labels as given."""
    edited = copy.deepcopy(payload)
    edited["webhookEvent"] = "jira:issue_updated"
    edited["issue_event_type_name"] = "issue_updated"
    edited["issue"]["fields"]["labels"] = labels
    edited["changelog"] = {"id": "10400", "items": [{"field": "description", "fieldtype": "jira"}]}
    return edited


def by_the_service(payload: Json, deployment: Deployment) -> Json:
    """The delivery Jira sends for a change sopguard itself made (its account as the user)."""
    echoed = copy.deepcopy(payload)
    echoed["user"] = dict(deployment.myself)
    return echoed


def issue_of(payload: Json) -> tuple[str, Json]:
    return str(payload["issue"]["key"]), payload["issue"]["fields"]


# --- scenarios ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A delivery and the Jira it arrives at; `prepare` sets the fake up (workflow, sub-tasks, comments)."""

    title: str
    payload: Json
    prepare: Callable[[FakeJira], None] = lambda fake: None


def _created(deployment: Deployment) -> Json:
    if deployment is CLOUD:
        return fixture_json("jira", CLOUD_CREATED)
    return as_created(fixture_json("jira", DC_STARTED))


def transition_undone(deployment: Deployment) -> Scenario:
    """A skipped stage: Cloud To Do -> In Progress, Data Center In Progress -> Resolved (real payloads)."""
    name = CLOUD_TRANSITION if deployment is CLOUD else DC_CLOSED
    return Scenario("transition undone", with_settled_intake(fixture_json("jira", name)))


def no_way_back(deployment: Deployment) -> Scenario:
    """As `transition_undone`, in a workflow with no transition back to the previous status."""
    base = transition_undone(deployment)
    before = "To Do" if deployment is CLOUD else "In Progress"
    return Scenario("transition with no way back", base.payload, lambda fake: fake.unreachable.add(before))


def priority_set(deployment: Deployment) -> Scenario:
    """A new issue with every intake field: Business outage x High gives P1 (Highest)."""
    return Scenario("priority set", with_intake(_created(deployment)))


def intake_missing(deployment: Deployment) -> Scenario:
    """A new issue as recorded: most intake fields are missing."""
    return Scenario("intake missing at create", _created(deployment))


PLAN = "h3. Plan\nReplace the failing disk, then restore from last night's backup."


def subtasks_created(deployment: Deployment) -> Scenario:
    """Diagnosis -> Planning: the preparation checklist becomes sub-tasks, to be done before the
    work starts (S3.1)."""
    base = fixture_json("jira", CLOUD_TRANSITION if deployment is CLOUD else DC_STARTED)
    payload = with_settled_intake(with_status_change(base, "Diagnosis", "Planning"))
    fields = payload["issue"]["fields"]
    fields["description"] = PLAN
    fields["assignee"] = fields.get("assignee") or fields["creator"]
    return Scenario("valid transition creating sub-tasks", payload)


ROOT_CAUSE = {
    "id": "10005",
    "author": {"name": "admin", "displayName": "Test User"},
    "body": "h3. Root cause\nA failing disk; replaced and restored.",
}


def close_blocked(deployment: Deployment) -> Scenario:
    """Acceptance -> Done/Resolved with the customer's acceptance still open: moved back.

    The root cause is in a comment: Data Center deliveries carry the comments, Cloud ones do not.
    """
    base = fixture_json("jira", CLOUD_CLOSED if deployment is CLOUD else DC_CLOSED)
    closed = base["issue"]["fields"]["status"]["name"]
    payload = with_settled_intake(with_status_change(base, "Acceptance", closed))
    key, fields = issue_of(payload)
    project = key.split("-")[0]
    fields["subtasks"] = [
        subtask_json(f"{project}-51", "Customer acceptance: The customer confirms the result", "To Do"),
        subtask_json(f"{project}-52", "Deliverables: Service report handed over", "Done"),
        subtask_json(f"{project}-53", "Deliverables: Documentation updated and handed over", "Done"),
    ]
    if deployment is DATA_CENTER:
        fields["comment"] = {"comments": [ROOT_CAUSE], "maxResults": 1, "total": 1, "startAt": 0}

    def prepare(fake: FakeJira) -> None:
        fake.comments = [copy.deepcopy(ROOT_CAUSE)]
        fake.in_role("Developers", users=["admin"])  # the root cause is the team's to write (S5.1)

    return Scenario("close blocked by open sub-tasks", payload, prepare)


def agent_answers(deployment: Deployment) -> Scenario:
    """An agent's comment on a Jira Service Management request, a possible first response (S1.4):
    Cloud's delivery says whether the customer reads it (`jsdPublic`); Data Center's does not, nor
    that the project is a service one, so both are read (the comment from the list with properties)."""
    payload = with_settled_intake(fixture_json("jira", "jsm__issue-created.derived.json"))
    payload.pop("changelog", None)
    payload.update(webhookEvent="jira:issue_updated", issue_event_type_name="issue_commented")
    cloud = deployment is CLOUD
    agent = (
        {"accountId": "557058:amy", "displayName": "Amy Agent"}
        if cloud
        else {"name": "amy", "key": "JIRAUSER10200", "displayName": "Amy Agent"}
    )
    if not cloud:
        del payload["issue"]["fields"]["project"]["projectTypeKey"]
    issue_id = payload["issue"]["id"]
    payload["user"] = agent
    payload["comment"] = {
        "self": f"{deployment.server}/rest/api/2/issue/{issue_id}/comment/10300",
        "id": "10300",
        "author": agent,
        "body": "We are on it: the billing portal is being restarted.",
        "created": payload["issue"]["fields"]["created"],
        **({"jsdPublic": True} if cloud else {}),
    }

    def prepare(fake: FakeJira) -> None:
        fake.project_type = "service_desk"
        fake.in_role("Service Desk Team", users=[agent.get("accountId") or agent["name"]])
        fake.comments = [{**payload["comment"], "properties": []}]

    return Scenario("agent's comment on a service request", payload, prepare)


SCENARIOS: tuple[Callable[[Deployment], Scenario], ...] = (
    transition_undone,
    no_way_back,
    priority_set,
    intake_missing,
    subtasks_created,
    close_blocked,
    agent_answers,
)


def fake_for(mock: responses.RequestsMock, deployment: Deployment, payload: Json) -> FakeJira:
    """A Jira whose issue is as the delivery shows it (status, labels, priority, sub-tasks)."""
    key, fields = issue_of(payload)
    return FakeJira(
        mock,
        deployment,
        key=key,
        status=fields["status"]["name"],
        labels=list(fields.get("labels") or []),
        priority=(fields.get("priority") or {}).get("name"),
        subtasks=copy.deepcopy(fields.get("subtasks") or []),
    )


# --- sopguard wired to the fake ------------------------------------------------------------------------


@dataclass
class Service:
    """A sopguard app whose Jira connector talks to the fake; sleeps are recorded, not slept."""

    app: Flask
    connector: JiraConnector
    slept: list[float]

    @property
    def intake(self) -> Intake:
        intake: Intake = self.app.extensions["sopguard"]
        return intake

    def deliver(self, payload: Json, delivery: str | None) -> str:
        """Post a signed delivery, then run the queue; the receiver's answer (accepted, on SQLite)."""
        body = json.dumps(payload).encode()
        answer = self.app.test_client().post(
            "/webhooks/jira", data=body, headers=jira_headers(body, delivery)
        )
        assert answer.status_code in (200, 202), answer.get_json()
        drain(self.app)
        status: str = answer.get_json()["status"]
        return status

    def journal(self, key: str) -> dict[str, Recorded]:
        """The journal's entries (write key -> what is recorded) for the Jira issue `key`."""
        query = select(writes.c.key, writes.c.state, writes.c.result).where(writes.c.issue == f"jira:{key}")
        with self.intake.store.engine.connect() as db:
            return {row.key: Recorded(row.state, dict(row.result or {})) for row in db.execute(query)}

    def as_before_the_journal(self, key: str) -> None:
        """Make the issue `key` one that an older release acted on, before it kept a journal."""
        with self.intake.store.engine.begin() as db:
            db.execute(delete(writes).where(writes.c.issue == f"jira:{key}"))
            db.execute(update(issues).where(issues.c.ref == f"jira:{key}").values(journaled=False))

    def outcomes(self, delivery: str) -> dict[str, str]:
        return {
            str(e.rule_id): e.outcome for e in self.intake.store.audit.entries() if e.delivery_id == delivery
        }


def service(data_dir: Path, deployment: Deployment) -> Service:
    settings = deployment.settings(
        Settings(data_dir=data_dir, jira_webhook_secret=JIRA_SECRET, trackers=["jira"])
    )
    assert settings.jira_configured
    slept: list[float] = []
    connector = JiraConnector.from_settings(settings, sleep=slept.append)
    services = Services(
        settings,
        load_policy(),
        Store(settings.resolved_database_url),
        {"jira": connector, "github": DryRunConnector()},
    )
    return Service(create_app(settings, services), connector, slept)


def follow(sopguard: Service, payload: Json) -> None:
    """Make the ledger follow the delivery's issue in the state it left (from before its change of
    status), as if sopguard had seen it opened: the scenarios judge changes, not adoptions. A
    creation needs nothing."""
    if payload.get("webhookEvent") == "jira:issue_created":
        return
    key, fields = issue_of(payload)
    changes = {i.get("field"): i for i in (payload.get("changelog") or {}).get("items", [])}
    before = (changes.get("status") or {}).get("fromString") or fields["status"]["name"]
    policy = load_policy()
    state = jira_state(policy, before) or policy.workflow.initial
    sopguard.intake.store.ledger.remember_state(IssueRef("jira", key.split("-")[0], key), state, utc_now())


def start(
    mock: responses.RequestsMock, data_dir: Path, scenario: Scenario, deployment: Deployment
) -> tuple[FakeJira, Service]:
    """A fake Jira set up for the scenario, and a fresh sopguard talking to it, following its issue."""
    fake = fake_for(mock, deployment, scenario.payload)
    scenario.prepare(fake)
    sopguard = service(data_dir, deployment)
    follow(sopguard, scenario.payload)
    return fake, sopguard


def issue_path(fake: FakeJira) -> str:
    return f"/rest/api/2/issue/{fake.key}"


def project_type_read(fake: FakeJira) -> list[str]:
    """The read before the first internal note of a process on Data Center, whose deliveries do not
    say the project's type (Cloud's do): is it a Jira Service Management project?"""
    return [f"GET /rest/api/2/project/{fake.project}"] if fake.deployment is DATA_CENTER else []


def team_reads(fake: FakeJira) -> list[str]:
    """The reads that tell whether someone is of the service team, once per process: the project's
    roles, then each role the default team names that the project has, in the policy's order."""
    base = f"GET /rest/api/2/project/{fake.project}/role"
    return [
        base,
        *(f"{base}/{ROLE_IDS[name]}" for name in ("Administrators", "Developers", "Service Desk Team")),
    ]


def post_comment(fake: FakeJira) -> str:
    """The request that adds a comment: ADF through v3 on Cloud, wiki markup through v2 on Data Center."""
    version = "3" if fake.deployment is CLOUD else "2"
    return f"POST /rest/api/{version}/issue/{fake.key}/comment"

"""A stateful stand-in for GitHub's REST API on `responses`, and a sopguard app wired to it.

The fake keeps one issue's labels, state, comments and sub-issues, so tests assert the resulting
issue, not only the requests; `fail` makes a route answer with errors (or raise) before it works.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import responses
from flask import Flask
from github import Auth

from app import create_app
from config.loader import load_policy
from config.settings import Settings
from connector.dry_run import DryRunConnector
from connector.github.connector import GithubConnector
from policies.models import IssueRef
from runtime.services import Services, utc_now
from runtime.store import Store
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, drain, fixture_json, github_headers
from tests.openapi_check import Allowance, assert_requests_allowed, with_json_body
from webhooks.receivers import Intake

API = "https://api.github.com"
BOT = "sopguard-bot"
REPO = "Codertocat/Hello-World"
COMMENTED_AT = "2019-05-15T15:20:18Z"  # comments carry their time, as GitHub lists them
REF = IssueRef("github", REPO, "1")
POLICY = load_policy()
Reply = tuple[int, dict[str, str], str]
Fault = Reply | Exception | Callable[[requests.PreparedRequest, Any], Reply]


def request_json(request: requests.PreparedRequest, default: Any) -> Any:
    body = request.body
    return json.loads(body) if isinstance(body, str | bytes) and body else default


# PyGithub sends label lists as a bare JSON array; GitHub accepts it and the operation's prose allows
# it, but the schema only describes `{"labels": [...]}` (TRACKERS.md). Nothing broader is allowed.
BARE_LABEL_ARRAY = Allowance(
    why="PyGithub set_labels/add_to_labels send a bare array",
    matches=lambda r: (
        r.method in ("PUT", "POST")
        and str(r.url).endswith("/labels")
        and isinstance(request_json(r, None), list)
    ),
    rewrite=lambda r: with_json_body(r, {"labels": request_json(r, [])}),
)


def done_then(error: Exception) -> Fault:
    """A fault for `FakeGithub.fail`: the request takes effect, then the answer is lost to `error`."""

    def reply(request: requests.PreparedRequest, handler: Any) -> Reply:
        handler(request)
        raise error

    return reply


@dataclass
class FakeGithub:
    """One repository with one issue (the fixture's), as GitHub would keep it."""

    mock: responses.RequestsMock
    number: int = 1
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    comments: list[dict[str, Any]] = field(default_factory=list)
    sub_issues: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    collaborators: set[str] = field(default_factory=set)
    reactions: list[tuple[int, str]] = field(default_factory=list)  # (comment id, content)
    team_members: dict[str, set[str]] = field(default_factory=dict)  # "org/slug" -> logins
    faults: defaultdict[tuple[str, str], deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    _next_id: int = 9000

    def __post_init__(self) -> None:
        self.mock.assert_all_requests_are_fired = False  # routes simulate a server, they are not expectations
        issue = f"{API}/repos/{REPO}/issues/{self.number}"
        routes = [
            ("GET", f"{API}/user", self._user),
            ("PUT", f"{issue}/labels", self._set_labels),
            ("POST", f"{issue}/labels", self._add_labels),
            ("DELETE", f"{issue}/labels/", self._remove_label),
            ("PATCH", issue, self._edit_issue),
            ("GET", f"{issue}/comments", self._list_comments),
            ("POST", f"{issue}/comments", self._create_comment),
            ("PATCH", f"{API}/repos/{REPO}/issues/comments/", self._edit_comment),
            ("GET", f"{issue}/sub_issues", self._list_sub_issues),
            ("GET", f"{API}/repos/{REPO}/issues/", self._get_issue),
            ("GET", f"{issue}/events", lambda _: self._reply(self.events)),
            ("POST", f"{issue}/sub_issues", self._add_sub_issue),
            ("POST", f"{API}/repos/{REPO}/issues", self._create_issue),
            ("GET", f"{API}/repos/{REPO}/issues", self._list_issues),
            ("GET", f"{API}/repos/{REPO}/collaborators/", self._collaborator),
            ("GET", f"{API}/orgs/", self._team_membership),
            ("POST", f"{API}/repos/{REPO}/issues/comments/", self._react),
        ]
        for method, url, handler in routes:
            path = re.escape(url.removeprefix(API))
            tail = r"[^/?]+$" if url.endswith("/") else r"(\?.*)?$"
            if url.endswith("/orgs/"):
                tail = r"[^/?]+/teams/[^/?]+/memberships/[^/?]+$"
            if method == "POST" and url.endswith("/comments/"):
                tail = r"[0-9]+/reactions$"
            if method == "GET" and url.endswith("/issues/"):
                tail = r"[0-9]+(\?.*)?$"
            pattern = re.compile(r"^https://api\.github\.com(:443)?" + path + tail)
            self.mock.add_callback(method, pattern, callback=self._guarded(method, url, handler))

    # --- fault injection --------------------------------------------------------------------

    def fail(self, method: str, path_suffix: str, *replies: Fault) -> None:
        """The next requests to the route ending in `path_suffix` get these replies first."""
        self.faults[(method, path_suffix)].extend(replies)

    def _guarded(self, method: str, url: str, handler: Any) -> Any:
        def respond(request: requests.PreparedRequest) -> Reply:
            for (fault_method, suffix), queue in self.faults.items():
                if fault_method == method and (request.path_url.split("?")[0].endswith(suffix)) and queue:
                    reply = queue.popleft()
                    if isinstance(reply, Exception):
                        raise reply
                    if callable(reply):
                        return reply(request, handler)  # e.g. do the write, then time out
                    return reply
            result: Reply = handler(request)
            return result

        return respond

    # --- the API ----------------------------------------------------------------------------

    def _issue_json(self) -> dict[str, Any]:
        issue = fixture_json("github", "issues__opened.json")["issue"]
        return {**issue, "labels": [{"name": n} for n in self.labels], "state": self.state}

    @staticmethod
    def _reply(body: Any, status: int = 200) -> Reply:
        return status, {"Content-Type": "application/json"}, json.dumps(body)

    def _user(self, _: requests.PreparedRequest) -> Reply:
        return self._reply({"login": BOT, "id": 1, "type": "User"})

    def _react(self, request: requests.PreparedRequest) -> Reply:
        comment_id = int(request.path_url.split("/")[-2])
        reaction = (comment_id, request_json(request, {})["content"])
        known = reaction in self.reactions
        if not known:
            self.reactions.append(reaction)
        return self._reply({"id": len(self.reactions), "content": reaction[1]}, 200 if known else 201)

    def _collaborator(self, request: requests.PreparedRequest) -> Reply:
        login = unquote(request.path_url.split("?")[0].rsplit("/", 1)[-1])
        return (204, {}, "") if login in self.collaborators else self._reply({"message": "Not Found"}, 404)

    def _team_membership(self, request: requests.PreparedRequest) -> Reply:
        _, _, org, _, slug, _, login = unquote(request.path_url.split("?")[0]).split("/")
        if login not in self.team_members.get(f"{org}/{slug}", set()):
            return self._reply({"message": "Not Found"}, 404)
        return self._reply({"url": request.url, "role": "member", "state": "active"})

    def _set_labels(self, request: requests.PreparedRequest) -> Reply:
        self.labels = list(request_json(request, []))
        return self._reply([{"name": n} for n in self.labels])

    def _add_labels(self, request: requests.PreparedRequest) -> Reply:
        self.labels.extend(name for name in request_json(request, []) if name not in self.labels)
        return self._reply([{"name": n} for n in self.labels])

    def _remove_label(self, request: requests.PreparedRequest) -> Reply:
        name = unquote(request.path_url.split("?")[0].rsplit("/", 1)[-1])
        if name not in self.labels:
            return self._reply({"message": "Label does not exist"}, 404)
        self.labels.remove(name)
        return self._reply([{"name": n} for n in self.labels])

    def _edit_issue(self, request: requests.PreparedRequest) -> Reply:
        self.state = request_json(request, {}).get("state", self.state)
        return self._reply(self._issue_json())

    def _list_comments(self, _: requests.PreparedRequest) -> Reply:
        return self._reply(self.comments)

    def _create_comment(self, request: requests.PreparedRequest) -> Reply:
        self._next_id += 1
        comment = {
            "id": self._next_id,
            "body": request_json(request, {})["body"],
            "user": {"login": BOT, "id": 1, "type": "User"},
            "url": f"{API}/repos/{REPO}/issues/comments/{self._next_id}",
            "created_at": COMMENTED_AT,
        }
        self.comments.append(comment)
        return self._reply(comment, 201)

    def _edit_comment(self, request: requests.PreparedRequest) -> Reply:
        comment_id = int(request.path_url.rsplit("/", 1)[-1])
        comment = next(c for c in self.comments if c["id"] == comment_id)
        comment["body"] = request_json(request, {})["body"]
        return self._reply(comment)

    @staticmethod
    def _as_issue(child: dict[str, Any]) -> dict[str, Any]:
        """A sub-issue as `GET /issues/{n}` gives it: with its `url` and `closed_by`."""
        return {"url": f"{API}/repos/{REPO}/issues/{child['number']}", "closed_by": None, **child}

    def _list_sub_issues(self, _: requests.PreparedRequest) -> Reply:
        """As GitHub lists issues: `closed_by` is not in a list (only `GET` of one issue has it;
        optional in the `issue` schema), so who closed a sub-issue takes a `GET` of it."""
        listed = [{k: v for k, v in self._as_issue(c).items() if k != "closed_by"} for c in self.sub_issues]
        return self._reply(listed)

    def _get_issue(self, request: requests.PreparedRequest) -> Reply:
        number = int(request.path_url.split("?")[0].rsplit("/", 1)[-1])
        found = [c for c in self.sub_issues if c["number"] == number]
        if not found:
            return self._reply({"message": "Not Found"}, 404)
        return self._reply(self._as_issue(found[0]))

    def _create_issue(self, request: requests.PreparedRequest) -> Reply:
        self._next_id += 1
        data = request_json(request, {})
        created = {
            **fixture_json("github", "issues__opened.json")["issue"],
            "id": self._next_id,
            "number": self._next_id,
            "title": data["title"],
            "body": data.get("body"),
            "labels": [{"name": n} for n in data.get("labels", [])],
            "state": "open",
        }
        self.orphans.append(created)
        return self._reply(created, 201)

    def _list_issues(self, request: requests.PreparedRequest) -> Reply:
        wanted = set(parse_qs(urlsplit(request.path_url).query).get("labels", [""])[0].split(",")) - {""}
        found = [o for o in reversed(self.orphans) if wanted <= {label["name"] for label in o["labels"]}]
        return self._reply(found)

    def _add_sub_issue(self, request: requests.PreparedRequest) -> Reply:
        wanted = request_json(request, {})["sub_issue_id"]
        child = next(o for o in self.orphans if o["id"] == wanted)
        if child in self.sub_issues:
            return self._reply({"message": "Validation Failed"}, 422)
        self.sub_issues.append(child)
        return self._reply(child, 201)

    # --- what happened ----------------------------------------------------------------------

    def requests(self) -> list[requests.PreparedRequest]:
        return [call.request for call in self.mock.calls]

    def calls(self) -> list[str]:
        """`METHOD /path` of every request, in order, identity lookups excluded."""
        return [f"{r.method} {r.path_url.split('?')[0]}" for r in self.requests() if r.path_url != "/user"]

    def check_against_openapi(self) -> None:
        assert_requests_allowed("github-issues.openapi.json", API, self.requests(), [BARE_LABEL_ARRAY])

    def our_comments(self) -> Iterator[str]:
        return (c["body"] for c in self.comments if c["user"]["login"] == BOT)


@dataclass
class Service:
    """A sopguard app whose GitHub connector talks to the fake; sleeps are recorded, not slept."""

    app: Flask
    slept: list[float]

    @property
    def intake(self) -> Intake:
        intake: Intake = self.app.extensions["sopguard"]
        return intake

    def deliver(self, payload: dict[str, Any], delivery: str, event: str = "issues") -> int:
        """Post a signed delivery and run the queue; returns how many deliveries were processed."""
        body = json.dumps(payload).encode()
        response = self.app.test_client().post(
            "/webhooks/github", data=body, headers=github_headers(body, event, delivery)
        )
        assert response.status_code in (200, 202), response.get_json()
        ran: int = drain(self.app)
        return ran


def service(tmp_path: Path, database_url: str = "") -> Service:
    """A sopguard app acting on the fake GitHub; its database in `tmp_path`, or at `database_url`."""
    settings = Settings(
        data_dir=tmp_path / "var",
        database_url=database_url,
        github_webhook_secret=GITHUB_SECRET,
        jira_webhook_secret=JIRA_SECRET,
    )
    slept: list[float] = []
    connector = GithubConnector(auth=Auth.Token("test-token"), sleep=slept.append)
    services = Services(
        settings,
        load_policy(),
        Store(settings.resolved_database_url),
        {"github": connector, "jira": DryRunConnector()},
    )
    return Service(create_app(settings, services), slept)


def issue_payload(action: str, *, labels: list[str], body: str | None = None, **extra: Any) -> dict[str, Any]:
    """The real `issues.<action>` delivery (from the `opened`/`labeled` recordings) with our labels and body."""
    recorded = {"labeled", "unlabeled", "opened", "edited", "closed", "reopened"}
    payload = fixture_json("github", f"issues__{action if action in recorded else 'opened'}.json")
    payload["action"] = action
    # The recordings were made at different times; one issue's deliveries here show one moment
    # unless a test says otherwise (an older `updated_at` is judged as history).
    payload["issue"]["updated_at"] = "2019-05-15T15:20:18Z"
    payload["issue"]["labels"] = [{"name": name} for name in labels]
    if body is not None:
        payload["issue"]["body"] = body
    payload["issue"].update(extra.pop("issue", {}))
    payload.update(extra)
    return payload


def form_body(**overrides: str) -> str:
    """An issue body as GitHub renders the exported issue form, every intake field answered."""
    policy = load_policy()
    answers = {f.github.heading: (f.values[-1] if f.options else f"The {f.id}") for f in policy.intake.fields}
    answers.update(overrides)
    return "\n\n".join(f"### {heading}\n\n{value}" for heading, value in answers.items())


def labelled(github: FakeGithub, label: str, *, by: str = "Codertocat", **extra: Any) -> dict[str, Any]:
    """`issues.labeled` as GitHub sends it after a person added `label` to the fake's issue."""
    github.labels.append(label)
    payload = issue_payload("labeled", labels=list(github.labels), label={"name": label}, **extra)
    payload["sender"] = {**payload["sender"], "login": by}
    return payload


def put_in_state(sopguard: Service, github: FakeGithub, state: str, *labels: str) -> None:
    """An issue the service already follows, in `state` (its ledger and its status label)."""
    github.labels = [POLICY.trackers.github.status_label(state), *labels]
    sopguard.intake.store.ledger.remember_state(REF, state, utc_now())


def add_checklist(
    github: FakeGithub, checklist_id: str, *, open_items: int = 0, closed_by: str | None = None
) -> None:
    """The checklist's items as sub-issues, the first `open_items` open; the closed ones closed by
    `closed_by` (a login), or by someone GitHub does not name."""
    checklist = POLICY.checklist(checklist_id)
    assert checklist is not None
    for index, item in enumerate(checklist.items):
        closed = index >= open_items
        closer = {"login": closed_by, "id": 700 + len(closed_by), "type": "User"} if closed_by else None
        github.sub_issues.append(
            {
                "id": 100 + len(github.sub_issues),
                "number": 100 + len(github.sub_issues),
                "title": f"{checklist.title.en}: {item.en}",
                "state": "closed" if closed else "open",
                "closed_by": closer if closed else None,
            }
        )

"""A stateful fake of GitHub's REST API on a real loopback HTTP server, for sopguard in other processes.

`responses` only intercepts HTTP inside the test's own process. When sopguard runs elsewhere (`sopguard
worker` processes killed with SIGKILL, a fault test, a latency benchmark), point it at this server:

    with FakeGithubServer() as github:
        env = {"GITHUB_API_URL": github.url, "GITHUB_TOKEN": "t", ...}
        ...  # start sopguard, deliver, then look at github.issue(...), github.calls()

It keeps any number of repositories and issues (created on first touch) with their labels, state,
comments, sub-issues and issue events, answers the requests PyGithub 2.x makes for our connector in
GitHub's shapes (checked against GitHub's OpenAPI description in tests/test_fake_github.py), records
every request (`calls()`, `writes()`, `write_counts()`), and injects faults: scripted with `fail_next`,
or at random with `RandomFaults`. A fault may strike after the write took effect ("done-then-500",
"done-then-drop"): the state changed, the client saw an error or a dropped connection.

`Call.monotonic` is `time.monotonic()` on arrival. On Linux that clock is the same for every process
of the machine, so a benchmark can compare it with a monotonic time taken in another process.

Inside pytest, tests/conftest.py activates `responses` for every test, and `responses` intercepts the
`requests` adapter of every client in the process, PyGithub's included. Let the server's traffic
through with the `no_network` fixture (the active `responses.RequestsMock`):

    def test_something(no_network: responses.RequestsMock) -> None:
        with FakeGithubServer() as github:
            no_network.add_passthru(github.url)

`add_passthru` takes a URL prefix; other URLs stay blocked. Sopguard in a subprocess is not affected
by `responses` at all.

Run it on its own for manual testing: `python -m tests.fake_github --port 0` prints its URL; the
call log and state are readable at `<url>/_fake/calls` and `<url>/_fake/state`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

BOT = "sopguard-bot"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JsonReply = tuple[int, Any, dict[str, str]]


# --- faults ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """How one request fails. `status=None` drops the connection without an answer; `after_write`
    lets the request take effect first; `retry_after` (seconds) is sent as `Retry-After`."""

    status: int | None
    after_write: bool = False
    retry_after: int | None = None

    @property
    def label(self) -> str:
        what = "drop" if self.status is None else str(self.status)
        if self.retry_after is not None:
            what += f" retry-after={self.retry_after}"
        return f"done-then-{what}" if self.after_write else what


FaultSpec = int | str | Fault
_SPEC = re.compile(r"(done-then-)?(drop|\d{3})")


def parse_fault(spec: FaultSpec, retry_after: int) -> Fault:
    """`500`, `"drop"`, `"done-then-500"`, `"done-then-drop"` or a `Fault`. A shorthand 429 (or 403, the
    rate limit GitHub also uses) carries `Retry-After: retry_after`; write `Fault(429)` for none."""
    if isinstance(spec, Fault):
        return spec
    match = _SPEC.fullmatch(str(spec))
    if match is None:
        raise ValueError(
            f"not a fault: {spec!r} (a status, 'drop', 'done-then-<status>' or 'done-then-drop')"
        )
    status = None if match[2] == "drop" else int(match[2])
    wait = retry_after if status in (403, 429) else None
    return Fault(status, after_write=match[1] is not None, retry_after=wait)


@dataclass(frozen=True)
class RandomFaults:
    """With chance `rate` a request fails with one of `statuses` (a 429 carries `Retry-After` with
    chance `retry_after_share`). A failure is a dropped connection instead with chance `drop`; a failing
    write takes effect before it fails with chance `after_write`. Seeded, so a run can be repeated."""

    rate: float = 0.0
    seed: int = 0
    statuses: tuple[int, ...] = (500, 502, 503, 429)
    retry_after_share: float = 0.5
    drop: float = 0.0
    after_write: float = 0.0
    writes_only: bool = False

    def draw(self, rng: random.Random, method: str, retry_after: int) -> Fault | None:
        if self.writes_only and method not in WRITE_METHODS:
            return None
        if rng.random() >= self.rate:
            return None
        status: int | None = rng.choice(self.statuses)
        wait = retry_after if status == 429 and rng.random() < self.retry_after_share else None
        if rng.random() < self.drop:
            status, wait = None, None
        after_write = method in WRITE_METHODS and rng.random() < self.after_write
        return Fault(status, after_write=after_write, retry_after=wait)


@dataclass
class _Script:
    method: str
    path: re.Pattern[str]
    faults: list[Fault]


# --- state -------------------------------------------------------------------------------------


@dataclass
class FakeComment:
    id: int
    repo: str
    issue_number: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


@dataclass
class FakeIssue:
    id: int
    repo: str
    number: int
    title: str
    body: str | None
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    state_reason: str | None = None
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    comment_ids: list[int] = field(default_factory=list)
    sub_issue_ids: list[int] = field(default_factory=list)
    parent_id: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Call:
    """One request as the server saw and answered it. `status` is None when the connection was dropped;
    `took_effect` says whether the request changed the state (a write that succeeded, or was faulted
    only after it was done)."""

    monotonic: float
    wall: float
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    kind: str
    status: int | None
    fault: str | None
    took_effect: bool
    response: Any
    response_headers: dict[str, str]

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class _Reject(Exception):
    """A 4xx answer from a handler: nothing changed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# --- routes --------------------------------------------------------------------------------------

_ISSUE = "/repos/<owner>/<repo>/issues/<int:number>"
ROUTES = Map(
    [
        Rule("/user", endpoint="user.get", methods=["GET"]),
        Rule("/repos/<owner>/<repo>", endpoint="repo.get", methods=["GET"]),
        Rule("/repos/<owner>/<repo>/issues", endpoint="issues.list", methods=["GET"]),
        Rule("/repos/<owner>/<repo>/issues", endpoint="issue.create", methods=["POST"]),
        Rule(_ISSUE, endpoint="issue.get", methods=["GET"]),
        Rule(_ISSUE, endpoint="issue.edit", methods=["PATCH"]),
        Rule(f"{_ISSUE}/labels", endpoint="labels.list", methods=["GET"]),
        Rule(f"{_ISSUE}/labels", endpoint="labels.add", methods=["POST"]),
        Rule(f"{_ISSUE}/labels", endpoint="labels.set", methods=["PUT"]),
        Rule(f"{_ISSUE}/labels", endpoint="labels.clear", methods=["DELETE"]),
        Rule(f"{_ISSUE}/labels/<path:name>", endpoint="labels.remove", methods=["DELETE"]),
        Rule(f"{_ISSUE}/comments", endpoint="comments.list", methods=["GET"]),
        Rule(f"{_ISSUE}/comments", endpoint="comment.create", methods=["POST"]),
        Rule(
            "/repos/<owner>/<repo>/issues/comments/<int:comment_id>", endpoint="comment.get", methods=["GET"]
        ),
        Rule(
            "/repos/<owner>/<repo>/issues/comments/<int:comment_id>",
            endpoint="comment.edit",
            methods=["PATCH"],
        ),
        Rule(f"{_ISSUE}/sub_issues", endpoint="sub_issues.list", methods=["GET"]),
        Rule(f"{_ISSUE}/sub_issues", endpoint="sub_issue.add", methods=["POST"]),
        Rule(f"{_ISSUE}/sub_issue", endpoint="sub_issue.remove", methods=["DELETE"]),
        Rule(f"{_ISSUE}/events", endpoint="events.list", methods=["GET"]),
        Rule("/repos/<owner>/<repo>/issues/events/<int:event_id>", endpoint="event.get", methods=["GET"]),
    ],
    strict_slashes=False,
)


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


# --- the server ----------------------------------------------------------------------------------


class FakeGithubServer:
    """GitHub's issues API for one token's user (`login`), served on 127.0.0.1 in a background thread."""

    def __init__(
        self,
        *,
        login: str = BOT,
        port: int = 0,
        faults: RandomFaults | None = None,
        retry_after: int = 1,
        rate_limit: int = 5000,
        default_author: str = "Codertocat",
    ) -> None:
        self.login = login
        self.retry_after = retry_after
        self.rate_limit = rate_limit
        self.default_author = default_author
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._random_faults = faults or RandomFaults()
        self._rng = random.Random(self._random_faults.seed)
        self._scripts: list[_Script] = []
        self._calls: list[Call] = []
        self._issues: dict[tuple[str, int], FakeIssue] = {}
        self._comments: dict[int, FakeComment] = {}
        self._ids: dict[str, int] = {}
        self._issues_by_id: dict[int, FakeIssue] = {}
        self._events: dict[int, tuple[FakeIssue, dict[str, Any]]] = {}
        self._deleted: set[tuple[str, int]] = set()
        self._next_id = 1000
        self._window, self._used = 0, 0
        self._httpd = _Httpd(("127.0.0.1", port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeGithubServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-github", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the connections clients keep alive, and wait for every handler thread."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> FakeGithubServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- faults -------------------------------------------------------------------------------

    def fail_next(self, method: str, path_regex: str, *faults: FaultSpec) -> None:
        """The next requests with `method` ("*" for any) whose path (no query) `re.search`es
        `path_regex` fail in turn with `faults`: statuses, "drop", "done-then-500", "done-then-drop"."""
        script = _Script(
            method.upper(), re.compile(path_regex), [parse_fault(f, self.retry_after) for f in faults]
        )
        with self._lock:
            self._scripts.append(script)

    def set_random_faults(self, faults: RandomFaults) -> None:
        with self._lock:
            self._random_faults = faults
            self._rng = random.Random(faults.seed)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        for script in self._scripts:
            if script.faults and script.method in ("*", method) and script.path.search(path):
                return script.faults.pop(0)
        return self._random_faults.draw(self._rng, method, self.retry_after)

    # --- the call log -------------------------------------------------------------------------

    def calls(self, kind: str | None = None) -> list[Call]:
        """A copy of the log in the order requests were answered; only endpoint `kind` ("issue.get", ...)
        if given. Paths are percent-decoded."""
        with self._lock:
            return [c for c in self._calls if kind in (None, c.kind)]

    def writes(self, kind: str | None = None, *, effective: bool = False) -> list[Call]:
        """Write requests (of `kind`, e.g. "comment.create"), only those that took effect if `effective`."""
        return [
            c
            for c in self.calls()
            if c.is_write and kind in (None, c.kind) and (c.took_effect or not effective)
        ]

    def write_counts(self, *, effective: bool = False) -> Counter[str]:
        """How many writes of each kind ("labels.add", "comment.create", ...) were made (or took effect)."""
        return Counter(c.kind for c in self.writes(effective=effective))

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(calls)` holds (checked after every request, with the lock held: do
        not keep the list) or `timeout` passes; whether it holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._calls), timeout)

    # --- state for tests ----------------------------------------------------------------------

    def put_issue(self, repo: str, number: int, **fields: Any) -> None:
        """Set an issue's fields (title, body, state, labels, user, ...) as they are, without events;
        the issue is created if new."""
        with self._lock:
            issue = self._issue(repo, number)
            for name, value in fields.items():
                if not hasattr(issue, name):
                    raise AttributeError(f"FakeIssue has no field {name!r}")
                setattr(issue, name, copy.deepcopy(list(value) if isinstance(value, tuple) else value))
            if "state" in fields and "closed_at" not in fields:
                issue.closed_at = (issue.closed_at or _now()) if issue.state == "closed" else None

    def delete_issue(self, repo: str, number: int) -> None:
        """Delete the issue as an admin does: from now on every request naming it answers 410."""
        with self._lock:
            self._deleted.add((repo, number))

    def add_comment(
        self, repo: str, number: int, body: str, user: str | None = None, at: datetime | None = None
    ) -> int:
        """A comment someone (`default_author` unless `user`) made (now, unless `at`); its id."""
        with self._lock:
            comment = self._add_comment(self._issue(repo, number), body, user or self.default_author)
            if at is not None:
                comment.created_at = comment.updated_at = at.astimezone(UTC).replace(microsecond=0)
            return comment.id

    def add_event(
        self, repo: str, number: int, event: str, at: datetime, label: str | None = None, actor: str = ""
    ) -> None:
        """An issue event (`labeled`, `closed`, ...) in its history at `at`, as GitHub lists it;
        the issue's labels and state are left as they are (set them with `put_issue`)."""
        with self._lock:
            issue = self._issue(repo, number)
            updated = issue.updated_at
            self._event(issue, event, label)
            issue.events[-1]["created_at"] = _iso(at.astimezone(UTC).replace(microsecond=0))
            if actor:
                issue.events[-1]["actor"] = self._user_json(actor)
            issue.updated_at = updated

    def issue(self, repo: str, number: int) -> FakeIssue:
        """A copy of the issue as it stands (created if it was never touched)."""
        with self._lock:
            return copy.deepcopy(self._issue(repo, number))

    def comments(self, repo: str, number: int) -> list[FakeComment]:
        with self._lock:
            return [copy.deepcopy(self._comments[i]) for i in self._issue(repo, number).comment_ids]

    def sub_issue_numbers(self, repo: str, number: int) -> list[int]:
        with self._lock:
            return [self._by_id(i).number for i in self._issue(repo, number).sub_issue_ids]

    def issue_numbers(self, repo: str) -> list[int]:
        with self._lock:
            return sorted(n for r, n in self._issues if r == repo)

    def state(self) -> dict[str, Any]:
        """Everything the server holds, as JSON-ready data."""
        with self._lock:
            return {
                "issues": [self._issue_json(i) for i in self._issues.values()],
                "comments": [self._comment_json(c) for c in self._comments.values()],
            }

    # --- serving (called by the handler) ------------------------------------------------------

    def serve(self, method: str, target: str, body: Any, arrived: float, wall: float) -> tuple[Call, bool]:
        """Answer one request that `arrived` (monotonic; `wall`: time.time()); the second value says to
        drop the connection instead of answering."""
        parts = urlsplit(target)
        request = _Request(method, unquote(parts.path), parse_qs(parts.query), body)
        with self._changed:
            kind, args = _route(request)
            fault = None if kind == "unknown" else self._fault_for(method, request.path)
            reply = self._error(404, "Not Found")
            took_effect = False
            if kind != "unknown" and (fault is None or fault.after_write):
                reply = self._dispatch(kind, request, args)
                took_effect = method in WRITE_METHODS and reply[0] < 400
            if fault is not None:
                reply = self._fault_reply(fault)
            status, payload, headers = reply
            headers = {**self._rate_headers(), **headers}
            call = Call(
                arrived,
                wall,
                method,
                request.path,
                request.query,
                body,
                kind,
                None if fault is not None and fault.status is None else status,
                None if fault is None else fault.label,
                took_effect,
                payload,
                headers,
            )
            self._calls.append(call)
            self._changed.notify_all()
        return call, fault is not None and fault.status is None

    def _dispatch(self, kind: str, request: _Request, args: dict[str, Any]) -> JsonReply:
        if (f"{args.get('owner')}/{args.get('repo')}", args.get("number")) in self._deleted:
            return self._error(410, "This issue was deleted")
        handler = getattr(self, "_on_" + kind.replace(".", "_"))
        try:
            reply: JsonReply = handler(request, **args)
        except _Reject as rejection:
            return self._error(rejection.status, rejection.message)
        return reply

    def _fault_reply(self, fault: Fault) -> JsonReply:
        status = fault.status or 500
        headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if status in (403, 429):
            message = (
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
            )
            return status, {"message": message}, headers
        return status, {"message": "Server Error"}, headers

    @staticmethod
    def _error(status: int, message: str) -> JsonReply:
        return status, {"message": message, "documentation_url": "https://docs.github.com/rest"}, {}

    def _rate_headers(self) -> dict[str, str]:
        window = int(time.time()) // 3600 * 3600
        if window != self._window:
            self._window, self._used = window, 0
        self._used += 1
        used = self._used
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(max(self.rate_limit - used, 0)),
            "X-RateLimit-Reset": str(window + 3600),
            "X-RateLimit-Used": str(used),
            "X-RateLimit-Resource": "core",
        }

    # --- state helpers (the lock is held) -----------------------------------------------------

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _stable_id(self, key: str) -> int:
        if key not in self._ids:
            self._ids[key] = self._new_id()
        return self._ids[key]

    def _issue(self, repo: str, number: int) -> FakeIssue:
        if (repo, number) not in self._issues:
            now = _now()
            issue = FakeIssue(
                self._new_id(), repo, number, f"Issue {number}", None, self.default_author, now, now
            )
            self._issues[(repo, number)] = self._issues_by_id[issue.id] = issue
        return self._issues[(repo, number)]

    def _by_id(self, issue_id: int) -> FakeIssue:
        found = self._issues_by_id.get(issue_id)
        if found is None:
            raise _Reject(422, "Validation Failed")
        return found

    def _add_comment(self, issue: FakeIssue, body: str, user: str) -> FakeComment:
        now = _now()
        comment = FakeComment(self._new_id(), issue.repo, issue.number, body, user, now, now)
        self._comments[comment.id] = comment
        issue.comment_ids.append(comment.id)
        return comment

    def _event(self, issue: FakeIssue, event: str, label: str | None = None) -> None:
        event_id = self._new_id()
        item: dict[str, Any] = {
            "id": event_id,
            "node_id": f"IE_{event_id}",
            "url": f"{self.url}/repos/{issue.repo}/issues/events/{event_id}",
            "actor": self._user_json(self.login),
            "event": event,
            "commit_id": None,
            "commit_url": None,
            "created_at": _iso(_now()),
            "performed_via_github_app": None,
        }
        if label is not None:
            item["label"] = {"name": label, "color": "ededed"}
        issue.events.append(item)
        self._events[event_id] = (issue, item)
        issue.updated_at = _now()

    def _relabel(self, issue: FakeIssue, wanted: list[str]) -> None:
        for name in [n for n in issue.labels if n not in wanted]:
            self._event(issue, "unlabeled", name)
        for name in [n for n in wanted if n not in issue.labels]:
            self._event(issue, "labeled", name)
        issue.labels = list(dict.fromkeys(wanted))

    def _set_state(self, issue: FakeIssue, state: str, reason: str | None) -> None:
        if state not in ("open", "closed"):
            raise _Reject(422, "Validation Failed")
        if state == issue.state:
            return
        issue.state = state
        issue.closed_at = _now() if state == "closed" else None
        issue.state_reason = (reason or "completed") if state == "closed" else "reopened"
        self._event(issue, "closed" if state == "closed" else "reopened")

    # --- JSON shapes ----------------------------------------------------------------------------

    def _user_json(self, login: str) -> dict[str, Any]:
        user_id = self._stable_id(f"user:{login}")
        api = f"{self.url}/users/{login}"
        return {
            "login": login,
            "id": user_id,
            "node_id": f"U_{user_id}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": f"https://github.com/{login}",
            "followers_url": f"{api}/followers",
            "following_url": f"{api}/following{{/other_user}}",
            "gists_url": f"{api}/gists{{/gist_id}}",
            "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/subscriptions",
            "organizations_url": f"{api}/orgs",
            "repos_url": f"{api}/repos",
            "events_url": f"{api}/events{{/privacy}}",
            "received_events_url": f"{api}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "site_admin": False,
        }

    def _label_json(self, repo: str, name: str) -> dict[str, Any]:
        label_id = self._stable_id(f"label:{repo}:{name}")
        return {
            "id": label_id,
            "node_id": f"LA_{label_id}",
            "url": f"{self.url}/repos/{repo}/labels/{quote(name, safe='')}",
            "name": name,
            "color": "ededed",
            "default": False,
            "description": None,
        }

    def _issue_json(self, issue: FakeIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{issue.repo}/issues/{issue.number}"
        children = [self._by_id(i) for i in issue.sub_issue_ids]
        done = sum(1 for c in children if c.state == "closed")
        return {
            "id": issue.id,
            "node_id": f"I_{issue.id}",
            "url": api,
            "repository_url": f"{self.url}/repos/{issue.repo}",
            "labels_url": f"{api}/labels{{/name}}",
            "comments_url": f"{api}/comments",
            "events_url": f"{api}/events",
            "html_url": f"https://github.com/{issue.repo}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body,
            "user": self._user_json(issue.user),
            "labels": [self._label_json(issue.repo, n) for n in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "active_lock_reason": None,
            "comments": len(issue.comment_ids),
            "closed_at": _iso(issue.closed_at),
            "created_at": _iso(issue.created_at),
            "updated_at": _iso(issue.updated_at),
            "author_association": "OWNER",
            **({"state_reason": issue.state_reason} if issue.state_reason else {}),  # null fails the enum
            "sub_issues_summary": {
                "total": len(children),
                "completed": done,
                "percent_completed": done * 100 // len(children) if children else 0,
            },
        }

    def _comment_json(self, comment: FakeComment) -> dict[str, Any]:
        issue_api = f"{self.url}/repos/{comment.repo}/issues/{comment.issue_number}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{self.url}/repos/{comment.repo}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{comment.repo}/issues/{comment.issue_number}#issuecomment-{comment.id}",
            "issue_url": issue_api,
            "body": comment.body,
            "user": self._user_json(comment.user),
            "created_at": _iso(comment.created_at),
            "updated_at": _iso(comment.updated_at),
            "author_association": "OWNER" if comment.user == self.login else "NONE",
            "performed_via_github_app": None,
        }

    def _page(self, request: _Request, items: list[dict[str, Any]]) -> JsonReply:
        """GitHub's paging: `per_page` (30 by default, at most 100), `page`, and a Link header."""
        per_page = min(max(int(request.arg("per_page", "30") or 30), 1), 100)
        page = max(int(request.arg("page", "1") or 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        shown = {"next": page + 1} if page < last else {}
        shown |= {"last": last, "first": 1}
        if page > 1:
            shown["prev"] = min(page - 1, last)

        def link(number: int) -> str:
            query = {**request.query, "page": [str(number)]}
            return f"{self.url}{quote(request.path)}?{urlencode(query, doseq=True)}"

        headers = (
            {"Link": ", ".join(f'<{link(n)}>; rel="{rel}"' for rel, n in shown.items())} if last > 1 else {}
        )
        return 200, items[(page - 1) * per_page : page * per_page], headers

    # --- endpoints (the lock is held) -----------------------------------------------------------

    def _on_user_get(self, request: _Request) -> JsonReply:
        user = self._user_json(self.login)
        when = _iso(_now())
        profile = ("name", "company", "location", "email", "hireable", "bio")
        counts = ("public_repos", "public_gists", "followers", "following", "collaborators", "disk_usage")
        private = ("owned_private_repos", "private_gists", "total_private_repos")
        extra: dict[str, Any] = dict.fromkeys(profile) | dict.fromkeys(counts + private, 0)
        extra |= {"blog": "", "created_at": when, "updated_at": when, "two_factor_authentication": True}
        return 200, {**user, **extra, "user_view_type": "private"}, {}

    def _on_repo_get(self, request: _Request, owner: str, repo: str) -> JsonReply:
        full_name = f"{owner}/{repo}"
        repo_id = self._stable_id(f"repo:{full_name}")
        return (
            200,
            {
                "id": repo_id,
                "node_id": f"R_{repo_id}",
                "name": repo,
                "full_name": full_name,
                "owner": self._user_json(owner),
                "private": False,
                "html_url": f"https://github.com/{full_name}",
                "url": f"{self.url}/repos/{full_name}",
                "issues_url": f"{self.url}/repos/{full_name}/issues{{/number}}",
                "has_issues": True,
                "default_branch": "main",
            },
            {},
        )

    def _on_issues_list(self, request: _Request, owner: str, repo: str) -> JsonReply:
        state = request.arg("state", "open")
        wanted = {n for n in request.arg("labels").split(",") if n}
        since = _parse_iso(request.arg("since")) if request.arg("since") else None
        found = [
            i
            for (r, _), i in self._issues.items()
            if r == f"{owner}/{repo}"
            and state in ("all", i.state)
            and wanted <= set(i.labels)
            and (since is None or i.updated_at >= since)
        ]
        sort = request.arg("sort", "created")
        keys: dict[str, Callable[[FakeIssue], Any]] = {
            "created": lambda i: (i.created_at, i.number),
            "updated": lambda i: (i.updated_at, i.number),
            "comments": lambda i: (len(i.comment_ids), i.number),
        }
        if sort not in keys:
            raise _Reject(422, "Validation Failed")
        found.sort(key=keys[sort], reverse=request.arg("direction", "desc") != "asc")
        return self._page(request, [self._issue_json(i) for i in found])

    def _on_issue_create(self, request: _Request, owner: str, repo: str) -> JsonReply:
        data = request.body if isinstance(request.body, dict) else {}
        if not data.get("title"):
            raise _Reject(422, "Validation Failed")
        full_name = f"{owner}/{repo}"
        number = max((n for r, n in self._issues if r == full_name), default=0) + 1
        issue = self._issue(full_name, number)
        issue.title, issue.body, issue.user = str(data["title"]), data.get("body"), self.login
        issue.labels = list(dict.fromkeys(_label_names(data.get("labels", []))))
        return 201, self._issue_json(issue), {"Location": f"{self.url}/repos/{full_name}/issues/{number}"}

    def _on_issue_get(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        return 200, self._issue_json(self._issue(f"{owner}/{repo}", number)), {}

    def _on_issue_edit(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        data = request.body if isinstance(request.body, dict) else {}
        if "state" in data:
            self._set_state(issue, str(data["state"]), data.get("state_reason"))
        if "labels" in data:
            self._relabel(issue, _label_names(data["labels"]))
        for name in ("title", "body"):
            if name in data:
                setattr(issue, name, data[name])
                issue.updated_at = _now()
        return 200, self._issue_json(issue), {}

    def _labels_reply(self, issue: FakeIssue) -> JsonReply:
        return 200, [self._label_json(issue.repo, n) for n in issue.labels], {}

    def _on_labels_list(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        return self._page(request, [self._label_json(issue.repo, n) for n in issue.labels])

    def _on_labels_add(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        self._relabel(issue, issue.labels + _label_names(request.body))
        return self._labels_reply(issue)

    def _on_labels_set(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        self._relabel(issue, _label_names(request.body))
        return self._labels_reply(issue)

    def _on_labels_clear(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        self._relabel(self._issue(f"{owner}/{repo}", number), [])
        return 204, None, {}

    def _on_labels_remove(
        self, request: _Request, owner: str, repo: str, number: int, name: str
    ) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        if name not in issue.labels:
            raise _Reject(404, "Label does not exist")
        self._relabel(issue, [n for n in issue.labels if n != name])
        return self._labels_reply(issue)

    def _on_comments_list(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        issue = self._issue(f"{owner}/{repo}", number)
        since = _parse_iso(request.arg("since")) if request.arg("since") else None
        comments = [self._comments[i] for i in issue.comment_ids]
        shown = [self._comment_json(c) for c in comments if since is None or c.updated_at >= since]
        return self._page(request, shown)

    def _on_comment_create(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        body = request.body.get("body") if isinstance(request.body, dict) else None
        if not isinstance(body, str):
            raise _Reject(422, "Validation Failed")
        issue = self._issue(f"{owner}/{repo}", number)
        comment = self._add_comment(issue, body, self.login)
        issue.updated_at = comment.created_at
        return 201, self._comment_json(comment), {"Location": self._comment_json(comment)["url"]}

    def _comment(self, owner: str, repo: str, comment_id: int) -> FakeComment:
        comment = self._comments.get(comment_id)
        if comment is None or comment.repo != f"{owner}/{repo}":
            raise _Reject(404, "Not Found")
        return comment

    def _on_comment_get(self, request: _Request, owner: str, repo: str, comment_id: int) -> JsonReply:
        return 200, self._comment_json(self._comment(owner, repo, comment_id)), {}

    def _on_comment_edit(self, request: _Request, owner: str, repo: str, comment_id: int) -> JsonReply:
        comment = self._comment(owner, repo, comment_id)
        body = request.body.get("body") if isinstance(request.body, dict) else None
        if not isinstance(body, str):
            raise _Reject(422, "Validation Failed")
        comment.body, comment.updated_at = body, _now()
        return 200, self._comment_json(comment), {}

    def _on_sub_issues_list(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        parent = self._issue(f"{owner}/{repo}", number)
        return self._page(request, [self._issue_json(self._by_id(i)) for i in parent.sub_issue_ids])

    def _child(self, request: _Request) -> FakeIssue:
        wanted = request.body.get("sub_issue_id") if isinstance(request.body, dict) else None
        if not isinstance(wanted, int):
            raise _Reject(422, "Validation Failed")
        return self._by_id(wanted)

    def _on_sub_issue_add(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        parent = self._issue(f"{owner}/{repo}", number)
        child = self._child(request)
        replace = isinstance(request.body, dict) and request.body.get("replace_parent") is True
        if child.id == parent.id or child.id in parent.sub_issue_ids:
            raise _Reject(422, "Validation Failed")
        if child.parent_id is not None:
            if not replace:
                raise _Reject(422, "Validation Failed")
            self._by_id(child.parent_id).sub_issue_ids.remove(child.id)
        parent.sub_issue_ids.append(child.id)
        child.parent_id = parent.id
        parent.updated_at = _now()
        return 201, self._issue_json(parent), {"Location": f"{self.url}/repos/{owner}/{repo}/issues/{number}"}

    def _on_sub_issue_remove(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        parent = self._issue(f"{owner}/{repo}", number)
        child = self._child(request)
        if child.id not in parent.sub_issue_ids:
            raise _Reject(404, "Not Found")
        parent.sub_issue_ids.remove(child.id)
        child.parent_id = None
        return 200, self._issue_json(parent), {}

    def _on_events_list(self, request: _Request, owner: str, repo: str, number: int) -> JsonReply:
        return self._page(request, list(self._issue(f"{owner}/{repo}", number).events))

    def _on_event_get(self, request: _Request, owner: str, repo: str, event_id: int) -> JsonReply:
        if event_id not in self._events or self._events[event_id][0].repo != f"{owner}/{repo}":
            raise _Reject(404, "Not Found")
        issue, item = self._events[event_id]
        return 200, {**item, "issue": self._issue_json(issue)}, {}


def _route(request: _Request) -> tuple[str, dict[str, Any]]:
    """The endpoint's name ("issue.get", ...) and its path arguments; "unknown" for anything else."""
    try:
        endpoint, args = ROUTES.bind("127.0.0.1").match(request.path, request.method)
    except (NotFound, MethodNotAllowed):
        return "unknown", {}
    return str(endpoint), dict(args)


def _label_names(body: Any) -> list[str]:
    """Labels as PyGithub sends them (a bare array) or as documented (`{"labels": [...]}`), names or objects."""
    items = body.get("labels", []) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise _Reject(422, "Validation Failed")
    return [str(i["name"]) if isinstance(i, dict) else str(i) for i in items]


# --- HTTP plumbing ---------------------------------------------------------------------------------


class _Httpd(ThreadingHTTPServer):
    """Joins its handler threads on close, after closing the connections clients keep open."""

    daemon_threads = False
    fake: FakeGithubServer

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (a killed worker) is expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        with self.connections_lock:
            for connection in self.open_connections:
                _hang_up(connection)


def _hang_up(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the client may have closed it first
        connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as PyGithub's connection pool expects
    disable_nagle_algorithm = True  # with `wbufsize`, an answer leaves in one segment, without delayed ACKs
    wbufsize = -1
    server: _Httpd

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):  # a dropped connection cannot be flushed
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the call log says what happened."""

    def _answer(self) -> None:
        arrived, wall = time.monotonic(), time.time()  # the request line and headers are in
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.path.startswith("/_fake/"):
            self._send(*self._control())
            return
        call, drop = self.server.fake.serve(self.command, self.path, body, arrived, wall)
        if drop:
            self.close_connection = True
            _hang_up(self.connection)
            return
        assert call.status is not None
        self._send(call.status, call.response, call.response_headers)

    def _control(self) -> tuple[int, Any, dict[str, str]]:
        fake = self.server.fake
        if self.path.startswith("/_fake/calls"):
            return 200, [asdict(c) for c in fake.calls()], {}
        if self.path.startswith("/_fake/state"):
            return 200, fake.state(), {}
        return 404, {"message": "Not Found"}, {}

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if status == 204 or payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


# --- a process of its own --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_github", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--login", default=BOT, help="the token's user")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="chance a request fails")
    parser.add_argument("--after-write", type=float, default=0.0, help="chance a failing write took effect")
    parser.add_argument("--drop", type=float, default=0.0, help="chance a failure drops the connection")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after", type=int, default=1, help="seconds, sent with a 429")
    options = parser.parse_args(argv)
    faults = RandomFaults(
        rate=options.fault_rate, seed=options.seed, drop=options.drop, after_write=options.after_write
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = FakeGithubServer(
        login=options.login, port=options.port, faults=faults, retry_after=options.retry_after
    )
    with server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()

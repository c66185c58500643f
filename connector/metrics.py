"""What sopguard asks of the trackers, counted where every request goes through: a response hook on
the `requests` sessions the client libraries use (PyGithub's through its connection classes, jira's
own session), so a call is counted whichever code path made it, retries included.

Each request is counted by tracker, method, endpoint and status. The endpoint is the path turned
into a route template (`/repos/{owner}/{repo}/issues/{id}/comments`, `/rest/api/2/issue/{key}`), never
the raw URL, so the number of series stays bounded. A request that got no answer (a timeout, a
refused connection) is counted by the retry layer with status `error`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests
from github.Requester import HTTPRequestsConnectionClass, HTTPSRequestsConnectionClass, Requester
from prometheus_client import Counter, Gauge

TRACKER_CALLS = Counter(
    "sopguard_tracker_calls",
    "HTTP requests sent to a tracker, by tracker, method, endpoint (a route template) and status.",
    ["tracker", "method", "endpoint", "status"],
)
TRACKER_RETRIES = Counter(
    "sopguard_tracker_retries", "Tracker calls tried again by the retry layer, by tracker.", ["tracker"]
)
RATE_LIMIT_REMAINING = Gauge(
    "sopguard_tracker_rate_limit_remaining",
    "Requests left in the tracker's rate-limit window (X-RateLimit-Remaining of the latest answer).",
    ["tracker"],
    multiprocess_mode="mostrecent",
)

_WORD = re.compile(r"[a-z][a-z_]*")
# Segments after which the next ones are names, whatever they look like (lower-case words too).
_NAMES_AFTER = {
    "repos": ("{owner}", "{repo}"),
    "users": ("{login}",),
    "orgs": ("{org}",),
    "apps": ("{app}",),
    "labels": ("{name}",),
    "properties": ("{key}",),
}


def endpoint(path: str) -> str:
    """The route template of a request path: literal API words kept, numbers `{id}`, names and
    keys (`PROJ-7`, a label, an owner) replaced by placeholders; the query is dropped."""
    path = urlsplit(path).path
    if "/rest/" in path:  # a Jira context path (`/jira/rest/api/2/...`) says nothing
        path = path[path.index("/rest/") :]
    elif path.startswith("/api/v3/"):  # GitHub Enterprise Server's prefix
        path = path.removeprefix("/api/v3")
    template: list[str] = []
    names: tuple[str, ...] = ()
    for segment in filter(None, path.split("/")):
        if names:
            template.append(names[0])
            names = names[1:]
        elif template and template[-1] == "api" and segment in ("2", "3", "latest"):
            template.append(segment)  # the Jira REST version
        elif segment.isdigit():
            template.append("{id}")
        elif _WORD.fullmatch(segment):
            template.append(segment)
            names = _NAMES_AFTER.get(segment, ())
        else:
            template.append("{key}")
    return "/" + "/".join(template)


def count_response(tracker: str) -> Any:
    """A `requests` response hook that counts each answer of `tracker` and notes its rate limit."""

    def counted(response: requests.Response, *_: Any, **__: Any) -> requests.Response:
        method = response.request.method or "GET"
        TRACKER_CALLS.labels(
            tracker, method, endpoint(response.request.path_url), str(response.status_code)
        ).inc()
        remaining = response.headers.get("X-RateLimit-Remaining", "")
        if remaining.isdigit():
            RATE_LIMIT_REMAINING.labels(tracker).set(int(remaining))
        return response

    return counted


def count_session(session: requests.Session, tracker: str) -> None:
    """Count every request `session` sends to `tracker`."""
    session.hooks["response"].append(count_response(tracker))


def count_unanswered(tracker: str, error: BaseException) -> None:
    """A request that got no answer (timeout, connection refused or dropped): status `error`."""
    if isinstance(error, requests.RequestException) and error.response is None:
        request = error.request
        method = (request.method if request is not None else None) or "GET"
        path = request.path_url if isinstance(request, requests.PreparedRequest) else "/"
        TRACKER_CALLS.labels(tracker, method, endpoint(path), "error").inc()


class _CountedHTTP(HTTPRequestsConnectionClass):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        count_session(self.session, "github")


class _CountedHTTPS(HTTPSRequestsConnectionClass):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        count_session(self.session, "github")


def count_github_calls() -> None:
    """Make every PyGithub client built from now on count its requests (PyGithub builds one
    `requests` session per connection, through classes it lets us replace)."""
    Requester.injectConnectionClasses(_CountedHTTP, _CountedHTTPS)

"""The Jira REST calls sopguard makes, each one request, through the `jira` library and one retry layer.

The client is built so that it makes no request until one is needed (`get_server_info=False`), with
the library's own `ResilientSession` retries switched off (`max_retries=0`): every retry happens in
`connector.retry`, on 429/503 (honouring `Retry-After`), other 5xx, connection errors and timeouts.

Reads and idempotent writes (PUT) are simply retried. A POST that failed ambiguously (a timeout, a
dropped connection, a 500/502/504: the server may have done it) is retried only after `landed`
says it did not happen, so no write is applied twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import requests
from jira import JIRA, JIRAError

from config.settings import Settings
from connector.metrics import count_session
from connector.retry import (
    BACK_OFF,
    GIVE_UP,
    MAX_BLOCKING_WAIT,
    QUICK_ATTEMPTS,
    Verdict,
    retrying,
    server_wait,
)
from connector.retry import call as retried

T = TypeVar("T")
Json = dict[str, Any]

BULK_LIMIT = 50  # issues per `POST /issue/bulk`, Jira's documented maximum
UNPROCESSED = frozenset({429, 503})  # rate limited or unavailable: the request was not carried out
AMBIGUOUS_STATUS = frozenset({500, 502, 504})


def status_of(error: BaseException) -> int | None:
    return error.status_code if isinstance(error, JIRAError) else None


def classify(error: BaseException) -> Verdict:
    """Worth another try: 429/503 (after the server's wait), other 5xx, connection errors, timeouts."""
    status = status_of(error)
    if status in UNPROCESSED:
        response = error.response if isinstance(error, JIRAError) else None
        return Verdict(True, server_wait(response.headers) if response is not None else None)
    if status is not None:
        return BACK_OFF if status >= 500 else GIVE_UP
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return BACK_OFF
    return GIVE_UP


def ambiguous(error: BaseException) -> bool:
    """Whether a failed write may nevertheless have been carried out by the server."""
    if isinstance(error, requests.ConnectTimeout):
        return False  # never connected, nothing was sent
    if isinstance(error, requests.ConnectionError | requests.Timeout):
        return True
    return status_of(error) in AMBIGUOUS_STATUS


def describe(error: BaseException) -> str:
    """A short, log-safe account of a failed call (no response bodies beyond Jira's own messages)."""
    if isinstance(error, JIRAError):
        return f"HTTP {error.status_code}: {error.text or 'no details'}"
    return f"{type(error).__name__}: {error}"


def build_client(settings: Settings) -> JIRA:
    """A client that has made no request yet; a PAT (Data Center) wins over e-mail and API token (Cloud)."""
    common: dict[str, Any] = {
        "server": settings.jira_url,
        "get_server_info": False,
        "max_retries": 0,
        "timeout": settings.tracker_timeout,
        "options": {"check_update": False},
    }
    if settings.jira_pat:
        return JIRA(token_auth=settings.jira_pat, **common)
    return JIRA(basic_auth=(settings.jira_email, settings.jira_api_token), **common)


class JiraApi:
    """Typed, retried Jira calls, each one request per try (REST v2 unless a v3 ADF body is sent)."""

    def __init__(
        self,
        client: JIRA,
        *,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = QUICK_ATTEMPTS,
        max_wait: float = MAX_BLOCKING_WAIT,
    ) -> None:
        self.client = client
        count_session(client._session, "jira")  # every request of the client counted
        self.server = client.server_url
        self._sleep = sleep
        self._attempts = attempts
        self._max_wait = max_wait

    @classmethod
    def from_settings(cls, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> JiraApi:
        return cls(build_client(settings), sleep=sleep)

    # --- the retry layer ----------------------------------------------------------------------

    def _retried(self, call: Callable[[], T]) -> T:
        policy = retrying(
            classify, tracker="jira", attempts=self._attempts, max_wait=self._max_wait, sleep=self._sleep
        )
        return retried(policy, classify, call)

    def _once(self, write: Callable[[], T], landed: Callable[[], T | None]) -> T:
        """Retry a non-idempotent write, asking `landed` first whenever an earlier try may have worked."""
        uncertain = False

        def attempt() -> T:
            nonlocal uncertain
            if uncertain and (found := landed()) is not None:
                return found
            try:
                return write()
            except Exception as error:
                uncertain = uncertain or ambiguous(error)
                raise

        return self._retried(attempt)

    # --- plumbing for the requests the library has no side-effect-free method for ------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: Mapping[str, str] | None = None,
        version: str = "2",
    ) -> Json:
        """One request on the library's session (its auth, headers, timeout and `JIRAError`s).

        For the calls the library has no method for without side effects: comments in ADF (v3) or
        with properties, comment pages with their totals, and an edit without the reload GET.
        """
        url = f"{self.server}/rest/api/{version}/{path}"
        data = json.dumps(body) if body is not None else None
        response = self.client._session.request(method, url, params=params, data=data)
        result: Json = response.json() if response.content else {}
        return result

    # --- reads --------------------------------------------------------------------------------

    def server_info(self) -> Json:
        return self._retried(lambda: dict(self.client.server_info()))

    def myself(self) -> Json:
        return self._retried(lambda: dict(self.client.myself()))

    def fields(self) -> list[Json]:
        return self._retried(lambda: [dict(f) for f in self.client.fields()])

    def issue_fields(self, key: str, fields: Sequence[str]) -> Json:
        """Only the named fields of one issue (`GET /issue/{key}?fields=a,b`)."""
        issue = self._retried(lambda: self.client.issue(key, fields=",".join(fields)))
        raw: Json = issue.raw.get("fields") or {}
        return raw

    def issue_with_transitions(self, key: str) -> Json:
        """The issue's status and the transitions out of it, in one read
        (`GET /issue/{key}?fields=status&expand=transitions`): the list is of the status it comes with."""
        issue = self._retried(lambda: self.client.issue(key, fields="status", expand="transitions"))
        raw: Json = issue.raw
        return raw

    def comments(self, key: str, start_at: int = 0, newest_first: bool = False) -> Json:
        """One page of comments with their properties, as `GET /issue/{key}/comment` returns it."""
        params: dict[str, str] = {"startAt": str(start_at), "maxResults": "100", "expand": "properties"}
        if newest_first:
            params["orderBy"] = "-created"
        return self._retried(lambda: self._send("GET", f"issue/{key}/comment", params=params))

    def changelog(self, key: str, start_at: int = 0) -> Json:
        """One page of the issue's history, oldest first (`GET /issue/{key}/changelog`)."""
        params = {"startAt": str(start_at), "maxResults": "100"}
        return self._retried(lambda: self._send("GET", f"issue/{key}/changelog", params=params))

    def user_groups(self, person: Mapping[str, str]) -> list[str]:
        """The names of a user's groups (`GET /user?accountId=...&expand=groups`; `username` on Data Center)."""
        params = {**person, "expand": "groups"}
        user = self._retried(lambda: self._send("GET", "user", params=params))
        items = (user.get("groups") or {}).get("items") or []
        return [str(group["name"]) for group in items if isinstance(group, dict) and group.get("name")]

    def project_roles(self, project: str) -> dict[str, str]:
        """Role name -> role id of a project (`GET /project/{key}/role` lists each role's URL)."""
        roles = self._retried(lambda: self._send("GET", f"project/{project}/role"))
        return {str(name): str(url).rstrip("/").rsplit("/", 1)[-1] for name, url in roles.items()}

    def project_role_actors(self, project: str, role_id: str) -> list[Json]:
        """Who holds a project role: users and groups (`GET /project/{key}/role/{id}`)."""
        role = self._retried(lambda: self._send("GET", f"project/{project}/role/{role_id}"))
        return [actor for actor in role.get("actors") or [] if isinstance(actor, dict)]

    def project(self, key: str) -> Json:
        """The project with its id and issue types (`GET /project/{key}`)."""
        return self._retried(lambda: self._send("GET", f"project/{key}"))

    def project_statuses(self, key: str) -> list[Json]:
        """Each issue type of the project with the statuses its workflow has (`GET /project/{key}/statuses`)."""
        return self._retried(lambda: self._list(f"project/{key}/statuses"))

    def priorities(self) -> list[Json]:
        """The site's priorities (`GET /priority`)."""
        return self._retried(lambda: self._list("priority"))

    def workflows(self, project_id: str, issue_type_ids: Sequence[str]) -> Json:
        """The workflows of these issue types in the project, with statuses and transitions
        (`POST /rest/api/3/workflows`, Cloud only: Data Center has no REST call that lists transitions)."""
        pairs = [{"projectId": project_id, "issueTypeId": type_id} for type_id in issue_type_ids]
        body = {"projectAndIssueTypes": pairs}
        return self._retried(lambda: self._send("POST", "workflows", body=body, version="3"))

    def _list(self, path: str) -> list[Json]:
        """A GET whose answer is a JSON list of objects."""
        response = self.client._session.request("GET", f"{self.server}/rest/api/2/{path}")
        items = response.json() if response.content else []
        return [dict(item) for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    def search(self, jql: str, fields: Sequence[str], *, cloud: bool) -> Iterator[Json]:
        """Every issue `jql` finds, a page at a time (each with its quick tries): Cloud's
        `GET /search/jql` pages by `nextPageToken`, Data Center's `GET /search` by `startAt`."""
        params = {"jql": jql, "fields": ",".join(fields), "maxResults": "100"}
        token, start = "", 0
        while True:
            query = dict(params)
            if cloud and token:
                query["nextPageToken"] = token
            elif not cloud:
                query["startAt"] = str(start)
            page = self._retried(
                partial(self._send, "GET", "search/jql" if cloud else "search", params=query)
            )
            found = page.get("issues") or []
            yield from found
            start += len(found)
            token = str(page.get("nextPageToken") or "") if cloud else ""
            more = bool(token) if cloud else bool(found) and start < int(page.get("total") or 0)
            if not more:
                return

    def transitions(self, key: str) -> list[Json]:
        return self._retried(lambda: [dict(t) for t in self.client.transitions(key)])

    def issue_property(self, key: str, name: str) -> Any | None:
        """The property's value, or `None` when the issue has none by that name (404)."""

        def read() -> Any | None:
            try:
                return self.client.issue_property(key, name).raw.get("value")
            except JIRAError as error:
                if error.status_code == 404:
                    return None
                raise

        return self._retried(read)

    # --- writes -------------------------------------------------------------------------------

    def edit(self, key: str, body: Json) -> None:
        """`PUT /issue/{key}`, idempotent and without the reload GET of `Issue.update`."""
        self._retried(lambda: self._send("PUT", f"issue/{key}", body=body))

    def transition(self, key: str, transition_id: str, landed: Callable[[], bool]) -> None:
        """`POST /issue/{key}/transitions`; `landed` tells whether an ambiguous try moved the issue."""
        self._once(
            lambda: self.client.transition_issue(key, transition_id),
            lambda: True if landed() else None,
        )

    def add_comment(
        self, key: str, body: str | Json, properties: Mapping[str, Any], landed: Callable[[], Json | None]
    ) -> Json:
        """A comment in wiki markup (v2, a string body) or ADF (v3, a document), with comment properties."""
        version = "2" if isinstance(body, str) else "3"
        data: Json = {"body": body, "properties": [{"key": k, "value": v} for k, v in properties.items()]}
        return self._once(
            lambda: self._send("POST", f"issue/{key}/comment", body=data, version=version), landed
        )

    def create_issues(self, issues: Sequence[Json], existing: Callable[[], Mapping[str, str]]) -> BulkCreated:
        """Issues (sub-tasks) by their `fields`, `BULK_LIMIT` to a `POST /issue/bulk`, each made once.

        A try that failed ambiguously may have created some of them (Jira creates each on its own),
        so before the next try `existing` (summary -> key, read now) says which are there, and only
        the others are sent again. An issue Jira refused is in `refused` with its reason."""
        result = BulkCreated({}, {})
        for start in range(0, len(issues), BULK_LIMIT):
            self._create_chunk(list(issues[start : start + BULK_LIMIT]), existing, result)
        return result

    def _create_chunk(
        self, chunk: list[Json], existing: Callable[[], Mapping[str, str]], result: BulkCreated
    ) -> None:
        uncertain = False

        def attempt() -> None:
            nonlocal uncertain
            if uncertain:
                there = existing()
                result.created.update(
                    {f["summary"]: there[f["summary"]] for f in chunk if f["summary"] in there}
                )
            pending = [f for f in chunk if f["summary"] not in result.created]
            if not pending:
                return
            try:
                answer = self._send(
                    "POST", "issue/bulk", body={"issueUpdates": [{"fields": f} for f in pending]}
                )
            except Exception as error:
                if refusals := _bulk_errors(error):  # a 400: Jira refused every one, each with its reason
                    result.refused.update(_refusals(pending, refusals))
                    return
                uncertain = uncertain or ambiguous(error)
                raise
            errors = list(answer.get("errors") or [])
            result.refused.update(_refusals(pending, errors))
            failed = {int(e.get("failedElementNumber", -1)) for e in errors}
            made = [f for index, f in enumerate(pending) if index not in failed]
            for fields, issue in zip(made, answer.get("issues") or [], strict=False):
                result.created[fields["summary"]] = str(issue.get("key", ""))

        self._retried(attempt)


@dataclass(frozen=True)
class BulkCreated:
    """What a bulk creation made (summary -> key) and what Jira refused (summary -> reason)."""

    created: dict[str, str]
    refused: dict[str, str]


def _bulk_errors(error: BaseException) -> list[Json]:
    """The per-issue errors of a bulk creation Jira refused as a whole (a 400); `[]` for any other failure."""
    if not isinstance(error, JIRAError) or error.status_code != 400 or error.response is None:
        return []
    try:
        body = error.response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _refusals(pending: Sequence[Json], errors: Sequence[Json]) -> dict[str, str]:
    """Summary -> Jira's reason, for each element of a bulk request that Jira did not create."""
    refused = {}
    for item in errors:
        index = int(item.get("failedElementNumber", -1))
        if 0 <= index < len(pending):
            details = item.get("elementErrors") or {}
            messages = [*details.get("errorMessages", []), *(details.get("errors") or {}).values()]
            refused[str(pending[index]["summary"])] = "; ".join(map(str, messages)) or "refused"
    return refused

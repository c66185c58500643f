"""GitHub Issues through PyGithub: lazy objects, one request per action, one retry layer.

PyGithub's own retry and throttling are switched off; every call goes through `connector.retry`.
Objects are built from the delivery (`lazy=True`), so nothing is fetched that the payload says.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

import requests
from github import Auth, Github, GithubException, GithubIntegration
from github.Issue import Issue
from github.IssueComment import IssueComment
from github.Repository import Repository
from github.Requester import Requester
from tenacity import Retrying

from config.schema import Team
from config.settings import Settings
from connector.base import (
    GONE_STATUSES,
    Applied,
    DeliveryRefused,
    IssueGone,
    Journal,
    KnownIssue,
    TrackerUnavailable,
)
from connector.delivery import Delivery
from connector.github import events as github_events
from connector.github.deliveries import AppDeliveries
from connector.github.events import actor as actor_of
from connector.github.missed import missed_deliveries
from connector.membership import Memberships, teams_of, writers_teams
from connector.metrics import count_github_calls
from connector.retry import (
    BACK_OFF,
    GIVE_UP,
    TooLongToWait,
    Verdict,
    call,
    retrying,
    server_wait,
)
from policies import people
from policies.models import (
    Action,
    Actor,
    Change,
    ChangeLabels,
    Comment,
    CommentPolicy,
    CreateSubtasks,
    Event,
    EventKind,
    History,
    IssueRef,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
    React,
    Subtask,
)
from policies.needs import Needs

log = logging.getLogger(__name__)
_T = TypeVar("_T")

MARKER_PREFIX = "<!-- sopguard:"


def marker_text(marker: str) -> str:
    """The hidden HTML comment that identifies a comment of ours; GitHub does not render it."""
    return f"{MARKER_PREFIX}{marker} -->"


def classify(error: BaseException) -> Verdict:
    """Which GitHub failures are worth another try (5xx, 429, secondary rate limits, timeouts)."""
    if isinstance(error, requests.Timeout | requests.ConnectionError):
        return BACK_OFF
    if not isinstance(error, GithubException):
        return GIVE_UP
    headers = {k.lower(): v for k, v in (error.headers or {}).items()}
    if error.status >= 500:
        return BACK_OFF
    limited = error.status == 429 or (
        error.status == 403
        and (
            "retry-after" in headers
            or headers.get("x-ratelimit-remaining") == "0"
            or "rate limit" in str(error.data).lower()
        )
    )
    if limited:
        return Verdict(True, server_wait(headers) or 60.0)
    return GIVE_UP


def app_auth(settings: Settings) -> Auth.AppAuth | None:
    """The GitHub App's own authentication (a JWT signed by its private key), when one is configured."""
    if not settings.github_app_id:
        return None
    key = settings.github_app_private_key
    if not key and settings.github_app_private_key_path:
        key = settings.github_app_private_key_path.read_text(encoding="utf-8")
    return Auth.AppAuth(int(settings.github_app_id), key) if key else None


def app_deliveries(settings: Settings) -> AppDeliveries:
    """The App's webhook deliveries API; `DeliveryRefused` when no App is configured (a token's
    repository webhooks have no such API for an App to use)."""
    auth = app_auth(settings)
    if auth is None:
        raise DeliveryRefused(
            "redelivery needs a GitHub App: set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY "
            "(or GITHUB_APP_PRIVATE_KEY_PATH)"
        )
    return AppDeliveries(auth.create_jwt, settings.github_api_url.rstrip("/"), settings.tracker_timeout)


class NoInstallation(DeliveryRefused):
    """A GitHub App needs the delivery's `installation.id` to act, and this delivery has none."""


@dataclass
class GithubConnector:
    """Acts on GitHub as a token's user or as a GitHub App installation."""

    auth: Auth.Token | Auth.AppAuth
    base_url: str = "https://api.github.com"
    timeout: float = 15.0
    sleep: Callable[[float], None] = time.sleep
    name: str = "github"
    _clients: dict[int | None, Github] = field(default_factory=dict)
    _login: str | None = None
    _comments: dict[str, list[IssueComment]] = field(default_factory=dict)
    memberships: Memberships = field(default_factory=Memberships)
    _identity: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, settings: Settings) -> GithubConnector:
        auth: Auth.Token | Auth.AppAuth = app_auth(settings) or Auth.Token(settings.github_token)
        return cls(auth=auth, base_url=settings.github_api_url.rstrip("/"), timeout=settings.tracker_timeout)

    # --- plumbing --------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        """No library retries or throttling (ours is the one retry layer); lazy objects; every
        request counted (`connector.metrics`)."""
        count_github_calls()
        return {
            "base_url": self.base_url,
            "timeout": int(self.timeout),
            "retry": None,
            "seconds_between_requests": None,
            "seconds_between_writes": None,
            "per_page": 100,
        }

    def _retrying(self) -> Retrying:
        return retrying(classify, tracker=self.name, sleep=self.sleep)

    def _call(self, function: Callable[[], _T]) -> _T:
        return call(self._retrying(), classify, function)

    def _token_client(self) -> Github:
        if None not in self._clients:
            self._clients[None] = Github(auth=self.auth, lazy=True, **self._options())
        return self._clients[None]

    def _client(self, delivery: Delivery) -> Github:
        if isinstance(self.auth, Auth.Token):
            return self._token_client()
        installation = (delivery.payload.get("installation") or {}).get("id")
        if not isinstance(installation, int):
            raise NoInstallation("the delivery names no GitHub App installation")
        if installation not in self._clients:
            # The installation token is fetched now, so an installation GitHub does not know fails
            # the delivery with the reason; it is renewed shortly before it expires.
            auth = self.auth.get_installation_auth(installation)
            client = Github(auth=auth, lazy=True, **self._options())
            try:
                self._call(lambda: auth.token)
            except GithubException as error:  # a refusal: `_call` raises outages as TrackerUnavailable
                raise NoInstallation(
                    f"GitHub refused a token for installation {installation} of this app ({_describe(error)}): "
                    "is the app installed on this repository? Once it is, `sopguard retry` runs the delivery again"
                ) from error
            self._clients[installation] = client
        return self._clients[installation]

    def repository_labels(self, full_name: str) -> list[str]:
        """Every label the repository has (`GET /repos/{owner}/{repo}/labels`, all pages), outside
        any delivery: with a token's client, or as the App's installation on the repository."""
        if isinstance(self.auth, Auth.Token):
            client = self._token_client()
        else:
            owner, name = full_name.split("/", 1)
            integration = GithubIntegration(auth=self.auth, **self._options())
            installation = self._call(lambda: integration.get_repo_installation(owner, name))
            client = Github(
                auth=self.auth.get_installation_auth(installation.id), lazy=True, **self._options()
            )
        repository = client.get_repo(full_name)
        return self._call(lambda: [label.name for label in repository.get_labels()])

    def _target(self, delivery: Delivery, event: Event) -> _Target:
        repository = self._client(delivery).get_repo(event.issue.scope)
        number = int(event.issue.key)
        return _Target(repository, repository.get_issue(number), number)

    # --- the Connector protocol --------------------------------------------------------------

    def service_accounts(self, delivery: Delivery) -> frozenset[str]:
        """`<app-slug>[bot]` for an App, the token's user otherwise; learned once per process (the
        consumers' threads that ask at the same time wait for the one lookup)."""
        with self._identity:
            if self._login is None:
                if isinstance(self.auth, Auth.AppAuth):
                    integration = GithubIntegration(auth=self.auth, **self._options())
                    self._login = f"{self._call(lambda: integration.get_app().slug)}[bot]"
                else:
                    user = self._client(delivery).get_user()
                    self._login = self._call(lambda: user.login)
            return frozenset({self._login})

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        """Sub-issues and comments, only when the rules need them and the payload cannot tell."""
        issue = self._target(delivery, event).issue
        changes: dict[str, Any] = {}
        summary = (delivery.payload.get("issue") or {}).get("sub_issues_summary") or {}
        if needs.subtasks and summary.get("total", 1) > 0:
            children = self._call(lambda: list(issue.get_sub_issues()))
            changes["subtasks"] = tuple(self._subtask(delivery, event, c, needs) for c in children)
        if needs.comments or needs.history:
            comments = self._call(lambda: list(issue.get_comments()))
            self._comments[delivery.delivery_id] = comments
            changes["comments"] = self._listed(delivery, comments)
        if needs.history:
            changes["history"] = self._history(delivery, event, changes["comments"])
        if needs.teams:
            person = people.subject(event)
            member = partial(self._is_member, delivery, event, person)
            changes["actor_teams"] = teams_of(person, needs.teams, member)
        if needs.writer_teams:
            writers = needs.writers(event, replace(snapshot, **changes))
            member_of = partial(self._is_member, delivery, event)
            changes["writer_teams"] = writers_teams(writers, needs.writer_teams, member_of)
        return replace(snapshot, **changes) if changes else snapshot

    def _subtask(self, delivery: Delivery, event: Event, child: Issue, needs: Needs) -> Subtask:
        """A sub-issue; for an item that says who may close it, who closed it and their teams.
        GitHub's lists of issues leave `closed_by` out: reading it completes the sub-issue from
        its `url` (PyGithub's `GET /repos/{owner}/{repo}/issues/{number}`)."""
        item = Subtask(child.title, done=child.state == "closed", key=str(child.number))
        if not item.done or child.title not in needs.closers:
            return item
        try:
            user = self._call(lambda: child.closed_by)
        except GithubException as error:
            log.warning("who closed %s#%s unreadable: %s", event.issue.scope, child.number, _describe(error))
            return item
        if user is None:
            return item
        closer = Actor(login=user.login, is_bot=user.type == "Bot", id=str(user.id))
        member = partial(self._is_member, delivery, event, closer)
        return replace(item, closed_by=closer, closer_teams=teams_of(closer, needs.closer_teams, member))

    def _listed(self, delivery: Delivery, comments: Sequence[IssueComment]) -> tuple[Comment, ...]:
        """Listed comments as the engine sees them; ours (by the service account, or carrying our
        marker: an earlier sopguard's) count as a bot's, never as a response."""
        ours = self.service_accounts(delivery)
        return tuple(
            Comment(
                replace(author, is_bot=True)
                if author.login in ours or MARKER_PREFIX in (c.body or "")
                else author,
                c.body or "",
                str(c.id),
                at=c.created_at,
            )
            for c in comments
            for author in (_author(c),)
        )

    # --- who is who ------------------------------------------------------------------------

    def _is_member(self, delivery: Delivery, event: Event, person: Actor, team: Team) -> bool:
        """A listed login, an association the team accepts, or a member of one of its org teams."""
        listed = team.github
        if any(person.login.casefold() == login.casefold() for login in listed.users):
            return True
        if listed.associations and self._association(delivery, event, person) in listed.associations:
            return True
        return any(self._in_org_team(delivery, slug, person.login) for slug in listed.teams)

    def _association(self, delivery: Delivery, event: Event, person: Actor) -> str:
        """GitHub's `author_association` where the delivery gave it; otherwise OWNER for the
        repository's owner, COLLABORATOR for a collaborator (`GET .../collaborators/{login}`)."""
        if person.association:
            return person.association
        scope = event.issue.scope
        if person.login.casefold() == scope.split("/")[0].casefold():
            return "OWNER"

        def ask() -> bool:
            repository = self._client(delivery).get_repo(scope)
            return self._call(lambda: repository.has_in_collaborators(person.login))

        collaborator = self.memberships.get(("collaborator", scope.casefold(), person.login.casefold()), ask)
        return "COLLABORATOR" if collaborator else "NONE"

    def _in_org_team(self, delivery: Delivery, slug: str, login: str) -> bool:
        """An active member of `org/team-slug` (`GET /orgs/{org}/teams/{slug}/memberships/{login}`)."""
        org, team = slug.split("/", 1)

        def ask() -> bool:
            path = f"/orgs/{quote(org)}/teams/{quote(team)}/memberships/{quote(login)}"
            requester = self._client(delivery).requester
            try:
                _, data = self._call(lambda: requester.requestJsonAndCheck("GET", path))
            except GithubException as error:
                if error.status != 404:
                    log.warning("membership of %s in %s unreadable: %s", login, slug, _describe(error))
                return False
            return isinstance(data, dict) and data.get("state") == "active"

        return self.memberships.get(("team", slug.casefold(), login.casefold()), ask)

    def history(self, delivery: Delivery, event: Event) -> History | None:
        """The issue's events (labels added and removed, closes, reopens) and its comments; `None`
        if unreadable."""
        try:
            issue = self._target(delivery, event).issue
            comments = self._listed(delivery, self._call(lambda: list(issue.get_comments())))
        except (GithubException, requests.RequestException, TrackerUnavailable, NoInstallation) as error:
            log.warning("history of %s unreadable: %s", event.issue, error)
            return None
        return self._history(delivery, event, comments)

    def _history(self, delivery: Delivery, event: Event, comments: tuple[Comment, ...]) -> History | None:
        try:
            issue = self._target(delivery, event).issue
            events = self._call(lambda: list(issue.get_events()))
        except GithubException as error:
            if error.status in GONE_STATUSES:
                raise IssueGone(_describe(error)) from error
            log.warning("history of %s unreadable: %s", event.issue, error)
            return None
        except (requests.RequestException, TrackerUnavailable, NoInstallation) as error:
            log.warning("history of %s unreadable: %s", event.issue, error)
            return None
        changes = []
        for item in events:
            if item.event == "labeled" and item.label is not None:
                changes.append(Change(item.created_at, "labeled", item.label.name))
            elif item.event == "unlabeled" and item.label is not None:
                changes.append(Change(item.created_at, "unlabeled", item.label.name))
            elif item.event == "closed":
                changes.append(Change(item.created_at, "closed"))
            elif item.event == "reopened":
                changes.append(Change(item.created_at, "reopened"))
        return History(tuple(changes), comments)

    def open_issues(self, scope: str, context: Mapping[str, Any]) -> Iterator[tuple[Delivery, IssueSnapshot]]:
        """Every open issue of the repository `scope` (pull requests left out), oldest first, a
        page of 100 at a time; each with a delivery that stands for it (for `sopguard adopt`)."""
        payload: dict[str, Any] = {"repository": {"full_name": scope}, **context}
        if isinstance(self.auth, Auth.AppAuth) and "installation" not in payload:
            owner, _, name = scope.partition("/")
            integration = GithubIntegration(auth=self.auth, **self._options())
            installation = self._call(lambda: integration.get_repo_installation(owner, name).id)
            payload["installation"] = {"id": installation}  # kept with each issue, as a delivery's
        listing = Delivery("github", f"adopt:{scope}", "issues", payload)
        requester = self._client(listing).requester
        page = 1
        while True:
            parameters = {
                "state": "open",
                "sort": "created",
                "direction": "asc",
                "per_page": 100,
                "page": page,
            }
            _, items = self._call(
                partial(requester.requestJsonAndCheck, "GET", f"/repos/{scope}/issues", parameters=parameters)
            )
            for item in items or ():
                if "pull_request" in item:
                    continue
                body = {**payload, "issue": item}
                delivery = Delivery("github", f"adopt:{scope}#{item.get('number')}", "issues", body)
                yield delivery, github_events.snapshot(body)
            if not items or len(items) < 100:
                return
            page += 1

    def apply(
        self,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> list[Applied]:
        target = self._target(delivery, event)
        comments = self._comments.pop(delivery.delivery_id, None)
        session = _IssueSession(self, target, snapshot, journal, delivery, event, comments)
        results = []
        failed: set[str] = set()
        for action in actions:
            rules = set(action.rule_id.split("+"))
            if isinstance(action, PostComment) and action.body_if_not_undone and rules & failed:
                action = replace(action, body=action.body_if_not_undone)  # the undo did not happen
            try:
                outcome = session.apply(action)
            except (GithubException, requests.RequestException, TooLongToWait) as error:
                # A refusal (every call goes through `_call`, which raises outages as
                # TrackerUnavailable, left to the runtime to retry later).
                log.warning("%s on %s failed: %s", type(action).__name__, event.issue, error)
                if isinstance(error, GithubException) and error.status in GONE_STATUSES:
                    self._raise_if_gone(target)
                outcome = f"failed: {_describe(error)}"
            if outcome.startswith("failed"):
                failed |= rules
            results.append(Applied(action, outcome))
        return results

    # --- reconcile ------------------------------------------------------------------------------

    def missed(
        self,
        scope: str,
        since: dt.datetime,
        until: dt.datetime,
        context: Mapping[str, Any],
        known: Callable[[IssueRef], KnownIssue | None],
    ) -> Iterator[Delivery]:
        """The changes no delivery brought, from the repository's issues updated since `since`
        (`GET .../issues?since=`, paged) and, for those with comments, their comments since then."""
        probe = Delivery("github", "reconcile", "issues", dict(context))
        requester = self._client(probe).requester
        accounts = self.service_accounts(probe)
        stamp = _github_time(since)
        listed = self._pages(
            requester,
            f"/repos/{scope}/issues",
            # Newest first: an issue updated while the pages are read moves to the front, so a page
            # may repeat one (a duplicate delivery id, dropped) but none is skipped.
            {"state": "all", "since": stamp, "sort": "updated", "direction": "desc", "per_page": 100},
        )
        for issue in listed:
            updated = _parse_time(issue.get("updated_at"))
            if "pull_request" in issue or updated is None or updated > until:
                continue  # a change after `until` is left to the next reconcile
            ref = IssueRef("github", scope, str(issue["number"]))
            comments: list[dict[str, Any]] = []
            if issue.get("comments"):
                path = f"/repos/{scope}/issues/{issue['number']}/comments"
                comments = list(self._pages(requester, path, {"since": stamp, "per_page": 100}))
            yield from missed_deliveries(scope, issue, comments, known(ref), since, context, accounts)

    def _pages(self, requester: Requester, path: str, parameters: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a listing, a page at a time (each with its quick tries), following `Link`."""
        url: str | None = path
        query: dict[str, Any] | None = parameters
        while url is not None:
            headers, data = self._call(partial(requester.requestJsonAndCheck, "GET", url, parameters=query))
            yield from data or []
            links = requests.utils.parse_header_links(headers.get("link", ""))
            url = next((link["url"] for link in links if link.get("rel") == "next"), None)
            query = None  # the next page's URL carries its query

    def _raise_if_gone(self, target: _Target) -> None:
        """`IssueGone` when a read of the issue answers 404 or 410 (a refused write may have
        named a comment or a label that is gone, not the issue)."""
        try:
            self._call(lambda: target.repository.get_issue(target.number).state)
        except GithubException as error:
            if error.status in GONE_STATUSES:
                raise IssueGone(f"the issue is gone ({_describe(error)})") from error


def _author(comment: IssueComment) -> Actor:
    """Who wrote a listed comment, from what the list carried: a lazy client's `raw_data` would
    fetch each comment again, outside the retry layer."""
    user = comment.user
    if user is None:
        return actor_of(None)
    # The association as the list gave it (the public property would fetch the comment when absent).
    association = getattr(getattr(comment, "_author_association", None), "value", None)
    found = actor_of({"login": user.login, "id": user.id, "type": user.type})
    return replace(found, association=association) if isinstance(association, str) else found


def _describe(error: BaseException) -> str:
    if isinstance(error, GithubException):
        message = error.data.get("message") if isinstance(error.data, dict) else error.data
        return f"GitHub answered {error.status}: {message}"
    return f"{type(error).__name__}: {error}"


class _IssueSession:
    """The actions of one decision on one issue. Every write is journaled: done once, and after a
    try whose answer was lost (the journal says `started`), looked for on GitHub before it is
    made again. Reads happen only then, or for an issue sopguard acted on before its journal."""

    def __init__(
        self,
        connector: GithubConnector,
        target: _Target,
        snapshot: IssueSnapshot,
        journal: Journal,
        delivery: Delivery,
        event: Event,
        comments: list[IssueComment] | None,
    ) -> None:
        self.connector = connector
        self.target = target
        self.labels = set(snapshot.labels)
        self.journal = journal
        self.delivery = delivery
        self.brand_new = EventKind.OPENED in event.kinds
        self.comments = comments
        self.scope = event.issue.scope

    def apply(self, action: Action) -> str:
        match action:
            case ChangeLabels():
                return self._once(
                    f"labels:{self.delivery.delivery_id}:{action.rule_id}", partial(self._labels, action)
                )
            case MoveToStatus():
                key = f"state:{self.delivery.delivery_id}:{action.status}"
                return self._once(key, partial(self._state, action.status))
            case PostComment():
                return self._comment(action)
            case React():
                key = f"reaction:{action.comment_id}:{action.content}"
                return self._once(key, partial(self._react, action))
            case CreateSubtasks():
                created = sum(_ChildItem(self, action, title).ensure() for title in action.titles)
                return f"applied ({created} created)" if created else "skipped: every item already exists"
        return f"skipped: {type(action).__name__} does not apply to GitHub"

    def write_once(
        self, write: Callable[[], _T], look: Callable[[], _T | None], *, maybe_made: bool = False
    ) -> _T:
        """A write that GitHub makes twice when asked twice (a comment, an issue, a sub-issue link),
        with its quick tries. A try that failed may still have taken effect (only its answer was
        lost), so each later try first looks for it with `look` (a read with quick tries of its
        own), as does the first when `maybe_made` (an earlier run began it)."""
        unsure = maybe_made

        def attempt() -> _T:
            nonlocal unsure
            if unsure and (found := look()) is not None:
                return found
            unsure = True
            return write()

        return self.connector._call(attempt)

    def _once(self, key: str, write: Callable[[], str]) -> str:
        """A write that is safe to repeat on GitHub (labels, state), journaled so a retried delivery
        does not make it again; `write` makes its requests with their quick tries."""
        earlier = self.journal.recall(key)
        if earlier is not None and earlier.state == "done":
            return str(earlier.result.get("outcome", "applied (earlier attempt)"))
        if earlier is not None and earlier.state == "failed":
            return f"failed: {earlier.result.get('reason', 'refused')}"
        self.journal.begin(key)
        try:
            outcome = write()
        except (GithubException, requests.RequestException, TooLongToWait) as error:
            self.journal.failed(key, _describe(error))  # a refusal; outages arrive as TrackerUnavailable
            raise
        self.journal.done(key, {"outcome": outcome})
        return outcome

    def _labels(self, action: ChangeLabels) -> str:
        """Adds in one POST, removals one DELETE each: labels someone else changed meanwhile stay
        as they are (nothing replaces the whole set). Both are safe to repeat; each has its own
        quick tries, so a failed removal does not make the adds again."""
        add = sorted(action.add - self.labels)
        remove = sorted(action.remove & self.labels)
        if not add and not remove:
            return "skipped: the labels are already so"
        issue = self.target.issue
        if add:
            self.connector._call(lambda: issue.add_to_labels(*add))
            self.labels.update(add)
        for label in remove:
            try:
                self.connector._call(partial(_remove_label, issue, label))
            except GithubException as error:
                if error.status != 404:  # already gone
                    raise
            self.labels.discard(label)
        return "applied"

    def _react(self, action: React) -> str:
        """`POST .../issues/comments/{id}/reactions`: GitHub answers 200 for one already there."""
        path = f"/repos/{self.scope}/issues/comments/{quote(action.comment_id)}/reactions"
        requester = self.connector._client(self.delivery).requester
        self.connector._call(
            lambda: requester.requestJsonAndCheck("POST", path, input={"content": action.content})
        )
        return "applied"

    def _state(self, state: str) -> str:
        if state not in ("open", "closed"):
            return f"skipped: GitHub issues are open or closed, not {state!r}"
        self.connector._call(lambda: self.target.issue.edit(state=state))
        return "applied"

    # --- comments ---------------------------------------------------------------------------

    def _comment(self, action: PostComment) -> str:
        key = f"comment:{action.marker}"
        tag = marker_text(action.marker)
        body = f"{action.body.rstrip()}\n\n{tag}\n"
        digest = comment_digest(body)
        earlier = self.journal.recall(key)
        existing: _Posted | None = None
        if earlier is not None and earlier.state == "done":
            existing = _Posted(int(earlier.result["id"]), str(earlier.result.get("digest", "")))
        elif earlier is not None or self._may_predate_journal(action):
            existing = self._find(tag)  # an earlier try may have posted it, or an older sopguard did
        if existing is not None:
            if action.on_existing in (CommentPolicy.ONCE, CommentPolicy.NEW):
                self.journal.done(key, {"id": existing.id, "digest": existing.digest})
                return f"skipped: already posted (comment {existing.id})"
            if existing.digest == digest:
                self.journal.done(key, {"id": existing.id, "digest": digest})
                return "skipped: already up to date"
            self.journal.begin(key)
            self.connector._call(partial(self._edit, existing.id, body))
            self.journal.done(key, {"id": existing.id, "digest": digest})
            return "applied (edited)"
        if action.on_existing == CommentPolicy.UPDATE_ONLY:
            return "skipped: no earlier comment to update"
        self.journal.begin(key)
        posted = self.write_once(
            lambda: self.target.issue.create_comment(body).id, lambda: self._posted_id(tag)
        )
        self.journal.done(key, {"id": posted, "digest": digest})
        return "applied"

    def _may_predate_journal(self, action: PostComment) -> bool:
        """Whether a comment without a journal entry may still be on the issue: an older sopguard
        posted it before the journal was kept (a brand-new issue has none)."""
        return not self.journal.complete and not self.brand_new and action.on_existing != CommentPolicy.NEW

    def _find(self, tag: str) -> _Posted | None:
        if self.comments is None:
            self.comments = self.connector._call(lambda: list(self.target.issue.get_comments()))
        found = next((c for c in self.comments if tag in (c.body or "")), None)
        self.comments = None  # read again next time: this one may be stale by then
        return _Posted(found.id, comment_digest(found.body or "")) if found is not None else None

    def _posted_id(self, tag: str) -> int | None:
        """The id of our comment with `tag`, read now (a post whose answer was lost may be there)."""
        self.comments = None
        found = self._find(tag)
        return found.id if found is not None else None

    def _edit(self, comment_id: int, body: str) -> None:
        self.target.issue.get_comment(comment_id).edit(body)  # lazy: one PATCH, no GET


def _remove_label(issue: Issue, label: str) -> None:
    """`DELETE .../labels/{name}` with the name fully escaped. PyGithub's `remove_from_labels` leaves
    a `/` as it is, so `status/new` would name another path and GitHub would answer 404."""
    issue._requester.requestJsonAndCheck("DELETE", f"{issue.url}/labels/{quote(label, safe='')}")


def _github_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(value: object) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else None


def comment_digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Posted:
    id: int
    digest: str


@dataclass
class _Target:
    repository: Repository
    issue: Issue
    number: int


@dataclass
class _ChildItem:
    """One checklist item as a sub-issue: created, then linked; each step journaled. After a try
    whose answer was lost, the item is looked for (under the parent, then among the issues we
    created) instead of being made again."""

    session: _IssueSession
    action: CreateSubtasks
    title: str

    @property
    def _key(self) -> str:
        return f"sub-issue:{self.action.checklist}:{self.title}"

    def ensure(self) -> int:
        """1 when this call (or an earlier try of it) created the item, 0 when it was already there.

        The journal says how far an earlier try got: `started` (the creation was asked for), or
        `done` with the item's id, `linked: false` once it exists (the link may have been asked
        for), `linked: true` at the end. GitHub is looked at only where a write may have been made.
        """
        journal = self.session.journal
        earlier = journal.recall(self._key)
        result = earlier.result if earlier is not None else {}
        if earlier is not None and earlier.state == "done" and result.get("linked"):
            return int(result.get("created", 1))
        if "id" in result:
            child_id = int(result["id"])
        else:
            if earlier is not None and self.title in self._linked_titles():
                journal.done(self._key, {"linked": True, "created": 1})
                return 1
            journal.begin(self._key)
            child_id = self.session.write_once(
                lambda: self._create().id, self._created_earlier_id, maybe_made=earlier is not None
            )
            journal.done(self._key, {"id": child_id, "linked": False})
        self.session.write_once(lambda: self._link(child_id), self._linked, maybe_made="id" in result)
        journal.done(self._key, {"id": child_id, "linked": True, "created": 1})
        return 1

    def _link(self, child_id: int) -> bool:
        self.session.target.issue.add_sub_issue(child_id)
        return True

    def _linked(self) -> bool | None:
        return True if self.title in self._linked_titles() else None

    def _linked_titles(self) -> set[str]:
        issue = self.session.target.issue
        return self.session.connector._call(lambda: {c.title for c in issue.get_sub_issues()})

    @property
    def _marker(self) -> str:
        return marker_text(f"checklist-item:{self.session.target.number}:{self.action.checklist}")

    def _create(self) -> Issue:
        body = (
            f"Checklist item of #{self.session.target.number} (`{self.action.checklist}`). "
            f"Close this issue when it is done.\n\n{self._marker}\n"
        )
        return self.session.target.repository.create_issue(
            title=self.title, body=body, labels=sorted(self.action.labels)
        )

    def _created_earlier_id(self) -> int | None:
        found = self._created_earlier()
        return found.id if found is not None else None

    def _created_earlier(self) -> Issue | None:
        """An item whose creation timed out after it happened: open, labelled, with our marker."""
        repository = self.session.target.repository
        candidates = self.session.connector._call(
            lambda: list(
                zip(
                    repository.get_issues(
                        state="open", labels=sorted(self.action.labels), sort="created", direction="desc"
                    ),
                    range(100),
                    strict=False,
                )
            )
        )
        for candidate, _ in candidates:
            if candidate.title == self.title and self._marker in (candidate.body or ""):
                return candidate
        return None

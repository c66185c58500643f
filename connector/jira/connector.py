"""The Jira connector (Cloud and Data Center): who the service is, what a delivery lacks, and the actions.

Requests per delivery, with warm caches (README.md, "Jira: calls per scenario", has the measured
table, with the minimum each scenario needs):
- `service_accounts`: none (`GET /myself` once per process, whichever thread asks first).
- `complete`: none when the payload carries what the rules need (`fields.subtasks`, `fields.comment`);
  otherwise one `GET /issue/{key}?fields=...` for exactly what is missing (plus comment pages
  beyond the first). Field names of the policy are resolved with `GET /field` once per process,
  again when a name is unknown (at most every `refresh_after` seconds).
- `apply`: `MoveToStatus` one POST of the transition (the transitions out of a status are listed
  once per project, issue type and status, and again after `refresh_after` seconds; when none
  leads to the target or Jira refuses a cached one with a 400, one `GET /issue/{key}` reads the
  status and its transitions together); `SetPriority` and `ChangeLabels` one PUT together;
  `PostComment` one POST (which comments were posted is in the journal; the `sopguard` issue
  property of older releases is read only for an issue sopguard acted on before its journal);
  `CreateSubtasks` one `POST /issue/bulk` for all the items. Jira is read before a write only when
  the journal says an earlier try of that write may have landed. The deployment type
  (`GET /serverInfo`) is read once, before the first comment.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from cachetools import LRUCache
from jira import JIRAError
from pydantic import ValidationError

from config.i18n import say
from config.loader import load_policy
from config.schema import Locale, Policy, Team
from config.settings import Settings
from connector.base import GONE_STATUSES, Applied, IssueGone, Journal, KnownIssue, Recorded
from connector.delivery import Delivery
from connector.jira import events as jira_events
from connector.jira import markers
from connector.jira.api import JiraApi, Json, classify, describe, status_of
from connector.jira.format import to_adf, to_wiki
from connector.jira.missed import missed_deliveries
from connector.membership import Memberships, teams_of, writers_teams
from connector.retry import unavailable
from policies import people
from policies.models import (
    Action,
    Actor,
    Change,
    ChangeLabels,
    CommentPolicy,
    CreateSubtasks,
    Event,
    History,
    IssueRef,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
    SetPriority,
    Subtask,
)
from policies.needs import Needs
from policies.text import parse_time
from policies.visibility import is_public

log = logging.getLogger(__name__)

VIOLATION_LABEL = "sop-violation"
# The comment property Jira Service Management reads to keep a comment from the customer (an
# internal note). Atlassian's description of the platform's `POST /issue/{key}/comment` documents
# comment `properties` in general, not this key (its `jsdPublic` points to the service-desk API
# instead); the key is an undocumented convention, widely used by integrations (for instance the
# Jira Service Desk backend of waldur/waldur-mastermind, which cites Atlassian's JSD-1261), and
# what Cloud then lists as `jsdPublic: false`.
INTERNAL_NOTE = {"sd.public.comment": {"internal": True}}
COMMENTS_REMEMBERED = 10_000  # whose visibility the connector keeps (`_comment_visibility`)
_CUSTOM_FIELD_ID = re.compile(r"^customfield_\d+$")

# --- field names ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldIndex:
    """Field ids by (case-insensitive) field name, as `GET /field` lists them."""

    ids: Mapping[str, tuple[str, ...]]
    loaded_at: float

    @classmethod
    def of(cls, fields: Iterable[Json], loaded_at: float) -> FieldIndex:
        ids: defaultdict[str, list[str]] = defaultdict(list)
        for item in fields:
            if item.get("name") and item.get("id"):
                ids[str(item["name"]).casefold()].append(str(item["id"]))
        return cls({name: tuple(found) for name, found in ids.items()}, loaded_at)

    def knows(self, name: str) -> bool:
        return name.casefold() in self.ids


def policy_field_names(policy: Policy, fields: Mapping[str, str]) -> list[str]:
    """Intake fields the policy gives by name: not a `customfield_N` id, nor a key the payload has (`description`)."""
    return [
        f.jira.field
        for f in policy.intake.fields
        if f.jira.field not in fields and not _CUSTOM_FIELD_ID.match(f.jira.field)
    ]


def with_names(fields: Mapping[str, str], names: Iterable[str], index: FieldIndex) -> dict[str, str]:
    """`fields` plus a name-keyed value for each name; of fields sharing a name, the first filled in."""
    named = dict(fields)
    for name in names:
        value = next((fields[i] for i in index.ids.get(name.casefold(), ()) if fields.get(i)), "")
        if value:
            named[name] = value
    return named


# --- what a delivery lacks --------------------------------------------------------------------


def missing_fields(payload: Json, needs: Needs) -> list[str]:
    """Issue fields `needs` asks for that the delivery does not carry (in full)."""
    issue = payload.get("issue")
    carried: Json = (issue.get("fields") or {}) if isinstance(issue, dict) else {}
    wanted = []
    if needs.subtasks and "subtasks" not in carried:
        wanted.append("subtasks")
    if needs.comments and not _complete_page(carried.get("comment")):
        wanted.append("comment")
    return wanted


def _complete_page(page: Any) -> bool:
    if not isinstance(page, dict) or not isinstance(page.get("comments"), list):
        return False
    return int(page.get("total", len(page["comments"]))) <= len(page["comments"])


# --- edits and comments, as Jira wants them ----------------------------------------------------


def _changelog_author(author: Json) -> Actor | None:
    """The person of a changelog entry, or `None` when Jira wrote it in no shape we read."""
    try:
        return jira_events.actor(jira_events.User.model_validate(author))
    except ValidationError:
        return None


def edit_body(priority: str | None, add: Iterable[str], remove: Iterable[str]) -> Json:
    """One `PUT /issue/{key}` body: the priority by name and label operations; `{}` when nothing to do."""
    body: Json = {}
    if priority:
        body["fields"] = {"priority": {"name": priority}}
    operations = [{"add": label} for label in sorted(add)] + [{"remove": label} for label in sorted(remove)]
    if operations:
        body["update"] = {"labels": operations}
    return body


def no_way_back_note(locale: Locale, current: str, target: str, *, refused: bool = False) -> str:
    """Why the issue was not moved back, in the policy's locale: no transition leads there, or Jira
    did not carry the move out."""
    if refused:
        return say(
            locale,
            "**Jira did not move this issue back to %(target)s**, so it stays in %(current)s and is "
            "labelled `%(label)s` for review. Please move it where the procedure allows.",
            current=current,
            target=target,
            label=VIOLATION_LABEL,
        )
    return say(
        locale,
        "**Jira could not undo this change:** the workflow has no transition from **%(current)s** back to "
        "**%(target)s**, so the issue stays in %(current)s and is labelled `%(label)s` for review. "
        "A Jira admin can add the transition (`sopguard export jira-workflow` lists the ones the "
        "procedure needs).",
        current=current,
        target=target,
        label=VIOLATION_LABEL,
    )


def with_note(body: str, note: str) -> str:
    """A comment with the connector's own explanation added as its last paragraph."""
    return f"{body.rstrip()}\n\n{note}\n"


def _status_name(value: Any) -> str:
    return str(value.get("name", "")) if isinstance(value, dict) else ""


# --- the connector ------------------------------------------------------------------------------

Step = tuple[str, str, str]  # project, issue type, status (case-folded): what a workflow step depends on


# JQL dates are read in the searching account's zone (UTC-12 to UTC+14): a query this much earlier
# than the instant wanted finds every issue updated since, whatever the zone.
JQL_ZONE_MARGIN = dt.timedelta(hours=14)


class JiraConnector:
    """Acts on Jira through `JiraApi`; caches who it is, the deployment type and the field list."""

    name = "jira"

    def __init__(
        self,
        api: JiraApi,
        policy: Policy,
        *,
        refresh_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        memberships: Memberships | None = None,
    ) -> None:
        self.api = api
        self.policy = policy
        self.memberships = memberships or Memberships()
        self._refresh_after = refresh_after
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: frozenset[str] | None = None
        self._cloud: bool | None = None
        self._fields: FieldIndex | None = None
        self._transitions: dict[Step, tuple[float, tuple[Json, ...]]] = {}
        self._project_types: dict[str, str] = {}
        # Whether the customer reads a comment, by issue key and comment id, as Jira listed it.
        self._comment_visibility: LRUCache[tuple[str, str], bool] = LRUCache(maxsize=COMMENTS_REMEMBERED)

    @classmethod
    def from_settings(
        cls, settings: Settings, policy: Policy | None = None, *, sleep: Callable[[float], None] = time.sleep
    ) -> JiraConnector:
        """`policy` is the service's own (the sub-task type and field names are read from it)."""
        return cls(JiraApi.from_settings(settings, sleep=sleep), policy or load_policy(settings.policy))

    # --- who we are, where we are -----------------------------------------------------------

    def service_accounts(self, delivery: Delivery) -> frozenset[str]:
        """`accountId` on Cloud, `name` and `key` on Data Center, learned once (`GET /myself`)."""
        with self._lock:
            if self._accounts is None:
                me = self.api.myself()
                self._accounts = frozenset(str(me[k]) for k in ("accountId", "name", "key") if me.get(k))
            return self._accounts

    # --- reconcile ------------------------------------------------------------------------------

    def missed(
        self,
        scope: str,
        since: dt.datetime,
        until: dt.datetime,
        context: Mapping[str, Any],
        known: Callable[[IssueRef], KnownIssue | None],
    ) -> Iterator[Delivery]:
        """The changes no delivery brought, from the project's issues updated since `since` (a JQL
        search, paged). JQL reads a date in the time zone of the account that searches, so the
        query starts `JQL_ZONE_MARGIN` earlier, whatever that zone, and the issues are then picked
        by their `updated` instant."""
        literal = (since.astimezone(dt.UTC) - JQL_ZONE_MARGIN).strftime("%Y-%m-%d %H:%M")
        # Newest first, so that an issue updated during the search is repeated, never skipped.
        jql = f'project = "{scope}" AND updated >= "{literal}" ORDER BY updated DESC'
        accounts = self.service_accounts(Delivery("jira", "reconcile", "", dict(context)))
        for issue in self.api.search(jql, ["*all"], cloud=self.is_cloud()):
            fields = issue.get("fields") or {}
            updated = parse_time(fields.get("updated"))
            if updated is None or not since <= updated <= until:
                continue
            ref = IssueRef("jira", scope, str(issue["key"]))
            policy = self.policy.for_issue("jira", scope, jira_events.request_type(fields))
            yield from missed_deliveries(policy, issue, known(ref), since, accounts)

    def is_cloud(self) -> bool:
        """Detected once from `GET /serverInfo` (`deploymentType`), when a comment is first written."""
        with self._lock:
            if self._cloud is None:
                self._cloud = self.api.server_info().get("deploymentType") == "Cloud"
            return self._cloud

    def is_service_desk(self, project: str, payload: Json) -> bool:
        """Whether `project` is a Jira Service Management project (`projectTypeKey` is
        `service_desk`): as the delivery's `issue.fields.project` says (Cloud's do), else as
        `GET /project/{key}` answered once per process (a sweep's delivery, rebuilt from what the
        ledger kept, says what the issue's last delivery did). Where Jira does not answer, it counts
        as one: an internal note on another project is only a comment property, a public one on a
        service project is read by the customer."""
        told = jira_events.project_type(payload)
        with self._lock:
            if told:
                self._project_types[project] = told
            known = self._project_types.get(project)
        if known is None:
            try:
                known = str(self.api.project(project).get("projectTypeKey") or "")
            except JIRAError as error:
                if (later := unavailable(classify, error)) is not None:
                    raise later from error
                log.warning("the type of project %s is unreadable: %s", project, describe(error))
                return True
            with self._lock:
                self._project_types[project] = known
        return known == jira_events.SERVICE_DESK

    def field_index(self, names: Sequence[str]) -> FieldIndex:
        """The field list, loaded once and again when a name is unknown (at most every few minutes)."""
        with self._lock:
            now = self._clock()
            index = self._fields
            stale = index is not None and now - index.loaded_at >= self._refresh_after
            if index is None or (stale and not all(index.knows(n) for n in names)):
                index = self._fields = FieldIndex.of(self.api.fields(), now)
                if unknown := [n for n in names if not index.knows(n)]:
                    log.warning(
                        "Jira has no field named %s (the policy's intake uses it)", ", ".join(unknown)
                    )
            return index

    def transitions(self, key: str, step: Step | None) -> tuple[tuple[Json, ...], bool]:
        """The transitions out of `step` (the issue's project, issue type and status, which decide
        its workflow), and whether they were listed just now: from the cache for `refresh_after`
        seconds, listed on the issue when older, unknown, or `step` is `None`."""
        now = self._clock()
        with self._lock:
            cached = self._transitions.get(step) if step is not None else None
        if cached is not None and now - cached[0] < self._refresh_after:
            return cached[1], False
        listed = tuple(self.api.transitions(key))
        if step is not None:
            with self._lock:
                self._transitions[step] = (now, listed)
        return listed, True

    def transitions_now(
        self, key: str, step: Step | None, used: tuple[Json, ...]
    ) -> tuple[str, tuple[Json, ...]]:
        """Where the issue is (its status, as Jira reports it) and the transitions out of there, read
        together now and cached under that status, not the one a delivery claims (it may be late, or
        a person moved the issue since). `used`, the list a move had under `step`, is dropped when
        Jira reports another status: a list just read is of that other status, a cached one led
        nowhere or was refused."""
        now = self._clock()
        issue = self.api.issue_with_transitions(key)
        status = _status_name((issue.get("fields") or {}).get("status"))
        listed = tuple(dict(t) for t in issue.get("transitions") or [] if isinstance(t, dict))
        if step is not None:
            project, kind, claimed = step
            with self._lock:
                cached = self._transitions.get(step)
                if claimed != status.casefold() and cached is not None and cached[1] is used:
                    del self._transitions[step]
                if status:
                    self._transitions[(project, kind, status.casefold())] = (now, listed)
        return status, listed

    # --- complete ---------------------------------------------------------------------------

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        completed = self._complete(delivery, event, snapshot, needs)
        if completed.is_subtask or not event.issue.scope:
            return completed
        if needs.writer_teams and not event.by_service:
            member_of = partial(self._is_member, event.issue.scope)
            writers = needs.writers(event, completed)
            completed = replace(completed, writer_teams=writers_teams(writers, needs.writer_teams, member_of))
        if not needs.closers:
            return completed
        subtasks = tuple(
            self._closed_by(event.issue.scope, s, needs)
            if s.done and s.key and s.title in needs.closers
            else s
            for s in completed.subtasks
        )
        return replace(completed, subtasks=subtasks)

    def _closed_by(self, project: str, subtask: Subtask, needs: Needs) -> Subtask:
        """Who closed a sub-task that says who may: the author of the last status change in its
        changelog (the move into the done status it is in), with their teams."""
        closer: Actor | None = None
        read = 0
        try:
            while True:
                page = self.api.changelog(subtask.key, start_at=read)
                values = page.get("values") or []
                read += len(values)
                for entry in values:
                    items = [i for i in entry.get("items") or [] if isinstance(i, dict)]
                    author = entry.get("author")
                    if isinstance(author, dict) and any(
                        str(i.get("field", "")).casefold() == "status" for i in items
                    ):
                        closer = _changelog_author(author)
                if page.get("isLast", True) or not values:
                    break
        except JIRAError as error:
            log.warning("who closed %s unreadable: %s", subtask.key, describe(error))
            return subtask
        if closer is None or not (closer.login or closer.id):
            return subtask
        member = partial(self._is_member, project, closer)
        return replace(subtask, closed_by=closer, closer_teams=teams_of(closer, needs.closer_teams, member))

    def _complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        if event.by_service or snapshot.is_subtask or not event.issue.key:
            return snapshot  # no rule runs on these; a comment event may name no issue at all
        if needs.teams and event.issue.scope:
            person = people.subject(event)
            member = partial(self._is_member, event.issue.scope, person)
            snapshot = replace(snapshot, actor_teams=teams_of(person, needs.teams, member))
        if needs.visibility and event.comment is not None and event.issue.scope:
            visibility = self._visibility(delivery, event.issue, event.comment.id)
            snapshot = replace(snapshot, visibility={**snapshot.visibility, **visibility})
        if snapshot.fields:  # a Data Center `comment_created` shows none: only what the rules need is read
            policy = self.policy.for_issue("jira", event.issue.scope, snapshot.request_type)
            names = policy_field_names(policy, snapshot.fields)
            if names:
                snapshot = replace(
                    snapshot, fields=with_names(snapshot.fields, names, self.field_index(names))
                )
            if needs.history:
                snapshot = replace(snapshot, history=self.history(delivery, event))
        wanted = missing_fields(delivery.payload, needs)
        if not wanted:
            return snapshot
        fetched = self.api.issue_fields(event.issue.key, wanted)
        if "comment" in wanted:
            fetched["comment"] = {"comments": self._all_comments(event.issue.key, fetched.get("comment"))}
        parsed = jira_events.snapshot({"issue": {"key": event.issue.key, "fields": fetched}})
        return replace(
            snapshot,
            subtasks=parsed.subtasks if "subtasks" in wanted else snapshot.subtasks,
            comments=parsed.comments if "comment" in wanted else snapshot.comments,
        )

    def _visibility(self, delivery: Delivery, issue: IssueRef, comment_id: str) -> dict[str, bool]:
        """Whether the customer reads a comment its delivery did not say of (Data Center's comment
        deliveries and search results list no comment properties): on a project that is not a Jira
        Service Management one, yes; on one, as the comment list read with `expand=properties`
        shows it (newest first, a page at a time until the comment is found). What a page shows of
        every comment is remembered, so that each comment is read about at most once. Empty when
        Jira does not answer: the comment then counts as internal (`IssueSnapshot.is_public`)."""
        if not comment_id:
            return {}
        if not self.is_service_desk(issue.scope, delivery.payload):
            return {comment_id: True}
        with self._lock:
            known = self._comment_visibility.get((issue.key, comment_id))
        if known is not None:
            return {comment_id: known}
        try:
            found = self._visibility_listed(issue.key, comment_id)
        except JIRAError as error:
            if (later := unavailable(classify, error)) is not None:
                raise later from error
            log.warning(
                "whether comment %s of %s is internal is unreadable: %s", comment_id, issue, describe(error)
            )
            return {}
        return {comment_id: found[comment_id]} if comment_id in found else {}

    def _visibility_listed(self, key: str, comment_id: str) -> dict[str, bool]:
        """The comments' visibility from the newest back to `comment_id` (or the oldest), remembered."""
        found: dict[str, bool] = {}
        while comment_id not in found:
            page = self.api.comments(key, start_at=len(found), newest_first=True)
            listed = jira_events.comment_visibility(page.get("comments") or [])
            if not listed or listed.keys() <= found.keys():
                break
            found.update(listed)
        with self._lock:
            self._comment_visibility.update({(key, ident): public for ident, public in found.items()})
        return found

    # --- who is who ------------------------------------------------------------------------

    def _is_member(self, project: str, person: Actor, team: Team) -> bool:
        """A listed user, a member of a listed group, or a holder of a listed project role (as a
        user or through a group)."""
        listed = team.jira
        if any(user in (person.id, person.login) for user in listed.users):
            return True
        wanted_groups = {group.casefold() for group in listed.groups}
        role_users: set[str] = set()
        for role in listed.roles:
            users, groups = self._role_holders(project, role)
            role_users |= users
            wanted_groups |= groups
        if role_users & {person.id, person.login} - {""}:
            return True
        return bool(wanted_groups) and bool(self._groups(person) & wanted_groups)

    def _groups(self, person: Actor) -> frozenset[str]:
        """The person's groups, case-folded (Jira compares group names without case)."""
        who = {"accountId": person.id} if self.is_cloud() else {"username": person.id or person.login}

        def ask() -> frozenset[str]:
            try:
                return frozenset(group.casefold() for group in self.api.user_groups(who))
            except JIRAError as error:
                log.warning("groups of %s unreadable: %s", person.login, describe(error))
                return frozenset()

        return self.memberships.get(("groups", *who.values()), ask)

    def _role_holders(self, project: str, role: str) -> tuple[frozenset[str], frozenset[str]]:
        """The users (account ids or names) and the groups (case-folded) holding a project role."""

        def ask() -> tuple[frozenset[str], frozenset[str]]:
            try:
                roles = self.memberships.get(("roles", project), partial(self._project_roles, project))
                role_id = roles.get(role.casefold())
                actors = self.api.project_role_actors(project, role_id) if role_id else []
            except JIRAError as error:
                log.warning("role %s of %s unreadable: %s", role, project, describe(error))
                return frozenset(), frozenset()
            users, groups = set(), set()
            for actor in actors:
                if actor.get("type") == "atlassian-group-role-actor":
                    group = (actor.get("actorGroup") or {}).get("name") or actor.get("name")
                    groups.add(str(group or "").casefold())
                else:
                    user = (actor.get("actorUser") or {}).get("accountId") or actor.get("name")
                    users.add(str(user or ""))
            return frozenset(users - {""}), frozenset(groups - {""})

        return self.memberships.get(("role", project, role.casefold()), ask)

    def _project_roles(self, project: str) -> dict[str, str]:
        """Role id by case-folded role name, as the project lists them (read once for all its roles)."""
        return {name.casefold(): ident for name, ident in self.api.project_roles(project).items()}

    def history(self, delivery: Delivery, event: Event) -> History | None:
        """The status changes in the issue's changelog and its comments, every page of both (ours,
        by the service account, count as a bot's); `None` if unreadable."""
        changes: list[Change] = []
        read = 0
        try:
            while True:
                page = self.api.changelog(event.issue.key, start_at=read)
                values = page.get("values") or []
                read += len(values)
                for entry in values:
                    at = parse_time(entry.get("created"))
                    changes.extend(
                        Change(at, "status", str(item.get("toString") or ""))
                        for item in entry.get("items") or []
                        if at is not None and str(item.get("field", "")).casefold() == "status"
                    )
                if page.get("isLast", True) or not values:
                    break
            first = self.api.comments(event.issue.key)
            listed = self._all_comments(event.issue.key, first)
            ours = self.service_accounts(delivery)
        except Exception as error:  # the clocks start at the adoption instead
            if status_of(error) in GONE_STATUSES:
                raise IssueGone(describe(error)) from error
            log.warning("history of %s unreadable: %s", event.issue, describe(error))
            return None
        parsed = jira_events.snapshot(
            {"issue": {"key": event.issue.key, "fields": {"comment": {"comments": listed}}}}
        )
        comments = tuple(
            replace(c, author=replace(c.author, is_bot=True))
            if c.author.id in ours or c.author.login in ours
            else c
            for c in parsed.comments
        )
        return History(tuple(changes), comments)

    def open_issues(self, scope: str, context: Mapping[str, Any]) -> Iterator[tuple[Delivery, IssueSnapshot]]:
        """Every issue of the project `scope` not in a done status, oldest first, by a JQL search
        a page of 100 at a time; each with a delivery that stands for it (for `sopguard adopt`)."""
        jql = f'project = "{scope}" AND statusCategory != Done ORDER BY created ASC'
        for issue in self.api.search(jql, ["*all"], cloud=self.is_cloud()):
            if not isinstance(issue, dict):
                continue
            payload = {"webhookEvent": "jira:issue_updated", "issue": issue, **context}
            delivery = Delivery("jira", f"adopt:{issue.get('key')}", "jira:issue_updated", payload)
            yield delivery, jira_events.snapshot(payload)

    def _all_comments(self, key: str, first: Any) -> list[Json]:
        page: Json = first if isinstance(first, dict) else {}
        comments: list[Json] = list(page.get("comments") or [])
        total = int(page.get("total", len(comments)))
        while len(comments) < total:
            more = self.api.comments(key, start_at=len(comments)).get("comments") or []
            if not more:
                break
            comments.extend(more)
        return comments

    # --- apply ------------------------------------------------------------------------------

    def apply(
        self,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> list[Applied]:
        """One delivery's actions; the runtime gives one issue's work one turn at a time."""
        if not actions:
            return []
        run = _Run(self, delivery, event, snapshot, actions, journal)
        return [run.apply(action) for action in actions]


@dataclass(frozen=True)
class _Stuck:
    """A change that could not be undone: where the issue stays, where it should have gone, and why."""

    current: str
    target: str
    refused: bool

    def note(self, locale: Locale) -> str:
        return no_way_back_note(locale, self.current, self.target, refused=self.refused)


class _Run:
    """The actions of one delivery on one issue; what they share is read at most once."""

    def __init__(
        self,
        connector: JiraConnector,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> None:
        self.connector = connector
        self.journal = journal
        self.api = connector.api
        self.policy = connector.policy.for_issue("jira", event.issue.scope, snapshot.request_type)
        self.delivery = delivery
        self.event = event
        self.snapshot = snapshot
        self.key = event.issue.key
        self.actions = actions
        self.stuck: dict[str, _Stuck] = {}
        self._legacy_markers: dict[str, markers.Posted] | None = None
        self._edit_outcome: str | None = None

    def apply(self, action: Action) -> Applied:
        try:
            outcome = self._dispatch(action)
        except Exception as error:
            if (later := unavailable(classify, error)) is not None:
                raise later from error
            log.warning("%s on %s failed: %s", type(action).__name__, self.key, describe(error))
            if status_of(error) in GONE_STATUSES:
                self._raise_if_gone()
            outcome = f"failed: {describe(error)}"
        return Applied(action, outcome)

    def _raise_if_gone(self) -> None:
        """`IssueGone` when a read of the issue answers 404 or 410 (a refused write may have named
        a comment or a transition that is gone, not the issue)."""
        try:
            self.api.issue_fields(self.key, ["status"])
        except Exception as error:
            if status_of(error) in GONE_STATUSES:
                raise IssueGone(f"the issue is gone ({describe(error)})") from error

    def _journaled(self, key: str, write: Callable[[bool], str]) -> str:
        """A write made once: skipped when the journal has it done (an earlier try of this delivery);
        `write` is told whether an earlier try began it (it may have taken effect)."""
        earlier = self.journal.recall(key)
        if earlier is not None and earlier.state == "done":
            return str(earlier.result.get("outcome", "applied (earlier attempt)"))
        self.journal.begin(key)
        outcome = write(earlier is not None)
        self.journal.done(key, {"outcome": outcome})
        return outcome

    def _dispatch(self, action: Action) -> str:
        match action:
            case MoveToStatus():
                key = f"state:{self.delivery.delivery_id}:{action.status}"
                return self._journaled(key, partial(self._move, action))
            case SetPriority() | ChangeLabels():
                return self._journaled(f"edit:{self.delivery.delivery_id}", lambda _: self._edit_once())
            case PostComment():
                return self._comment(action)
            case CreateSubtasks():
                return self._subtasks(action)
        return f"skipped: {type(action).__name__} is not a Jira action"

    # --- status ---------------------------------------------------------------------------

    def _status_now(self) -> str:
        return _status_name(self.api.issue_fields(self.key, ["status"]).get("status"))

    def _step(self) -> Step | None:
        """Where the issue stands in its workflow, as the delivery says; `None` when it does not say."""
        fields = (self.delivery.payload.get("issue") or {}).get("fields") or {}
        issue_type = fields.get("issuetype")
        if not isinstance(issue_type, dict):
            return None
        status = self.event.status_after or self.snapshot.status
        kind = str(issue_type.get("id") or issue_type.get("name") or "")
        return (self.event.issue.scope, kind, status.casefold()) if status and kind else None

    def _move(self, action: MoveToStatus, maybe_made: bool) -> str:
        """The transition whose target is the status to restore; without one, label and explain (no loop).

        The issue is where the delivery says, and the transitions come from the cache when they can.
        Jira's status is read only where that may be wrong: after an earlier try of this move (it
        may have taken effect), and when the list in hand has no way to the target or Jira refused
        a cached transition with a 400 (the workflow changed, the delivery is late, or the issue
        moved on): then the status and the transitions out of it are read together, the move is
        made with what they say, and without a way there the issue is labelled as standing where
        Jira says (or left alone when it is at the target already)."""
        target = action.status.casefold()
        if maybe_made and self._status_now().casefold() == target:
            return f"skipped: already in {action.status}"
        step = self._step()
        try:
            transitions, listed_now = self.connector.transitions(self.key, step)
            chosen = _leading_to(transitions, target)
            try:
                if chosen is not None:
                    return self._transition(chosen, action)
            except JIRAError as error:
                if error.status_code != 400 or listed_now:
                    raise
            current, transitions = self.connector.transitions_now(self.key, step, transitions)
            if current.casefold() == target:
                return f"skipped: already in {action.status}"
            chosen = _leading_to(transitions, target)
            if chosen is not None:
                return self._transition(chosen, action)
        except Exception as error:
            if (later := unavailable(classify, error)) is not None:
                raise later from error
            current = self.event.status_after or self.snapshot.status or "?"
            reason = f"Jira did not move the issue to {action.status}: {describe(error)}"
            return self._stuck(action, _Stuck(current, action.status, refused=True), reason)
        current = current or "?"
        reason = f"the workflow has no transition from {current} to {action.status}"
        return self._stuck(action, _Stuck(current, action.status, refused=False), reason)

    def _transition(self, chosen: Json, action: MoveToStatus) -> str:
        target = action.status.casefold()
        self.api.transition(self.key, str(chosen["id"]), lambda: self._status_now().casefold() == target)
        return f"applied (transition {chosen.get('name', chosen['id'])!r} to {action.status})"

    def _stuck(self, action: MoveToStatus, stuck: _Stuck, reason: str) -> str:
        """Label the issue and make sure a comment says why it was not moved back."""
        self.stuck[action.rule_id] = stuck
        self.api.edit(self.key, edit_body(None, [VIOLATION_LABEL], []))
        if not any(isinstance(a, PostComment) and a.rule_id == action.rule_id for a in self.actions):
            note = PostComment(
                action.rule_id,
                f"not-undone:{self.delivery.delivery_id}",
                stuck.note(self.policy.locale),
                kind="transition-rejected",
            )
            self._comment(replace(note, public=is_public(self.policy, note)))
        return f"failed: {reason}; commented and labelled {VIOLATION_LABEL}"

    # --- priority and labels, in one request ------------------------------------------------

    def _edit_once(self) -> str:
        if self._edit_outcome is None:
            try:
                self._edit_outcome = self._edit()
            except Exception as error:
                if (later := unavailable(classify, error)) is not None:
                    raise later from error
                log.warning("editing %s failed: %s", self.key, describe(error))
                self._edit_outcome = f"failed: {describe(error)}"
        return self._edit_outcome

    def _edit(self) -> str:
        priority = next((a.name for a in self.actions if isinstance(a, SetPriority)), None)
        changes = [a for a in self.actions if isinstance(a, ChangeLabels)]
        add = {label for c in changes for label in c.add}
        remove = {label for c in changes for label in c.remove} - add
        labels = self.snapshot.labels
        if priority is None and add <= labels and not remove & labels:
            return "skipped: the labels are already so"
        self.api.edit(self.key, edit_body(priority, add, remove))
        return "applied"

    # --- comments ---------------------------------------------------------------------------

    def _legacy(self) -> dict[str, markers.Posted]:
        """The markers an older release kept in the `sopguard` issue property (read once per delivery)."""
        if self._legacy_markers is None:
            self._legacy_markers = markers.decode(self.api.issue_property(self.key, markers.PROPERTY))
        return self._legacy_markers

    def _comment(self, action: PostComment) -> str:
        """Which comments were posted is in the journal (`comment:<marker>`: the comment's id and the
        digest of its text): a comment is judged by it without a read. Jira is read only where a
        comment may be there unknown to the journal: after a POST whose answer was lost (`started`),
        and for an issue sopguard acted on before its journal (the issue property of that release)."""
        key = f"comment:{action.marker}"
        body_digest = markers.digest(action.body)
        earlier = self.journal.recall(key)
        if earlier is not None and earlier.state == "started":
            # The answer to an earlier try was lost (an older release's comment it follows up is not it).
            follows = self._known(action, None)
            found = self._find_comment(action.marker, body_digest, follows)
            if found is not None:
                self.journal.done(key, {"id": str(found.get("id", "")), "digest": body_digest})
                return f"skipped: already posted (comment {found.get('id', '?')})"
            return self._post_action(action, key, body_digest, follows)  # decided then, not made: made now
        known = self._known(action, earlier)
        if known is not None and action.on_existing == CommentPolicy.NEW:
            return f"skipped: already posted (comment {known.comment_id})"
        if reason := markers.skip_reason(action.on_existing, known, body_digest):
            if known is not None and earlier is None:  # an older release's comment: journaled from now on
                self.journal.done(key, {"id": known.comment_id, "digest": known.digest})
            return reason
        return self._post_action(action, key, body_digest, known)

    def _post_action(
        self, action: PostComment, key: str, body_digest: str, known: markers.Posted | None
    ) -> str:
        body = action.body
        if (stuck := self.stuck.get(action.rule_id)) and not action.marker.startswith("not-undone:"):
            # The undo failed: the engine's text for a change that stands, and why it stands.
            body = with_note(action.body_if_not_undone or body, stuck.note(self.policy.locale))
        self._post(body, action.marker, key, body_digest, known, public=action.public)
        return f"applied (follow-up to comment {known.comment_id})" if known else "applied"

    def _known(self, action: PostComment, earlier: Recorded | None) -> markers.Posted | None:
        """The comment posted earlier for this marker: the journal's, or an older release's marker."""
        if earlier is not None and earlier.state == "done":
            return markers.Posted(str(earlier.result.get("id", "?")), str(earlier.result.get("digest", "")))
        if earlier is None and not self.journal.complete and action.on_existing != CommentPolicy.NEW:
            return self._legacy().get(action.marker)
        return None

    def _post(
        self,
        markdown: str,
        marker: str,
        key: str,
        body_digest: str,
        follows: markers.Posted | None = None,
        *,
        public: bool = True,
    ) -> Json:
        """One comment, journaled: `started` just before the POST, `done` with its id after it;
        `follows` is the earlier comment for the marker that this one follows up. One that is not
        `public` is an internal note on a Jira Service Management project (a comment property)."""
        actor = self.event.actor
        mentions = {actor.login: actor.id} if actor.login and actor.id else {}
        body: str | Json = (
            to_adf(markdown, mentions) if self.connector.is_cloud() else to_wiki(markdown, mentions)
        )
        internal = not public and self.connector.is_service_desk(
            self.event.issue.scope, self.delivery.payload
        )
        self.journal.begin(key)
        comment = self.api.add_comment(
            self.key,
            body,
            {
                markers.PROPERTY: {"marker": marker, "digest": body_digest},
                **(INTERNAL_NOTE if internal else {}),
            },
            lambda: self._find_comment(marker, body_digest, follows),
        )
        self.journal.done(key, {"id": str(comment.get("id", "")), "digest": body_digest})
        return comment

    def _find_comment(
        self, marker: str, body_digest: str, follows: markers.Posted | None = None
    ) -> Json | None:
        """A comment posted by a try that timed out: among the newest ones, the one whose comment
        property carries this marker and text (not `follows`, an earlier comment this one follows up)."""
        page = self.api.comments(self.key, newest_first=True)
        return next(
            (c for c in page.get("comments") or [] if markers.posted_as(c, marker, body_digest, follows)),
            None,
        )

    # --- sub-tasks --------------------------------------------------------------------------

    def _subtasks_now(self) -> dict[str, str]:
        """Summary -> key of the sub-tasks under the issue, read now."""
        items = self.api.issue_fields(self.key, ["subtasks"]).get("subtasks") or []
        return {
            str((s.get("fields") or {}).get("summary", "")): str(s.get("key", ""))
            for s in items
            if isinstance(s, dict)
        }

    def _subtask_fields(self, title: str, labels: Iterable[str]) -> Json:
        issue = self.delivery.payload.get("issue") or {}
        project = (issue.get("fields") or {}).get("project") or {}
        fields: Json = {
            "project": {"id": str(project["id"])} if project.get("id") else {"key": self.event.issue.scope},
            "parent": {"key": self.key},
            "issuetype": {"name": self.policy.trackers.jira.subtask_issue_type},
            "summary": title,
        }
        if labels:
            fields["labels"] = sorted(labels)
        return fields

    def _subtasks(self, action: CreateSubtasks) -> str:
        """The items the journal has not seen made, in one `POST /issue/bulk`. The engine left out the
        sub-tasks the delivery shows; the issue is read only when an earlier try may have made some
        (an item `started`) or sopguard acted on the issue before its journal."""
        keys = {title: f"sub-task:{action.checklist}:{title}" for title in action.titles}
        earlier = {title: self.journal.recall(key) for title, key in keys.items()}
        done = {t for t, e in earlier.items() if e is not None and e.state == "done"}
        titles = [t for t in action.titles if t not in done]
        unsure = not self.journal.complete or any(
            e is not None and e.state == "started" for e in earlier.values()
        )
        if titles and unsure:
            there = self._subtasks_now()
            for title in [t for t in titles if t in there]:
                self.journal.done(keys[title], {"key": there[title]})
                done.add(title)
            titles = [t for t in titles if t not in there]
        if not titles:
            return f"applied ({len(done)} created)" if done else "skipped: every item already exists"
        for title in titles:
            self.journal.begin(keys[title])
        result = self.api.create_issues(
            [self._subtask_fields(title, action.labels) for title in titles], self._subtasks_now
        )
        for title, key in result.created.items():
            self.journal.done(keys[title], {"key": key})
        for title, reason in result.refused.items():
            self.journal.failed(keys[title], reason)
        created = len(done) + len(result.created)
        if result.refused:
            reasons = "; ".join(f"{title}: {reason}" for title, reason in result.refused.items())
            return f"failed: {created} of {len(action.titles)} created; {reasons}"
        return f"applied ({created} created)"


def _leading_to(transitions: Iterable[Json], target: str) -> Json | None:
    """The transition whose `to` status is `target` (case-folded), if one is offered."""
    return next((t for t in transitions if _status_name(t.get("to")).casefold() == target), None)

"""The Jira connector (Cloud and Data Center): who the service is, what a delivery lacks, and the actions.

Requests per delivery, with warm caches (README.md, "Jira: calls per scenario", has the measured table):
- `service_accounts`: none (`GET /myself` once per process).
- `complete`: none when the payload carries what the rules need (`fields.subtasks`, `fields.comment`);
  otherwise one `GET /issue/{key}?fields=...` for exactly what is missing (plus comment pages
  beyond the first). Field names of the policy are resolved with `GET /field` once per process,
  again when a name is unknown (at most every `field_refresh_after` seconds).
- `apply`: `MoveToStatus` GET + POST transitions; `SetPriority` and `ChangeLabels` one PUT together;
  `PostComment` one GET of the marker property per delivery (none when the journal already has the
  comment with this text), then POST comment + PUT property;
  `CreateSubtasks` one GET of the sub-tasks, then one POST per missing item. The deployment type
  (`GET /serverInfo`) is read once, before the first comment.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from jira import JIRAError

from config.loader import load_policy
from config.schema import Policy, Team
from config.settings import Settings
from connector.base import Applied, Journal
from connector.delivery import Delivery
from connector.jira import events as jira_events
from connector.jira import markers
from connector.jira.api import JiraApi, Json, classify, describe
from connector.jira.format import to_adf, to_wiki
from connector.membership import Memberships, teams_of
from connector.retry import unavailable
from policies import people
from policies.ledger import Change
from policies.models import (
    Action,
    Actor,
    ChangeLabels,
    CommentPolicy,
    CreateSubtasks,
    Event,
    IssueSnapshot,
    MoveToStatus,
    PostComment,
    SetPriority,
)
from policies.needs import Needs
from policies.text import parse_time

log = logging.getLogger(__name__)

VIOLATION_LABEL = "sop-violation"
_CUSTOM_FIELD_ID = re.compile(r"^customfield_\d+$")

# Why an undo did not happen, per locale: no transition leads back, or Jira refused or failed the move.
_NOT_UNDONE = {
    ("no-transition", "en"): (
        "**Jira could not undo this change:** the workflow has no transition from **{current}** back to "
        "**{target}**, so the issue stays in {current} and is labelled `{label}` for review. "
        "A Jira admin can add the transition (`sopguard export jira-workflow` lists the ones the procedure needs)."
    ),
    ("no-transition", "zh-CN"): (
        "**Jira 无法撤销此变更:** 工作流中没有从 **{current}** 回到 **{target}** 的转换,问题仍处于 {current},"
        "并已添加 `{label}` 标签以便复核。Jira 管理员可补充该转换(`sopguard export jira-workflow` 列出流程所需的转换)。"
    ),
    ("refused", "en"): (
        "**Jira did not move this issue back to {target}**, so it stays in {current} and is labelled "
        "`{label}` for review. Please move it where the procedure allows."
    ),
    ("refused", "zh-CN"): (
        "**Jira 未能将此问题移回 {target}**,问题仍处于 {current},并已添加 `{label}` 标签以便复核。请按流程将其移至允许的阶段。"
    ),
}


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


def edit_body(priority: str | None, add: Iterable[str], remove: Iterable[str]) -> Json:
    """One `PUT /issue/{key}` body: the priority by name and label operations; `{}` when nothing to do."""
    body: Json = {}
    if priority:
        body["fields"] = {"priority": {"name": priority}}
    operations = [{"add": label} for label in sorted(add)] + [{"remove": label} for label in sorted(remove)]
    if operations:
        body["update"] = {"labels": operations}
    return body


def no_way_back_note(locale: str, current: str, target: str, *, refused: bool = False) -> str:
    """Why the issue was not moved back: no transition leads there, or Jira did not carry the move out."""
    kind = "refused" if refused else "no-transition"
    template = _NOT_UNDONE.get((kind, locale), _NOT_UNDONE[(kind, "en")])
    return template.format(current=current, target=target, label=VIOLATION_LABEL)


def with_note(body: str, note: str) -> str:
    """A comment with the connector's own explanation added as its last paragraph."""
    return f"{body.rstrip()}\n\n{note}\n"


def _status_name(value: Any) -> str:
    return str(value.get("name", "")) if isinstance(value, dict) else ""


# --- the connector ------------------------------------------------------------------------------


class JiraConnector:
    """Acts on Jira through `JiraApi`; caches who it is, the deployment type and the field list."""

    name = "jira"

    def __init__(
        self,
        api: JiraApi,
        policy: Policy,
        *,
        field_refresh_after: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        memberships: Memberships | None = None,
    ) -> None:
        self.api = api
        self.policy = policy
        self.memberships = memberships or Memberships()
        self._field_refresh_after = field_refresh_after
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: frozenset[str] | None = None
        self._cloud: bool | None = None
        self._fields: FieldIndex | None = None

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

    def is_cloud(self) -> bool:
        """Detected once from `GET /serverInfo` (`deploymentType`), when a comment is first written."""
        with self._lock:
            if self._cloud is None:
                self._cloud = self.api.server_info().get("deploymentType") == "Cloud"
            return self._cloud

    def field_index(self, names: Sequence[str]) -> FieldIndex:
        """The field list, loaded once and again when a name is unknown (at most every few minutes)."""
        with self._lock:
            now = self._clock()
            index = self._fields
            stale = index is not None and now - index.loaded_at >= self._field_refresh_after
            if index is None or (stale and not all(index.knows(n) for n in names)):
                index = self._fields = FieldIndex.of(self.api.fields(), now)
                if unknown := [n for n in names if not index.knows(n)]:
                    log.warning(
                        "Jira has no field named %s (the policy's intake uses it)", ", ".join(unknown)
                    )
            return index

    # --- complete ---------------------------------------------------------------------------

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        if event.by_service or snapshot.is_subtask or not event.issue.key:
            return snapshot  # no rule runs on these; a comment event may name no issue at all
        if needs.teams and event.issue.scope:
            person = people.subject(event)
            member = partial(self._is_member, event.issue.scope, person)
            snapshot = replace(snapshot, actor_teams=teams_of(person, needs.teams, member))
        if not snapshot.fields:
            return snapshot
        policy = self.policy.for_issue("jira", event.issue.scope)
        names = policy_field_names(policy, snapshot.fields)
        if names:
            snapshot = replace(snapshot, fields=with_names(snapshot.fields, names, self.field_index(names)))
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
                roles = {name.casefold(): ident for name, ident in self.api.project_roles(project).items()}
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

    def history(self, delivery: Delivery, event: Event) -> list[Change] | None:
        """The status changes in the issue's changelog, every page of it; `None` if unreadable."""
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
                    return changes
        except Exception as error:  # the issue stays followed from its creation, as before
            log.warning("history of %s unreadable: %s", event.issue, describe(error))
            return None

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

    def note(self, locale: str) -> str:
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
        self.policy = connector.policy.for_issue("jira", event.issue.scope)
        self.delivery = delivery
        self.event = event
        self.snapshot = snapshot
        self.key = event.issue.key
        self.actions = actions
        self.stuck: dict[str, _Stuck] = {}
        self._markers: dict[str, markers.Posted] | None = None
        self._edit_outcome: str | None = None

    def apply(self, action: Action) -> Applied:
        try:
            outcome = self._dispatch(action)
        except Exception as error:
            if (later := unavailable(classify, error)) is not None:
                raise later from error
            log.warning("%s on %s failed: %s", type(action).__name__, self.key, describe(error))
            outcome = f"failed: {describe(error)}"
        return Applied(action, outcome)

    def _journaled(self, key: str, write: Callable[[], str]) -> str:
        """A write made once: skipped when the journal has it done (an earlier try of this delivery)."""
        earlier = self.journal.recall(key)
        if earlier is not None and earlier.state == "done":
            return str(earlier.result.get("outcome", "applied (earlier attempt)"))
        self.journal.begin(key)
        outcome = write()
        self.journal.done(key, {"outcome": outcome})
        return outcome

    def _dispatch(self, action: Action) -> str:
        match action:
            case MoveToStatus():
                key = f"state:{self.delivery.delivery_id}:{action.status}"
                return self._journaled(key, partial(self._move, action))
            case SetPriority() | ChangeLabels():
                return self._journaled(f"edit:{self.delivery.delivery_id}", self._edit_once)
            case PostComment():
                return self._comment(action)
            case CreateSubtasks():
                return self._subtasks(action)
        return f"skipped: {type(action).__name__} is not a Jira action"

    # --- status ---------------------------------------------------------------------------

    def _status_now(self) -> str:
        return _status_name(self.api.issue_fields(self.key, ["status"]).get("status"))

    def _move(self, action: MoveToStatus) -> str:
        """The transition whose target is the status to restore; without one, label and explain (no loop)."""
        target = action.status.casefold()
        try:
            transitions = self.api.transitions(self.key)
            chosen = next((t for t in transitions if _status_name(t.get("to")).casefold() == target), None)
            if chosen is not None:
                self.api.transition(
                    self.key, str(chosen["id"]), lambda: self._status_now().casefold() == target
                )
                return f"applied (transition {chosen.get('name', chosen['id'])!r} to {action.status})"
            current = self._status_now()
        except Exception as error:
            if (later := unavailable(classify, error)) is not None:
                raise later from error
            current = self.event.status_after or self.snapshot.status or "?"
            reason = f"Jira did not move the issue to {action.status}: {describe(error)}"
            return self._stuck(action, _Stuck(current, action.status, refused=True), reason)
        if current.casefold() == target:
            return f"skipped: already in {action.status}"
        reason = f"the workflow has no transition from {current} to {action.status}"
        return self._stuck(action, _Stuck(current, action.status, refused=False), reason)

    def _stuck(self, action: MoveToStatus, stuck: _Stuck, reason: str) -> str:
        """Label the issue and make sure a comment says why it was not moved back."""
        self.stuck[action.rule_id] = stuck
        self.api.edit(self.key, edit_body(None, [VIOLATION_LABEL], []))
        if not any(isinstance(a, PostComment) and a.rule_id == action.rule_id for a in self.actions):
            note = stuck.note(self.policy.locale)
            self._comment(PostComment(action.rule_id, f"not-undone:{self.delivery.delivery_id}", note))
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

    def _posted(self) -> dict[str, markers.Posted]:
        if self._markers is None:
            self._markers = markers.decode(self.api.issue_property(self.key, markers.PROPERTY))
        return self._markers

    def _comment(self, action: PostComment) -> str:
        """Journaled: a comment the journal has is judged without reading the markers, with the
        same reasons the markers would give; only a POST is `started`, so only a lost POST is looked for."""
        key = f"comment:{action.marker}"
        body_digest = markers.digest(action.body)
        earlier = self.journal.recall(key)
        if earlier is not None and earlier.state == "done":
            known = markers.Posted(str(earlier.result.get("id", "?")), str(earlier.result.get("digest", "")))
            if action.on_existing == CommentPolicy.NEW:
                return f"skipped: already posted (comment {known.comment_id})"
            if reason := markers.skip_reason(action.on_existing, known, body_digest):
                return reason
        if earlier is not None and earlier.state == "started":
            found = self._find_comment(action.marker)  # the answer to an earlier try was lost
            if found is not None:
                self.journal.done(key, {"id": str(found.get("id", "")), "digest": body_digest})
                return f"skipped: already posted (comment {found.get('id', '?')})"
        return self._comment_now(action, key)

    def _comment_now(self, action: PostComment, key: str) -> str:
        body_digest = markers.digest(action.body)
        if action.on_existing == CommentPolicy.NEW:
            # Claimed by the caller (an SLA notice): one POST; a timed-out try is found by its property.
            self._post(action.body, action.marker, key, body_digest)
            return "applied"
        posted = self._posted()
        earlier = posted.get(action.marker)
        reason = markers.skip_reason(action.on_existing, earlier, body_digest)
        if reason:
            if earlier is not None:  # on the issue already: the journal knows it from now on
                self.journal.done(key, {"id": earlier.comment_id, "digest": earlier.digest})
            return reason
        body = action.body
        if (stuck := self.stuck.get(action.rule_id)) and not action.marker.startswith("not-undone:"):
            # The undo failed: the engine's text for a change that stands, and why it stands.
            body = with_note(action.body_if_not_undone or body, stuck.note(self.policy.locale))
        comment = self._post(body, action.marker, key, body_digest)
        posted.pop(action.marker, None)  # re-inserted last: pruning drops the oldest markers first
        posted[action.marker] = markers.Posted(str(comment.get("id", "")), body_digest)
        self.api.set_issue_property(self.key, markers.PROPERTY, markers.encode(posted))
        return f"applied (follow-up to comment {earlier.comment_id})" if earlier else "applied"

    def _post(self, markdown: str, marker: str, key: str, body_digest: str) -> Json:
        """One comment, journaled: `started` just before the POST, `done` with its id after it."""
        actor = self.event.actor
        mentions = {actor.login: actor.id} if actor.login and actor.id else {}
        body: str | Json = (
            to_adf(markdown, mentions) if self.connector.is_cloud() else to_wiki(markdown, mentions)
        )
        self.journal.begin(key)
        comment = self.api.add_comment(
            self.key, body, {markers.PROPERTY: {"marker": marker}}, lambda: self._find_comment(marker)
        )
        self.journal.done(key, {"id": str(comment.get("id", "")), "digest": body_digest})
        return comment

    def _find_comment(self, marker: str) -> Json | None:
        """A comment posted by a try that timed out: the newest ones, by their marker property."""
        page = self.api.comments(self.key, newest_first=True)
        return next((c for c in page.get("comments") or [] if markers.marker_of(c) == marker), None)

    # --- sub-tasks --------------------------------------------------------------------------

    def _subtasks_now(self) -> dict[str, str]:
        """Summary -> key of the sub-tasks under the issue, read now (a delivery may be late)."""
        items = self.api.issue_fields(self.key, ["subtasks"]).get("subtasks") or []
        return {
            str((s.get("fields") or {}).get("summary", "")): str(s.get("key", ""))
            for s in items
            if isinstance(s, dict)
        }

    def _found_subtask(self, title: str) -> Json | None:
        key = self._subtasks_now().get(title)
        return {"key": key} if key else None

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
        existing = self._subtasks_now()
        titles = [t for t in action.titles if t not in existing]
        if not titles:
            return "skipped: every item already exists"
        created = 0
        for title in titles:
            key = f"sub-task:{action.checklist}:{title}"
            if (earlier := self.journal.recall(key)) is not None and earlier.state == "done":
                created += 1
                continue
            try:
                self.journal.begin(key)
                made = self.api.create_issue(
                    self._subtask_fields(title, action.labels), partial(self._found_subtask, title)
                )
            except Exception as error:
                if (later := unavailable(classify, error)) is not None:
                    raise later from error
                return f"failed: {created} of {len(titles)} created; {describe(error)}"
            self.journal.done(key, {"key": str(made.get("key", ""))})
            created += 1
        return f"applied ({created} created)"

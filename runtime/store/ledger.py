"""The issue ledger: what the service knows of each issue it follows (its facts after the last
delivery, its SLA timeline, its SOP state) and the SLA notices claimed on it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, Engine, String, and_, func, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from config.schema import DEFAULT_VISIBILITY
from policies.ledger import IssueFacts
from policies.models import ChangeLabels, CommentPolicy, IssueRef, PostComment
from policies.sla import (
    AdoptedIn,
    Closed,
    Commented,
    Created,
    DelayAnnounced,
    PlanWritten,
    PriorityChanged,
    Rated,
    Reopened,
    SectionWritten,
    StateChanged,
    TimelineEvent,
)
from policies.visibility import kind_of_marker
from runtime.store.database import as_utc, aware
from runtime.store.schema import issues, notifications, timeline, writes

Claim = tuple[str, int, str]
DUE_PAGE = 500  # issues the sweep lists at a time


def _due_by(due_before: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    """Which issues the sweep looks at by `due_before`: followed ones with a notice due, open, or
    closed with a notice part still to land."""
    return (
        issues.c.source.is_not(None),
        issues.c.gone.is_(None),
        or_(issues.c.is_open.is_(True), issues.c.unfinished.is_not(None)),
        issues.c.next_due_at <= as_utc(due_before),
    )


def issue_key(ref: IssueRef) -> str:
    """How the database names an issue: `github:owner/name#12`, `jira:PROJ-7`."""
    return f"{ref.source}:{ref}"


def ref_from_key(key: str) -> IssueRef:
    """The issue a key names, as far as the key tells (the inverse of `issue_key`); for the audit
    of a delivery that could not be read any further."""
    source, _, rest = key.partition(":")
    if source == "github":
        scope, _, number = rest.rpartition("#")
        return IssueRef("github", scope, number)
    return IssueRef("jira", rest.split("-")[0] if "-" in rest else "", rest)


NoticePart = PostComment | ChangeLabels


@dataclass(frozen=True)
class Unfinished:
    """A part of a notice that did not land (a comment, a breach label): the sweep tries it again at
    `next_at`, through the journal under `delivery` (so a part that landed is never made twice).
    `attempts` counts the tracker's refusals, `outages` the tries it could not be reached for;
    `threshold` is the SLA notice's (None for a delivery's comment), for counting it once it landed."""

    part: NoticePart
    delivery: str
    sop: str
    mode: str
    attempts: int
    next_at: dt.datetime
    outages: int = 0
    threshold: float | None = None

    @property
    def name(self) -> str:
        """What the part is, for replacing an older attempt at the same thing."""
        if isinstance(self.part, PostComment):
            return f"comment:{self.part.marker}"
        return f"labels:{self.delivery}:{self.part.rule_id}"


def _encode_unfinished(item: Unfinished) -> dict[str, Any]:
    part = item.part
    shape: dict[str, Any] = (
        {
            "type": "comment",
            "marker": part.marker,
            "body": part.body,
            "on_existing": str(part.on_existing),
            "kind": part.kind,
            "public": part.public,
        }
        if isinstance(part, PostComment)
        else {"type": "labels", "add": sorted(part.add), "remove": sorted(part.remove)}
    )
    return {
        **shape,
        "rule_id": part.rule_id,
        "delivery": item.delivery,
        "sop": item.sop,
        "mode": item.mode,
        "attempts": item.attempts,
        "next_at": item.next_at.isoformat(),
        "outages": item.outages,
        "threshold": item.threshold,
    }


def _encode_all(items: Sequence[Unfinished]) -> list[dict[str, Any]] | None:
    """None when nothing is left, so that the sweep's query tells a closed issue with work left."""
    return [_encode_unfinished(item) for item in items] or None


def _decode_unfinished(data: Mapping[str, Any]) -> Unfinished:
    part: NoticePart
    if data["type"] == "comment":
        rule_id, marker = data["rule_id"], data["marker"]
        kind = str(data.get("kind") or kind_of_marker(rule_id, marker))
        # Kept by a release before comments had a visibility: as the defaults have its kind (the
        # receipt, the intake reminder reach the customer), internal when its kind is unknown.
        public = data["public"] if "public" in data else DEFAULT_VISIBILITY.get(kind) == "public"
        part = PostComment(
            rule_id, marker, data["body"], CommentPolicy(data["on_existing"]), kind=kind, public=bool(public)
        )
    else:
        part = ChangeLabels(data["rule_id"], frozenset(data["add"]), frozenset(data["remove"]))
    return Unfinished(
        part,
        data["delivery"],
        data["sop"],
        data["mode"],
        int(data["attempts"]),
        dt.datetime.fromisoformat(data["next_at"]),
        int(data.get("outages", 0)),
        data.get("threshold"),
    )


@dataclass(frozen=True)
class IssueMemory:
    """What a delivery needs to know of an issue before it is judged."""

    last_state: str | None = None
    manual_priority: str | None = None
    priority: str | None = None
    as_of: dt.datetime | None = None
    known: bool = False
    journaled: bool = True  # every write sopguard made on the issue is in the journal
    gone: str | None = None  # why it is no longer followed (deleted, transferred away)
    adopted: bool = False  # met mid-life and adopted (policies.adoption)


_GONE_LENGTH: int = cast(String, issues.c.gone.type).length or 200


@dataclass(frozen=True)
class LedgerUpdate:
    """What one delivery teaches the service about its issue (see `policies.ledger`)."""

    facts: IssueFacts | None
    entries: Sequence[TimelineEvent]
    context: Mapping[str, Any]
    next_due_at: dt.datetime | None = None
    # First seen after its creation: the tracker's history before this instant is still to be read.
    history_before: dt.datetime | None = None
    state: str | None = None
    manual_priority: tuple[str | None] | None = None  # a 1-tuple when the delivery set it
    as_of: dt.datetime | None = None
    gone: str | None = None  # the issue is no longer followed, for this reason
    unfinished: tuple[Unfinished, ...] | None = None  # every notice part still to land; None: unchanged
    adopted_at: dt.datetime | None = None
    # SLA thresholds crossed before the adoption: claimed as said, so none is announced.
    quiet_claims: Sequence[Claim] = ()


@dataclass(frozen=True)
class FollowedIssue:
    """An issue as the ledger knows it: enough for a sweep to act without reading the tracker."""

    ref: IssueRef
    facts: IssueFacts
    context: Mapping[str, Any]
    timeline: tuple[TimelineEvent, ...]
    notified: frozenset[Claim]
    history_before: dt.datetime | None = None
    memory: IssueMemory = field(default_factory=IssueMemory)
    unfinished: tuple[Unfinished, ...] = ()
    # Whether a delivery ever told the labels (`facts.labels`); not when only the state was recorded.
    labels_known: bool = True


def _memory_of(row: RowMapping) -> IssueMemory:
    return IssueMemory(
        row["last_state"],
        row["manual_priority"],
        row["priority"],
        aware(row["as_of"]),
        known=True,
        journaled=bool(row["journaled"]),
        gone=row["gone"],
        adopted=row["adopted_at"] is not None,
    )


_TIMELINE_TYPES: dict[str, type[TimelineEvent]] = {
    cls.__name__: cls
    for cls in (
        Created,
        StateChanged,
        Commented,
        PriorityChanged,
        Closed,
        Reopened,
        DelayAnnounced,
        Rated,
        PlanWritten,
        SectionWritten,
        AdoptedIn,
    )
}


def encode(entry: TimelineEvent) -> dict[str, Any]:
    """A timeline event as JSON: its type and fields, instants in ISO 8601."""
    fields = {k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in asdict(entry).items()}
    return {"type": type(entry).__name__, **fields}


def decode(data: Mapping[str, Any]) -> TimelineEvent:
    fields: dict[str, Any] = {k: v for k, v in data.items() if k != "type"}
    fields["at"] = dt.datetime.fromisoformat(fields["at"])
    return _TIMELINE_TYPES[data["type"]](**fields)


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def memory(self, ref: IssueRef) -> IssueMemory:
        with self.engine.connect() as db:
            row = db.execute(select(issues).where(issues.c.ref == issue_key(ref))).mappings().first()
        return _memory_of(row) if row is not None else IssueMemory()

    def remember_state(self, ref: IssueRef, state: str, now: dt.datetime) -> None:
        """Record an issue's SOP state directly (a backfill from the tracker, or an admin's correction)."""
        with self.engine.begin() as db:
            self.write(db, ref, LedgerUpdate(None, (), {}, state=state), now)

    def write(self, db: Connection, ref: IssueRef, ledger: LedgerUpdate, now: dt.datetime) -> None:
        """Apply one update inside the caller's transaction."""
        changes: dict[str, Any] = {"source": ref.source, "scope": ref.scope, "key": ref.key}
        if ledger.facts is not None:
            facts = ledger.facts
            changes |= {
                "priority": facts.priority,
                "is_open": facts.is_open,
                "reporter": facts.reporter,
                "reporter_id": facts.reporter_id,
                "assignees": list(facts.assignees),
                "labels": sorted(facts.labels),
                "context": dict(ledger.context),
                "next_due_at": as_utc(ledger.next_due_at),
            }
        if ledger.history_before is not None:
            changes["history_before"] = as_utc(ledger.history_before)
        if ledger.state is not None:
            changes["last_state"] = ledger.state
        if ledger.manual_priority is not None:
            changes["manual_priority"] = ledger.manual_priority[0]
        if ledger.as_of is not None:
            changes["as_of"] = as_utc(ledger.as_of)
        if ledger.unfinished is not None:
            changes["unfinished"] = _encode_all(ledger.unfinished)
        if ledger.gone is not None:
            changes |= {"gone": ledger.gone, "next_due_at": None}
        if ledger.adopted_at is not None:
            changes["adopted_at"] = as_utc(ledger.adopted_at)
        key = issue_key(ref)
        self._claim_quietly(db, key, ledger.quiet_claims, now)
        if ledger.entries:
            db.execute(insert(timeline), [{"ref": key, "entry": encode(e)} for e in ledger.entries])
        updated_at = as_utc(now)
        updated = db.execute(
            update(issues).where(issues.c.ref == key).values(**changes, updated_at=updated_at)
        )
        if updated.rowcount == 0:
            db.execute(insert(issues).values(ref=key, **changes, journaled=True, updated_at=updated_at))

    @staticmethod
    def _claim_quietly(db: Connection, key: str, claims: Sequence[Claim], now: dt.datetime) -> None:
        """Claims no notice will be posted for (thresholds crossed before an adoption)."""
        if not claims:
            return
        said = {
            (target, cycle, threshold)
            for target, cycle, threshold in db.execute(
                select(notifications.c.target, notifications.c.cycle, notifications.c.threshold).where(
                    notifications.c.ref == key
                )
            )
        }
        rows = [
            {"ref": key, "target": t, "cycle": c, "threshold": h, "at": as_utc(now)}
            for t, c, h in dict.fromkeys(claims)
            if (t, c, h) not in said
        ]
        if rows:
            db.execute(insert(notifications), rows)

    def followed(
        self,
        *,
        open_only: bool = True,
        due_before: dt.datetime | None = None,
        ref: IssueRef | None = None,
        history_pending: bool = False,
        gone_too: bool = False,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[FollowedIssue]:
        """Issues the ledger follows: open ones, or those with an SLA notice due by `due_before`, or
        one issue (`gone_too`: also one no longer followed); loaded in three queries whatever their
        number. With `limit`, a page of them in the order of their keys, from the first after
        `after` (see `pages`)."""
        query = select(issues).where(issues.c.source.is_not(None))
        if not gone_too:
            query = query.where(issues.c.gone.is_(None))
        if after is not None:
            query = query.where(issues.c.ref > after)
        if limit is not None:
            query = query.order_by(issues.c.ref).limit(limit)
        if open_only:
            query = query.where(issues.c.is_open.is_(True))
        if due_before is not None:
            query = query.where(issues.c.next_due_at <= as_utc(due_before))
        if ref is not None:
            query = query.where(issues.c.ref == issue_key(ref))
        if history_pending:
            query = query.where(issues.c.history_before.is_not(None))
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
            keys = [row["ref"] for row in rows]
            entries: dict[str, list[TimelineEvent]] = {key: [] for key in keys}
            done: dict[str, set[Claim]] = {key: set() for key in keys}
            for chunk in (keys[i : i + 500] for i in range(0, len(keys), 500)):
                for owner, entry in db.execute(
                    select(timeline.c.ref, timeline.c.entry)
                    .where(timeline.c.ref.in_(chunk))
                    .order_by(timeline.c.id)
                ):
                    entries[owner].append(decode(entry))
                claimed = select(
                    notifications.c.ref,
                    notifications.c.target,
                    notifications.c.cycle,
                    notifications.c.threshold,
                ).where(notifications.c.ref.in_(chunk))
                for owner, target, cycle, threshold in db.execute(claimed):
                    done[owner].add((target, cycle, threshold))
        return [
            FollowedIssue(
                ref=IssueRef(row["source"], row["scope"], row["key"]),
                facts=IssueFacts(
                    is_open=bool(row["is_open"]),
                    priority=row["priority"],
                    reporter=row["reporter"] or "",
                    assignees=tuple(row["assignees"] or ()),
                    labels=frozenset(row["labels"] or ()),
                    reporter_id=row["reporter_id"] or "",
                ),
                context=row["context"] or {},
                timeline=tuple(entries[row["ref"]]),
                notified=frozenset(done[row["ref"]]),
                history_before=aware(row["history_before"]),
                memory=_memory_of(row),
                unfinished=tuple(_decode_unfinished(item) for item in row["unfinished"] or ()),
                labels_known=row["labels"] is not None,
            )
            for row in rows
        ]

    def pages(self, size: int = 500) -> Iterator[FollowedIssue]:
        """Every issue, open or closed, read `size` at a time (the report reads them all)."""
        after: str | None = None
        while True:
            page = self.followed(open_only=False, after=after, limit=size)
            yield from page
            if len(page) < size:
                return
            after = issue_key(page[-1].ref)

    def one(self, ref: IssueRef) -> FollowedIssue | None:
        """The issue as the ledger knows it; `memory.gone` says when it is no longer followed."""
        found = self.followed(open_only=False, ref=ref, gone_too=True)
        return found[0] if found else None

    def stop_following(self, ref: IssueRef, reason: str, now: dt.datetime) -> None:
        """No more sweeps, clocks or notices for the issue (the tracker says it is gone)."""
        with self.engine.begin() as db:
            self.write(db, ref, LedgerUpdate(None, (), {}, gone=reason), now)

    def rename(self, old: IssueRef, new: IssueRef, now: dt.datetime) -> bool:
        """Follow an issue under its new name (a transfer, a move to another Jira project): its
        facts, timeline, notices and journal go with it, so its clocks run on and nothing is said
        twice. `False` (nothing changed) when the old name is not followed or the new one already is."""
        before, after = issue_key(old), issue_key(new)
        with self.engine.begin() as db:
            moving = db.execute(
                select(issues.c.ref).where(issues.c.ref == before, issues.c.gone.is_(None))
            ).first()
            taken = db.execute(select(issues.c.ref).where(issues.c.ref == after)).first()
            if moving is None or taken is not None:
                return False
            names = {"source": new.source, "scope": new.scope, "key": new.key, "updated_at": as_utc(now)}
            db.execute(update(issues).where(issues.c.ref == before).values(ref=after, **names))
            db.execute(update(timeline).where(timeline.c.ref == before).values(ref=after))
            db.execute(update(notifications).where(notifications.c.ref == before).values(ref=after))
            db.execute(update(writes).where(writes.c.issue == before).values(issue=after))
            # The old name stays known as moved: a delivery about it still on its way (queued under
            # the old name, retried by the tracker) is not taken for a new issue to follow.
            db.execute(
                insert(issues).values(
                    ref=before,
                    source=old.source,
                    scope=old.scope,
                    key=old.key,
                    is_open=False,
                    journaled=True,
                    gone=f"moved to {new}"[:_GONE_LENGTH],
                    updated_at=as_utc(now),
                )
            )
        return True

    def due_refs(self, due_before: dt.datetime) -> list[IssueRef]:
        """Every issue with a notice due by `due_before` (see `due_pages`), most overdue first."""
        return [ref for page in self.due_pages(due_before) for ref in page]

    def count_due(self, due_before: dt.datetime) -> int:
        """How many issues have a notice due by `due_before` (one count, nothing loaded)."""
        with self.engine.connect() as db:
            return int(
                db.execute(select(func.count()).select_from(issues).where(*_due_by(due_before))).scalar_one()
            )

    def due_pages(self, due_before: dt.datetime, size: int = DUE_PAGE) -> Iterator[list[IssueRef]]:
        """The issues with a notice due by `due_before`: open ones, and closed ones with a notice
        part still to land; only their names (each is read again, fresh, once its turn is taken),
        `size` at a time, most overdue first. Each page starts after the last one's (due time, key),
        so an issue swept meanwhile (its next notice moved later) is neither skipped nor read twice."""
        query = (
            select(issues.c.next_due_at, issues.c.ref, issues.c.source, issues.c.scope, issues.c.key)
            .where(*_due_by(due_before))
            .order_by(issues.c.next_due_at, issues.c.ref)
            .limit(size)
        )
        after: tuple[Any, str] | None = None
        while True:
            page = query
            if after is not None:
                due_at, ref = after
                page = query.where(
                    or_(
                        issues.c.next_due_at > due_at,
                        and_(issues.c.next_due_at == due_at, issues.c.ref > ref),
                    )
                )
            with self.engine.connect() as db:
                rows = db.execute(page).all()
            if rows:
                yield [IssueRef(source, scope, key) for _, _, source, scope, key in rows]
            if len(rows) < size:
                return
            after = (rows[-1][0], rows[-1][1])

    def replace_beginning(self, ref: IssueRef, beginning: Sequence[TimelineEvent]) -> None:
        """Put the history read from the tracker in place of the creation assumed when the issue was
        first seen, and mark the history as read."""
        key = issue_key(ref)
        with self.engine.begin() as db:
            for row_id, entry in db.execute(
                select(timeline.c.id, timeline.c.entry).where(timeline.c.ref == key)
            ):
                if entry.get("type") == "Created":
                    db.execute(timeline.delete().where(timeline.c.id == row_id))
            if beginning:
                db.execute(insert(timeline), [{"ref": key, "entry": encode(e)} for e in beginning])
            db.execute(update(issues).where(issues.c.ref == key).values(history_before=None))

    def set_next_due(self, ref: IssueRef, when: dt.datetime | None) -> None:
        """When the sweep next looks at the issue."""
        with self.engine.begin() as db:
            db.execute(update(issues).where(issues.c.ref == issue_key(ref)).values(next_due_at=as_utc(when)))

    def keep_unfinished(self, ref: IssueRef, unfinished: Sequence[Unfinished]) -> None:
        """The issue's notice parts still to land, saved as soon as a try of them has ended."""
        with self.engine.begin() as db:
            self._keep_unfinished(db, issue_key(ref), unfinished)

    @staticmethod
    def _keep_unfinished(db: Connection, key: str, unfinished: Sequence[Unfinished]) -> None:
        db.execute(update(issues).where(issues.c.ref == key).values(unfinished=_encode_all(unfinished)))

    # --- SLA notice claims ----------------------------------------------------------------

    def claim_notification(
        self, ref: IssueRef, target: str, cycle: int, threshold: str, now: dt.datetime
    ) -> bool:
        """Claim one SLA notice; `False` when another sweep (or an earlier one) already claimed it."""
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(notifications).values(
                        ref=issue_key(ref), target=target, cycle=cycle, threshold=threshold, at=as_utc(now)
                    )
                )
        except IntegrityError:
            return False
        return True

    def claim_notice(
        self, ref: IssueRef, claims: Sequence[Claim], unfinished: Sequence[Unfinished], now: dt.datetime
    ) -> bool:
        """Claim an SLA notice: its first claim, the threshold that speaks (`False` when another
        sweep, or an earlier one, has it), and quietly the lower ones it covers. In the same
        transaction `unfinished`, which holds the notice's parts, become the issue's parts still to
        land: whatever stops the sweep after the claim, the notice lands or stays to be tried again."""
        key = issue_key(ref)
        (target, cycle, threshold), *covered = claims
        try:
            with self.engine.begin() as db:
                db.execute(
                    insert(notifications).values(
                        ref=key, target=target, cycle=cycle, threshold=threshold, at=as_utc(now)
                    )
                )
                self._claim_quietly(db, key, covered, now)
                self._keep_unfinished(db, key, unfinished)
        except IntegrityError:
            return False
        return True

    def release_notifications(self, ref: IssueRef, claims: Sequence[Claim]) -> None:
        """Give claims back when their notice could not be posted, so a later sweep tries again."""
        with self.engine.begin() as db:
            for target, cycle, threshold in claims:
                db.execute(
                    notifications.delete().where(
                        notifications.c.ref == issue_key(ref),
                        notifications.c.target == target,
                        notifications.c.cycle == cycle,
                        notifications.c.threshold == threshold,
                    )
                )

    def scope_context(self, source: str, scope: str) -> dict[str, Any]:
        """What a connector needs to act in a repository or project without a delivery: the
        context kept with one of its issues (a GitHub App's installation), `{}` if none."""
        query = (
            select(issues.c.context)
            .where(issues.c.source == source, issues.c.scope == scope, issues.c.context.is_not(None))
            .limit(1)
        )
        with self.engine.connect() as db:
            context = db.execute(query).scalar()
        return dict(context) if isinstance(context, dict) else {}

    def scopes(self) -> list[str]:
        """Every repository and project the ledger knows an issue of, as `source:scope`."""
        query = select(issues.c.source, issues.c.scope).where(issues.c.source.is_not(None)).distinct()
        with self.engine.connect() as db:
            return sorted(f"{source}:{scope}" for source, scope in db.execute(query))

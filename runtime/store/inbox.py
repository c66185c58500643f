"""The inbox: every delivery as it was received, in order, until it is done.

A delivery's row is at once its de-duplication record and its place in the queue. On SQLite the
receiver acknowledges a delivery with one append to its process's spool file
(`runtime.store.spool`), and whoever next reads the inbox (a consumer taking work, `/healthz`,
`sopguard audit`) first takes the spooled deliveries in, in the order received: a duplicate is
dropped there, a redelivery of a failed delivery queues it again. Elsewhere (PostgreSQL, Redis) the
receiver writes the row itself. Work on one issue happens one step at a time: a
worker (or a sweep) first takes the issue's *turn*, a lease row changed by compare-and-set, and
only the holder of the turn runs the issue's oldest unfinished delivery. Different issues run in
parallel. A worker that dies holding a turn loses it when the lease runs out; its delivery, still
`processing`, is the issue's oldest unfinished one and runs again (its tracker writes are journaled,
so none is repeated).

Statuses: `queued` (waiting, maybe until `not_before` after a transient failure), `processing`,
and the final `processed`, `ignored` and `failed`. A redelivery of a failed delivery queues it again.
A delivery just received (or queued again) has no `not_before`: it is ready at once, whatever the
consumer's clock says (the receiver's and a consumer's clocks need not agree).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import itertools
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import zstandard
from sqlalchemy import Engine, and_, func, insert, or_, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from runtime.store.database import WriterLock, as_utc, aware
from runtime.store.schema import deliveries, spooled, turns
from runtime.store.spool import Chunk, Spooled, SpoolWriter, is_finished, read_from, spool_files

UNFINISHED = ("queued", "processing")
Final = Literal["processed", "ignored", "failed"]
Put = Literal["queued", "duplicate", "requeued", "accepted"]
"""What became of a delivery at the door: `accepted` is kept in the spool, not yet de-duplicated."""


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_packer = threading.local()


def pack(body: bytes) -> bytes:
    """A body as the inbox keeps it: zstd-compressed (level 1, about a sixth of a webhook's JSON in
    ~10 µs), so a delivery's row takes one database page instead of four or five, which is most of
    what the door's write costs."""
    compressor = getattr(_packer, "compressor", None)
    if compressor is None:
        compressor = _packer.compressor = zstandard.ZstdCompressor(level=1)
    packed: bytes = compressor.compress(body)
    return packed


def unpack(stored: bytes) -> bytes:
    """The body as it came; a row written before bodies were compressed is returned as it is."""
    if not stored.startswith(_ZSTD_MAGIC):
        return stored
    return bytes(zstandard.ZstdDecompressor().decompress(stored))


def delivery_key(source: str, delivery_id: str) -> str:
    return f"{source}:{delivery_id}"


@dataclass(frozen=True)
class Received:
    """A delivery taken from the inbox: the raw body as it came, and what its handling so far was."""

    seq: int
    key: str
    source: str
    delivery_id: str
    event_name: str
    issue: str
    body: bytes
    received_at: dt.datetime
    attempts: int
    failing_since: dt.datetime | None


def received_from(row: Mapping[Any, Any], now: dt.datetime) -> Received:
    """A delivery as its inbox row keeps it (`now` stands for a receipt time the row lacks)."""
    return Received(
        seq=row["seq"],
        key=row["key"],
        source=row["source"],
        delivery_id=row["delivery_id"],
        event_name=row["event_name"],
        issue=row["issue"],
        body=unpack(bytes(row["body"] or b"")),
        received_at=aware(row["received_at"]) or now,
        attempts=int(row["attempts"]),
        failing_since=aware(row["failing_since"]),
    )


@dataclass(frozen=True)
class FailedDelivery:
    key: str
    source: str
    delivery_id: str
    event_name: str
    issue: str
    received_at: dt.datetime
    processed_at: dt.datetime | None
    attempts: int
    error: str


@dataclass(frozen=True)
class InboxHealth:
    pending: int
    failed: int
    oldest_pending: dt.datetime | None
    oldest_failed: dt.datetime | None


class TurnsPort(Protocol):
    """What holding an issue's turn takes, wherever the turns are kept (`Turns`, `RedisTurns`)."""

    def take(self, issue: str, owner: str, now: dt.datetime, lease: dt.timedelta) -> bool: ...

    def give_back(self, issue: str, owner: str) -> None: ...

    def renew(self, owner_prefix: str, now: dt.datetime, lease: dt.timedelta) -> int: ...


class InboxPort(Protocol):
    """The inbox as its users see it, wherever it is kept (`Inbox` in the database, `RedisInbox`)."""

    @property
    def turns(self) -> TurnsPort: ...

    def put(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put: ...

    def accept(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put: ...

    def notify(self) -> None: ...

    def wait(self, timeout: float) -> None: ...

    def take(
        self, owner: str, now: dt.datetime, lease: dt.timedelta, *, limit: int = 20
    ) -> Received | None: ...

    def finish(self, seq: int, status: Final, now: dt.datetime, error: str | None = None) -> None: ...

    def postpone(self, seq: int, until: dt.datetime, error: str, failing_since: dt.datetime) -> None: ...

    def has_unfinished(self, issue: str) -> bool: ...

    def status(self, source: str, delivery_id: str) -> str | None: ...

    def error(self, source: str, delivery_id: str) -> str | None: ...

    def failed(self, limit: int = 1000) -> list[FailedDelivery]: ...

    def retry(self, keys: Sequence[str] | None, now: dt.datetime) -> int: ...

    def health(self) -> InboxHealth: ...


class Turns:
    """Per-issue leases: whoever holds an issue's turn is the only one acting on that issue."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def take(self, issue: str, owner: str, now: dt.datetime, lease: dt.timedelta) -> bool:
        """Take (or extend) the turn; `False` while someone else holds a lease that has not run out."""
        until = as_utc(now + lease)
        with self.engine.begin() as db:
            taken = db.execute(
                update(turns)
                .where(turns.c.issue == issue, or_(turns.c.until <= as_utc(now), turns.c.owner == owner))
                .values(owner=owner, until=until)
            )
            if taken.rowcount:
                return True
        try:
            with self.engine.begin() as db:
                db.execute(insert(turns).values(issue=issue, owner=owner, until=until))
        except IntegrityError:
            return False
        return True

    def give_back(self, issue: str, owner: str) -> None:
        with self.engine.begin() as db:
            db.execute(turns.delete().where(turns.c.issue == issue, turns.c.owner == owner))

    def renew(self, owner_prefix: str, now: dt.datetime, lease: dt.timedelta) -> int:
        """Extend every turn held by owners named `owner_prefix...` (one process's threads)."""
        with self.engine.begin() as db:
            return int(
                db.execute(
                    update(turns)
                    .where(turns.c.owner.startswith(owner_prefix))
                    .values(until=as_utc(now + lease))
                ).rowcount
            )


_KEEP = insert(deliveries)  # built once: the door runs it for every delivery
INBOX_ORDER_LOCK = 0x736F7068  # any constant: the PostgreSQL advisory lock of the door's inserts


_QUEUED_AGAIN: Mapping[str, object] = {
    "status": "queued",
    "attempts": 0,
    "not_before": None,
    "failing_since": None,
    "error": None,
    "processed_at": None,
}


def _requeue_in(db: Connection, keys: Sequence[str], values: Mapping[str, object]) -> int:
    """Queue these deliveries again, those of them that failed; how many."""
    changed = db.execute(
        update(deliveries)
        .where(and_(deliveries.c.key.in_(keys), deliveries.c.status == "failed"))
        .values(**values)
    ).rowcount
    return int(changed)


def spool_directory(engine: Engine) -> Path | None:
    """Where the door spools deliveries: beside a SQLite database file (`sopguard.db-spool/`, as
    SQLite keeps `sopguard.db-wal`); `None` for any other database."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        return None
    return Path(f"{database}-spool")


def _in_order(chunks: Sequence[Chunk]) -> tuple[list[Spooled], dict[str, int]]:
    """The spooled deliveries to take in now, in the order received (each file's own order kept),
    and up to where each file is then taken in. A file read only in part (there was more than one
    read takes) holds back the other files' deliveries received after its last one read: none of
    its unread ones, received before them, may come after them."""
    limit = min((c.frames[-1][0].received_at for c in chunks if c.truncated and c.frames), default=None)
    taken: list[list[Spooled]] = []
    ends: dict[str, int] = {}
    for chunk in chunks:
        kept = chunk.frames
        if limit is not None:
            kept = tuple(itertools.takewhile(lambda frame: frame[0].received_at <= limit, chunk.frames))
        taken.append([item for item, _ in kept])
        whole = len(kept) == len(chunk.frames)
        ends[chunk.name] = chunk.end if whole else kept[-1][1] if kept else chunk.start
    return list(heapq.merge(*taken, key=lambda item: item.received_at)), ends


def _insert_spooled(db: Connection, items: Sequence[Spooled]) -> Counter[tuple[str, str]]:
    """The deliveries as inbox rows; what each turned out to be, by tracker: `queued` (new),
    `duplicate` (kept before: dropped) or `requeued` (it had failed: queued again, with this body)."""
    outcomes: Counter[tuple[str, str]] = Counter()
    first: dict[str, Spooled] = {}
    for item in items:
        key = delivery_key(item.source, item.delivery_id)
        if key in first:
            outcomes[item.source, "duplicate"] += 1
        else:
            first[key] = item
    known: dict[str, str] = {}
    keys = list(first)
    for start in range(0, len(keys), 500):
        window = keys[start : start + 500]
        known.update(
            db.execute(
                select(deliveries.c.key, deliveries.c.status).where(deliveries.c.key.in_(window))
            ).all()
        )
    rows = [_row(key, item) for key, item in first.items() if key not in known]
    if rows:
        db.execute(insert(deliveries), rows)
    outcomes.update((row["source"], "queued") for row in rows)
    for key, status in known.items():
        item = first[key]
        if status == "failed":
            _requeue_in(db, [key], {**_QUEUED_AGAIN, "body": pack(item.body), "issue": item.issue})
        outcomes[item.source, "requeued" if status == "failed" else "duplicate"] += 1
    return outcomes


def _extent(path: Path) -> tuple[bool, int]:
    """Whether the spool file is finished (its writer gone), and then its size: in that order, so
    that the size of a finished file is final. A file removed meanwhile is finished and empty."""
    finished = is_finished(path)
    try:
        return finished, path.stat().st_size
    except FileNotFoundError:
        return True, 0


def _read(path: Path, start: int, end: int, finished: bool) -> Chunk | None:
    try:
        return read_from(path, start, end, finished=finished)
    except FileNotFoundError:  # removed by another process's take-in since it was listed
        return None


def _count_taken_in(outcomes: Counter[tuple[str, str]]) -> None:
    # Imported here, not above: a gunicorn master imports the store before it points
    # prometheus_client at the metrics directory, and prometheus_client reads it when imported.
    from runtime.metrics import taken_in

    for (source, status), count in outcomes.items():
        taken_in(source, status, count)


def _row(key: str, item: Spooled) -> dict[str, Any]:
    return {
        "key": key,
        "source": item.source,
        "delivery_id": item.delivery_id,
        "event_name": item.event_name,
        "issue": item.issue,
        "body": pack(item.body),
        "received_at": item.received_at,
        "status": "queued",
        "attempts": 0,
    }


class Arrivals:
    """How a consumer learns that a delivery came in to this process: `notify` wakes whoever
    `wait`s (consumers in other processes find it by polling). Shared by every inbox."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()

    def notify(self) -> None:
        with self._arrived:
            self._arrived.notify_all()

    def wait(self, timeout: float) -> None:
        with self._arrived:
            self._arrived.wait(timeout)


class Inbox(Arrivals):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.turns = Turns(engine)
        super().__init__()
        self._writer = WriterLock(engine)
        self.spool_directory = spool_directory(engine)
        self.spool = SpoolWriter(self.spool_directory) if self.spool_directory is not None else None
        self._taken_to: dict[str, int] = {}  # this process's view of `spooled`: a file unchanged is not read
        self.look_for_finished_every = 1.0  # seconds between looks for spool files to remove
        self._finished_looked_at = 0.0

    # --- the door -----------------------------------------------------------------------

    def accept(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put:
        """The receiver's write: into the spool (`accepted`) where there is one, else `put`."""
        if self.spool is None:
            return self.put(source, delivery_id, event_name, issue, body, now)
        self.spool.append(Spooled(source, delivery_id, event_name, issue, body, now.astimezone(dt.UTC)))
        self.notify()
        return "accepted"

    def put(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put:
        """Keep a delivery, once: `duplicate` when it was received before (unless it failed: a
        redelivery of a failed delivery is queued again, with the body it comes with now)."""
        key = delivery_key(source, delivery_id)
        row = _row(key, Spooled(source, delivery_id, event_name, issue, body, now.astimezone(dt.UTC)))
        if not self._keep(row):
            return "requeued" if self._requeue([key], pack(body), issue) else "duplicate"
        self.notify()
        return "queued"

    def _keep(self, row: dict[str, Any]) -> bool:
        """One delivery's row; `False` when the delivery was kept before."""
        try:
            with self._writer.held(), self.engine.begin() as db:
                if self.engine.dialect.name == "postgresql":
                    # Inserts one at a time, so that a delivery's `seq` is never lower than that of
                    # one committed before it (a worker could otherwise run a later one first).
                    db.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": INBOX_ORDER_LOCK})
                db.execute(_KEEP, row)
        except IntegrityError:
            return False
        return True

    # --- the spool ----------------------------------------------------------------------

    def take_in(self) -> int:
        """Take the spooled deliveries into the inbox, in the order received; how many were new.

        Costs a listing of the spool directory when nothing was spooled since the last look.
        Files whose writers are gone and that are taken in whole are removed (looked for every
        `look_for_finished_every` seconds)."""
        directory = self.spool_directory
        if directory is None:
            return 0
        sizes = dict(spool_files(directory))
        grown = sorted(name for name, size in sizes.items() if size > self._taken_to.get(name, 0))
        new = self._take_in_files(directory) if grown else 0
        if time.monotonic() - self._finished_looked_at >= self.look_for_finished_every:
            self._finished_looked_at = time.monotonic()
            done = [name for name, size in sizes.items() if size == self._taken_to.get(name, 0)]
            self._remove_finished(directory, done)
        if new:
            self.notify()
        return new

    def _take_in_files(self, directory: Path) -> int:
        """Every file, as listed under the lock: one that grew while this take-in waited for the
        lock is read as far as the others, or a delivery received after one of it could come first."""
        with self._writer.held(), self.engine.begin() as db:
            names = [name for name, _ in spool_files(directory)]
            taken_to: dict[str, int] = dict(
                db.execute(select(spooled.c.file, spooled.c.taken_to).where(spooled.c.file.in_(names))).all()
            )
            # Every file's extent first, then the reading: what is appended meanwhile waits for
            # the next take-in. (The extents are read one after another: deliveries of two
            # processes received within those microseconds may be taken in either way round.)
            # A file is finished if its writer was gone before its size was read.
            extents = [(name, *_extent(directory / name)) for name in names]
            chunks = [
                chunk
                for name, finished, size in extents
                if size > taken_to.get(name, 0)
                and (chunk := _read(directory / name, taken_to.get(name, 0), size, finished)) is not None
            ]
            items, ends = _in_order(chunks)
            outcomes = _insert_spooled(db, items)
            for name, end in ends.items():
                statement = sqlite_insert(spooled).values(file=name, taken_to=end)
                db.execute(
                    statement.on_conflict_do_update(index_elements=[spooled.c.file], set_={"taken_to": end})
                )
            taken_to.update(ends)
        self._taken_to.update(taken_to)
        _count_taken_in(outcomes)
        return sum(count for (_, status), count in outcomes.items() if status == "queued")

    def _remove_finished(self, directory: Path, names: Sequence[str]) -> None:
        """Remove the files taken in whole whose writers will write no more (an empty one too)."""
        for name in names:
            path = directory / name
            if not is_finished(path):  # a live writer's: no lock, no transaction for it
                continue
            with self._writer.held(), self.engine.begin() as db:
                finished, size = _extent(path)
                taken_to = db.execute(
                    select(spooled.c.taken_to).where(spooled.c.file == name)
                ).scalar_one_or_none()
                if not finished or size != (taken_to or 0):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                db.execute(spooled.delete().where(spooled.c.file == name))
            self._taken_to.pop(name, None)

    # --- the consumers ------------------------------------------------------------------

    def take(self, owner: str, now: dt.datetime, lease: dt.timedelta, *, limit: int = 20) -> Received | None:
        """The oldest unfinished delivery of an issue whose turn `owner` could take, marked
        `processing`; `None` when nothing is ready. The caller gives the turn back when done."""
        self.take_in()
        for issue in self._ready_issues(now, limit):
            if not self.turns.take(issue, owner, now, lease):
                continue
            try:
                taken = self._start_head(issue, now)
            except BaseException:
                self.turns.give_back(issue, owner)
                raise
            if taken is not None:
                return taken
            self.turns.give_back(issue, owner)
        return None

    def _ready_issues(self, now: dt.datetime, limit: int) -> list[str]:
        """Issues whose oldest unfinished delivery may run now and whose turn is free, oldest first."""
        head = deliveries.alias("head")
        earlier = (
            select(func.min(head.c.seq))
            .where(head.c.issue == deliveries.c.issue, head.c.status.in_(UNFINISHED))
            .scalar_subquery()
        )
        held = select(turns.c.issue).where(turns.c.until > as_utc(now))
        query = (
            select(deliveries.c.issue)
            .where(
                deliveries.c.status.in_(UNFINISHED),
                deliveries.c.seq == earlier,
                or_(deliveries.c.not_before.is_(None), deliveries.c.not_before <= as_utc(now)),
                deliveries.c.issue.not_in(held),
            )
            .order_by(deliveries.c.seq)
            .limit(limit)
        )
        with self.engine.connect() as db:
            return [row[0] for row in db.execute(query)]

    def _start_head(self, issue: str, now: dt.datetime) -> Received | None:
        with self.engine.begin() as db:
            row = (
                db.execute(
                    select(deliveries)
                    .where(deliveries.c.issue == issue, deliveries.c.status.in_(UNFINISHED))
                    .order_by(deliveries.c.seq)
                    .limit(1)
                )
                .mappings()
                .first()
            )
            not_before = aware(row["not_before"]) if row is not None else None
            if row is None or (not_before is not None and not_before > now):
                return None
            db.execute(
                update(deliveries)
                .where(deliveries.c.seq == row["seq"])
                .values(status="processing", attempts=deliveries.c.attempts + 1)
            )
        return replace(received_from(row, now), attempts=int(row["attempts"]) + 1)

    def finish(self, seq: int, status: Final, now: dt.datetime, error: str | None = None) -> None:
        with self.engine.begin() as db:
            self.finish_in(db, seq, status, now, error)

    @staticmethod
    def finish_in(db: Connection, seq: int, status: Final, now: dt.datetime, error: str | None) -> None:
        """The final status, inside the caller's transaction (with the audit rows and the ledger)."""
        db.execute(
            update(deliveries)
            .where(deliveries.c.seq == seq)
            .values(status=status, processed_at=as_utc(now), error=error, not_before=None)
        )

    def postpone(self, seq: int, until: dt.datetime, error: str, failing_since: dt.datetime) -> None:
        """Back to the queue after a transient failure, to run again at `until`, first in its issue's line."""
        with self.engine.begin() as db:
            db.execute(
                update(deliveries)
                .where(deliveries.c.seq == seq)
                .values(
                    status="queued",
                    attempts=deliveries.c.attempts - 1,  # counted: takes that never came back
                    not_before=as_utc(until),
                    error=error,
                    failing_since=as_utc(failing_since),
                )
            )

    # --- what operators see ---------------------------------------------------------------

    def has_unfinished(self, issue: str) -> bool:
        """Whether a delivery of the issue is still to run (maybe after a back-off)."""
        self.take_in()
        with self.engine.connect() as db:
            found = db.execute(
                select(deliveries.c.seq)
                .where(deliveries.c.issue == issue, deliveries.c.status.in_(UNFINISHED))
                .limit(1)
            ).first()
        return found is not None

    def status(self, source: str, delivery_id: str) -> str | None:
        self.take_in()
        with self.engine.connect() as db:
            found = db.execute(
                select(deliveries.c.status).where(deliveries.c.key == delivery_key(source, delivery_id))
            )
            return found.scalar_one_or_none()

    def error(self, source: str, delivery_id: str) -> str | None:
        self.take_in()
        with self.engine.connect() as db:
            found = db.execute(
                select(deliveries.c.error).where(deliveries.c.key == delivery_key(source, delivery_id))
            )
            return found.scalar_one_or_none()

    def failed(self, limit: int = 1000) -> list[FailedDelivery]:
        self.take_in()
        query = (
            select(deliveries).where(deliveries.c.status == "failed").order_by(deliveries.c.seq).limit(limit)
        )
        with self.engine.connect() as db:
            rows = db.execute(query).mappings().all()
        return [
            FailedDelivery(
                key=row["key"],
                source=row["source"],
                delivery_id=row["delivery_id"],
                event_name=row["event_name"],
                issue=row["issue"],
                received_at=aware(row["received_at"]) or dt.datetime.min.replace(tzinfo=dt.UTC),
                processed_at=aware(row["processed_at"]),
                attempts=int(row["attempts"]),
                error=row["error"] or "",
            )
            for row in rows
        ]

    def retry(self, keys: Sequence[str] | None, now: dt.datetime) -> int:
        """Queue failed deliveries again (all of them when `keys` is None), ready at once (`now` is
        when, for inboxes that order by it); how many were."""
        self.take_in()
        if keys is None:
            with self.engine.connect() as db:
                keys = list(
                    db.execute(select(deliveries.c.key).where(deliveries.c.status == "failed")).scalars()
                )
        return sum(self._requeue(keys[i : i + 500], None) for i in range(0, len(keys), 500))

    def _requeue(self, keys: Sequence[str], body: bytes | None, issue: str | None = None) -> int:
        values: dict[str, object] = dict(_QUEUED_AGAIN)
        if body is not None:
            values["body"] = body
        if issue is not None:
            values["issue"] = issue  # a row of the release before the inbox had none
        with self.engine.begin() as db:
            count = _requeue_in(db, keys, values)
        if count:
            self.notify()
        return count

    def health(self) -> InboxHealth:
        self.take_in()
        with self.engine.connect() as db:
            pending, oldest_pending = db.execute(
                select(func.count(), func.min(deliveries.c.received_at)).where(
                    deliveries.c.status.in_(UNFINISHED)
                )
            ).one()
            failed, oldest_failed = db.execute(
                select(
                    func.count(), func.min(func.coalesce(deliveries.c.processed_at, deliveries.c.received_at))
                ).where(deliveries.c.status == "failed")
            ).one()
        return InboxHealth(int(pending), int(failed), aware(oldest_pending), aware(oldest_failed))

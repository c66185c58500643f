"""The inbox and the turns in Redis (`SOPGUARD_QUEUE_URL=redis://...`), with the semantics of the
SQL `Inbox` and `Turns` (see `runtime.store.inbox`): one delivery per key, per-issue FIFO, one
holder of an issue's turn at a time, leases that run out. Each operation is one Lua script, so it
is atomic however many workers share the server.

Keys, under a prefix (`sopguard:` by default):
- `d:<key>`: a hash per delivery (its fields as in the SQL table, times as epoch seconds); it stays
  after the delivery is finished, as its de-duplication record (without the body once it is
  processed or ignored: nothing reads it again, and only a failed one can be queued again);
- `seq`: the arrival counter; `seqs`: a hash seq -> key;
- `q:<issue>`: a sorted set of the issue's unfinished deliveries by seq (the head is the first);
- `ready`: issues whose head is due, by the head's seq (so the oldest delivery goes first);
  `waiting`: issues whose head is not due yet, by its `not_before` (moved to `ready` by `take`);
- `turn:owner`, `turn:until`: hashes issue -> the turn's holder and the end of its lease;
- `pending`: unfinished deliveries by `received_at`; `failed`, `failed_at`: failed deliveries by
  seq and by when they failed (for `failed()` and `health()`).

Redis acknowledges a write before it is on disk: only with `appendonly yes` (the default
`appendfsync everysec` is as durable as the database's commit: a crash of Redis loses nothing the
kernel has) does a delivery acknowledged at the door survive a restart. `from_url` logs a warning
when the server says it keeps no append-only file.

The scripts name keys built from the prefix, not only the ones declared to Redis: use one server
(or a prefix with a hash tag, `{sopguard}:`, on a cluster).

Times are passed in by the callers (who read an injectable clock), as epoch seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import cast

import redis
from redis.typing import EncodableT

from runtime.store.inbox import Arrivals, FailedDelivery, Final, InboxHealth, Put, Received, delivery_key

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "sopguard:"
CONNECT_TIMEOUT = 5.0  # seconds; a URL's own `socket_connect_timeout=` / `socket_timeout=` win
COMMAND_TIMEOUT = 10.0

_HELPERS = """
local P = ARGV[1]
local function dkey(key) return P .. 'd:' .. key end
local function qkey(issue) return P .. 'q:' .. issue end

-- file the issue under `waiting` by when its head is due (`take` moves it to `ready`), or nowhere
local function place(issue)
  local head = redis.call('ZRANGE', qkey(issue), 0, 0)[1]
  redis.call('ZREM', P .. 'ready', issue)
  if not head then
    redis.call('ZREM', P .. 'waiting', issue)
    return
  end
  redis.call('ZADD', P .. 'waiting', redis.call('HGET', dkey(head), 'not_before') or '-inf', issue)
end

-- a failed delivery queued again (with a new body when one is given): 1, else 0
local function requeue(key, now, body)
  local d = dkey(key)
  if redis.call('HGET', d, 'status') ~= 'failed' then return 0 end
  redis.call('HSET', d, 'status', 'queued', 'attempts', 0, 'not_before', now)
  redis.call('HDEL', d, 'failing_since', 'error', 'processed_at')
  if body then redis.call('HSET', d, 'body', body) end
  local seq, issue, received = unpack(redis.call('HMGET', d, 'seq', 'issue', 'received_at'))
  redis.call('ZREM', P .. 'failed', key)
  redis.call('ZREM', P .. 'failed_at', key)
  redis.call('ZADD', qkey(issue), seq, key)
  redis.call('ZADD', P .. 'pending', received, key)
  place(issue)
  return 1
end
"""

# ARGV: prefix, key, source, delivery_id, event_name, issue, body, now
_PUT = """
local key, issue, now = ARGV[2], ARGV[6], ARGV[8]
local d = dkey(key)
if redis.call('EXISTS', d) == 1 then
  if requeue(key, now, ARGV[7]) == 1 then return 'requeued' end
  return 'duplicate'
end
local seq = redis.call('INCR', P .. 'seq')
redis.call('HSET', d, 'seq', seq, 'key', key, 'source', ARGV[3], 'delivery_id', ARGV[4],
  'event_name', ARGV[5], 'issue', issue, 'body', ARGV[7], 'received_at', now, 'status', 'queued',
  'attempts', 0, 'not_before', now)
redis.call('HSET', P .. 'seqs', seq, key)
redis.call('ZADD', qkey(issue), seq, key)
redis.call('ZADD', P .. 'pending', now, key)
if redis.call('ZRANGE', qkey(issue), 0, 0)[1] == key then place(issue) end
return 'queued'
"""

# ARGV: prefix, owner, now, until, limit. The issues in `ready` whose turn is held (by anyone,
# until after `now`) are passed over; the first other one's head is taken with its turn.
_TAKE = """
local owner, now, lease_until, limit = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for _, issue in ipairs(redis.call('ZRANGEBYSCORE', P .. 'waiting', '-inf', ARGV[3])) do
  local head = redis.call('ZRANGE', qkey(issue), 0, 0, 'WITHSCORES')
  redis.call('ZREM', P .. 'waiting', issue)
  if head[1] then redis.call('ZADD', P .. 'ready', head[2], issue) end
end
local start = 0
while true do
  local issues = redis.call('ZRANGE', P .. 'ready', start, start + limit - 1)
  if #issues == 0 then return false end
  for _, issue in ipairs(issues) do
    local held = redis.call('HGET', P .. 'turn:until', issue)
    local head = redis.call('ZRANGE', qkey(issue), 0, 0)[1]
    if head and not (held and tonumber(held) > now) then
      local d = dkey(head)
      local not_before = redis.call('HGET', d, 'not_before')
      if not not_before or tonumber(not_before) <= now then
        redis.call('HSET', P .. 'turn:owner', issue, owner)
        redis.call('HSET', P .. 'turn:until', issue, lease_until)
        redis.call('HSET', d, 'status', 'processing')
        redis.call('HINCRBY', d, 'attempts', 1)
        return redis.call('HMGET', d, 'seq', 'key', 'source', 'delivery_id', 'event_name', 'issue',
          'body', 'received_at', 'attempts', 'failing_since')
      end
    end
  end
  start = start + limit
end
"""

# ARGV: prefix, seq, status, now[, error]
_FINISH = """
local key = redis.call('HGET', P .. 'seqs', ARGV[2])
if not key then return 0 end
local d, status, now = dkey(key), ARGV[3], ARGV[4]
local issue = redis.call('HGET', d, 'issue')
redis.call('HSET', d, 'status', status, 'processed_at', now)
redis.call('HDEL', d, 'not_before', 'error')
if ARGV[5] then redis.call('HSET', d, 'error', ARGV[5]) end
redis.call('ZREM', qkey(issue), key)
redis.call('ZREM', P .. 'pending', key)
if status == 'failed' then
  redis.call('ZADD', P .. 'failed', ARGV[2], key)
  redis.call('ZADD', P .. 'failed_at', now, key)
else
  redis.call('ZREM', P .. 'failed', key)
  redis.call('ZREM', P .. 'failed_at', key)
  redis.call('HDEL', d, 'body')
end
place(issue)
return 1
"""

# ARGV: prefix, seq, until, error, failing_since
_POSTPONE = """
local key = redis.call('HGET', P .. 'seqs', ARGV[2])
if not key then return 0 end
local d = dkey(key)
redis.call('HSET', d, 'status', 'queued', 'not_before', ARGV[3], 'error', ARGV[4],
  'failing_since', ARGV[5])
redis.call('HINCRBY', d, 'attempts', -1)
local issue, received = unpack(redis.call('HMGET', d, 'issue', 'received_at'))
redis.call('ZADD', qkey(issue), ARGV[2], key)
redis.call('ZADD', P .. 'pending', received, key)
redis.call('ZREM', P .. 'failed', key)
redis.call('ZREM', P .. 'failed_at', key)
place(issue)
return 1
"""

# ARGV: prefix, now, 'all' | 'keys', keys...
_RETRY = """
local keys = {}
if ARGV[3] == 'all' then
  keys = redis.call('ZRANGE', P .. 'failed', 0, -1)
else
  for i = 4, #ARGV do keys[#keys + 1] = ARGV[i] end
end
local count = 0
for _, key in ipairs(keys) do count = count + requeue(key, ARGV[2], nil) end
return count
"""

# ARGV: prefix, issue, owner, now, until
_TURN_TAKE = """
local owner = redis.call('HGET', P .. 'turn:owner', ARGV[2])
local held = redis.call('HGET', P .. 'turn:until', ARGV[2])
if owner and owner ~= ARGV[3] and held and tonumber(held) > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', P .. 'turn:owner', ARGV[2], ARGV[3])
redis.call('HSET', P .. 'turn:until', ARGV[2], ARGV[5])
return 1
"""

# ARGV: prefix, issue, owner
_TURN_GIVE_BACK = """
if redis.call('HGET', P .. 'turn:owner', ARGV[2]) == ARGV[3] then
  redis.call('HDEL', P .. 'turn:owner', ARGV[2])
  redis.call('HDEL', P .. 'turn:until', ARGV[2])
end
return 0
"""

# ARGV: prefix, owner_prefix, until
_TURN_RENEW = """
local owners = redis.call('HGETALL', P .. 'turn:owner')
local count = 0
for i = 1, #owners, 2 do
  if string.sub(owners[i + 1], 1, #ARGV[2]) == ARGV[2] then
    redis.call('HSET', P .. 'turn:until', owners[i], ARGV[3])
    count = count + 1
  end
end
return count
"""

_FAILED_FIELDS = (
    "key",
    "source",
    "delivery_id",
    "event_name",
    "issue",
    "received_at",
    "processed_at",
    "attempts",
    "error",
    "status",
)


def durability_warning(client: redis.Redis) -> str | None:
    """Why deliveries acknowledged at the door could be lost, if the server says so; `None` when it
    keeps an append-only file, or does not tell (`CONFIG` disabled, as on some hosted Redis)."""
    try:
        config = cast(dict[str, str], client.config_get("appendonly"))
    except redis.RedisError:
        return None
    if config.get("appendonly") != "no":
        return None
    return (
        "the Redis inbox runs without an append-only file (appendonly no): deliveries acknowledged "
        "since its last snapshot are lost if Redis restarts; set `appendonly yes`"
    )


def _epoch(instant: dt.datetime) -> str:
    """An instant as Redis keeps it: epoch seconds (`repr` round-trips the float exactly)."""
    return repr(instant.timestamp())


def _instant(raw: bytes | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(float(raw), dt.UTC) if raw is not None else None


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


class RedisTurns:
    """Per-issue leases in Redis, as `runtime.store.inbox.Turns`."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._take = client.register_script(_HELPERS + _TURN_TAKE)
        self._give_back = client.register_script(_HELPERS + _TURN_GIVE_BACK)
        self._renew = client.register_script(_HELPERS + _TURN_RENEW)

    def take(self, issue: str, owner: str, now: dt.datetime, lease: dt.timedelta) -> bool:
        """Take (or extend) the turn; `False` while someone else holds a lease that has not run out."""
        args = [self.prefix, issue, owner, _epoch(now), _epoch(now + lease)]
        return bool(self._take(args=args))

    def give_back(self, issue: str, owner: str) -> None:
        self._give_back(args=[self.prefix, issue, owner])

    def renew(self, owner_prefix: str, now: dt.datetime, lease: dt.timedelta) -> int:
        """Extend every turn held by owners named `owner_prefix...` (one process's threads)."""
        return int(cast(int, self._renew(args=[self.prefix, owner_prefix, _epoch(now + lease)])))


class RedisInbox(Arrivals):
    """The inbox in Redis, as `runtime.store.inbox.Inbox`."""

    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self.client = client
        self.prefix = prefix
        self._turns = RedisTurns(client, prefix)
        super().__init__()
        self._put = client.register_script(_HELPERS + _PUT)
        self._take = client.register_script(_HELPERS + _TAKE)
        self._finish = client.register_script(_HELPERS + _FINISH)
        self._postpone = client.register_script(_HELPERS + _POSTPONE)
        self._retry = client.register_script(_HELPERS + _RETRY)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX) -> RedisInbox:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=COMMAND_TIMEOUT
        )
        warning = durability_warning(client)
        if warning:
            log.warning("%s", warning)
        return cls(client, prefix)

    @property
    def turns(self) -> RedisTurns:
        return self._turns

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # --- the door -----------------------------------------------------------------------

    def put(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put:
        """Keep a delivery, once: `duplicate` when it was received before (unless it failed: a
        redelivery of a failed delivery is queued again, with the body it comes with now)."""
        key = delivery_key(source, delivery_id)
        args: list[EncodableT] = [self.prefix, key, source, delivery_id, event_name, issue, body, _epoch(now)]
        put = cast(bytes, self._put(args=args)).decode()
        if put != "duplicate":
            self.notify()
        return cast(Put, put)

    def accept(
        self, source: str, delivery_id: str, event_name: str, issue: str, body: bytes, now: dt.datetime
    ) -> Put:
        """The receiver's write: Redis takes concurrent writers well, so it is `put` itself."""
        return self.put(source, delivery_id, event_name, issue, body, now)

    # --- the consumers ------------------------------------------------------------------

    def take(self, owner: str, now: dt.datetime, lease: dt.timedelta, *, limit: int = 20) -> Received | None:
        """The oldest unfinished delivery of an issue whose turn `owner` could take, marked
        `processing`, with the issue's turn; `None` when nothing is ready. The caller gives the
        turn back when done. `limit` is how many issues the script reads at a time."""
        args: list[EncodableT] = [self.prefix, owner, _epoch(now), _epoch(now + lease), max(limit, 1)]
        taken = cast(list[bytes | None] | None, self._take(args=args))
        if taken is None:
            return None
        seq, key, source, delivery_id, event_name, issue, body, received, attempts, failing = taken
        return Received(
            seq=int(cast(bytes, seq)),
            key=cast(bytes, key).decode(),
            source=cast(bytes, source).decode(),
            delivery_id=cast(bytes, delivery_id).decode(),
            event_name=cast(bytes, event_name).decode(),
            issue=cast(bytes, issue).decode(),
            body=body or b"",
            received_at=_instant(received) or now,
            attempts=int(cast(bytes, attempts)),
            failing_since=_instant(failing),
        )

    def finish(self, seq: int, status: Final, now: dt.datetime, error: str | None = None) -> None:
        args: list[EncodableT] = [self.prefix, seq, status, _epoch(now)]
        if error is not None:
            args.append(error)
        self._finish(args=args)

    def postpone(self, seq: int, until: dt.datetime, error: str, failing_since: dt.datetime) -> None:
        """Back to the queue after a transient failure, to run again at `until`, first in its issue's line."""
        self._postpone(args=[self.prefix, seq, _epoch(until), error, _epoch(failing_since)])

    # --- what operators see ---------------------------------------------------------------

    def status(self, source: str, delivery_id: str) -> str | None:
        return self._field(source, delivery_id, "status")

    def error(self, source: str, delivery_id: str) -> str | None:
        return self._field(source, delivery_id, "error")

    def _field(self, source: str, delivery_id: str, field: str) -> str | None:
        raw = self.client.hget(self._key(f"d:{delivery_key(source, delivery_id)}"), field)
        return _text(cast(bytes | None, raw))

    def failed(self, limit: int = 1000) -> list[FailedDelivery]:
        keys = cast(list[bytes], self.client.zrange(self._key("failed"), 0, limit - 1))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(self._key(f"d:{key.decode()}"), _FAILED_FIELDS)
        found = []
        for values in pipe.execute():
            row = dict(zip(_FAILED_FIELDS, cast(list[bytes | None], values), strict=True))
            if _text(row["status"]) != "failed":
                continue  # queued again since the list was read
            found.append(
                FailedDelivery(
                    key=_text(row["key"]) or "",
                    source=_text(row["source"]) or "",
                    delivery_id=_text(row["delivery_id"]) or "",
                    event_name=_text(row["event_name"]) or "",
                    issue=_text(row["issue"]) or "",
                    received_at=_instant(row["received_at"]) or dt.datetime.min.replace(tzinfo=dt.UTC),
                    processed_at=_instant(row["processed_at"]),
                    attempts=int(row["attempts"] or 0),
                    error=_text(row["error"]) or "",
                )
            )
        return found

    def retry(self, keys: Sequence[str] | None, now: dt.datetime) -> int:
        """Queue failed deliveries again (all of them when `keys` is None); how many were."""
        which: list[EncodableT] = ["all"] if keys is None else ["keys", *keys]
        count = int(cast(int, self._retry(args=[self.prefix, _epoch(now), *which])))
        if count:
            self.notify()
        return count

    def has_unfinished(self, issue: str) -> bool:
        """Whether a delivery of the issue is still to run (maybe after a back-off)."""
        return bool(self.client.zcard(self._key(f"q:{issue}")))

    def health(self) -> InboxHealth:
        pipe = self.client.pipeline(transaction=True)
        pipe.zcard(self._key("pending"))
        pipe.zrange(self._key("pending"), 0, 0, withscores=True)
        pipe.zcard(self._key("failed"))
        pipe.zrange(self._key("failed_at"), 0, 0, withscores=True)
        pending, oldest_pending, failed, oldest_failed = pipe.execute()
        return InboxHealth(int(pending), int(failed), _oldest(oldest_pending), _oldest(oldest_failed))


def _oldest(members: list[tuple[bytes, float]]) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(members[0][1], dt.UTC) if members else None

"""One contract for every inbox: the SQL `Inbox` (SQLite, and PostgreSQL for the concurrent test)
and the `RedisInbox` against a real redis-server, each test under a key prefix of its own."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from app import create_app
from cli import main
from config.settings import Settings
from policies.models import IssueRef
from runtime.store import Store
from runtime.store.inbox import Final, Inbox, InboxPort, Received
from runtime.store.redis_inbox import RedisInbox
from tests.conftest import GITHUB_SECRET, drain, fixture_bytes, github_headers, services_of

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(seconds=30)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _redis_inbox(url: str) -> RedisInbox:
    return RedisInbox(redis.Redis.from_url(url), prefix=f"test:{uuid.uuid4().hex}:")


def _open(kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InboxPort:
    if kind == "redis":
        return _redis_inbox(request.getfixturevalue("redis_url"))
    if kind == "postgres":
        return Store(request.getfixturevalue("fresh_postgres_url")).inbox
    return Store(f"sqlite:///{tmp_path_factory.mktemp('inbox') / 'sopguard.db'}").inbox


@pytest.fixture(params=["sqlite", "redis"])
def inbox(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InboxPort:
    return _open(request.param, request, tmp_path_factory)


def _put(inbox: InboxPort, delivery_id: str, issue: str, at: float = 0.0, body: bytes = b"{}") -> str:
    return inbox.put("github", delivery_id, "issues", issue, body, _at(at))


def _take(inbox: InboxPort, owner: str = "w", at: float = 0.0) -> Received | None:
    return inbox.take(owner, _at(at), LEASE)


def _done(inbox: InboxPort, taken: Received, owner: str = "w", at: float = 0.0) -> None:
    inbox.finish(taken.seq, "processed", _at(at))
    inbox.turns.give_back(taken.issue, owner)


def test_a_delivery_is_kept_once_and_a_failed_one_is_queued_again_with_its_new_body(
    inbox: InboxPort,
) -> None:
    assert _put(inbox, "d1", "gh:o/r#1", body=b'{"v": 1}') == "queued"
    assert _put(inbox, "d1", "gh:o/r#1", body=b'{"v": 2}') == "duplicate"
    assert inbox.status("github", "d1") == "queued"
    assert inbox.status("github", "unknown") is None

    taken = _take(inbox)
    assert taken is not None
    assert (taken.key, taken.delivery_id, taken.event_name, taken.issue) == (
        "github:d1",
        "d1",
        "issues",
        "gh:o/r#1",
    )
    assert (taken.body, taken.attempts, taken.received_at, taken.failing_since) == (b'{"v": 1}', 1, T0, None)
    assert inbox.status("github", "d1") == "processing"
    assert _put(inbox, "d1", "gh:o/r#1") == "duplicate"

    inbox.finish(taken.seq, "failed", _at(5), "the tracker refused it")
    inbox.turns.give_back(taken.issue, "w")
    assert (inbox.status("github", "d1"), inbox.error("github", "d1")) == ("failed", "the tracker refused it")

    assert _put(inbox, "d1", "gh:o/r#1", at=10, body=b'{"v": 3}') == "requeued"
    again = _take(inbox, at=10)
    assert again is not None
    assert (again.seq, again.body, again.attempts) == (taken.seq, b'{"v": 3}', 1)
    _done(inbox, again, at=11)
    assert (inbox.status("github", "d1"), inbox.error("github", "d1")) == ("processed", None)
    assert _put(inbox, "d1", "gh:o/r#1") == "duplicate"
    assert _take(inbox, at=20) is None


def test_each_issue_runs_its_deliveries_in_order_and_issues_run_side_by_side(inbox: InboxPort) -> None:
    for delivery_id, issue in [("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A")]:
        _put(inbox, delivery_id, issue)

    first, second = _take(inbox, "w1"), _take(inbox, "w2")
    assert first is not None and second is not None
    assert (first.delivery_id, second.delivery_id) == ("a1", "b1")
    assert _take(inbox, "w3") is None  # both issues are being worked on

    _done(inbox, first, "w1")
    third = _take(inbox, "w3")
    assert third is not None and third.delivery_id == "a2"
    _done(inbox, second, "w2")
    _done(inbox, third, "w3")

    order = []
    while (taken := _take(inbox)) is not None:
        order.append(taken.delivery_id)
        _done(inbox, taken)
    assert order == ["b2", "a3"]


def test_a_postponed_head_holds_back_its_own_issue_only(inbox: InboxPort) -> None:
    _put(inbox, "a1", "A")
    _put(inbox, "a2", "A")
    _put(inbox, "b1", "B")
    head = _take(inbox)
    assert head is not None and head.delivery_id == "a1"
    inbox.postpone(head.seq, _at(60), "the tracker is unavailable", _at(0))
    inbox.turns.give_back("A", "w")
    assert (inbox.status("github", "a1"), inbox.error("github", "a1")) == (
        "queued",
        "the tracker is unavailable",
    )

    other = _take(inbox, at=1)
    assert other is not None and other.delivery_id == "b1"
    _done(inbox, other, at=1)
    assert _take(inbox, at=59) is None  # a2 waits behind a1

    again = _take(inbox, at=60)
    assert again is not None
    # A postponement is not an attempt: `attempts` counts the runs that never came back (a worker
    # that died), so a long retry horizon does not give up early.
    assert (again.delivery_id, again.attempts, again.failing_since) == ("a1", 1, T0)
    _done(inbox, again, at=61)
    after = _take(inbox, at=61)
    assert after is not None and after.delivery_id == "a2"


def test_a_turn_held_by_someone_else_keeps_the_issue_from_being_taken(inbox: InboxPort) -> None:
    _put(inbox, "a1", "A")
    assert inbox.turns.take("A", "sweep", _at(0), LEASE)
    assert inbox.turns.take("A", "sweep", _at(1), LEASE)  # the holder extends it
    assert not inbox.turns.take("A", "other", _at(1), LEASE)
    assert _take(inbox, at=2) is None

    inbox.turns.give_back("A", "other")  # not the holder: nothing changes
    assert _take(inbox, at=2) is None
    inbox.turns.give_back("A", "sweep")
    taken = _take(inbox, at=3)
    assert taken is not None and taken.delivery_id == "a1"
    assert not inbox.turns.take("A", "sweep", _at(3), LEASE)


def test_a_turn_that_ran_out_is_taken_over_and_its_delivery_runs_again(inbox: InboxPort) -> None:
    _put(inbox, "a1", "A")
    _put(inbox, "a2", "A")
    dead = _take(inbox, "dead", at=0)
    assert dead is not None and dead.attempts == 1
    assert _take(inbox, "w2", at=29) is None

    again = _take(inbox, "w2", at=30)
    assert again is not None
    assert (again.delivery_id, again.seq, again.attempts) == ("a1", dead.seq, 2)
    assert inbox.status("github", "a1") == "processing"
    inbox.turns.give_back("A", "dead")  # the old holder, back too late, gives back nothing
    assert not inbox.turns.take("A", "w3", _at(31), LEASE)
    _done(inbox, again, "w2", at=31)
    last = _take(inbox, "w3", at=31)
    assert last is not None and (last.delivery_id, last.attempts) == ("a2", 1)


def test_renew_extends_the_turns_of_one_process(inbox: InboxPort) -> None:
    for issue, owner in [("A", "host:1:t1"), ("B", "host:1:t2"), ("C", "host:2:t1")]:
        assert inbox.turns.take(issue, owner, _at(0), LEASE)
    assert inbox.turns.renew("host:1:", _at(20), LEASE) == 2
    assert not inbox.turns.take("A", "other", _at(40), LEASE)
    assert not inbox.turns.take("B", "other", _at(40), LEASE)
    assert inbox.turns.take("C", "other", _at(40), LEASE)
    assert inbox.turns.renew("nobody:", _at(40), LEASE) == 0


def test_operators_see_failed_deliveries_and_queue_them_again(inbox: InboxPort) -> None:
    assert inbox.health().pending == 0 and inbox.health().oldest_pending is None
    for n, issue in enumerate(["A", "B", "C"]):
        _put(inbox, f"d{n + 1}", issue, at=n)
    health = inbox.health()
    assert (health.pending, health.failed, health.oldest_pending, health.oldest_failed) == (3, 0, T0, None)

    endings: list[tuple[int, Final]] = [(5, "failed"), (6, "failed"), (7, "processed")]
    for at, status in endings:
        taken = _take(inbox, at=at)
        assert taken is not None
        inbox.finish(taken.seq, status, _at(at), f"boom {at}" if status == "failed" else None)
        inbox.turns.give_back(taken.issue, "w")
    health = inbox.health()
    assert (health.pending, health.failed, health.oldest_pending, health.oldest_failed) == (
        0,
        2,
        None,
        _at(5),
    )

    failed = inbox.failed()
    assert [(f.key, f.issue, f.error, f.attempts) for f in failed] == [
        ("github:d1", "A", "boom 5", 1),
        ("github:d2", "B", "boom 6", 1),
    ]
    assert (failed[0].source, failed[0].delivery_id, failed[0].event_name) == ("github", "d1", "issues")
    assert (failed[0].received_at, failed[0].processed_at) == (T0, _at(5))
    assert [f.key for f in inbox.failed(limit=1)] == ["github:d1"]

    assert inbox.retry(["github:d1", "github:d3"], _at(8)) == 1  # d3 did not fail
    assert inbox.retry(["github:d1"], _at(8)) == 0
    assert (inbox.status("github", "d1"), inbox.error("github", "d1")) == ("queued", None)
    health = inbox.health()
    assert (health.pending, health.failed, health.oldest_pending, health.oldest_failed) == (1, 1, T0, _at(6))

    assert inbox.retry(None, _at(9)) == 1
    assert inbox.failed() == []
    assert inbox.health().pending == 2
    taken = _take(inbox, at=9)
    assert taken is not None and (taken.delivery_id, taken.attempts) == ("d1", 1)


def _run_concurrently(inbox: InboxPort, threads: int, deliveries: int, issues: int) -> list[tuple[str, int]]:
    """Workers taking until every delivery is done; the (issue, seq) of each, in the order finished."""
    for n in range(deliveries):
        _put(inbox, f"c{n}", f"issue-{n % issues}")
    finished: list[tuple[str, int]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(owner: str) -> None:
        try:
            for _ in range(100_000):  # a bound, so a broken inbox fails the test instead of hanging it
                with lock:
                    if len(finished) == deliveries:
                        return
                taken = inbox.take(owner, T0, dt.timedelta(minutes=10))
                if taken is None:
                    inbox.wait(0.001)
                    continue
                inbox.finish(taken.seq, "processed", T0)
                with lock:
                    finished.append((taken.issue, taken.seq))
                inbox.turns.give_back(taken.issue, owner)
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    workers = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return finished


def _assert_each_once_in_order(finished: list[tuple[str, int]], deliveries: int, issues: int) -> None:
    seqs = [seq for _, seq in finished]
    assert len(seqs) == deliveries and len(set(seqs)) == deliveries
    for n in range(issues):
        in_issue = [seq for issue, seq in finished if issue == f"issue-{n}"]
        assert len(in_issue) == deliveries // issues
        assert in_issue == sorted(in_issue)


@pytest.mark.parametrize("kind", ["sqlite", "redis", "postgres"])
def test_concurrent_workers_take_each_delivery_once_and_each_issue_in_order(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    inbox = _open(kind, request, tmp_path_factory)
    finished = _run_concurrently(inbox, threads=4, deliveries=40, issues=5)
    _assert_each_once_in_order(finished, deliveries=40, issues=5)
    assert inbox.health().pending == 0


# --- wiring ---------------------------------------------------------------------------------


@pytest.fixture
def own_redis_database(redis_url: str) -> Iterator[str]:
    """A Redis database of its own (number 9, emptied before and after), for a `Store` whose inbox
    uses the default key prefix."""
    url = f"{redis_url.rsplit('/', 1)[0]}/9"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


def test_a_store_with_a_redis_queue_url_records_the_outcome_in_both(
    tmp_path: Path, own_redis_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'sopguard.db'}", own_redis_database)
    assert isinstance(store.inbox, RedisInbox)
    assert "appendonly yes" in caplog.text  # the test server keeps nothing on disk
    store.inbox.put("github", "r1", "issues", "github:o/r#1", b"{}", T0)
    taken = store.inbox.take("w", T0, LEASE)
    assert taken is not None
    store.record(
        seq=taken.seq,
        status="ignored",
        error="not a service request",
        source="github",
        delivery_id="r1",
        event_name="issues",
        ref=IssueRef("github", "o/r", "1"),
        audit_rows=[
            {"rule_id": None, "reasons": ["not a service request"], "actions": [], "outcome": "ignored"}
        ],
        ledger=None,
        now=_at(1),
    )
    assert store.inbox.status("github", "r1") == "ignored"
    assert store.inbox.error("github", "r1") == "not a service request"
    assert [entry.outcome for entry in store.audit.entries(None, 10)] == ["ignored"]
    assert Store(store.url).inbox.status("github", "r1") is None  # nothing of it in the database


def test_a_store_without_a_queue_url_keeps_its_inbox_in_the_database(tmp_path: Path) -> None:
    assert isinstance(Store(f"sqlite:///{tmp_path / 'sopguard.db'}").inbox, Inbox)
    with pytest.raises(ValueError, match="redis://"):
        Store(f"sqlite:///{tmp_path / 'sopguard.db'}", f"sqlite:///{tmp_path / 'queue.db'}")


def test_the_queue_url_setting_is_redis_or_unset(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).resolved_queue_url == ""
    assert Settings(queue_url="rediss://cache:6380/1").resolved_queue_url == "rediss://cache:6380/1"
    with pytest.raises(ValueError, match="SOPGUARD_QUEUE_URL must be a redis:// or rediss:// URL"):
        Settings(queue_url=f"sqlite:///{tmp_path / 'queue.db'}")


def test_a_queue_url_that_is_not_redis_stops_a_command_with_the_variable_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("SOPGUARD_QUEUE_URL", f"sqlite:///{tmp_path / 'queue.db'}")
    result = CliRunner().invoke(main, ["audit", "--failed"])
    assert result.exit_code != 0
    assert "SOPGUARD_QUEUE_URL must be a redis:// or rediss:// URL" in result.output


def test_a_service_with_a_redis_inbox_takes_a_delivery_at_the_door_and_processes_it_once(
    tmp_path: Path, own_redis_database: str
) -> None:
    settings = Settings(
        data_dir=tmp_path / "var",
        queue_url=own_redis_database,
        trackers=["github"],
        github_webhook_secret=GITHUB_SECRET,
    )
    app = create_app(settings)
    client = app.test_client()
    body = fixture_bytes("github", "issues__opened.json")
    for expected in (202, 200):  # the redelivery is a duplicate
        response = client.post(
            "/webhooks/github", data=body, headers=github_headers(body, "issues", "door-1")
        )
        assert response.status_code == expected, response.get_json()
    store = services_of(app).store
    assert isinstance(store.inbox, RedisInbox)
    assert client.get("/readyz").get_json()["pending"] == 1

    assert drain(app) == 1 and drain(app) == 0
    assert store.inbox.status("github", "door-1") == "processed"
    entries = list(store.audit.entries(issue="Codertocat/Hello-World#1"))
    assert entries and all(e.delivery_id == "door-1" for e in entries)
    assert client.get("/readyz").get_json()["pending"] == 0

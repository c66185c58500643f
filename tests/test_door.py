"""The door's grouped write on SQLite (runtime/store/door.py), under real threads: every row kept
once, a duplicate told apart, a failed batch failing each of its rows (nobody left waiting), and
the door writing again once the database can be written."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from runtime.store import Store
from runtime.store.inbox import Inbox
from runtime.store.schema import deliveries

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
THREADS = 16


def _inbox(tmp_path: Path) -> tuple[Store, Inbox]:
    store = Store(f"sqlite:///{tmp_path / 'sopguard.db'}")
    assert isinstance(store.inbox, Inbox)
    return store, store.inbox


def _put_all(inbox: Inbox, work: list[list[str]]) -> tuple[Counter[str], list[BaseException]]:
    """Each thread puts its delivery ids at the same moment; what each put answered, by id."""
    answers: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(work))

    def put(ids: list[str]) -> None:
        start.wait()
        for delivery_id in ids:
            try:
                answer = inbox.put(
                    "github", delivery_id, "issues", f"github:o/r#{delivery_id[-1]}", b"{}", NOW
                )
            except BaseException as error:  # reported by the main thread
                with lock:
                    errors.append(error)
                continue
            with lock:
                answers[f"{delivery_id}:{answer}"] += 1

    threads = [threading.Thread(target=put, args=(ids,)) for ids in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread is still waiting at the door"
    return answers, errors


def test_simultaneous_puts_keep_each_delivery_once_and_tell_the_second_of_a_pair_it_is_a_duplicate(
    tmp_path: Path,
) -> None:
    store, inbox = _inbox(tmp_path)
    # Every id is put by two threads: one must hear "queued", the other "duplicate".
    ids = [f"d-{n}" for n in range(THREADS * 25)]
    work = [ids[n::THREADS] + ids[(n + 1) % THREADS :: THREADS] for n in range(THREADS)]

    answers, errors = _put_all(inbox, work)

    assert errors == []
    assert {answer for answer in answers if answers[answer] != 1} == set()
    for delivery_id in ids:
        assert answers[f"{delivery_id}:queued"] == 1
        assert answers[f"{delivery_id}:duplicate"] == 1
    with store.engine.connect() as db:
        kept = db.execute(select(deliveries.c.delivery_id, deliveries.c.status)).all()
    assert sorted(delivery_id for delivery_id, _ in kept) == sorted(ids)
    assert {status for _, status in kept} == {"queued"}


def test_a_failed_write_fails_each_waiting_delivery_and_the_door_writes_again_afterwards(
    tmp_path: Path,
) -> None:
    """The database refuses every insert for a while (a trigger stands in for a full disk)."""
    store, inbox = _inbox(tmp_path)
    with store.engine.begin() as db:
        db.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'disk gone'); END"
        )

    answers, errors = _put_all(inbox, [[f"bad-{t}-{n}" for n in range(5)] for t in range(THREADS)])

    assert sum(answers.values()) == 0
    assert len(errors) == THREADS * 5
    assert all("disk gone" in str(error) for error in errors)
    with store.engine.begin() as db:
        db.exec_driver_sql("DROP TRIGGER refuse")
    answers, errors = _put_all(inbox, [[f"good-{t}-{n}" for n in range(5)] for t in range(THREADS)])
    assert errors == []
    assert sum(answers.values()) == THREADS * 5
    assert set(answers) == {f"good-{t}-{n}:queued" for t in range(THREADS) for n in range(5)}

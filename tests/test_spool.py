"""The door's spool on SQLite (runtime/store/spool.py) and the inbox taking it in: real files, real
processes, a real short write (the file-size limit of the process); of our code nothing is patched
(two tests make a system call misbehave: a failing `ftruncate`, a clock that stands still)."""

from __future__ import annotations

import datetime as dt
import fcntl
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from runtime.store import Store
from runtime.store.inbox import Inbox
from runtime.store.schema import deliveries, spooled
from runtime.store.spool import (
    Spooled,
    SpoolWriter,
    decode,
    encode,
    is_finished,
    read_from,
    spool_files,
)

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)


def _item(
    delivery_id: str, issue: str = "github:o/r#1", seconds: float = 0.0, body: bytes = b"{}"
) -> Spooled:
    return Spooled("github", delivery_id, "issues", issue, body, T0 + dt.timedelta(seconds=seconds))


def _inbox(tmp_path: Path) -> Inbox:
    inbox = Store(f"sqlite:///{tmp_path / 'sopguard.db'}").inbox
    assert isinstance(inbox, Inbox)
    return inbox


def _put(inbox: Inbox, item: Spooled) -> str:
    return inbox.accept(
        item.source, item.delivery_id, item.event_name, item.issue, item.body, item.received_at
    )


def _rows(inbox: Inbox) -> list[tuple[str, str, str]]:
    query = select(deliveries.c.delivery_id, deliveries.c.issue, deliveries.c.status).order_by(
        deliveries.c.seq
    )
    with inbox.engine.connect() as db:
        return [(row[0], row[1], row[2]) for row in db.execute(query)]


# --- frames ------------------------------------------------------------------------------------------


def test_a_frame_keeps_every_field_and_the_body_byte_for_byte() -> None:
    item = _item("d-1", body=bytes(range(256)) * 40)

    chunk = decode("f", encode(item), 100, finished=False)

    assert [frame for frame, _ in chunk.frames] == [item]
    assert chunk.end == 100 + len(encode(item)) and chunk.skipped == 0


def test_a_write_under_way_is_left_for_later_and_damage_is_passed_over() -> None:
    first, second, third = (encode(_item(f"d-{n}")) for n in range(3))
    damaged = first + second[:10] + b"\0" * 7 + second[17:] + third  # a bad stretch, then a good frame

    chunk = decode("f", damaged, 0, finished=False)
    assert [f.delivery_id for f, _ in chunk.frames] == ["d-0", "d-2"] and chunk.end == len(damaged)
    assert chunk.skipped == len(second)

    under_way = first + third[: len(third) // 2]
    assert decode("f", under_way, 0, finished=False).end == len(first)  # read again next time
    finished = decode("f", under_way, 0, finished=True)  # its writer is gone: it never will be whole
    assert (finished.end, finished.skipped) == (len(under_way), len(third) // 2)


def test_a_frame_larger_than_one_read_is_read_whole(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    big = _item("big", body=b"x" * (9 * 1024 * 1024))
    writer.append(big)
    writer.append(_item("small"))
    ((name, size),) = spool_files(tmp_path / "spool")

    first = read_from(tmp_path / "spool" / name, 0, size, finished=False)
    rest = read_from(tmp_path / "spool" / name, first.end, size, finished=False)

    assert [f.delivery_id for f, _ in first.frames] == ["big"] and first.frames[0][0] == big
    assert [f.delivery_id for f, _ in rest.frames] == ["small"]


# --- the writer --------------------------------------------------------------------------------------


def test_a_short_write_leaves_the_file_as_it_was_and_the_next_append_goes_to_a_new_one(
    tmp_path: Path,
) -> None:
    writer = SpoolWriter(tmp_path / "spool")
    writer.append(_item("before"))
    ((name, size),) = spool_files(tmp_path / "spool")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))  # the frame below needs more
    try:
        with pytest.raises(OSError):
            writer.append(_item("too-big", body=b"y" * 5000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert dict(spool_files(tmp_path / "spool"))[name] == size  # no half frame left behind
    assert is_finished(tmp_path / "spool" / name)  # and nothing more is written to it

    writer.append(_item("after"))
    names = [n for n, _ in spool_files(tmp_path / "spool")]
    assert len(names) == 2 and names[0] == name  # the new file comes after
    assert _frames(tmp_path / "spool") == ["before", "after"]
    chunk = read_from(tmp_path / "spool" / name, 0, size, finished=True)
    assert [f.delivery_id for f, _ in chunk.frames] == ["before"] and chunk.skipped == 0


def _frames(directory: Path) -> list[str]:
    """The deliveries of every file, as a take-in of finished files would find them."""
    return [
        frame.delivery_id
        for name, size in spool_files(directory)
        for frame, _ in read_from(directory / name, 0, size, finished=True).frames
    ]


def test_a_cut_back_that_fails_costs_no_later_delivery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The half frame of a short write stays when cutting it off fails too (the system's
    `ftruncate` is made to fail once): the file is finished then, so that no later frame is
    written behind it, nor cut off by the next failure's cut-back."""
    directory = tmp_path / "spool"
    writer = SpoolWriter(directory)
    writer.append(_item("A"))
    real = os.ftruncate

    def fails_once(fd: int, length: int) -> None:
        monkeypatch.setattr(os, "ftruncate", real)
        raise OSError(5, "Input/output error")

    def short_write(delivery_id: str) -> None:
        size = sum(size for _, size in spool_files(directory))
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, hard))
        try:
            with pytest.raises(OSError):
                writer.append(_item(delivery_id, body=b"y" * 5000))
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)

    monkeypatch.setattr(os, "ftruncate", fails_once)
    short_write("B")  # 50 bytes of B stay
    writer.append(_item("C"))
    writer.append(_item("D"))
    short_write("E")
    writer.close()

    assert _frames(directory) == ["A", "C", "D"]
    first = next(iter(spool_files(directory)))[0]
    assert read_from(directory / first, 0, (directory / first).stat().st_size, finished=True).skipped == 50


def test_two_writers_of_one_instant_never_take_each_others_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names are the pid and the time: a clock that stands still (here, the system's `time_ns`)
    or two writers of one process in one nanosecond must not replace a live file."""
    monkeypatch.setattr(time, "time_ns", lambda: 1_764_579_600_000_000_000)
    directory = tmp_path / "spool"
    one, two = SpoolWriter(directory), SpoolWriter(directory)

    one.append(_item("one-1"))
    two.append(_item("two-1"))
    one.append(_item("one-2"))

    assert len(list(spool_files(directory))) == 2
    assert sorted(_frames(directory)) == ["one-1", "one-2", "two-1"]
    assert not list(directory.glob("*.new"))


def test_a_file_is_finished_only_once_its_writer_moved_on(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path / "spool", file_limit=len(encode(_item("d-0"))) * 2)
    for n in range(3):
        writer.append(_item(f"d-{n}"))
    first, second = (tmp_path / "spool" / name for name, _ in spool_files(tmp_path / "spool"))

    assert is_finished(first)  # two frames filled it: the writer started the second
    assert not is_finished(second)  # held by the writer, even against another descriptor of this process
    writer.close()
    assert is_finished(second)


# --- taking the spool in -----------------------------------------------------------------------------


def test_the_inbox_takes_the_spool_in_once_and_drops_what_it_kept_before(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    assert [_put(inbox, _item(i, seconds=n)) for n, i in enumerate(["a", "b", "a"])] == ["accepted"] * 3

    assert inbox.take_in() == 2
    assert inbox.take_in() == 0
    assert _rows(inbox) == [("a", "github:o/r#1", "queued"), ("b", "github:o/r#1", "queued")]

    with inbox.engine.begin() as db:  # as if the take-in had never been recorded: done again, harmlessly
        db.execute(spooled.delete())
    another_process = _inbox(tmp_path)
    assert another_process.take_in() == 0 and len(_rows(inbox)) == 2


def test_a_failed_delivery_sent_again_through_the_spool_is_queued_again_with_its_new_body(
    tmp_path: Path,
) -> None:
    inbox = _inbox(tmp_path)
    _put(inbox, _item("f-1", body=b'{"v": 1}'))
    taken = inbox.take("w", T0, dt.timedelta(seconds=30))
    assert taken is not None and taken.body == b'{"v": 1}'
    inbox.finish(taken.seq, "failed", T0, "the tracker refused it")
    inbox.turns.give_back(taken.issue, "w")

    _put(inbox, _item("f-1", seconds=5, body=b'{"v": 2}'))

    again = inbox.take("w", T0 + dt.timedelta(seconds=5), dt.timedelta(seconds=30))
    assert again is not None and (again.seq, again.body, again.attempts) == (taken.seq, b'{"v": 2}', 1)


def test_a_finished_file_taken_in_whole_is_removed(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    for n in range(3):
        _put(inbox, _item(f"d-{n}"))
    directory = inbox.spool_directory
    assert directory is not None and len(list(spool_files(directory))) == 1

    inbox.take_in()
    assert len(list(spool_files(directory))) == 1  # still this process's file to write to

    assert inbox.spool is not None
    inbox.spool.close()  # as at the end of the process
    inbox.look_for_finished_every = 0.0
    inbox.take_in()
    assert list(spool_files(directory)) == []
    with inbox.engine.connect() as db:
        assert db.execute(select(spooled)).all() == []
    assert [row[0] for row in _rows(inbox)] == ["d-0", "d-1", "d-2"]


def _spool_from_another_process(
    database: str, prefix: str, count: int, start: multiprocessing.synchronize.Event
) -> None:
    inbox = Store(f"sqlite:///{database}").inbox
    start.wait()
    for n in range(count):
        now = dt.datetime.now(dt.UTC)
        inbox.accept("github", f"shared-{n}", "issues", f"github:o/r#{n % 4}", f"{prefix}{n}".encode(), now)
        inbox.accept("github", f"{prefix}-{n}", "issues", f"github:o/r#{n % 4}", b"{}", now)


@pytest.fixture
def two_writers(
    tmp_path: Path,
) -> Iterator[tuple[Path, list[multiprocessing.Process], multiprocessing.synchronize.Event]]:
    database = tmp_path / "sopguard.db"
    Store(f"sqlite:///{database}").engine.dispose()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    writers = [
        context.Process(target=_spool_from_another_process, args=(str(database), prefix, 300, start))
        for prefix in ("p", "q")
    ]
    for writer in writers:
        writer.start()
    yield database, writers, start  # type: ignore[misc]
    for writer in writers:
        writer.join(timeout=60)


def test_two_processes_spooling_while_the_inbox_takes_in_keep_each_delivery_once_in_order(
    two_writers: tuple[Path, list[multiprocessing.Process], multiprocessing.synchronize.Event],
) -> None:
    database, writers, start = two_writers
    inbox = Store(f"sqlite:///{database}").inbox
    assert isinstance(inbox, Inbox)
    start.set()
    while any(writer.is_alive() for writer in writers):
        inbox.take_in()
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    inbox.look_for_finished_every = 0.0
    inbox.take_in()

    query = select(deliveries.c.delivery_id).order_by(deliveries.c.seq)
    with inbox.engine.connect() as db:
        ids = list(db.execute(query).scalars())
    assert len(ids) == len(set(ids)) == 300 * 3  # each shared id once, each process's own once
    for prefix in ("p", "q"):  # each process's deliveries in the order it received them
        own = [int(i.split("-")[1]) for i in ids if i.startswith(f"{prefix}-")]
        assert own == sorted(own)
    assert inbox.spool_directory is not None and list(spool_files(inbox.spool_directory)) == []


# --- what a review found ------------------------------------------------------------------------------


def _writer_lock_held(database: Path) -> int:
    """Hold the database's writer lock, as another process's long take-in would."""
    lock = os.open(f"{database}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def test_a_delivery_appended_while_a_take_in_waits_for_the_lock_is_taken_in_before_its_file_goes(
    tmp_path: Path,
) -> None:
    """The take-in listed the file at its old size, waited for the lock, and meanwhile the writer
    appended one more delivery and went away: the file was removed with it unread."""
    inbox, writer, other = _inbox(tmp_path), _inbox(tmp_path), _inbox(tmp_path)
    _put(writer, _item("w-1"))
    assert inbox.take_in() == 1
    inbox.look_for_finished_every = 0.0
    _put(other, _item("o-1", issue="github:o/r#2"))  # so that the next take-in needs the lock
    lock = _writer_lock_held(tmp_path / "sopguard.db")
    waiting = threading.Thread(target=inbox.take_in)
    waiting.start()
    time.sleep(0.3)  # it has listed the spool and waits for the lock
    _put(writer, _item("w-2", seconds=1))  # acknowledged ...
    assert writer.spool is not None
    writer.spool.close()  # ... and its process gone
    fcntl.flock(lock, fcntl.LOCK_UN)
    os.close(lock)
    waiting.join()
    inbox.take_in()

    assert [row[0] for row in _rows(inbox)] == ["w-1", "o-1", "w-2"]
    assert inbox.spool_directory is not None and len(list(spool_files(inbox.spool_directory))) == 1  # other's


def test_a_file_that_grows_while_a_take_in_waits_for_the_lock_is_read_as_far_as_the_others(
    tmp_path: Path,
) -> None:
    """The take-in listed the files before it had the lock (only one had grown): a delivery
    acknowledged meanwhile in the other file must not come after a later one of the first."""
    consumer, a, b = _inbox(tmp_path), _inbox(tmp_path), _inbox(tmp_path)
    _put(a, _item("a-0"))
    _put(b, _item("b-0", seconds=1))
    consumer.take_in()
    _put(a, _item("a-1", seconds=2))  # a grew: the next take-in needs the lock
    lock = _writer_lock_held(tmp_path / "sopguard.db")
    waiting = threading.Thread(target=consumer.take_in)
    waiting.start()
    time.sleep(0.3)  # it has listed the spool and waits for the lock
    _put(b, _item("b-1", seconds=3))  # acknowledged first ...
    _put(a, _item("a-2", seconds=4))  # ... then this one, of the same issue
    fcntl.flock(lock, fcntl.LOCK_UN)
    os.close(lock)
    waiting.join()
    consumer.take_in()

    assert [row[0] for row in _rows(consumer)] == ["a-0", "b-0", "a-1", "b-1", "a-2"]


def test_a_file_with_more_than_one_read_waiting_holds_back_later_deliveries_of_the_others(
    tmp_path: Path,
) -> None:
    busy, quiet, inbox = _inbox(tmp_path), _inbox(tmp_path), _inbox(tmp_path)
    for n in range(9):  # 9 MiB in one file: more than one read takes
        _put(busy, _item(f"big-{n}", issue=f"github:o/r#{100 + n}", seconds=n, body=b"x" * 1024 * 1024))
    _put(busy, _item("X-first", seconds=10))
    _put(quiet, _item("X-second", seconds=11))

    while inbox.take_in():
        pass

    ids = [row[0] for row in _rows(inbox)]
    assert len(ids) == 11 and ids.index("X-first") < ids.index("X-second")


def test_damage_longer_than_one_read_in_a_finished_file_is_passed_over_and_what_follows_taken_in(
    tmp_path: Path,
) -> None:
    writer, inbox = _inbox(tmp_path), _inbox(tmp_path)
    _put(writer, _item("damaged", body=b"z" * (10 * 1024 * 1024)))
    for n in range(3):
        _put(writer, _item(f"after-{n}", seconds=n + 1))
    assert writer.spool is not None and inbox.spool_directory is not None
    writer.spool.close()
    ((name, _),) = spool_files(inbox.spool_directory)
    with (inbox.spool_directory / name).open("r+b") as file:
        file.seek(5 * 1024 * 1024)
        file.write(b"!")  # one byte of the big frame flipped: its checksum fails

    assert inbox.take_in() == 3

    assert [row[0] for row in _rows(inbox)] == ["after-0", "after-1", "after-2"]


def test_an_empty_spool_file_is_removed_and_costs_no_lock(tmp_path: Path) -> None:
    inbox = _inbox(tmp_path)
    assert inbox.spool_directory is not None
    inbox.spool_directory.mkdir()
    (inbox.spool_directory / f"1-{time.time_ns()}.spool").touch()  # a writer killed right after creating it
    inbox.look_for_finished_every = 0.0
    inbox.take_in()
    assert list(spool_files(inbox.spool_directory)) == []

    lock = _writer_lock_held(tmp_path / "sopguard.db")
    try:
        done = threading.Thread(target=inbox.health)
        done.start()
        done.join(timeout=10)
        assert not done.is_alive()  # nothing to take in: the lock was not waited for
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)

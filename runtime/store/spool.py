"""The door's spool on SQLite: every delivery a web process acknowledges is first appended to a file
of that process's own, with one `write(2)`; the consumers take the files into the inbox in batches.

Why: SQLite has one writer at a time. Two web processes committing a row per delivery each make
the other re-read the pages it changed, and take turns at the file's lock: that, not the work of a
delivery, bounded the door (README, "Performance"). An append to a file nobody else writes costs
a few microseconds and shares nothing. It is as durable as a commit of the SQLite database in WAL
mode with `synchronous=NORMAL`: once `write` returns, the bytes are the kernel's, so they survive
a crash of the process (a kill, an exception), not one of the machine.

A file is a sequence of frames: `SGS1`, the payload's length and its CRC-32 (little-endian), then
the payload (the delivery's metadata as JSON, its length first, and the raw body). A frame that is
short or fails its CRC at the end of a file its writer still holds is a write under way, read
again next time; anywhere else it is damage, skipped to the next good frame and logged. A process
holds an exclusive `flock` on the file it writes, so an importer knows a file is finished (written
to its end, never to be appended to) when it can take that lock; it removes a finished file once
every frame of it is in the inbox. A writer starts a new file past `FILE_LIMIT` bytes.

Which bytes of which file are in the inbox is kept in the database (`spooled`), in the
transaction that adds their deliveries, so a take-in that dies half-way is repeated whole, and a
delivery taken in twice is still one row (its key is unique).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import itertools
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import orjson

log = logging.getLogger(__name__)

MAGIC = b"SGS1"
_HEADER = struct.Struct("<4sII")  # magic, payload length, CRC-32 of the payload
_META_LENGTH = struct.Struct("<I")
SUFFIX = ".spool"
FILE_LIMIT = 16 * 1024 * 1024
# The most of a file one take-in reads: a backlog is taken in over several rounds.
READ_LIMIT = 8 * 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    """A delivery as the door kept it."""

    source: str
    delivery_id: str
    event_name: str
    issue: str
    body: bytes
    received_at: dt.datetime


def encode(item: Spooled) -> bytes:
    meta = orjson.dumps(
        [item.source, item.delivery_id, item.event_name, item.issue, item.received_at.isoformat()]
    )
    payload = b"".join((_META_LENGTH.pack(len(meta)), meta, item.body))
    return b"".join((_HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)), payload))


def _decode_payload(payload: bytes) -> Spooled:
    (length,) = _META_LENGTH.unpack_from(payload)
    end = _META_LENGTH.size + length
    source, delivery_id, event_name, issue, received_at = orjson.loads(payload[_META_LENGTH.size : end])
    return Spooled(
        source, delivery_id, event_name, issue, payload[end:], dt.datetime.fromisoformat(received_at)
    )


def _frame_at(data: bytes, position: int) -> tuple[Spooled, int] | None:
    """The frame that starts at `position`, and where it ends; `None` when there is none whole."""
    if len(data) - position < _HEADER.size:
        return None
    magic, length, checksum = _HEADER.unpack_from(data, position)
    start = position + _HEADER.size
    if magic != MAGIC or start + length > len(data):  # checked first: no copy of what is not there
        return None
    payload = data[start : start + length]
    if zlib.crc32(payload) != checksum:
        return None
    try:
        return _decode_payload(payload), start + length
    except (ValueError, TypeError, struct.error):
        return None


@dataclass(frozen=True)
class Chunk:
    """The whole frames read from one file past `start`, each with the offset it ends at."""

    name: str
    start: int
    frames: tuple[tuple[Spooled, int], ...]
    end: int  # the offset the next read starts from
    skipped: int = 0  # damaged bytes passed over
    truncated: bool = False  # more of the file was there to read than one read takes


def decode(name: str, data: bytes, start: int, *, finished: bool) -> Chunk:
    """The frames of `data` (the file's bytes from offset `start`). A bad stretch followed by a good
    frame is damage, passed over; at the end it is a write under way unless the file is
    `finished`."""
    frames: list[tuple[Spooled, int]] = []
    position, skipped = 0, 0
    while position < len(data):
        found = _frame_at(data, position)
        if found is not None:
            frames.append((found[0], start + found[1]))
            position = found[1]
            continue
        resumed = _next_frame(data, position + 1)
        if resumed is None:
            if not finished:
                break
            resumed = len(data)
        skipped += resumed - position
        position = resumed
    if skipped:
        log.error("spool file %s: %d damaged bytes after offset %d passed over", name, skipped, start)
    return Chunk(name, start, tuple(frames), start + position, skipped)


def _next_frame(data: bytes, position: int) -> int | None:
    while (found := data.find(MAGIC, position)) != -1:
        if _frame_at(data, found) is not None:
            return found
        position = found + 1
    return None


class _OpenFile:
    __slots__ = ("fd", "pid", "size")

    def __init__(self, fd: int, pid: int) -> None:
        self.fd, self.pid, self.size = fd, pid, 0


class SpoolWriter:
    """The door's side: `append` a delivery to this process's file (thread-safe)."""

    def __init__(self, directory: Path, file_limit: int = FILE_LIMIT) -> None:
        self.directory = directory
        self.file_limit = file_limit
        self._lock = threading.Lock()
        self._file: _OpenFile | None = None

    def append(self, item: Spooled) -> None:
        """Once this returns, the delivery is kept. A failure (an `OSError` such as a full disk)
        keeps nothing of the frame: it is cut off again where it can be, and the file is finished
        either way, so that a frame the cut missed is passed over as damage, never followed by
        another (the next delivery starts a new file)."""
        frame = encode(item)
        with self._lock:
            current = self._current(len(frame))
            try:
                written = os.write(current.fd, frame)
                if written != len(frame):
                    raise OSError(errno.ENOSPC, f"only {written} of {len(frame)} bytes written")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.ftruncate(current.fd, current.size)
                self._finish(current)
                raise
            current.size += written

    def _finish(self, current: _OpenFile) -> None:
        """Write no more to `current`: closed, its lock goes with it."""
        if current.pid == os.getpid():
            os.close(current.fd)
        self._file = None

    def _current(self, adding: int) -> _OpenFile:
        """This process's file, a new one when there is none yet (or only the parent's, after a
        fork) or when `adding` would take it past the limit."""
        current = self._file
        pid = os.getpid()
        if (
            current is not None
            and current.pid == pid
            and (current.size == 0 or current.size + adding <= self.file_limit)
        ):
            return current
        fd = self._new_file(pid)
        if current is not None:
            self._finish(current)
        self._file = _OpenFile(fd, pid)
        return self._file

    def _new_file(self, pid: int) -> int:
        """A new file of this process, open and locked before it has its name (a take-in must
        never find it unlocked, so finished); a name another file has already is never taken
        (`link` refuses it, where `rename` would replace that file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = itertools.count()
        while True:
            attempt = next(attempts)
            again = f"-{attempt}" if attempt else ""  # a clock that stands still or steps back
            path = self.directory / f"{pid}-{time.time_ns()}{again}{SUFFIX}"
            draft = f"{path}.new"
            try:
                fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            except FileExistsError:  # another writer's draft of the same instant
                continue
            fcntl.flock(fd, fcntl.LOCK_EX)  # held while this process may write to it
            try:
                os.link(draft, path)
            except FileExistsError:
                os.close(fd)
                continue
            finally:
                os.unlink(draft)
            return fd

    def close(self) -> None:
        with self._lock:
            if self._file is not None and self._file.pid == os.getpid():
                os.close(self._file.fd)
            self._file = None


def spool_files(directory: Path) -> Iterator[tuple[str, int]]:
    """Each spool file's name and size, oldest first (names begin with the writer's pid, so the
    order is only that of the listing; the importer merges by receipt time)."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.name.endswith(SUFFIX):
            with contextlib.suppress(FileNotFoundError):
                yield entry.name, entry.stat().st_size


def is_finished(path: Path) -> bool:
    """Whether no process holds the file to write to it (its writer moved on, exited or died)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # and the lock, if it was taken
    return True


def read_from(path: Path, start: int, end: int, *, finished: bool) -> Chunk:
    """The frames of the file between `start` and `end` (its size when it was listed): up to
    `READ_LIMIT` bytes of them, or the first frame whole however long (a body may be as large as
    the door takes). In a `finished` file, damage longer than one read is passed over to the next
    good frame, or to `end`."""
    with path.open("rb") as file:
        file.seek(start)
        data = file.read(min(READ_LIMIT, end - start))
        if len(data) >= _HEADER.size:
            magic, length, _ = _HEADER.unpack_from(data)
            if magic == MAGIC and len(data) < _HEADER.size + length <= end - start:
                data += file.read(_HEADER.size + length - len(data))
        read_to = start + len(data)
        chunk = decode(path.name, data, start, finished=finished and read_to == end)
        if finished and not chunk.frames and chunk.end == start < end:
            resumed = _resync(file, start + 1, end)
            log.error(
                "spool file %s: %d damaged bytes after offset %d passed over",
                path.name,
                resumed - start,
                start,
            )
            after = read_from(path, resumed, end, finished=finished)
            return replace(after, start=start, skipped=after.skipped + resumed - start)
    return replace(chunk, truncated=read_to < end)


def _resync(file: BinaryIO, position: int, end: int) -> int:
    """Where the next good frame of the file starts after `position`, else `end`: read a window at
    a time, each frame found checked whole."""
    while position < end:
        file.seek(position)
        window = file.read(min(READ_LIMIT, end - position))
        found = window.find(MAGIC)
        if found == -1:
            position += max(1, len(window) - len(MAGIC) + 1)
            continue
        candidate = position + found
        file.seek(candidate)
        header = file.read(_HEADER.size)
        if len(header) == _HEADER.size:
            _, length, _ = _HEADER.unpack(header)
            if candidate + _HEADER.size + length <= end:
                file.seek(candidate)
                if _frame_at(file.read(_HEADER.size + length), 0) is not None:
                    return candidate
        position = candidate + 1
    return end

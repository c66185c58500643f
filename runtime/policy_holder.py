"""The policy a process acts on, and the one place it comes from: read at the start, read again when
the file changes (a poll of its size and modification time, every second) or on SIGHUP.

A file that does not load is refused: its `PATH:LINE:COLUMN` problems are logged and kept for
`/readyz` (which turns `degraded`), and the last valid policy stays in force. A delivery or a sweep
takes the policy in force when it starts (`Services.in_force`) and keeps it to its end, so a reload
applies between deliveries, never in the middle of one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.loader import PolicyError, read_policy
from config.schema import Policy

log = logging.getLogger(__name__)

WATCH_EVERY = 1.0  # seconds between two looks at the policy file
Signature = tuple[int, int, int] | None  # inode, size, modification time (ns); None: no such file


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def signature(path: Path | None) -> Signature:
    """What changes when the file is saved (an editor that writes a new file changes its inode)."""
    if path is None:
        return None
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_ino, status.st_size, status.st_mtime_ns


@dataclass(frozen=True)
class RefusedFile:
    """A policy file that was read and refused: when, and every problem as `PATH:LINE:COLUMN: message`."""

    at: dt.datetime
    problems: tuple[str, ...]

    def summary(self) -> str:
        return (
            f"the policy file was changed and refused ({len(self.problems)} problem(s)); "
            "the last valid policy stays in force: " + "; ".join(self.problems)
        )


class PolicyHolder:
    """The policy in force in this process; `generation` counts the policies it has held."""

    def __init__(
        self, path: Path | None, policy: Policy, *, clock: Callable[[], dt.datetime] = _utc_now
    ) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._policy = policy
        self._generation = 0
        self._signature = signature(path)
        self._loaded_at = clock()
        self._refusal: RefusedFile | None = None

    @classmethod
    def load(cls, path: Path | None) -> PolicyHolder:
        """Read the policy at `path` (the embedded default for `None`); raises `PolicyError`."""
        loaded = read_policy(path)
        for warning in loaded.warnings:
            log.warning(warning)
        return cls(path, loaded.policy)

    def current(self) -> tuple[int, Policy]:
        """The policy in force and its generation, read together."""
        with self._lock:
            return self._generation, self._policy

    @property
    def policy(self) -> Policy:
        return self.current()[1]

    @property
    def loaded_at(self) -> dt.datetime:
        return self._loaded_at

    @property
    def refusal(self) -> RefusedFile | None:
        """The last file refused since the policy in force was loaded; `None` when all is well."""
        return self._refusal

    def changed(self) -> bool:
        """Whether the file is not the one last read (saved since, replaced, or removed)."""
        return self.path is not None and signature(self.path) != self._signature

    def check(self) -> bool:
        """Read the file again if it changed since it was last read; whether a new policy is in force."""
        return self.reload("the policy file changed") if self.changed() else False

    def reload(self, why: str) -> bool:
        """Read the file again now: a valid policy comes into force, an invalid one is refused (the
        last valid policy stays). Whether a new policy is in force."""
        if self.path is None:
            log.info("%s: the embedded default policy is in force, it does not change", why)
            return False
        seen = signature(self.path)
        try:
            loaded = read_policy(self.path)
        except PolicyError as error:
            for warning in error.warnings:
                log.warning(warning)
            self._refuse(seen, tuple(str(problem) for problem in error.problems))
            return False
        except Exception as error:  # never let a reload take the service down
            self._refuse(seen, (f"{self.path}:1:1: cannot be read: {type(error).__name__}: {error}",))
            return False
        for warning in loaded.warnings:
            log.warning(warning)
        with self._lock:
            self._policy = loaded.policy
            self._generation += 1
            self._signature = seen
            self._loaded_at = self._clock()
            self._refusal = None
        log.info("%s: %s reloaded, now in force (generation %d)", why, self.path, self._generation)
        return True

    def _refuse(self, seen: Signature, problems: tuple[str, ...]) -> None:
        with self._lock:
            self._signature = seen  # refused once; read again when it changes again
            self._refusal = RefusedFile(self._clock(), problems)
        log.error(
            "the policy file %s has %d problem(s); the last valid policy stays in force:\n%s",
            self.path,
            len(problems),
            "\n".join(problems),
        )

    def watch(self, stop: threading.Event, every: float = WATCH_EVERY) -> threading.Thread:
        """Look at the file every `every` seconds until `stop` is set, in a daemon thread."""

        def look() -> None:
            while not stop.wait(every):
                try:
                    self.check()
                except Exception:
                    log.exception("the policy file could not be checked")

        thread = threading.Thread(target=look, name="policy-watch", daemon=True)
        thread.start()
        return thread

    def reload_on_sighup(self) -> None:
        """SIGHUP reads the file again (in a thread of its own: a signal handler must not block)."""

        def hang_up(*_: object) -> None:
            threading.Thread(target=self.reload, args=("SIGHUP",), name="policy-reload", daemon=True).start()

        signal.signal(signal.SIGHUP, hang_up)


_shared: list[PolicyHolder] = []


def share(holder: PolicyHolder) -> None:
    """Make `holder` the one of this process and of the processes it forks (gunicorn's master
    holds it, so a worker it starts again after SIGHUP inherits the last valid policy)."""
    _shared[:] = [holder]


def shared(path: Path | None) -> PolicyHolder | None:
    """The holder `share` made this process's, if it holds the policy at `path`."""
    return next((holder for holder in _shared if holder.path == path), None)

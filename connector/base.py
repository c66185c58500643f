"""The port every tracker connector implements: say who it is, fill in what a delivery lacks, act.

A connector's writes go through a `Journal` the runtime hands it, so that a write that took effect
is never made twice, whatever is retried, resumed or redelivered. A failure the tracker may get over
(5xx, 429, rate limits, timeouts) that outlasts a connector's few quick tries is raised as
`TrackerUnavailable`: the runtime puts the delivery back and runs it again later, and the journal
skips what was already done. A refusal (4xx) is final and reported as the action's outcome.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from connector.delivery import Delivery
from policies.models import Action, Event, History, IssueSnapshot
from policies.needs import Needs

WriteState = Literal["started", "done", "failed"]


@dataclass(frozen=True)
class Applied:
    """What became of one action: `applied`, `recorded (dry run)`, `skipped: ...` or `failed: ...`."""

    action: Action
    outcome: str


class TrackerUnavailable(Exception):
    """The tracker did not answer well enough to go on, after a few quick tries; worth trying later.

    `wait` is how long the tracker asked us to wait (seconds), when it said.
    """

    def __init__(self, reason: str, wait: float | None = None) -> None:
        super().__init__(reason)
        self.wait = wait


GONE_STATUSES = frozenset({404, 410})  # "not here" (deleted, or transferred out of reach), "gone"


class IssueGone(Exception):
    """A write was refused and a read of the issue answered 404 or 410: it was deleted, or moved
    where this connector cannot see it. The runtime stops following it (one audit row) instead of
    trying again for ever."""


class DeliveryRefused(Exception):
    """The tracker will not let sopguard act on this delivery at all (an unknown GitHub App
    installation, credentials it rejects): the delivery fails with this reason, and `sopguard retry`
    runs it again once the cause is mended."""


@dataclass(frozen=True)
class Recorded:
    """A write as the journal knows it: begun (it may or may not have taken effect), done, or refused."""

    state: WriteState
    result: Mapping[str, Any] = field(default_factory=dict)


class Journal(Protocol):
    """The record of one issue's tracker writes (the runtime keeps it in its database).

    `complete` is false for an issue that sopguard acted on before it kept a journal: a write with
    no entry may still have been made then, so a connector looks on the tracker first.
    """

    complete: bool

    def recall(self, key: str) -> Recorded | None: ...

    def begin(self, key: str) -> None: ...

    def done(self, key: str, result: Mapping[str, Any] | None = None) -> None: ...

    def failed(self, key: str, reason: str) -> None: ...


class MemoryJournal:
    """A journal kept in memory: for a single run (`sopguard simulate`) and for connector tests."""

    def __init__(self, *, complete: bool = True) -> None:
        self.complete = complete
        self.entries: dict[str, Recorded] = {}

    def recall(self, key: str) -> Recorded | None:
        return self.entries.get(key)

    def begin(self, key: str) -> None:
        self.entries[key] = Recorded("started")

    def done(self, key: str, result: Mapping[str, Any] | None = None) -> None:
        self.entries[key] = Recorded("done", dict(result or {}))

    def failed(self, key: str, reason: str) -> None:
        self.entries[key] = Recorded("failed", {"reason": reason})


class Connector(Protocol):
    name: str

    def service_accounts(self, delivery: Delivery) -> frozenset[str]:
        """The logins/account ids this connector acts as, so that its own events are ignored."""
        ...

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        """The snapshot with what `needs` asks for and the delivery did not carry; nothing else is read."""
        ...

    def history(self, delivery: Delivery, event: Event) -> History | None:
        """The tracker's record of the issue (its changes of status or labels, closes and reopens,
        and its comments), for an issue first seen after its creation; `None` when it cannot be read, `IssueGone` when
        the tracker says the issue is not there (404, 410)."""
        ...

    def open_issues(self, scope: str, context: Mapping[str, Any]) -> Iterator[tuple[Delivery, IssueSnapshot]]:
        """Every open issue of a repository or project, each with a delivery that stands for it
        (`context`: what a delivery of the scope would carry, a GitHub App's installation)."""
        ...

    def apply(
        self,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> list[Applied]:
        """Carry out tracker actions, in order, each write once (the journal says what was done);
        a refusal is reported as the action's outcome; `TrackerUnavailable` is raised, and
        `IssueGone` when a refusal was a 404/410 and a read of the issue answers the same."""
        ...

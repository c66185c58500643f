"""The port every tracker connector implements: fill in what a delivery lacks, apply actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from policies.models import Action, Event, IssueSnapshot


@dataclass(frozen=True)
class Applied:
    """What became of one action: `applied`, `recorded (dry run)`, `skipped: ...` or `failed: ...`."""

    action: Action
    outcome: str


class Connector(Protocol):
    name: str

    def complete(self, event: Event, snapshot: IssueSnapshot) -> IssueSnapshot:
        """The snapshot with anything the rules need that the delivery did not carry."""
        ...

    def apply(self, event: Event, snapshot: IssueSnapshot, actions: Sequence[Action]) -> list[Applied]:
        """Carry out tracker actions, in order; never raises for one action's failure."""
        ...

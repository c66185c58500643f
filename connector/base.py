"""The port every tracker connector implements: say who it is, fill in what a delivery lacks, act."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from connector.delivery import Delivery
from policies.ledger import Change
from policies.models import Action, Event, IssueSnapshot
from policies.needs import Needs


@dataclass(frozen=True)
class Applied:
    """What became of one action: `applied`, `recorded (dry run)`, `skipped: ...` or `failed: ...`."""

    action: Action
    outcome: str


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

    def history(self, delivery: Delivery, event: Event) -> list[Change] | None:
        """The tracker's record of the issue's status, for an issue first seen after its
        creation (read once, by a sweep); `None` when it cannot be read."""
        ...

    def apply(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, actions: Sequence[Action]
    ) -> list[Applied]:
        """Carry out tracker actions, in order; one action's failure is reported, not raised."""
        ...

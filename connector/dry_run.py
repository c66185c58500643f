"""A connector that changes nothing: actions are only recorded (in the audit log by the worker)."""

from __future__ import annotations

from collections.abc import Sequence

from connector.base import Applied, Journal
from connector.delivery import Delivery
from policies.ledger import Change
from policies.models import Action, Event, IssueSnapshot
from policies.needs import Needs


class DryRunConnector:
    name = "dry-run"

    def service_accounts(self, delivery: Delivery) -> frozenset[str]:
        return frozenset()

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        return snapshot

    def history(self, delivery: Delivery, event: Event) -> list[Change] | None:
        return None

    def apply(
        self,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> list[Applied]:
        return [Applied(action, "recorded (dry run)") for action in actions]

"""A connector that changes nothing: actions are only recorded (in the audit log by the worker)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from connector.base import Applied, Journal
from connector.delivery import Delivery
from policies.models import Action, Event, History, IssueSnapshot
from policies.needs import Needs


class DryRunConnector:
    name = "dry-run"

    def service_accounts(self, delivery: Delivery) -> frozenset[str]:
        return frozenset()

    def complete(
        self, delivery: Delivery, event: Event, snapshot: IssueSnapshot, needs: Needs
    ) -> IssueSnapshot:
        return snapshot

    def history(self, delivery: Delivery, event: Event) -> History | None:
        return None

    def open_issues(self, scope: str, context: Mapping[str, Any]) -> Iterator[tuple[Delivery, IssueSnapshot]]:
        return iter(())

    def apply(
        self,
        delivery: Delivery,
        event: Event,
        snapshot: IssueSnapshot,
        actions: Sequence[Action],
        journal: Journal,
    ) -> list[Applied]:
        return [Applied(action, "recorded (dry run)") for action in actions]

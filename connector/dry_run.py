"""A connector that changes nothing: actions are only recorded (in the audit log by the worker)."""

from __future__ import annotations

from collections.abc import Sequence

from connector.base import Applied
from policies.models import Action, Event, IssueSnapshot


class DryRunConnector:
    name = "dry-run"

    def complete(self, event: Event, snapshot: IssueSnapshot) -> IssueSnapshot:
        return snapshot

    def apply(self, event: Event, snapshot: IssueSnapshot, actions: Sequence[Action]) -> list[Applied]:
        return [Applied(action, "recorded (dry run)") for action in actions]

"""A delivery as the tracker sent it: its source, id, event name and payload, independent of the HTTP
request it came in (the inbox keeps the raw body; this is it parsed)."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson

from connector.errors import BadPayload
from connector.github import events as github_events
from connector.jira import events as jira_events
from policies.models import Event, IssueSnapshot, Source


@dataclass(frozen=True)
class Delivery:
    source: Source
    delivery_id: str
    event_name: str
    payload: dict[str, Any]

    def issue_key(self) -> str:
        """Which issue this delivery is about (`github:owner/name#12`, `jira:PROJ-7`), from the
        payload alone, cheaply, for ordering its deliveries; raises `BadPayload`."""
        if self.source == "github":
            return github_events.issue_key(self.event_name, self.payload)
        return jira_events.issue_key(self.event_name, self.payload)

    def context(self) -> dict[str, Any]:
        """What a connector needs to act on this issue later, without a delivery (a GitHub App's
        installation; a Jira project's type and a Jira Service Management request's type, which
        decides its scope); a sweep rebuilds a delivery from it."""
        if self.source == "jira":
            return jira_events.context(self.payload)
        installation = self.payload.get("installation")
        return {"installation": {"id": installation["id"]}} if isinstance(installation, dict) else {}

    def normalize(self, service_accounts: Collection[str] = ()) -> tuple[Event, IssueSnapshot]:
        """The engine's view of this delivery; raises `Ignored` or `BadPayload`."""
        if self.source == "github":
            return github_events.to_event(self.event_name, self.delivery_id, self.payload, service_accounts)
        return jira_events.to_event(self.delivery_id, self.payload, service_accounts)


def parse_body(body: bytes) -> dict[str, Any]:
    """A webhook body as the JSON object it must be; `BadPayload` otherwise. orjson: parsing is a
    good part of what the door does per delivery, and it refuses what no tracker sends (NaN, lone
    surrogates) and nesting deeper than 1,024 levels, without ever exhausting Python's stack."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadPayload(f"the body is not JSON: {error}") from None
    if not isinstance(payload, dict):
        raise BadPayload("the body must be a JSON object")
    return payload


def fallback_delivery_id(body: bytes) -> str:
    """Jira Data Center sends no delivery id; identical bodies are the same delivery."""
    return "sha256-" + hashlib.sha256(body).hexdigest()

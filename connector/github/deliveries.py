"""A GitHub App's webhook deliveries: which ones failed, and asking GitHub to send them again.

GitHub never retries a failed delivery by itself. The App API lists every attempt, newest first
(`GET /app/hook/deliveries`, paged by a cursor in the `Link` header), and redelivers one on request
(`POST /app/hook/deliveries/{id}/attempts`); both are authenticated as the App, by a JWT. An event
GitHub tried several times appears once per attempt under the same `guid`: it is redelivered only
when no attempt of it succeeded, and then once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

PAGE_SIZE = 100


@dataclass(frozen=True)
class HookDelivery:
    """One attempt GitHub made to deliver an event to the App's webhook."""

    id: int
    guid: str
    delivered_at: dt.datetime
    status_code: int
    event: str
    action: str | None

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @classmethod
    def from_json(cls, item: dict[str, Any]) -> HookDelivery:
        return cls(
            id=int(item["id"]),
            guid=str(item["guid"]),
            delivered_at=dt.datetime.fromisoformat(str(item["delivered_at"]).replace("Z", "+00:00")),
            status_code=int(item.get("status_code") or 0),
            event=str(item.get("event") or ""),
            action=item.get("action"),
        )


@dataclass
class AppDeliveries:
    """The App webhook deliveries API; `jwt` gives a fresh App JWT for each request."""

    jwt: Callable[[], str]
    base_url: str = "https://api.github.com"
    timeout: float = 15.0

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.jwt()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }

    def since(self, since: dt.datetime) -> Iterator[HookDelivery]:
        """Every attempt made at or after `since`, newest first; pages are read only as far back
        as `since`."""
        url: str | None = f"{self.base_url}/app/hook/deliveries"
        params: dict[str, Any] | None = {"per_page": PAGE_SIZE}
        while url is not None:
            response = requests.get(url, params=params, headers=self._headers(), timeout=self.timeout)
            response.raise_for_status()
            for item in response.json():
                delivery = HookDelivery.from_json(item)
                if delivery.delivered_at < since:
                    return
                yield delivery
            url, params = response.links.get("next", {}).get("url"), None  # the next URL has its cursor

    def redeliver(self, delivery_id: int) -> None:
        response = requests.post(
            f"{self.base_url}/app/hook/deliveries/{delivery_id}/attempts",
            headers=self._headers(),
            timeout=self.timeout,
        )
        response.raise_for_status()


def to_redeliver(attempts: Iterator[HookDelivery]) -> list[HookDelivery]:
    """The latest failed attempt of each event none of whose attempts succeeded, oldest first."""
    latest: dict[str, HookDelivery] = {}
    succeeded: set[str] = set()
    for attempt in attempts:
        if attempt.succeeded:
            succeeded.add(attempt.guid)
        elif attempt.guid not in latest or attempt.delivered_at > latest[attempt.guid].delivered_at:
            latest[attempt.guid] = attempt
    failed = [attempt for guid, attempt in latest.items() if guid not in succeeded]
    return sorted(failed, key=lambda attempt: attempt.delivered_at)

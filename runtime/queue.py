"""The durable queue between the receivers and the worker: huey, SQLite by default, Redis by URL.

A delivery is written to the queue before the receiver answers 2xx, so a crash after the answer
loses nothing: the next consumer to start picks it up.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey, crontab

from config.settings import Settings
from connector.delivery import Delivery
from runtime.worker import Services, build_services, process_delivery

TASK_NAME = "process_delivery"
SWEEP_NAME = "sla_sweep"


class DeliveryQueue:
    """A huey instance with the one task the service runs; services are built lazily per process."""

    def __init__(self, settings: Settings, services: Services | None = None) -> None:
        self.settings = settings
        self.huey = _huey_for(settings.resolved_queue_url)
        self._services = services
        self._lock = threading.Lock()
        self._task = self.huey.task(retries=3, retry_delay=30, name=TASK_NAME)(self._run)
        self.huey.periodic_task(crontab(), name=SWEEP_NAME)(self._sweep)

    def services(self) -> Services:
        with self._lock:
            if self._services is None:
                self._services = build_services(self.settings)
            return self._services

    def _run(self, message: dict[str, Any]) -> None:
        process_delivery(self.services(), Delivery.from_message(message))

    def _sweep(self) -> None:
        """Every minute, in `serve` and `worker`: the SLA notices that fell due."""
        from runtime.sweep import sweep

        services = self.services()
        sweep(services, services.clock())

    def enqueue(self, delivery: Delivery) -> None:
        self._task(delivery.to_message())

    def pending(self) -> int:
        return int(self.huey.pending_count())

    def run_pending(self) -> int:
        """Process every queued delivery in this thread (for `sopguard worker --drain` and tests)."""
        done = 0
        while (task := self.huey.dequeue()) is not None:
            self.huey.execute(task)
            done += 1
        return done


def _huey_for(url: str) -> Huey:
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey("sopguard", url=url, results=False)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("sopguard", filename=str(path), results=False)
    raise ValueError(f"SOPGUARD_QUEUE_URL must start with sqlite:/// or redis://, not {url!r}")

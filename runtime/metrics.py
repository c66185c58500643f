"""The service's Prometheus metrics, and their exposition at `GET /metrics`.

Counted as it happens, in whichever process it happens: deliveries at the door (received by what
became of them, rejected by reason), each delivery's processing time and outcome, tracker actions by
kind and outcome, SLA notices; the tracker calls are counted in `connector.metrics`. Read from the
database when scraped, since the database is where the truth is: the queue's depth and the age of
its oldest delivery, the failed deliveries and the age of the oldest.

Under gunicorn, and with `sopguard worker` processes beside the web server, every process writes its
counts to files in one directory (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`,
set up by `runtime.observability.use_metrics_directory`), and a scrape of any web process adds them
up. Without that variable (a test, a one-off command) the counts are this process's own.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from connector.base import Applied
from runtime.store.inbox import InboxPort

TRACKERS = ("github", "jira")
OTHER = "other"

DELIVERIES_RECEIVED = Counter(
    "sopguard_deliveries_received",
    "Deliveries answered at the door, by tracker and status: accepted (spooled, on SQLite), queued, "
    "duplicate, requeued (a failed delivery delivered again) or ignored.",
    ["tracker", "status"],
)
DELIVERIES_REJECTED = Counter(
    "sopguard_deliveries_rejected",
    "Deliveries refused at the door, by tracker and reason.",
    ["tracker", "reason"],
)
RECEIVED_STATUSES = ("accepted", "queued", "duplicate", "requeued", "ignored")
REJECTED_REASONS = (
    "signature",
    "bad_payload",
    "bad_delivery_id",
    "inbox_unavailable",
    "too_large",
    "overloaded",
)
PROCESSING_SECONDS = Histogram(
    "sopguard_delivery_processing_seconds",
    "Time from a consumer taking a delivery to its outcome, by tracker and outcome "
    "(processed, ignored, failed, retry: postponed after a tracker outage).",
    ["tracker", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
QUEUE_WAIT_SECONDS = Histogram(
    "sopguard_delivery_queue_wait_seconds",
    "Time from the door to a consumer taking the delivery up, by tracker.",
    ["tracker"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
ACTIONS = Counter(
    "sopguard_actions",
    "Tracker actions, by tracker, kind and outcome (applied, recorded, skipped, failed).",
    ["tracker", "kind", "outcome"],
)
ACTION_OUTCOMES = ("applied", "recorded", "skipped", "failed")
DELIVERIES_TAKEN_IN = Counter(
    "sopguard_deliveries_taken_in",
    "Spooled deliveries taken into the inbox (SQLite), by tracker and what they were: queued (new), "
    "duplicate (received before, dropped) or requeued (a failed delivery delivered again).",
    ["tracker", "status"],
)
SLA_NOTICES = Counter(
    "sopguard_sla_notices",
    "SLA notices posted by the sweep, by tracker and kind: a warning before a target, or a breach.",
    ["tracker", "kind"],
)

# Every series the door can touch exists from the start (at 0), so the door only looks one up.
_RECEIVED = {(t, s): DELIVERIES_RECEIVED.labels(t, s) for t in TRACKERS for s in RECEIVED_STATUSES}
_REJECTED = {(t, r): DELIVERIES_REJECTED.labels(t, r) for t in (*TRACKERS, OTHER) for r in REJECTED_REASONS}


def received(tracker: str, status: str) -> None:
    """A delivery answered 2xx at the door."""
    _RECEIVED[tracker, status].inc()


def taken_in(tracker: str, status: str, count: int) -> None:
    """Spooled deliveries taken into the inbox."""
    DELIVERIES_TAKEN_IN.labels(tracker, status).inc(count)


def rejected(tracker: str, reason: str) -> None:
    """A delivery refused at the door (`tracker` is `other` when the path names none we serve)."""
    _REJECTED[tracker if tracker in TRACKERS else OTHER, reason].inc()


def processed(tracker: str, outcome: str, seconds: float, waited: float) -> None:
    PROCESSING_SECONDS.labels(tracker, outcome).observe(seconds)
    QUEUE_WAIT_SECONDS.labels(tracker).observe(max(waited, 0.0))


def action_outcome(outcome: str) -> str:
    """`applied (3 created)`, `skipped: ...`, `failed: ...` -> `applied`, `skipped`, `failed`."""
    word = outcome.split(":", 1)[0].split(" ", 1)[0]
    return word if word in ACTION_OUTCOMES else OTHER


def action_kind(action: object) -> str:
    """`PostComment` -> `post_comment`."""
    name = type(action).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def actions_done(tracker: str, applied: Sequence[Applied]) -> None:
    for item in applied:
        ACTIONS.labels(tracker, action_kind(item.action), action_outcome(item.outcome)).inc()


def sla_notice(tracker: str, threshold: float) -> None:
    SLA_NOTICES.labels(tracker, "breach" if threshold >= 1.0 else "warning").inc()


class InboxGauges(Collector):
    """The queue and the failed deliveries as the inbox has them at the scrape; `sopguard_inbox_up`
    is 0 (and the others absent) when it cannot be read."""

    def __init__(self, inbox: InboxPort, now: dt.datetime) -> None:
        self.inbox = inbox
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sopguard_inbox_up", "1 when the inbox (queue and failed deliveries) could be read."
        )
        try:
            health = self.inbox.health()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "sopguard_queue_depth", "Deliveries waiting or at work in the inbox.", value=health.pending
        )
        yield GaugeMetricFamily(
            "sopguard_queue_oldest_age_seconds",
            "Age of the oldest delivery waiting or at work (0 when none is).",
            value=self._age(health.oldest_pending),
        )
        yield GaugeMetricFamily(
            "sopguard_deliveries_failed",
            "Failed deliveries waiting for a person (sopguard audit --failed, sopguard retry).",
            value=health.failed,
        )
        yield GaugeMetricFamily(
            "sopguard_deliveries_failed_oldest_age_seconds",
            "Age of the oldest failed delivery (0 when none is).",
            value=self._age(health.oldest_failed),
        )

    def _age(self, since: dt.datetime | None) -> float:
        return max((self.now - since).total_seconds(), 0.0) if since is not None else 0.0


class _Together(Collector):
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self.collectors:
            yield from collector.collect()


def shared() -> bool:
    """Whether this process writes its counts to the multiprocess directory."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(inbox: InboxPort, now: dt.datetime) -> tuple[bytes, str]:
    """The text a scrape gets, and its content type: every process's counts, and the inbox now."""
    counts: Collector = MultiProcessCollector(None) if shared() else REGISTRY  # type: ignore[no-untyped-call]
    return generate_latest(_Together([counts, InboxGauges(inbox, now)])), CONTENT_TYPE_LATEST

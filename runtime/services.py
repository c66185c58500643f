"""Everything a delivery or a sweep needs once it is out of the inbox, built once per process."""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from connector.base import Connector
from connector.factory import build_connectors
from policies.models import IssueRef, Source
from policies.sla import ClockReading, TimelineEvent, issue_clocks
from runtime.store import Store


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


PROCESS_TOKEN = uuid.uuid4().hex[:12]  # two containers may share a host name and a pid


def process_name() -> str:
    """This process, as turn owners name it: host, pid and a token of its own."""
    return f"{socket.gethostname()}:{os.getpid()}:{PROCESS_TOKEN}:"


def worker_name() -> str:
    """Who holds a turn: this process and thread, so a lease names its holder in the database. The
    `#` ends the name, so one owner's name is never the beginning of another's."""
    return f"{process_name()}{threading.current_thread().name}#"


@dataclass
class Services:
    settings: Settings
    policy: Policy
    store: Store
    connectors: Mapping[Source, Connector]
    clock: Callable[[], dt.datetime] = field(default=utc_now)

    def clocks(
        self, ref: IssueRef, timeline: Sequence[TimelineEvent], now: dt.datetime
    ) -> tuple[ClockReading, ...]:
        """The issue's SLA clocks at `now`; none before the ledger knows when it was created."""
        return issue_clocks(self.policy.for_issue(ref.source, ref.scope).sla, timeline, now)


def build_services(settings: Settings, store: Store | None = None) -> Services:
    """Load the policy, open the database and choose a connector per tracker."""
    policy = load_policy(settings.policy)
    return Services(
        settings,
        policy,
        store or Store(settings.resolved_database_url, settings.resolved_queue_url),
        build_connectors(settings, policy),
    )

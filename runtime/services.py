"""Everything a delivery or a sweep needs once it is out of the inbox, built once per process."""

from __future__ import annotations

import copy
import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from config.schema import Policy
from config.settings import Settings
from connector.base import Connector
from connector.factory import build_connectors, with_policy
from policies.models import IssueRef, Source
from policies.sla import ClockReading, TimelineEvent, issue_clocks
from runtime.policy_holder import PolicyHolder
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
    """What a delivery or a sweep works with. `policy` and `connectors` are those of the policy
    `holder` had in force when they were last taken up (`in_force`); without a holder, fixed."""

    settings: Settings
    policy: Policy
    store: Store
    connectors: Mapping[Source, Connector]
    clock: Callable[[], dt.datetime] = field(default=utc_now)
    holder: PolicyHolder | None = None
    _generation: int = field(default=0, repr=False)
    _taking_up: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def in_force(self) -> Services:
        """These services as they stand now, for one delivery or one sweep to keep to its end: a
        policy the holder took in since is taken up first (the engine's, the connectors'), and one
        it takes in later applies from the next delivery, never in the middle of this one."""
        with self._taking_up:
            if self.holder is not None:
                generation, policy = self.holder.current()
                if generation != self._generation:
                    self.policy = policy
                    self.connectors = with_policy(self.connectors, policy)
                    self._generation = generation
            return copy.copy(self)

    def clocks(
        self, ref: IssueRef, timeline: Sequence[TimelineEvent], now: dt.datetime, request_type: str = ""
    ) -> tuple[ClockReading, ...]:
        """The issue's SLA clocks at `now`; none before the ledger knows when it was created."""
        return issue_clocks(self.policy.for_issue(ref.source, ref.scope, request_type).sla, timeline, now)


def build_services(settings: Settings, store: Store | None = None) -> Services:
    """Load the policy, open the database and choose a connector per tracker. The policy's holder
    reads the file again when asked (`PolicyHolder.watch`, `reload_on_sighup`); raises `PolicyError`."""
    holder = PolicyHolder.load(settings.policy)
    policy = holder.policy
    return Services(
        settings,
        policy,
        store or Store(settings.resolved_database_url, settings.resolved_queue_url),
        build_connectors(settings, policy),
        holder=holder,
    )

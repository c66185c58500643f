"""A spent tracker quota slows sopguard down; it never drops a delivery, however long the wait."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import responses

from runtime.consumer import Consumer
from tests.fake_github import FakeGithubServer, RandomFaults
from tests.test_fault_storm import START, Script, Step, act, applied_writes, set_up, sopguard_for

QUOTA_RESET = 900  # seconds GitHub's 429 tells sopguard to wait: longer than a consumer blocks


def test_a_rate_limit_outlasting_the_horizon_postpones_the_delivery_until_the_quota_returns(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    skip = Script(
        1,
        "triage",
        ("status/triage", "priority/P2"),
        (),
        [Step("labeled", "status/in-progress", removing="status/")],
    )
    with FakeGithubServer(retry_after=QUOTA_RESET) as server:
        no_network.add_passthru(server.url)
        sopguard = sopguard_for(server, tmp_path, retry_horizon=600.0)
        set_up(server, sopguard, [skip])
        before = applied_writes(server.calls())
        limited = RandomFaults(rate=1.0, statuses=(429,), retry_after_share=1.0, writes_only=True)
        server.set_random_faults(limited)
        sopguard.deliver(*act(server, skip, 0))

        consumer = Consumer(sopguard.services, 1, sweep=False)
        waits = []
        while sopguard.clock.now - START < dt.timedelta(hours=2):  # twelve times the horizon
            consumer.drain()
            retry_at = sopguard.next_retry()
            assert retry_at is not None, sopguard.statuses()
            waits.append((retry_at - sopguard.clock.now).total_seconds())
            sopguard.clock.now = retry_at

        assert sopguard.statuses() == {"queued": 1}
        assert min(waits) >= QUOTA_RESET  # as the tracker said, never sooner
        server.set_random_faults(RandomFaults())  # the quota is back
        sopguard.settle()

        assert sopguard.statuses() == {"processed": 1}
        made = applied_writes(server.calls()) - before
        assert made and all(count == 1 for count in made.values()), made

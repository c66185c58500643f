"""The SLA sweep takes each issue's turn and reads the issue again once it holds it, so a delivery
that changed the issue after the sweep listed it is never overwritten with what the sweep read
before (symptom: a P1 breach notice waiting about 17 hours)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import responses

from policies.models import IssueRef
from runtime.consumer import Consumer
from runtime.services import process_name
from runtime.sweep import sweep
from tests.conftest import drain, services_of
from tests.github_support import REPO, FakeGithub, Service, form_body, issue_payload

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def fakes(no_network: responses.RequestsMock) -> Iterator[tuple[FakeGithub, FakeGithub]]:
    yield FakeGithub(no_network, number=1), FakeGithub(no_network, number=2)


def _issue(number: int, action: str, labels: list[str], when: dt.datetime, **extra: Any) -> dict[str, Any]:
    fields = {"number": number, "id": 1000 + number, "created_at": _iso(T0), "updated_at": _iso(when)}
    body = form_body(Impact="Minor", Urgency="Medium")  # P3: first response due in 4 working hours
    return issue_payload(action, labels=labels, body=body, issue=fields, **extra)


def test_a_priority_raised_while_a_sweep_runs_is_what_the_sweep_acts_on(
    sopguard: Service, fakes: tuple[FakeGithub, FakeGithub]
) -> None:
    first, second = fakes
    services = services_of(sopguard.app)
    services.clock = lambda: T0
    for number in (1, 2):
        sopguard.deliver(_issue(number, "opened", [], T0), f"opened-{number}")
    working_3h = T0 + dt.timedelta(hours=4, minutes=1)  # 3 working hours (lunch 12-13): 75% of P3
    raised: list[IssueRef] = []

    def between_issues(ref: IssueRef) -> None:
        """Once the sweep has listed both issues and done one, a person raises the other to P1."""
        if raised:
            return
        other = 2 if ref.key == "1" else 1
        services.clock = lambda: working_3h
        payload = _issue(
            other, "labeled", ["priority/P3", "priority/P1"], working_3h, label={"name": "priority/P1"}
        )
        sopguard.deliver(payload, f"raised-{other}")
        raised.append(IssueRef("github", REPO, str(other)))

    report = sweep(services, working_3h, progress=between_issues)

    assert report.due == 2 and raised
    (ref,) = raised
    fake = first if ref.key == "1" else second
    said = list(fake.our_comments())
    assert not any("75% used" in c and "P3" in c for c in said)  # not the stale P3 warning ...
    assert any(c.startswith("**The first response target of this P1 issue was missed.**") for c in said)
    followed = services.store.ledger.one(ref)
    assert followed is not None and followed.facts.priority == "P1"


def test_an_issue_whose_delivery_waits_after_a_failure_is_left_to_that_delivery(
    sopguard: Service, fakes: tuple[FakeGithub, FakeGithub]
) -> None:
    """A delivery put back after a tracker failure goes before the sweep: the sweep does not judge
    a ledger that is missing what the delivery will still do."""
    first, _ = fakes
    services = services_of(sopguard.app)
    services.clock = lambda: T0
    sopguard.deliver(_issue(1, "opened", [], T0), "opened-1")
    due = T0 + dt.timedelta(hours=4, minutes=1)
    inbox = services.store.inbox
    body = _issue(1, "labeled", ["priority/P3", "status/triage"], due, label={"name": "status/triage"})
    assert (
        inbox.put(
            "github", "waiting-1", "issues", "github:Codertocat/Hello-World#1", json.dumps(body).encode(), due
        )
        == "queued"
    )
    taken = inbox.take("a-worker", due, dt.timedelta(seconds=60))
    assert taken is not None
    inbox.postpone(taken.seq, due + dt.timedelta(minutes=5), "the tracker is unavailable", due)
    inbox.turns.give_back(taken.issue, "a-worker")
    before = len(list(first.our_comments()))

    report = sweep(services, due)

    assert (report.due, report.busy, report.notices) == (1, 1, 0)
    assert len(list(first.our_comments())) == before
    services.clock = lambda: due + dt.timedelta(minutes=6)
    assert drain(sopguard.app) == 1
    assert sweep(services, due + dt.timedelta(minutes=6)).notices == 1


def test_the_heartbeat_renews_only_the_turns_of_deliveries_at_work(sopguard: Service) -> None:
    """A turn this process failed to give back is not renewed for ever: it runs out."""
    services = services_of(sopguard.app)
    now = T0
    services.clock = lambda: now
    consumer = Consumer(services, 1, sweep=False)
    turns = services.store.inbox.turns
    lease = dt.timedelta(seconds=services.settings.turn_lease)
    stray = f"{process_name()}consumer-0#"
    assert turns.take("github:acme/desk#1", stray, now, lease)

    now = T0 + dt.timedelta(seconds=30)
    consumer.renew_working()

    later = T0 + lease + dt.timedelta(seconds=1)
    assert turns.take("github:acme/desk#1", "another-worker#", later, lease)  # it ran out

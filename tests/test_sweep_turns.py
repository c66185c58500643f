"""The SLA sweep takes each issue's turn and reads the issue again once it holds it, so a delivery
that changed the issue after the sweep listed it is never overwritten with what the sweep read
before (symptom: a P1 breach notice waiting about 17 hours)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses

from policies.models import IssueRef
from runtime.sweep import sweep
from tests.conftest import services_of
from tests.github_support import REPO, FakeGithub, Service, form_body, issue_payload, service

T0 = dt.datetime(2026, 11, 23, 2, 0, tzinfo=dt.UTC)  # Monday 10:00 in Shanghai


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def fakes(no_network: responses.RequestsMock) -> Iterator[tuple[FakeGithub, FakeGithub]]:
    yield FakeGithub(no_network, number=1), FakeGithub(no_network, number=2)


@pytest.fixture
def sopguard(tmp_path: Path) -> Service:
    return service(tmp_path)


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

"""Deliveries for one issue, arriving together, run one at a time in the order received.

Real concurrency: the receiver is called from several threads at once and two consumer threads
take from the inbox, against a fake GitHub that answers each call after a few milliseconds (as a
real one does), which is what made concurrent deliveries race before they took the issue's turn.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses

from config.loader import load_policy
from runtime.consumer import Consumer
from tests.conftest import github_headers, services_of
from tests.github_support import (
    REF,
    REPO,
    FakeGithub,
    Reply,
    Service,
    add_checklist,
    form_body,
    issue_payload,
    put_in_state,
    service,
)

POLICY = load_policy()
ISSUE = f"/repos/{REPO}/issues/1"


class SlowFakeGithub(FakeGithub):
    """The fake GitHub, each answer a few milliseconds late, so overlapping work would interleave."""

    def _guarded(self, method: str, url: str, handler: Any) -> Any:
        respond = super()._guarded(method, url, handler)

        def slowly(request: requests.PreparedRequest) -> Reply:
            time.sleep(0.005)
            result: Reply = respond(request)
            return result

        return slowly


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = SlowFakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


@pytest.fixture(params=["sqlite", "postgresql"])
def sopguard(request: pytest.FixtureRequest, tmp_path: Path) -> Service:
    """The same scenarios with the database in SQLite and in a real PostgreSQL."""
    url = request.getfixturevalue("fresh_postgres_url") if request.param == "postgresql" else ""
    return service(tmp_path, url)


def _deliver_together(sopguard: Service, payloads: list[tuple[str, dict[str, Any]]]) -> None:
    """Post every delivery from its own thread at once, with two consumers running; wait until
    the inbox is empty."""
    services = services_of(sopguard.app)
    stop = threading.Event()
    consumers = threading.Thread(target=Consumer(services, 2, sweep=False).run, args=(stop,))
    consumers.start()
    start = threading.Barrier(len(payloads))

    def post(delivery: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        client = sopguard.app.test_client()
        start.wait()
        answer = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", delivery))
        assert answer.status_code == 202, answer.get_json()

    senders = [threading.Thread(target=post, args=item) for item in payloads]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    deadline = time.monotonic() + 30
    while services.store.inbox.health().pending and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    consumers.join(timeout=10)
    assert services.store.inbox.health().pending == 0


def _labels_event(action: str, label: str, labels: list[str], **issue: Any) -> dict[str, Any]:
    payload = issue_payload(action, labels=labels, label={"name": label}, issue=issue)
    payload["sender"] = {**payload["sender"], "login": "alice"}
    return payload


def test_four_deliveries_for_one_issue_arriving_together_create_each_checklist_item_once(
    sopguard: Service, github: FakeGithub
) -> None:
    """A bulk relabel into verification: four `issues.*labeled` deliveries, each showing the labels
    after all of it; only the first one to run sees the change of stage and creates the checklist."""
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")
    body = "### Key steps\n\nRestarted the gateway; error rate back to normal."
    after = ["status/verification", "bug", "area/network"]
    github.labels = list(after)
    deliveries = [
        ("relabel-1", _labels_event("unlabeled", "status/in-progress", after, body=body)),
        ("relabel-2", _labels_event("labeled", "status/verification", after, body=body)),
        ("relabel-3", _labels_event("labeled", "bug", after, body=body)),
        ("relabel-4", _labels_event("labeled", "area/network", after, body=body)),
    ]

    _deliver_together(sopguard, deliveries)

    self_check = POLICY.checklist("self-check")
    assert self_check is not None
    titles = [s["title"] for s in github.sub_issues]
    assert titles.count("Self-check: The problem is solved") == 1
    assert sorted(titles[-3:]) == sorted(f"Self-check: {item.en}" for item in self_check.items)
    checklist_comments = [c for c in github.our_comments() if c.startswith("**Self-check**")]
    assert len(checklist_comments) == 1
    assert len(github.orphans) == 3  # no item created and left unlinked
    store = sopguard.intake.store
    assert store.ledger.memory(REF).last_state == "verification"
    assert {store.inbox.status("github", d) for d, _ in deliveries} == {"processed"}


def test_two_quick_valid_moves_both_stand(sopguard: Service, github: FakeGithub) -> None:
    """triage -> diagnosis -> planning in four label events sent at once (each move is an unlabel
    and a label): judged in the order received, both moves are valid and nothing is undone."""
    ready = {"body": form_body(), "assignees": [{"login": "alice"}]}
    put_in_state(sopguard, github, "triage", "priority/P2")
    github.labels = ["priority/P2", "status/planning"]
    deliveries = [
        ("move-1", _labels_event("unlabeled", "status/triage", ["priority/P2"], **ready)),
        (
            "move-2",
            _labels_event("labeled", "status/diagnosis", ["priority/P2", "status/diagnosis"], **ready),
        ),
        ("move-3", _labels_event("unlabeled", "status/diagnosis", ["priority/P2"], **ready)),
        ("move-4", _labels_event("labeled", "status/planning", ["priority/P2", "status/planning"], **ready)),
    ]
    # Sent at once, but received in this order (GitHub sends them one after the other).
    for delivery, payload in deliveries:
        body = json.dumps(payload).encode()
        answer = sopguard.app.test_client().post(
            "/webhooks/github", data=body, headers=github_headers(body, "issues", delivery)
        )
        assert answer.status_code == 202
    _deliver_together(sopguard, [])  # two consumers drain what was received

    store = sopguard.intake.store
    verdicts = [(e.delivery_id, e.rule_id, e.passed) for e in store.audit.entries() if e.rule_id]
    assert ("move-2", "start-diagnosis", True) in verdicts
    assert ("move-4", "start-planning", True) in verdicts
    assert not [v for v in verdicts if v[2] is False]
    assert store.ledger.memory(REF).last_state == "planning"
    assert github.labels == ["priority/P2", "status/planning"]
    assert not any("undone" in c for c in github.our_comments())

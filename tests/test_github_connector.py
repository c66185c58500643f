"""GitHub connector details: App authentication, Enterprise Server, payload-first reads, limits."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import responses
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth, GithubException

from config.settings import Settings
from connector.base import DeliveryRefused, MemoryJournal, TrackerUnavailable
from connector.delivery import Delivery
from connector.github.connector import GithubConnector, classify
from connector.retry import server_wait
from policies.models import ChangeLabels, MoveToStatus
from policies.needs import Needs
from tests.conftest import fixture_json
from tests.github_support import BARE_LABEL_ARRAY, request_json
from tests.openapi_check import assert_requests_allowed

LABELED = fixture_json("github", "issues__labeled.json")


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()


def _delivery(installation: int | None = None, delivery: str = "d-1") -> Delivery:
    payload = json.loads(json.dumps(LABELED))
    if installation is not None:
        payload["installation"] = {"id": installation, "node_id": "x"}
    return Delivery("github", delivery, "issues", payload)


def test_a_github_app_acts_as_its_installation_with_a_cached_token(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(_private_key())
    settings = Settings(data_dir=tmp_path, github_app_id="4242", github_app_private_key_path=key_file)
    connector = replace(GithubConnector.from_settings(settings), sleep=lambda _: None)
    no_network.get(
        "https://api.github.com:443/app", json={"id": 4242, "slug": "acme-sopguard", "name": "sopguard"}
    )
    tokens = no_network.post(
        "https://api.github.com:443/app/installations/77/access_tokens",
        json={"token": "ghs_installation", "expires_at": "2099-01-01T00:00:00Z"},
        status=201,
    )
    labels = no_network.post(
        re.compile(r"https://api\.github\.com:443/repos/Codertocat/Hello-World/issues/1/labels"), json=[]
    )

    accounts = connector.service_accounts(_delivery(77))
    event, snapshot = _delivery(77).normalize(accounts)
    first = connector.apply(
        _delivery(77), event, snapshot, [ChangeLabels("r", add=frozenset({"x"}))], MemoryJournal()
    )
    second = connector.apply(
        _delivery(77, "d-2"), event, snapshot, [ChangeLabels("r", add=frozenset({"y"}))], MemoryJournal()
    )

    assert accounts == {"acme-sopguard[bot]"}
    assert [a.outcome for a in first + second] == ["applied", "applied"]
    assert tokens.call_count == 1 and labels.call_count == 2
    app_call = no_network.calls[0].request
    assert str(app_call.headers["Authorization"]).startswith("Bearer ")  # a JWT signed with the App's key
    assert all(c.request.headers["Authorization"] == "token ghs_installation" for c in no_network.calls[2:])
    assert_requests_allowed(
        "github-issues.openapi.json",
        "https://api.github.com",
        [c.request for c in no_network.calls],
        [BARE_LABEL_ARRAY],
    )


def test_an_app_without_the_installation_in_the_delivery_refuses_the_delivery(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, github_app_id="4242", github_app_private_key=_private_key())
    connector = GithubConnector.from_settings(settings)
    event, snapshot = _delivery().normalize()

    with pytest.raises(DeliveryRefused, match="the delivery names no GitHub App installation"):
        connector.apply(_delivery(), event, snapshot, [MoveToStatus("r", "open")], MemoryJournal())


def test_github_enterprise_server_is_reached_at_its_own_url(
    no_network: responses.RequestsMock, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, github_token="t", github_api_url="https://ghe.example.com/api/v3")
    connector = GithubConnector.from_settings(settings)
    edit = no_network.patch(
        "https://ghe.example.com:443/api/v3/repos/Codertocat/Hello-World/issues/1", json={}
    )
    event, snapshot = _delivery().normalize()

    (result,) = connector.apply(_delivery(), event, snapshot, [MoveToStatus("r", "closed")], MemoryJournal())

    assert result.outcome == "applied" and edit.call_count == 1
    assert request_json(no_network.calls[0].request, None) == {"state": "closed"}


def test_a_payload_saying_there_are_no_sub_issues_saves_the_list_call() -> None:
    payload = json.loads(json.dumps(LABELED))
    payload["issue"]["sub_issues_summary"] = {"total": 0, "completed": 0, "percent_completed": 0}
    delivery = Delivery("github", "d", "issues", payload)
    event, snapshot = delivery.normalize()
    connector = GithubConnector(auth=Auth.Token("t"))

    completed = connector.complete(delivery, event, snapshot, Needs(subtasks=True))

    assert completed.subtasks == ()  # and no request was made: `responses` would have refused it


def test_a_wait_longer_than_a_worker_should_block_is_handed_to_the_runtime_to_retry_later(
    no_network: responses.RequestsMock,
) -> None:
    no_network.post(
        re.compile(r".*/issues/1/labels"),
        status=403,
        json={"message": "API rate limit exceeded"},
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9999999999"},
    )
    slept: list[float] = []
    connector = GithubConnector(auth=Auth.Token("t"), sleep=slept.append)
    event, snapshot = _delivery().normalize()

    journal = MemoryJournal()
    with pytest.raises(TrackerUnavailable) as unavailable:
        connector.apply(_delivery(), event, snapshot, [ChangeLabels("r", add=frozenset({"x"}))], journal)

    assert unavailable.value.wait is not None and unavailable.value.wait > 3600
    assert slept == []  # no worker blocks for the reset: the delivery goes back to the inbox
    assert [r.state for r in journal.entries.values()] == ["started"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "12"}, 12.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000"}, 101.0),
        ({"x-ratelimit-remaining": "5", "x-ratelimit-reset": "1000"}, None),
        ({}, None),
    ],
)
def test_server_wait_reads_retry_after_and_the_rate_limit_reset(
    headers: dict[str, str], expected: float | None
) -> None:
    assert server_wait(headers, now=900.0) == expected


def test_only_transient_github_failures_are_retried() -> None:

    assert classify(GithubException(502, {}, {})).retry
    assert classify(GithubException(429, {}, {"retry-after": "5"})).wait == 5.0
    assert (
        classify(GithubException(403, {"message": "You have exceeded a secondary rate limit"}, {})).wait
        == 60.0
    )
    assert not classify(GithubException(403, {"message": "Resource not accessible by integration"}, {})).retry
    assert not classify(GithubException(422, {"message": "Validation Failed"}, {})).retry


def test_the_consumers_threads_learn_who_we_are_with_one_lookup_per_process(
    no_network: responses.RequestsMock,
) -> None:
    """The first thread's `GET /user` is held until a second one arrives (for half a second at most):
    without one lookup per process the second thread would send it; with it, that thread waits."""
    held, second_arrived = threading.Event(), threading.Event()

    def user(_: object) -> tuple[int, dict[str, str], str]:
        if held.is_set():
            second_arrived.set()
        else:
            held.set()
            second_arrived.wait(timeout=0.5)  # a second GET /user would arrive meanwhile
        return 200, {"Content-Type": "application/json"}, json.dumps({"login": "sopguard-bot", "id": 1})

    lookups = no_network.add_callback(responses.GET, "https://api.github.com:443/user", callback=user)
    connector = GithubConnector(auth=Auth.Token("t"), sleep=lambda _: None)
    answers: list[frozenset[str]] = []
    first = threading.Thread(target=lambda: answers.append(connector.service_accounts(_delivery())))
    first.start()
    held.wait(timeout=5)
    second = threading.Thread(target=lambda: answers.append(connector.service_accounts(_delivery())))
    second.start()
    first.join()
    second.join()

    assert answers == [frozenset({"sopguard-bot"})] * 2
    assert lookups.call_count == 1

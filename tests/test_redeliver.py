"""`sopguard redeliver`: against a fake App webhook deliveries API (on `responses`), it asks GitHub
to send again exactly the events that failed since the given time, once each."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
import responses
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cli import main
from tests.openapi_check import assert_requests_allowed

API = "https://api.github.com"
DELIVERIES = f"{API}/app/hook/deliveries"
APP_ID = 4242
SPEC = "github-app-hook-deliveries.openapi.json"


def _attempt(id_: int, guid: str, at: str, status_code: int) -> dict[str, Any]:
    return {
        "id": id_,
        "guid": guid,
        "delivered_at": at,
        "redelivery": False,
        "duration": 0.1,
        "status": "OK" if status_code < 300 else "failed to connect",
        "status_code": status_code,
        "event": "issues",
        "action": "labeled",
        "installation_id": 7,
        "repository_id": 9,
    }


# Newest first, as GitHub lists them; two pages joined by a cursor in the Link header.
FIRST_PAGE = [
    _attempt(16, "g-redone", "2026-12-01T09:50:00Z", 200),  # a later attempt of g-redone succeeded
    _attempt(15, "g-twice", "2026-12-01T09:40:00Z", 502),  # g-twice failed twice: redelivered once
    _attempt(14, "g-fine", "2026-12-01T09:30:00Z", 200),
]
SECOND_PAGE = [
    _attempt(13, "g-twice", "2026-12-01T09:20:00Z", 0),
    _attempt(12, "g-redone", "2026-12-01T09:10:00Z", 500),
    _attempt(11, "g-lost", "2026-12-01T09:05:00Z", 504),
    _attempt(10, "g-old", "2026-12-01T08:00:00Z", 500),  # before --since: neither redelivered nor read on
]


@pytest.fixture
def app_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "app.pem"
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(pem)
    monkeypatch.setenv("GITHUB_APP_ID", str(APP_ID))
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY_PATH", str(path))
    return key


def _serve_deliveries(mock: responses.RequestsMock) -> None:
    mock.get(
        DELIVERIES,
        json=FIRST_PAGE,
        headers={"Link": f'<{DELIVERIES}?per_page=100&cursor=v1_13>; rel="next"'},
        match=[responses.matchers.query_param_matcher({"per_page": "100"})],
    )
    mock.get(
        DELIVERIES,
        json=SECOND_PAGE,
        match=[responses.matchers.query_param_matcher({"per_page": "100", "cursor": "v1_13"})],
    )


def _posted(mock: responses.RequestsMock) -> list[str]:
    return [str(call.request.url) for call in mock.calls if call.request.method == "POST"]


def test_redelivers_each_failed_event_once_as_the_app(
    no_network: responses.RequestsMock, app_key: rsa.RSAPrivateKey
) -> None:
    _serve_deliveries(no_network)
    for attempt in (15, 11):
        no_network.post(f"{DELIVERIES}/{attempt}/attempts", status=202, json={})

    result = CliRunner().invoke(main, ["redeliver", "--since", "2026-12-01T09:00Z"])

    assert result.exit_code == 0, result.output
    assert _posted(no_network) == [f"{DELIVERIES}/11/attempts", f"{DELIVERIES}/15/attempts"]
    assert "redelivered g-lost" in result.output and "redelivered g-twice" in result.output
    assert "2 failed deliveries since 2026-12-01 09:00 UTC" in result.output
    assert_requests_allowed(SPEC, API, [call.request for call in no_network.calls])
    public = app_key.public_key()
    for call in no_network.calls:  # every request is the App's own, signed by its key
        token = str(call.request.headers["Authorization"]).removeprefix("Bearer ")
        assert jwt.decode(token, public, algorithms=["RS256"])["iss"] == str(APP_ID)


def test_dry_run_lists_without_redelivering(no_network: responses.RequestsMock, app_key: object) -> None:
    _serve_deliveries(no_network)

    result = CliRunner().invoke(main, ["redeliver", "--since", "2026-12-01T09:00", "--dry-run"])

    assert result.exit_code == 0, result.output
    assert _posted(no_network) == []
    assert_requests_allowed(SPEC, API, [call.request for call in no_network.calls])
    assert [line.split()[2] for line in result.output.splitlines() if line.startswith("would")] == [
        "g-lost",
        "g-twice",
    ]


def test_without_app_credentials_it_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_x")

    result = CliRunner().invoke(main, ["redeliver", "--since", "2026-12-01T09:00Z"])

    assert result.exit_code == 1
    assert "redelivery needs a GitHub App: set GITHUB_APP_ID" in result.output


def test_a_time_that_is_not_iso_8601_is_refused() -> None:
    result = CliRunner().invoke(main, ["redeliver", "--since", "yesterday"])

    assert result.exit_code == 2
    assert "not an ISO 8601 time" in json.dumps(result.output)

"""A delivery whose processing cannot succeed ends `failed` with its reason in the audit log, turns
`/readyz` degraded, and runs again with `sopguard retry` once the cause is mended; its tracker
actions are applied at most once however often it runs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import responses
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Auth

from cli import main
from config.loader import load_policy
from config.schema import Messages, Text
from connector.github.connector import GithubConnector
from tests.conftest import drain, services_of
from tests.github_support import FakeGithub, Service, form_body, issue_payload

POLICY = load_policy()


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


def _retry(sopguard: Service, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(sopguard.intake.settings.data_dir))
    result = CliRunner().invoke(main, ["retry", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _opened() -> dict[str, object]:
    return issue_payload("opened", labels=[], body=form_body(Impact="Degraded service", Urgency="High"))


def test_a_comment_template_that_cannot_be_rendered_fails_the_delivery_until_the_policy_is_mended(
    sopguard: Service, github: FakeGithub, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(sopguard.app)
    broken = POLICY.messages.templates | {"receipt": Text(en="Received as {{ levle }}.")}
    services.policy = POLICY.model_copy(update={"messages": Messages(templates=broken)})

    sopguard.deliver(_opened(), "poisoned-1")

    store = sopguard.intake.store
    assert store.inbox.status("github", "poisoned-1") == "failed"
    assert "levle" in (store.inbox.error("github", "poisoned-1") or "")
    receipt = [e for e in store.audit.entries() if e.rule_id == "confirm-receipt"]
    assert receipt and receipt[-1].passed is False and "could not be rendered" in receipt[-1].reasons[0]
    assert "priority/P2" in github.labels  # the other rules acted, once
    health = sopguard.app.test_client().get("/readyz").get_json()
    assert health["status"] == "degraded" and health["failed"] == 1
    data_dir = {"SOPGUARD_DATA_DIR": str(sopguard.intake.settings.data_dir)}
    listed = CliRunner().invoke(main, ["audit", "--failed"], env=data_dir)
    assert "poisoned-1" in listed.output and "levle" in listed.output
    calls_before = len(github.calls())

    services.policy = POLICY  # the admin mends the template
    assert "queued 1 failed delivery again" in _retry(sopguard, monkeypatch, "poisoned-1")
    assert drain(sopguard.app) == 1

    assert store.inbox.status("github", "poisoned-1") == "processed"
    assert sopguard.app.test_client().get("/readyz").get_json()["status"] == "ok"
    new_calls = github.calls()[calls_before:]
    assert new_calls == [f"POST /repos/{'Codertocat/Hello-World'}/issues/1/comments"]  # the receipt only
    assert sum(1 for c in github.our_comments() if c.startswith("**Received.**")) == 1


def _private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_a_delivery_for_an_installation_github_does_not_know_fails_until_the_app_is_installed(
    sopguard: Service, github: FakeGithub, no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = services_of(sopguard.app)
    app_connector = GithubConnector(auth=Auth.AppAuth(4242, _private_key()), sleep=lambda _: None)
    services.connectors = {**services.connectors, "github": app_connector}
    no_network.get("https://api.github.com:443/app", json={"id": 4242, "slug": "acme-sopguard"})
    installed = {"yes": False}

    def token(_: object) -> tuple[int, dict[str, str], str]:
        if not installed["yes"]:
            return 404, {"Content-Type": "application/json"}, json.dumps({"message": "Not Found"})
        return (
            201,
            {"Content-Type": "application/json"},
            json.dumps({"token": "ghs_x", "expires_at": "2099-01-01T00:00:00Z"}),
        )

    no_network.add_callback("POST", re.compile(r".*/app/installations/99/access_tokens"), callback=token)
    payload = _opened()
    payload["installation"] = {"id": 99, "node_id": "x"}

    sopguard.deliver(payload, "app-1")

    store = sopguard.intake.store
    assert store.inbox.status("github", "app-1") == "failed"
    error = store.inbox.error("github", "app-1") or ""
    assert "installation 99" in error and "404" in error and "sopguard retry" in error
    assert [c for c in github.calls() if c.split()[1].startswith("/repos")] == [] and github.labels == []

    installed["yes"] = True
    _retry(sopguard, monkeypatch, "--all-failed")
    assert drain(sopguard.app) == 1

    assert store.inbox.status("github", "app-1") == "processed"
    assert "priority/P2" in github.labels
    assert sum(1 for c in github.our_comments() if c.startswith("**Received.**")) == 1

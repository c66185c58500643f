"""Shared fixtures. Every test runs with `responses` active, so an unmocked HTTP call fails loudly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from runtime.consumer import Consumer
from runtime.services import Services, build_services
from webhooks.signatures import sign

# Real PostgreSQL and Redis servers: postgres_url, fresh_postgres_url, redis_url; the stand-in
# GitHub and a sopguard in front of it: github, sopguard.
pytest_plugins = ["tests.servers.plugin", "tests.github_fixtures"]

FIXTURES = Path(__file__).parent / "fixtures"
GITHUB_SECRET = "It's a Secret to Everybody"
JIRA_SECRET = "jira-test-secret"


@pytest.fixture(autouse=True)
def no_network() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the environment; a developer's own variables must not leak into tests."""
    import os

    for name in list(os.environ):
        if name.startswith(("SOPGUARD_", "GITHUB_", "JIRA_")):
            monkeypatch.delenv(name)


def fixture_path(source: str, name: str) -> Path:
    return FIXTURES / source / name


def fixture_bytes(source: str, name: str) -> bytes:
    return fixture_path(source, name).read_bytes()


def fixture_json(source: str, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(fixture_bytes(source, name))
    return data


def github_event_name(fixture_name: str) -> str:
    """`issues__labeled.json` -> `issues` (the X-GitHub-Event header the fixture came with)."""
    return fixture_name.split("__", 1)[0]


@pytest.fixture(scope="session")
def default_policy() -> Policy:
    return load_policy()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "var",
        github_webhook_secret=GITHUB_SECRET,
        jira_webhook_secret=JIRA_SECRET,
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def services_of(app: Flask) -> Services:
    """The services the app was built with, or the ones `sopguard serve` would build for it."""
    if "sopguard.services" not in app.extensions:
        intake = app.extensions["sopguard"]
        app.extensions["sopguard.services"] = build_services(intake.settings, intake.store)
    services: Services = app.extensions["sopguard.services"]
    return services


def drain(app: Flask) -> int:
    """Run every delivery in the app's inbox that is ready, as a consumer would; how many ran."""
    return Consumer(services_of(app), 1, sweep=False).drain()


def github_headers(
    body: bytes, event: str, delivery: str = "delivery-1", secret: str = GITHUB_SECRET
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }


def jira_headers(
    body: bytes, delivery: str | None = "jira-delivery-1", secret: str = JIRA_SECRET
) -> dict[str, str]:
    headers = {"X-Hub-Signature": sign(secret, body), "Content-Type": "application/json"}
    if delivery:
        headers["X-Atlassian-Webhook-Identifier"] = delivery
    return headers

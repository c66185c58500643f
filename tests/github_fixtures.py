"""Fixtures of the GitHub end-to-end tests (a plugin of tests/conftest.py, which github_support
itself imports): the stand-in GitHub and a fresh sopguard in front of it. A module that needs
them set up otherwise defines its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import responses

from tests.github_support import FakeGithub, Service, service


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    yield FakeGithub(no_network)


@pytest.fixture
def sopguard(tmp_path: Path) -> Service:
    return service(tmp_path)

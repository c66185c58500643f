"""The GitHub API-call benchmark: every scenario at its stated minimum (the Jira one is checked in
tests/test_jira_workflow_export.py; the identity lookup per process in tests/test_github_connector.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.github_api_calls import SCENARIOS, Row, measure


@pytest.mark.parametrize("row", SCENARIOS, ids=lambda row: row.name)
def test_each_github_scenario_makes_exactly_the_requests_of_its_minimum(tmp_path: Path, row: Row) -> None:
    measured = measure(row, tmp_path)

    assert measured.beyond == [] and measured.ratio == 1.0
    assert sorted(measured.calls) == sorted(row.least)

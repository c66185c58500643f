"""The SLA report (P4, S5.3): counts, medians and 90th percentiles per scope and priority."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import responses
from click.testing import CliRunner

from cli import main
from config.loader import load_policy
from policies.report import IssueClocks, as_csv, as_html, as_markdown, summarize
from policies.sla import (
    Closed,
    Commented,
    Created,
    PriorityChanged,
    Rated,
    Reopened,
    StateChanged,
    TimelineEvent,
    compile_sla,
    read_clocks,
)
from tests.github_support import FakeGithub, form_body, issue_payload, service

POLICY = load_policy()
RULES = compile_sla(POLICY.sla)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
LATER = MONDAY_10 + dt.timedelta(days=3)
TARGETS = [t.id for t in POLICY.sla.targets]


def _answered_after(minutes: int, *, reopened: bool = False, rated: int | None = None) -> IssueClocks:
    """A P1 issue answered by an agent after `minutes`, accepted after two hours."""
    answered = MONDAY_10 + dt.timedelta(minutes=minutes)
    timeline: list[TimelineEvent] = [
        Created(at=MONDAY_10, state="new"),
        PriorityChanged(at=MONDAY_10, priority="P1"),
        Commented(at=answered, author="dana", is_reporter=False, is_bot=False),
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=2), state="acceptance"),
        Closed(at=MONDAY_10 + dt.timedelta(hours=2)),
    ]
    if reopened:
        timeline.append(Reopened(at=MONDAY_10 + dt.timedelta(hours=3), state="in-progress"))
    if rated is not None:
        timeline.append(Rated(at=MONDAY_10 + dt.timedelta(hours=4), score=rated))
    return IssueClocks("github:acme/desk", timeline, read_clocks(RULES, timeline, LATER))


def test_met_and_breached_first_responses_are_counted_with_median_and_p90() -> None:
    items = [_answered_after(m) for m in (5, 10, 14, 20)] + [_answered_after(30, reopened=True)]

    (row,) = summarize(items)

    first = row.targets["first-response"]
    assert (row.priority, row.issues, row.reopened) == ("P1", 5, 1)
    assert (first.met, first.breached, first.running) == (3, 2, 0)
    assert first.median() == 14.0
    assert first.p90() == pytest.approx(26.0)
    resolution = row.targets["resolution"]
    assert (resolution.met, resolution.breached) == (4, 1)  # the reopened one ran a new cycle, now late


def test_the_formats_carry_the_same_figures() -> None:
    rows = summarize([_answered_after(5, rated=4), _answered_after(20)])

    markdown = as_markdown(rows, TARGETS, MONDAY_10.date())
    table = list(csv.reader(io.StringIO(as_csv(rows, TARGETS))))
    page = as_html(rows, TARGETS, MONDAY_10.date())

    assert "| github:acme/desk | P1 | 2 | 0 | 1 | 4.0 | 1 | 1 | 0 | 12 min | 18 min |" in markdown
    assert table[0][:7] == [
        "scope",
        "priority",
        "issues",
        "reopened",
        "ratings",
        "average rating",
        "first-response met",
    ]
    assert table[1][:9] == ["github:acme/desk", "P1", "2", "0", "1", "4.0", "1", "1", "0"]
    assert page.count("<svg") == len(TARGETS) and "breached 1" in page and "met 1" in page


def test_report_command_reads_the_ledger(
    tmp_path: Path, no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    github = FakeGithub(no_network)
    sopguard = service(tmp_path)
    payload = issue_payload("opened", labels=[], body=form_body(Impact="Business outage", Urgency="High"))
    payload["issue"]["created_at"] = "2026-11-23T02:00:00Z"
    sopguard.deliver(payload, "opened")
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(tmp_path / "var"))

    result = CliRunner().invoke(main, ["report", "--since", "2026-11-01", "--format", "csv"])
    empty = CliRunner().invoke(main, ["report", "--since", "2026-12-01"])

    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[1][:6] == ["github:Codertocat/Hello-World", "P1", "1", "0", "0", "-"]
    assert github.labels and empty.exit_code == 0 and "| github:" not in empty.output

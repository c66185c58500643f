"""The SLA report (P4, S5.3): counts, medians and 90th percentiles per scope and priority."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import responses
from click.testing import CliRunner

from cli import main
from config.loader import load_policy
from policies.models import IssueRef
from policies.report import AuditRow, IssueClocks, Report, summarize
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
    read_all_cycles,
    read_clocks,
)
from policies.workflow import skipped_states
from tests.github_support import FakeGithub, form_body, issue_payload, service

POLICY = load_policy()
RULES = compile_sla(POLICY.sla)
SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY_10 = dt.datetime(2026, 11, 23, 10, 0, tzinfo=SHANGHAI)
LATER = MONDAY_10 + dt.timedelta(days=3)
TARGETS = [t.id for t in POLICY.sla.targets]
GUARDS = frozenset(g.id for t in POLICY.workflow.transitions for g in t.guards)


REF = IssueRef("github", "acme/desk", "1")


def _issue(timeline: list[TimelineEvent], ref: IssueRef = REF) -> IssueClocks:
    return IssueClocks(ref, MONDAY_10, timeline, read_all_cycles(RULES, timeline, LATER))


def _summary(items: list[IssueClocks], audit_rows: Sequence[AuditRow] = ()) -> Report:
    return summarize(
        items,
        audit_rows,
        since=MONDAY_10.date(),
        until=LATER.date(),
        as_of=LATER,
        target_ids=TARGETS,
        guard_ids=GUARDS,
        cancel_ids=frozenset({"command-cancel"}),
        skipped_states=lambda before, after: skipped_states(POLICY, before, after),
    )


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
    return _issue(timeline)


def test_met_and_breached_first_responses_are_counted_with_median_and_p90() -> None:
    items = [_answered_after(m) for m in (5, 10, 14, 20)] + [_answered_after(30, reopened=True)]

    (row,) = _summary(items).rows

    first = row.targets["first-response"]
    assert (row.priority, row.issues, row.reopens, row.rejections) == ("P1", 5, 1, 0)
    assert (first.met, first.breached, first.running) == (3, 2, 0)
    assert first.median() == pytest.approx(14 / 60)
    assert first.p90() == pytest.approx(26 / 60)
    assert first.share_met() == pytest.approx(3 / 5)
    resolution = row.targets["resolution"]
    # Every cycle counts: the reopened issue met its first cycle and runs late in its second.
    assert (resolution.met, resolution.breached, resolution.running) == (5, 1, 0)


def _met_late_then_met_again() -> list[TimelineEvent]:
    """P1 (4 working hours to resolve): resolved a day late, reopened, resolved within the hour."""
    tuesday = MONDAY_10 + dt.timedelta(days=1)
    return [
        Created(at=MONDAY_10, state="new"),
        PriorityChanged(at=MONDAY_10, priority="P1"),
        Commented(at=MONDAY_10 + dt.timedelta(minutes=5), author="dana", is_reporter=False, is_bot=False),
        StateChanged(at=tuesday, state="closed"),
        Closed(at=tuesday),
        Reopened(at=tuesday + dt.timedelta(hours=1), state="in-progress"),
        StateChanged(at=tuesday + dt.timedelta(hours=2), state="closed"),
        Closed(at=tuesday + dt.timedelta(hours=2)),
    ]


def test_a_breach_stays_counted_once_the_issue_is_reopened_and_met_in_the_new_cycle() -> None:
    report = _summary([_issue(_met_late_then_met_again())])

    resolution = report.total.targets["resolution"]
    assert (resolution.met, resolution.breached) == (1, 1)
    assert [(b.target_id, b.cycle) for b in report.breaches] == [("resolution", 1)]
    assert report.total.reopens == 1 and report.total.rejections == 0


def test_a_rejected_acceptance_is_not_a_reopen() -> None:
    rejected: list[TimelineEvent] = [
        Created(at=MONDAY_10, state="in-progress", priority="P2"),
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=1), state="acceptance"),
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=2), state="in-progress"),  # the customer says no
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=3), state="acceptance"),
        Closed(at=MONDAY_10 + dt.timedelta(hours=4)),
        Reopened(at=MONDAY_10 + dt.timedelta(hours=5), state="in-progress"),
    ]

    report = _summary([_issue(rejected)])

    assert (report.total.rejections, report.total.reopens) == (1, 1)
    assert report.total.targets["resolution"].clocks == 3  # three cycles, each counted


def test_a_jira_issue_moved_out_of_closed_is_a_reopen_and_its_last_cycle_is_the_sweeps() -> None:
    """Jira closes by status (no tracker close event): leaving `closed` is still a reopen."""
    timeline: list[TimelineEvent] = [
        Created(at=MONDAY_10, state="in-progress", priority="P2"),
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=1), state="closed"),
        StateChanged(at=MONDAY_10 + dt.timedelta(hours=2), state="in-progress"),
    ]

    report = _summary([_issue(timeline)])
    every = read_all_cycles(RULES, timeline, LATER)

    assert (report.total.rejections, report.total.reopens) == (0, 1)
    assert [c.cycle for c in every.readings if c.kind == "resolution"] == [1, 2]
    assert [every.readings[0], every.readings[-1]] == list(read_clocks(RULES, timeline, LATER))


@dataclass(frozen=True)
class _Audit:
    issue: str
    rule_id: str | None
    sop: str | None
    passed: bool | None
    mode: str | None = "enforce"
    actions: list[dict[str, Any]] = dataclass_field(default_factory=list)
    at: dt.datetime = MONDAY_10


def _refused(before: str, after: str, issue: str = "acme/desk#1") -> _Audit:
    marker = f"transition-rejected:{before}:{after}:d-1"
    return _Audit(
        issue, "follow-the-lifecycle", "P2", False, actions=[{"type": "PostComment", "marker": marker}]
    )


def test_where_the_sop_is_skipped_per_rule_stage_and_guard() -> None:
    rows = [
        _refused("new", "in-progress"),
        _refused("triage", "in-progress", "acme/desk#2"),
        _Audit("acme/desk#1", "owner-assigned", "S2.3", False),
        _Audit("acme/desk#2", "owner-assigned", "S2.3", False),
        _Audit("acme/desk#3", "intake-complete", "S1.2", False, mode="warn"),
        _Audit("acme/desk#3", "intake-complete", "S1.2", True),
        _Audit("acme/desk#3", "resolution", "S3.3", False),  # a breach notice: the clocks count it
        _Audit("acme/desk#1", "command-cancel", "S5.1", True),
        _Audit("acme/desk#1", "command-cancel", "S5.1", False),  # a passer-by's /cancel, refused
    ]

    report = _summary([_answered_after(5)], rows)

    assert [(r.rule_id, r.blocked, r.warned, len(r.issues)) for r in report.rules] == [
        ("follow-the-lifecycle", 2, 0, 2),
        ("owner-assigned", 2, 0, 2),
        ("intake-complete", 0, 1, 1),
    ]
    assert report.stages[0] == ("diagnosis", 2)  # new -> in-progress and triage -> in-progress skip it
    assert dict(report.stages)["triage"] == 1
    assert [g.rule_id for g in report.guards] == ["owner-assigned"]
    assert report.total.cancellations == 1


def test_report_command_reads_the_ledger(
    tmp_path: Path, no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    github = FakeGithub(no_network)
    sopguard = service(tmp_path)
    payload = issue_payload("opened", labels=[], body=form_body(Impact="Business outage", Urgency="High"))
    payload["issue"]["created_at"] = "2026-11-23T02:00:00Z"
    sopguard.deliver(payload, "opened")
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(tmp_path / "var"))

    period = ["--since", "2026-11-01", "--until", "2026-11-30"]
    result = CliRunner().invoke(main, ["report", *period, "--format", "csv"])
    empty = CliRunner().invoke(main, ["report", "--since", "2026-12-01", "--until", "2026-12-01"])
    wrong = CliRunner().invoke(main, ["report", "--since", "2026-11-30", "--until", "2026-11-01"])
    page = CliRunner().invoke(main, ["report", *period, "--format", "html", "--priority", "P1"])

    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:4] == ["Scope", "Priority", "Issues", "First response: met"]
    assert rows[1][:3] == ["github:Codertocat/Hello-World", "P1", "1"]
    assert rows[2][:3] == ["Total", "", "1"]
    assert github.labels and empty.exit_code == 0 and "No issues were opened in this period." in empty.output
    assert "| Codertocat/Hello-World (GitHub) |" not in empty.output
    assert page.exit_code == 0 and '<td data-label="Issues" data-figure="issues.total">1</td>' in page.output
    assert "<form" not in page.output  # the filters form is the live page's
    assert wrong.exit_code == 2 and "since (2026-11-30) is after until (2026-11-01)" in wrong.output

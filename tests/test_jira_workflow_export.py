"""`sopguard export jira-workflow`: statuses, transitions and Cloud validator expressions from the policy."""

from __future__ import annotations

import datetime as dt
import importlib
import json
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from cli import main
from config.schema import Policy
from connector.delivery import Delivery
from connector.jira.workflow import expression, jira_workflow, status_name
from policies.engine import evaluate
from policies.models import Decision, MoveToStatus
from policies.sla import Created, StateChanged
from tests.conftest import fixture_json
from tests.engine_support import NOW
from tests.jira_support import CLOUD_TRANSITION, FIELD_IDS, with_status_change


def test_every_state_has_its_jira_status_category_and_the_other_names(default_policy: Policy) -> None:
    workflow = jira_workflow(default_policy)

    rows = {s.state: (s.status, s.category, s.also) for s in workflow.statuses}
    assert rows["new"] == ("To Do", "To Do", ("Open", "New"))
    assert rows["in-progress"] == ("In Progress", "In Progress", ("Reopened",))
    assert rows["closed"] == ("Done", "Done", ("Closed", "Resolved"))
    assert len(rows) == len(default_policy.workflow.states)


def test_the_procedures_transitions_and_a_way_back_for_every_guarded_step(default_policy: Policy) -> None:
    workflow = jira_workflow(default_policy)

    procedure = {t.id: (t.from_, t.to) for t in workflow.transitions if t.purpose == "procedure"}
    undo = {t.id: (t.from_, t.to) for t in workflow.transitions if t.purpose == "undo"}
    assert procedure["start-diagnosis"] == (("Triage",), "Diagnosis")
    assert procedure["reopen"] == (("Done",), "In Progress")
    assert len(procedure) == len(default_policy.workflow.transitions)
    assert undo["undo-close-after-acceptance"] == (("Done",), "Acceptance")
    assert undo["undo-start-work"] == (("In Progress",), "Planning")
    assert "undo-start-triage" not in undo  # no guard, nothing to undo
    assert "undo-customer-replied" not in undo


def _paused_and_leaving(policy: Policy, origin: str, target_status: str) -> Decision:
    """The engine's decision on a Jira issue paused from `origin` that moves out of waiting."""
    moved = with_status_change(fixture_json("jira", CLOUD_TRANSITION), "Waiting for Customer", target_status)
    event, snapshot = Delivery("jira", "d-1", "jira:issue_updated", moved).normalize()
    start = NOW - dt.timedelta(days=2)
    timeline = (
        Created(at=start, state="new"),
        StateChanged(at=start + dt.timedelta(hours=1), state=origin),
        StateChanged(at=start + dt.timedelta(hours=2), state="waiting-for-customer"),
    )
    snapshot = replace(snapshot, last_state="waiting-for-customer", timeline=timeline)
    return evaluate(policy, event, snapshot, NOW)


def test_from_waiting_the_export_leads_back_to_every_stage_a_pause_may_come_from(
    default_policy: Policy,
) -> None:
    """The engine lets an issue leave waiting for the customer only to the stage it came from: the
    exported workflow offers each of those moves, and the engine accepts each (a Jira issue paused
    from verification can return to verification)."""
    rows = jira_workflow(default_policy).transitions
    pause = next(t for t in default_policy.workflow.transitions if t.id == "wait-for-customer")
    ways_out = {t.to: t.purpose for t in rows if "Waiting for Customer" in t.from_}

    assert set(ways_out) == {status_name(default_policy, s) for s in pause.from_}
    assert ways_out["Verification"] == ways_out["Diagnosis"] == "return"
    assert ways_out["Triage"] == ways_out["In Progress"] == "procedure"
    returns = [t for t in rows if t.purpose == "return"]
    assert {t.id for t in returns} == {"return-wait-for-customer"} and returns[0].sop == "S3.3"
    for origin in ("diagnosis", "planning", "customer-confirmation", "verification", "acceptance"):
        decision = _paused_and_leaving(default_policy, origin, status_name(default_policy, origin))
        assert not [a for a in decision.actions if isinstance(a, MoveToStatus)], origin
    beyond = _paused_and_leaving(default_policy, "verification", "Triage")  # not where it came from
    assert [a.status for a in beyond.actions if isinstance(a, MoveToStatus)] == ["Waiting for Customer"]


def test_guards_become_jira_expressions(default_policy: Policy) -> None:
    validators = {(v.transition, v.guard): v for v in jira_workflow(default_policy).validators}

    assert validators[("start-diagnosis", "owner-assigned")].expression == "issue.assignee != null"
    assert validators[("start-diagnosis", "priority-set")].expression == (
        'issue.priority != null && ["Highest", "High", "Medium", "Low"].includes(issue.priority.name)'
    )
    assert validators[("customer-confirmed", "customer-confirmation-recorded")].expression == (
        'issue.labels.includes("customer-confirmed")'
    )
    assert validators[("start-work", "customer-impact-confirmed")].expression == (
        '!issue.labels.includes("affects-customer")'
    )
    assert validators[("start-work", "high-risk-plan-reviewed")].expression == (
        '!issue.labels.includes("risk/high") || (issue.labels.includes("plan/approved"))'
    )
    assert validators[("start-work", "plan-reviewed")].expression == (  # waived by an approver's risk/low
        'issue.labels.includes("risk/low") || (issue.labels.includes("plan/approved"))'
    )
    assert validators[("close-after-acceptance", "customer-accepted")].expression == (
        '["Customer acceptance: The customer confirms the result"].every(title => issue.subtasks.some('
        'task => task.summary == title && task.status.category.key == "done"))'
    )


def test_what_no_expression_can_check_is_said_with_the_reason(default_policy: Policy) -> None:
    validators = {(v.transition, v.guard): v for v in jira_workflow(default_policy).validators}

    plan = validators[("start-work", "plan-written")]
    intake = validators[("start-diagnosis", "intake-complete")]
    assert plan.expression is None and "heading" in plan.reason
    assert intake.expression is None and "Customer, Customer tier" in intake.reason


def test_with_the_field_ids_the_intake_guard_is_an_expression(default_policy: Policy) -> None:
    guard = next(
        g for t in default_policy.workflow.transitions for g in t.guards if g.id == "intake-complete"
    )

    text, reason = expression(default_policy, guard, FIELD_IDS)

    assert reason == ""
    assert text == (
        "issue.customfield_12001 != null && issue.customfield_12002 != null && issue.customfield_12003 != null"
        " && issue.description != null && issue.customfield_12004 != null && issue.customfield_12005 != null"
        " && issue.customfield_12006 != null && issue.customfield_12007 != null"
        " && issue.customfield_12008 != null"
    )


def test_the_command_prints_a_table_or_json(tmp_path: Path) -> None:
    runner = CliRunner()
    fields = tmp_path / "fields.json"
    fields.write_text(json.dumps([{"id": i, "name": n} for n, i in FIELD_IDS.items()]), encoding="utf-8")

    table = runner.invoke(main, ["export", "jira-workflow"])
    as_json = runner.invoke(main, ["export", "jira-workflow", "--format", "json", "--fields", str(fields)])

    assert table.exit_code == 0, table.output
    assert "Statuses (create the first name" in table.output
    assert "Back to Acceptance" in table.output and "issue.assignee != null" in table.output
    assert "Transitions back from a pause to the stage the issue left" in table.output
    assert "Guards no Jira expression can check" in table.output
    data = json.loads(as_json.output)
    assert {"statuses", "transitions", "validators"} == set(data)
    assert data["transitions"][0]["from"] == ["To Do"]
    intake = next(v for v in data["validators"] if v["guard"] == "intake-complete")
    assert intake["expression"].startswith("issue.customfield_12001 != null")


def test_a_fields_file_that_is_not_the_field_list_is_refused(tmp_path: Path) -> None:
    fields = tmp_path / "fields.json"
    fields.write_text('{"id": "customfield_1"}', encoding="utf-8")

    result = CliRunner().invoke(main, ["export", "jira-workflow", "--fields", str(fields)])

    assert result.exit_code != 0 and "GET /rest/api/2/field" in result.output


# --- the call-count benchmark ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def benchmark() -> ModuleType:
    """The script as `python -m benchmarks.jira_api_calls` runs it (imported by name: it is not a package)."""
    return importlib.import_module("benchmarks.jira_api_calls")


def test_the_benchmark_measures_every_scenario_on_both_deployments_at_its_minimum(
    benchmark: ModuleType,
) -> None:
    results = benchmark.measure_all()

    runs = {(m.scenario, m.deployment): (m.first, m.warm) for m in results}
    assert len(runs) == 14
    first, warm = runs[("close blocked by open sub-tasks", "cloud")]
    assert (first.measured, first.minimum, warm.measured, warm.minimum) == (11, 11, 3, 3)
    assert warm.calls == ("GET issue", "POST transitions", "POST comment (v3)")
    assert all(run.ratio <= 1.1 and not run.beyond for pair in runs.values() for run in pair)
    table = benchmark.tables(results)
    assert table.splitlines()[2] == "| transition undone | Cloud | 6 | 6 | 1.00 | 2 | 2 | 1.00 | - |"

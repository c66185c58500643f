"""`sopguard check` against fakes of a Jira project and a GitHub repository (`responses`), whose
requests and answers are checked against the trackers' OpenAPI descriptions.

The Jira project is built from what the policy asks for (`sopguard export jira-workflow`'s statuses
and transitions) and then broken the way real projects are: a status the workflow lacks, a status
nobody mapped, a missing transition, a priority scheme with other names. The GitHub repository
lacks the priority labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import responses
from click.testing import CliRunner, Result

from cli import main
from config.loader import load_policy
from connector.jira.workflow import status_name, transitions
from tests.jira_support import CLOUD, DATA_CENTER, FIELD_IDS, Deployment
from tests.openapi_check import assert_exchanges_allowed

POLICY = load_policy()
PROJECT = "SUP"
PROJECT_ID = "10042"
REPO = "acme/support"
GITHUB_API = "https://api.github.com"
JIRA_SPEC = "jira-cloud-v3.check.openapi.json"
STANDARD_TYPES = [("10001", "Task"), ("10002", "Story"), ("10000", "Epic")]
SUBTASK_TYPE = ("10003", "Sub-task")
SITE_PRIORITIES = ["Highest", "High", "Medium", "Low", "Lowest"]

Move = tuple[str | None, str]


def policy_statuses() -> list[str]:
    return [status_name(POLICY, state.id) for state in POLICY.workflow.states]


def policy_moves() -> list[Move]:
    """Every (from, to) the policy needs, undo transitions included, by status name."""
    return [(source, row.to) for row in transitions(POLICY) for source in row.from_]


def _status_id(name: str, statuses: list[str]) -> str:
    return str(20000 + statuses.index(name))


def _status_details(name: str, statuses: list[str]) -> dict[str, Any]:
    status_id = _status_id(name, statuses)
    return {
        "description": "",
        "iconUrl": f"{CLOUD.server}/images/icons/statuses/generic.png",
        "id": status_id,
        "name": name,
        "self": f"{CLOUD.server}/rest/api/3/status/{status_id}",
    }


def _workflows(statuses: list[str], moves: Iterable[Move]) -> dict[str, Any]:
    """`POST /rest/api/3/workflows`' answer: one workflow, a Create transition and the moves."""
    reference = {name: _status_id(name, statuses) for name in statuses}
    category = {statuses[0]: "TODO", "Done": "DONE"}
    items: list[dict[str, Any]] = [
        {
            "id": "1",
            "name": "Create",
            "links": [],
            "toStatusReference": reference[statuses[0]],
            "type": "INITIAL",
            "actions": [],
            "validators": [],
            "triggers": [],
            "properties": {},
            "description": "",
        }
    ]
    for number, (source, target) in enumerate(moves, start=11):
        links = (
            [] if source is None else [{"fromPort": 0, "fromStatusReference": reference[source], "toPort": 1}]
        )
        items.append(
            {
                "id": str(number),
                "name": f"To {target}",
                "links": links,
                "toStatusReference": reference[target],
                "type": "GLOBAL" if source is None else "DIRECTED",
                "actions": [],
                "validators": [],
                "triggers": [],
                "properties": {},
                "description": "",
            }
        )
    return {
        "statuses": [
            {
                "description": "",
                "id": reference[name],
                "name": name,
                "scope": {"type": "GLOBAL"},
                "statusCategory": category.get(name, "IN_PROGRESS"),
                "statusReference": reference[name],
            }
            for name in statuses
        ],
        "workflows": [
            {
                "description": "",
                "id": "b9ff2384-d3b6-4d4e-9509-3ee19f607168",
                "isEditable": True,
                "name": "Service desk workflow",
                "scope": {"type": "GLOBAL"},
                "statuses": [
                    {"deprecated": False, "properties": {}, "statusReference": reference[n]} for n in statuses
                ],
                "transitions": items,
                "version": {"id": "f010ac1b-3dd3-43a3-aa66-0ee8a447f76e", "versionNumber": 3},
            }
        ],
    }


def _fields() -> list[dict[str, Any]]:
    system = [("description", "Description"), ("summary", "Summary")]
    custom = [(field_id, name) for name, field_id in FIELD_IDS.items()]
    return [
        {"id": field_id, "name": name, "custom": field_id.startswith("customfield_"), "clauseNames": [name]}
        for field_id, name in system + custom
    ]


def fake_jira(
    mock: responses.RequestsMock,
    deployment: Deployment = CLOUD,
    *,
    statuses: list[str] | None = None,
    moves: Iterable[Move] | None = None,
    priorities: list[str] = SITE_PRIORITIES,
) -> None:
    statuses = statuses if statuses is not None else policy_statuses()
    moves = list(moves if moves is not None else policy_moves())
    base = f"{deployment.server}/rest/api/2"
    types = [*STANDARD_TYPES, SUBTASK_TYPE]
    issue_types = [
        {
            "id": type_id,
            "name": name,
            "subtask": (type_id, name) == SUBTASK_TYPE,
            "hierarchyLevel": -1 if (type_id, name) == SUBTASK_TYPE else 0,
        }
        for type_id, name in types
    ]
    mock.get(f"{base}/serverInfo", json=deployment.server_info)
    mock.get(
        f"{base}/project/{PROJECT}",
        json={"id": PROJECT_ID, "key": PROJECT, "name": "Support", "issueTypes": issue_types},
    )
    mock.get(
        f"{base}/project/{PROJECT}/statuses",
        json=[
            {
                "id": type_id,
                "name": name,
                "self": f"{deployment.server}/rest/api/3/issueType/{type_id}",
                "subtask": (type_id, name) == SUBTASK_TYPE,
                "statuses": [_status_details(s, statuses) for s in statuses],
            }
            for type_id, name in types
        ],
    )
    mock.get(
        f"{base}/priority",
        json=[
            {
                "id": str(n),
                "name": name,
                "description": "",
                "iconUrl": f"{deployment.server}/images/icons/priorities/{name.lower()}.svg",
                "self": f"{deployment.server}/rest/api/2/priority/{n}",
                "statusColor": "#cfcfcf",
            }
            for n, name in enumerate(priorities, start=1)
        ],
    )
    mock.get(f"{base}/field", json=_fields())
    if deployment is CLOUD:
        mock.post(f"{deployment.server}/rest/api/3/workflows", json=_workflows(statuses, moves))


def run_check(monkeypatch: pytest.MonkeyPatch, deployment: Deployment, *args: str) -> Result:
    for name, value in deployment.credentials.items():
        monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_test")
    return CliRunner().invoke(main, ["check", *args])


def assert_jira_shapes(mock: responses.RequestsMock, deployment: Deployment = CLOUD) -> None:
    calls = list(mock.calls)
    for call in calls:  # v2 mirrors v3 (tests/jira_support.py); checked as the v3 operation
        call.request.url = str(call.request.url).replace("/rest/api/2/", "/rest/api/3/", 1)
    assert_exchanges_allowed(JIRA_SPEC, deployment.server, calls)


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


# --- Jira ------------------------------------------------------------------------------------


def test_a_project_that_matches_the_policy_passes_with_a_summary(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_jira(no_network)
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT)
    assert result.exit_code == 0, result.output
    needed = len({(s, t) for s, t in policy_moves()})
    assert lines(result) == [
        f"Jira project {PROJECT}: matches the policy (10 statuses, {needed} transitions, 4 priorities, 9 fields)"
    ]
    assert_jira_shapes(no_network)
    workflows = next(c for c in no_network.calls if c.request.method == "POST")
    asked = json.loads(str(workflows.request.body))
    assert asked == {
        "projectAndIssueTypes": [{"projectId": PROJECT_ID, "issueTypeId": t} for t, _ in STANDARD_TYPES]
    }


def test_a_workflow_without_a_mapped_status_is_reported_with_what_to_do(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The project has no Triage (and a Backlog nobody mapped): each problem once, exit 1; the
    transitions into and out of the missing status are not repeated as further problems."""
    statuses = [s for s in policy_statuses() if s != "Triage"] + ["Backlog"]
    moves = [(s, t) for s, t in policy_moves() if "Triage" not in (s, t)]
    fake_jira(no_network, statuses=statuses, moves=moves)
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT)
    assert result.exit_code == 1
    assert lines(result) == [
        f"Jira project {PROJECT}: state 'triage' (SOP S1.3) has none of its Jira statuses (Triage) in project "
        f"{PROJECT}'s workflow: add one to the workflow, or set trackers.jira.statuses.triage to the project's "
        "status that means this stage",
        f"Jira project {PROJECT}: Jira status 'Backlog' of project {PROJECT} is not mapped to any state: add it "
        "to trackers.jira.statuses under the state it means (until then an issue moved into it is held in its "
        "last state, and, in enforce mode, the move is explained on the issue)",
    ]
    assert "2 mismatch(es) found" in result.stderr
    assert_jira_shapes(no_network)


def test_missing_transitions_priorities_and_fields_each_get_their_line(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    moves = [m for m in policy_moves() if m != ("Planning", "In Progress") and m != ("Diagnosis", "Triage")]
    fake_jira(no_network, moves=moves, priorities=["Blocker", "Critical", "Major", "Minor", "Trivial"])
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT)
    assert result.exit_code == 1
    out = lines(result)
    assert (
        f"Jira project {PROJECT}: project {PROJECT}'s workflow has no transition from Planning to In Progress "
        "(or Reopened) (policy transition 'start-work', SOP S2.2): add it to the workflow; sopguard export "
        f"jira-workflow --scope {PROJECT} lists every transition the policy needs"
    ) in out
    assert any(
        "from Diagnosis to Triage (to undo a rejected 'start-diagnosis', SOP S2.1)" in line for line in out
    )
    assert [line for line in out if "priority" in line] == [
        f"Jira project {PROJECT}: priority {level} maps to the Jira priority '{name}', which this Jira does not "
        f"have: set trackers.jira.priorities.{level} to one of: Blocker, Critical, Major, Minor, Trivial"
        for level, name in POLICY.trackers.jira.priorities.items()
    ]
    assert len(out) == 6
    assert_jira_shapes(no_network)


def test_a_missing_way_back_from_waiting_to_the_stage_it_left_is_reported(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only Waiting -> Triage / In Progress: an issue paused from verification could never leave."""
    moves = [m for m in policy_moves() if m != ("Waiting for Customer", "Verification")]
    fake_jira(no_network, moves=moves)
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT)
    assert result.exit_code == 1
    assert lines(result) == [
        f"Jira project {PROJECT}: project {PROJECT}'s workflow has no transition from Waiting for Customer "
        "to Verification (to return to the stage left by 'wait-for-customer', SOP S3.3): add it to the "
        f"workflow; sopguard export jira-workflow --scope {PROJECT} lists every transition the policy needs"
    ]
    assert_jira_shapes(no_network)


def test_a_global_transition_counts_from_every_status(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jira's "any status can move here" transitions (type GLOBAL, no links) allow every source."""
    targets = {t for _, t in policy_moves()}
    fake_jira(no_network, moves=[(None, t) for t in sorted(targets)])
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT)
    assert result.exit_code == 0, result.output


def test_on_data_center_transitions_are_not_compared_and_the_report_says_so(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_jira(no_network, DATA_CENTER)
    result = run_check(monkeypatch, DATA_CENTER, "--jira", PROJECT)
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        f"Jira project {PROJECT}: matches the policy (10 statuses, 4 priorities, 9 fields)"
    ]
    assert (
        "transitions not compared: this Jira (Data Center) has no REST call that lists them" in result.stderr
    )
    assert not any(c.request.method == "POST" for c in no_network.calls)
    assert_jira_shapes(no_network, DATA_CENTER)


def test_an_unknown_intake_field_and_sub_task_type_are_reported(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = resources.files("config").joinpath("sop.yaml").read_text(encoding="utf-8")
    text = text.replace("jira: {field: Customer}", "jira: {field: Client}").replace(
        "subtask_issue_type: Sub-task", "subtask_issue_type: Subtask"
    )
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    fake_jira(no_network)
    result = run_check(monkeypatch, CLOUD, "--jira", PROJECT, "--policy", str(policy))
    assert result.exit_code == 1
    assert lines(result) == [
        f"Jira project {PROJECT}: intake field 'customer' is read from the Jira field 'Client', which this Jira "
        "does not have: create the field, or set intake.fields[0].jira.field to the name or id (customfield_N) "
        "of the field that holds it",
        f"Jira project {PROJECT}: checklist items are created as 'Subtask' issues, a sub-task type project "
        f"{PROJECT} does not have: set trackers.jira.subtask_issue_type to one of: Sub-task",
    ]


# --- GitHub ----------------------------------------------------------------------------------


def _label(number: int, name: str) -> dict[str, Any]:
    return {
        "id": 208045900 + number,
        "node_id": f"MDU6TGFiZWwyMDgwNDU5{number:02d}",
        "url": f"{GITHUB_API}/repos/{REPO}/labels/{name.replace('/', '%2F')}",
        "name": name,
        "description": None,
        "color": "ededed",
        "default": False,
    }


def fake_labels(mock: responses.RequestsMock, names: list[str]) -> None:
    """Two pages, as GitHub pages them (a `Link` header to the next); PyGithub writes the port."""
    labels = [_label(n, name) for n, name in enumerate(names)]
    url = f"{GITHUB_API}/repos/{REPO}/labels"
    pattern = re.compile(r"^https://api\.github\.com(:443)?/repos/" + re.escape(REPO) + r"/labels\?")
    nxt = f'<{url}?per_page=100&page=2>; rel="next", <{url}?per_page=100&page=2>; rel="last"'
    half = len(labels) // 2
    first = [responses.matchers.query_param_matcher({"per_page": "100"})]
    second = [responses.matchers.query_param_matcher({"per_page": "100", "page": "2"})]
    mock.get(pattern, json=labels[:half], headers={"Link": nxt}, match=first)
    mock.get(pattern, json=labels[half:], match=second)


def every_policy_label() -> list[str]:
    from connector.github.check import policy_labels

    return list(policy_labels(POLICY))


def test_a_repository_without_the_priority_labels_is_reported_label_by_label(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    present = [name for name in every_policy_label() if not name.startswith("priority/")] + ["bug"]
    fake_labels(no_network, present)
    result = run_check(monkeypatch, CLOUD, "--github", REPO)
    assert result.exit_code == 1, result.output
    assert lines(result) == [
        f"GitHub repository {REPO}: label 'priority/{level}' (priority {level}) does not exist in {REPO}: "
        f"create it: gh label create 'priority/{level}' --repo {REPO}"
        for level in POLICY.priority.levels
    ]
    assert_exchanges_allowed("github-labels.openapi.json", GITHUB_API, no_network.calls)


def test_a_repository_with_every_label_passes_whatever_their_case(
    no_network: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_labels(no_network, [name.upper() for name in every_policy_label()])
    result = run_check(monkeypatch, CLOUD, "--github", REPO)
    assert result.exit_code == 0, result.output
    assert lines(result) == [
        f"GitHub repository {REPO}: matches the policy ({len(every_policy_label())} labels)"
    ]


def test_the_labels_the_policy_uses_include_its_guards() -> None:
    labels = every_policy_label()
    assert {
        "status/new",
        "status/closed",
        "priority/P1",
        "needs-info",
        "sla/breached",
        "sop-checklist",
    } <= set(labels)
    assert {"plan/approved", "risk/high", "affects-customer", "customer-confirmed"} <= set(labels)
    assert "risk/low" in labels  # an approver's judgement that waives the review (S2.2)


def test_check_needs_a_target_and_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(main, ["check"]).exit_code == 2
    result = CliRunner().invoke(main, ["check", "--jira", PROJECT])
    assert result.exit_code == 1
    assert "--jira needs JIRA_URL" in result.output

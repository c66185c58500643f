"""Measure the GitHub API calls sopguard makes per scenario, and print them as a Markdown table.

Each scenario is a real delivery sent through the whole service (signature, queue, engine, GitHub
connector) to the same stand-in GitHub that the tests use; the requests it receives are counted.

    .venv/bin/python -m benchmarks.github_api_calls
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import responses

from tests.github_support import (
    REPO,
    FakeGithub,
    Service,
    add_checklist,
    form_body,
    issue_payload,
    labelled,
    put_in_state,
    service,
)

Scenario = Callable[[Service, FakeGithub], None]


def open_with_missing_fields(sopguard: Service, github: FakeGithub) -> None:
    sopguard.deliver(issue_payload("opened", labels=[], body=""), "bench")


def fields_supplied_later(sopguard: Service, github: FakeGithub) -> None:
    sopguard.deliver(issue_payload("opened", labels=[], body=""), "setup")
    github.mock.calls.reset()
    sopguard.deliver(issue_payload("edited", labels=list(github.labels), body=form_body()), "bench")


def priority_labelled_on_open(sopguard: Service, github: FakeGithub) -> None:
    sopguard.deliver(issue_payload("opened", labels=[], body=form_body(Impact="Business outage")), "bench")


def persons_priority_kept(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "triage", "priority/P2")
    sopguard.deliver(labelled(github, "priority/P1"), "bench")


def skipped_stage_undone(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "triage")
    sopguard.deliver(labelled(github, "status/in-progress"), "bench")


def valid_transition(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "new")
    sopguard.deliver(labelled(github, "status/triage"), "bench")


def valid_transition_with_checklist(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "in-progress")
    add_checklist(github, "preparation")
    sopguard.deliver(labelled(github, "status/verification", body="### Key steps\n\nDone."), "bench")


def close_blocked(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "acceptance")
    add_checklist(github, "customer-acceptance", open_items=1)
    add_checklist(github, "deliverables")
    sopguard.deliver(
        issue_payload("closed", labels=list(github.labels), body="### Root cause\n\nA disk."), "bench"
    )


def own_event_ignored(sopguard: Service, github: FakeGithub) -> None:
    put_in_state(sopguard, github, "triage")
    sopguard.deliver(labelled(github, "status/closed", by="sopguard-bot"), "bench")


SCENARIOS: list[tuple[str, str, Scenario]] = [
    ("open with missing fields", "labels, comment", open_with_missing_fields),
    ("missing fields supplied", "labels, intake comment edited, priority comment", fields_supplied_later),
    ("priority labelling on open", "labels, comment", priority_labelled_on_open),
    ("a person's priority kept", "labels, comment", persons_priority_kept),
    ("skipped stage undone", "labels restored, comment", skipped_stage_undone),
    ("valid transition", "old status label removed", valid_transition),
    (
        "valid transition with checklist creation (3 items)",
        "sub-issues, labels, comment",
        valid_transition_with_checklist,
    ),
    ("close blocked by an open checklist item", "reopened, comment", close_blocked),
    ("event caused by sopguard itself", "nothing", own_event_ignored),
]


def measure(scenario: Scenario, root: Path) -> list[str]:
    with responses.RequestsMock() as mock:
        github = FakeGithub(mock)
        sopguard = service(root)
        scenario(sopguard, github)
        return github.calls()


def main() -> None:
    print("| scenario | what is done | API calls | requests |")
    print("|---|---|---:|---|")
    for index, (name, what, scenario) in enumerate(SCENARIOS):
        with tempfile.TemporaryDirectory() as root:
            calls = measure(scenario, Path(root) / str(index))
        summary = (
            ", ".join(f"{c.split()[0]} {c.split()[1].removeprefix(f'/repos/{REPO}')}" for c in calls) or "-"
        )
        print(f"| {name} | {what} | {len(calls)} | {summary} |")
    print("\nPlus one `GET /user` (or `GET /app`) per process, to learn the service's own login.")


if __name__ == "__main__":
    main()

"""Measure the GitHub API calls sopguard makes per scenario against the minimum each needs; print a
Markdown table.

Each scenario is a real delivery sent through the whole service (signature, queue, engine, GitHub
connector) to the same stand-in GitHub that the tests use; the requests it receives are counted.

    .venv/bin/python -m benchmarks.github_api_calls

The minimum of a scenario (the `least` of each row in `SCENARIOS`) is the writes it needs plus the
reads nothing can save:
- writes: labels to add are one `POST labels`; each label to remove is one `DELETE` (GitHub has no
  call that removes several, and `PUT labels` replaces the whole set, which would undo a label a
  person adds meanwhile); a comment is one `POST` (or one `PATCH` of ours, found in the journal);
  a state change is one `PATCH` of the issue; a checklist item is one `POST issues` to create it and
  one `POST sub_issues` to link it (GitHub makes a sub-issue in no fewer).
- reads: the sub-issues, only where a guard needs their titles and states (the delivery carries at
  most their count, `sub_issues_summary`). Which comments are ours, and which items were created,
  is in the service's journal: GitHub is read before a write only when an earlier try of that write
  may have landed (tests/test_github_e2e.py and tests/test_fault_storm.py show those reads).
- once per process: `GET /user` (or `GET /app`), to learn the service's own login; the last row
  measures it with several consumer threads asking at once.
"""

from __future__ import annotations

import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import responses
from github import Auth

from connector.delivery import Delivery
from connector.github.connector import GithubConnector
from tests.fake_github import FakeGithubServer
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


@dataclass(frozen=True)
class Row:
    name: str
    what: str
    scenario: Scenario
    least: tuple[str, ...]  # the requests the scenario cannot do without, as `METHOD /path`


LABELS, COMMENT = "POST /issues/1/labels", "POST /issues/1/comments"
# The sub-issues' titles and states, for a guard on a checklist (the delivery has only their count).
SUB_ISSUES = "GET /issues/1/sub_issues"
ITEM = ("POST /issues", "POST /issues/1/sub_issues")  # one checklist item: create it, link it


SCENARIOS: list[Row] = [
    # needs-info and status/new in one POST; the intake reminder and the receipt
    Row("open with missing fields", "labels, comment", open_with_missing_fields, (LABELS, COMMENT, COMMENT)),
    Row(
        "missing fields supplied",
        "labels, intake comment edited, priority comment",
        fields_supplied_later,
        (
            LABELS,
            "DELETE /issues/1/labels/needs-info",
            "PATCH /issues/comments/9001",
            "PATCH /issues/comments/9002",
        ),
    ),
    Row("priority labelling on open", "labels, comment", priority_labelled_on_open, (LABELS, COMMENT)),
    Row(
        "a person's priority kept",
        "labels, comment",
        persons_priority_kept,
        ("DELETE /issues/1/labels/priority%2FP2", COMMENT, COMMENT),  # the old label; acknowledged, receipt
    ),
    Row(
        "skipped stage undone",
        "labels restored, comment",
        skipped_stage_undone,
        ("DELETE /issues/1/labels/status%2Fin-progress", COMMENT),
    ),
    Row(
        "valid transition",
        "old status label removed",
        valid_transition,
        ("DELETE /issues/1/labels/status%2Fnew",),
    ),
    Row(
        "valid transition with checklist creation (3 items)",
        "sub-issues, labels, comment",
        valid_transition_with_checklist,
        (SUB_ISSUES, "DELETE /issues/1/labels/status%2Fin-progress", *ITEM * 3, COMMENT),
    ),
    Row(
        "close blocked by an open checklist item",
        "reopened, comment",
        close_blocked,
        (SUB_ISSUES, "PATCH /issues/1", COMMENT),
    ),
    Row("event caused by sopguard itself", "nothing", own_event_ignored, ()),
]
THREADS = 4  # consumers asking who the service is at once, in the identity row


@dataclass(frozen=True)
class Measured:
    name: str
    what: str
    calls: tuple[str, ...]
    least: tuple[str, ...]

    @property
    def ratio(self) -> float:
        return len(self.calls) / len(self.least) if self.least else float(not self.calls)

    @property
    def beyond(self) -> list[str]:
        """The requests made beyond the minimum (and, marked `-`, any of the minimum not made)."""
        made, least = Counter(self.calls), Counter(self.least)
        return [*(made - least).elements(), *(f"-{c}" for c in (least - made).elements())]


def _short(call: str) -> str:
    method, path = call.split(" ", 1)
    return f"{method} {path.removeprefix(f'/repos/{REPO}')}"


def measure(row: Row, root: Path) -> Measured:
    with responses.RequestsMock() as mock:
        github = FakeGithub(mock)
        sopguard = service(root)
        row.scenario(sopguard, github)
        return Measured(row.name, row.what, tuple(map(_short, github.calls())), row.least)


def measure_identity() -> Measured:
    """`THREADS` consumers of a fresh process ask who the service is at the same moment (over real
    HTTP, the loopback fake GitHub: a lookup takes long enough for the others to ask meanwhile)."""
    with FakeGithubServer() as github:
        connector = GithubConnector(auth=Auth.Token("t"), base_url=github.url, sleep=lambda _: None)
        delivery = Delivery("github", "identity", "issues", issue_payload("opened", labels=[]))
        start = threading.Barrier(THREADS)

        def ask() -> None:
            start.wait()
            connector.service_accounts(delivery)

        threads = [threading.Thread(target=ask) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        lookups = tuple(f"{c.method} {c.path}" for c in github.calls())
    return Measured(f"learning who we are ({THREADS} threads at once)", "nothing", lookups, ("GET /user",))


def measure_all() -> list[Measured]:
    results = []
    for index, row in enumerate(SCENARIOS):
        with tempfile.TemporaryDirectory() as root:
            results.append(measure(row, Path(root) / str(index)))
    results.append(measure_identity())
    return results


def table(results: list[Measured]) -> str:
    lines = [
        "| scenario | what is done | measured | minimum | ratio | beyond the minimum | requests |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for m in results:
        beyond = ", ".join(m.beyond) or "-"
        lines.append(
            f"| {m.name} | {m.what} | {len(m.calls)} | {len(m.least)} | {m.ratio:.2f} | {beyond} | "
            f"{', '.join(m.calls) or '-'} |"
        )
    lines += [
        "",
        f"Highest ratio: {max(m.ratio for m in results):.2f}. Identity lookups are left out of the other rows.",
    ]
    return "\n".join(lines)


def main() -> None:
    print(table(measure_all()))


if __name__ == "__main__":
    main()

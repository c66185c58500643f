"""Measure the Jira REST calls sopguard makes per scenario, on Cloud and Data Center, against the
minimum each scenario needs; print Markdown tables.

    .venv/bin/python -m benchmarks.jira_api_calls

Each scenario runs the whole pipeline (signed delivery -> queue -> engine -> Jira connector) against
the fake Jira of `tests/jira_support.py` on `responses`, and counts the requests it sends; every
request is also checked against Atlassian's OpenAPI description. It runs twice in one process: first
on a freshly started service ("first"), then on another issue of the same project ("warm"), as every
later delivery runs.

The minimum of a scenario (`MINIMUMS`) is the writes it needs plus the reads nothing can save:
- writes: a transition is one `POST transitions`; priority and labels are one `PUT issue` together;
  each comment is one `POST comment`; all sub-tasks are one `POST issue/bulk`.
- reads of a warm delivery: only what the delivery does not carry and a rule needs (Cloud
  deliveries carry no comments, and the root-cause guard of *close blocked* reads them), and,
  before an issue is labelled for having no way back, its status and transitions now (one read).
- reads once per process, in the first delivery (`ONCE`): who the service is (`myself`: every
  delivery must tell its own events from people's), the field ids of the policy's field names
  (deliveries key fields by id), the deployment type before the first comment (ADF on Cloud, wiki
  markup on Data Center), on Data Center the project's type before the first internal note (its
  deliveries do not say whether the project is a Jira Service Management one; Cloud's do), and the
  transitions out of a status before the first move from it (kept per project, issue type and status),
  and the team of a comment's author that could be the first response, or that wrote the root cause
  (the project's roles, then each role the team names; kept for a few minutes).
- on Data Center, whether the customer reads a new comment that could be the first response: its
  deliveries do not say (Cloud's `jsdPublic` does), so the comment list is read with its properties
  (each comment's answer is then kept).
Which comments were posted, and which sub-tasks were created, is in the service's journal, so none
of those is read; Jira is read before a write only when an earlier try of it may have landed
(tests/test_jira_faults.py shows those reads).
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import responses

from tests.jira_support import (
    DEPLOYMENTS,
    SCENARIOS,
    Deployment,
    Scenario,
    Service,
    fake_for,
    follow,
    service,
)

_ISSUE_KEY = re.compile(r"/issue/[A-Z][A-Z0-9]*-\d+")

# The reads a first delivery makes once per process (see the module docstring for why each is needed).
IDENTITY, FIELD_IDS, DEPLOYMENT_TYPE, TRANSITIONS, PROJECT_TYPE, ROLES, ROLE = (
    "GET myself",
    "GET field",
    "GET serverInfo",
    "GET transitions",
    "GET project/{key}",
    "GET project/{key}/role",
    "GET project/{key}/role/{id}",
)


# Whether someone is of the service team: the project's roles, then each role the team names that
# the project has (kept for a few minutes).
TEAM = (ROLES, *(ROLE,) * 3)


@dataclass(frozen=True)
class Minimum:
    """The requests a scenario cannot do without, warm, and those a fresh process adds once."""

    warm: tuple[str, ...]
    once: tuple[str, ...]

    @property
    def first(self) -> tuple[str, ...]:
        return self.once + self.warm


def _comment(deployment: str) -> str:
    return "POST comment (v3)" if deployment == "cloud" else "POST comment"


def minimum(scenario: str, deployment: str) -> Minimum:
    comment = _comment(deployment)
    first_comment = (IDENTITY, FIELD_IDS, DEPLOYMENT_TYPE)  # the first comment is for the customer
    # The first comment is an internal note (of a Jira Service Management project, if it is one).
    first_note = (*first_comment, *((PROJECT_TYPE,) if deployment == "dc" else ()))
    if scenario == "transition undone":  # move back, say why
        return Minimum(("POST transitions", comment), (*first_note, TRANSITIONS))
    if scenario == "transition with no way back":  # no way back: label it, say why
        # Before labelling, one read of where the issue is and its ways out now: a late delivery's
        # issue may be back already, and a cached list may predate the transition an admin added.
        return Minimum(("GET issue", "PUT issue", comment), (*first_note, TRANSITIONS))
    if scenario == "priority set":  # priority and its label in one edit, the receipt
        return Minimum(("PUT issue", comment), first_comment)
    if scenario == "intake missing at create":  # the needs-info label, the reminder, the receipt
        return Minimum(("PUT issue", comment, comment), first_comment)
    if scenario == "valid transition creating sub-tasks":  # the three items at once, the checklist comment
        return Minimum(("POST issue/bulk", comment), first_note)
    if scenario == "close blocked by open sub-tasks":  # move back, say why; Cloud: read the comments
        # The root cause counts only when the team wrote it (S5.1): whether its author is of the
        # team is looked up once, as for the first response below.
        reads = ("GET issue",) if deployment == "cloud" else ()
        return Minimum((*reads, "POST transitions", comment), (*first_note, TRANSITIONS, *TEAM))
    if scenario == "agent's comment on a service request":  # nothing to write
        # Whether the agent is of the team (the first response's responders) is looked up once:
        # the project's roles, then each role the team names that the project has. Data Center's
        # delivery says neither whether the project is a service one nor whether the customer reads
        # the comment: the comment list with its properties is read for each new comment.
        visibility = ("GET comment",) if deployment == "dc" else ()
        once = (IDENTITY, *TEAM, *((PROJECT_TYPE,) if deployment == "dc" else ()), FIELD_IDS)
        return Minimum(visibility, once)
    raise KeyError(f"no minimum stated for {scenario!r}")


@dataclass(frozen=True)
class Run:
    calls: tuple[str, ...]  # short names, in order
    least: tuple[str, ...]

    @property
    def measured(self) -> int:
        return len(self.calls)

    @property
    def minimum(self) -> int:
        return len(self.least)

    @property
    def ratio(self) -> float:
        return self.measured / self.minimum if self.minimum else float(self.measured == 0)

    @property
    def beyond(self) -> list[str]:
        """The requests made beyond the minimum (and, marked `-`, any of the minimum not made)."""
        made, least = Counter(self.calls), Counter(self.least)
        return [*(made - least).elements(), *(f"-{c}" for c in (least - made).elements())]


@dataclass(frozen=True)
class Measured:
    scenario: str
    deployment: str
    first: Run
    warm: Run


def on_another_issue(payload: dict[str, Any]) -> dict[str, Any]:
    """The same delivery about another issue of the same project (a warm delivery's issue)."""
    other = copy.deepcopy(payload)
    project, number = other["issue"]["key"].rsplit("-", 1)
    other["issue"]["key"] = f"{project}-{int(number) + 1000}"
    other["issue"]["id"] = str(int(other["issue"].get("id") or 0) + 1000)
    return other


def _run(
    sopguard: Service, scenario: Scenario, deployment: Deployment, payload: dict[str, Any], name: str
) -> list[str]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake = fake_for(mock, deployment, payload)
        scenario.prepare(fake)
        follow(sopguard, payload)  # an issue followed from its opening, not adopted
        sopguard.deliver(payload, f"benchmark-{deployment.name}-{name}")
        fake.check_against_openapi()
        return [_short(c) for c in fake.calls()]


def measure(make: Callable[[Deployment], Scenario], deployment: Deployment) -> Measured:
    """One scenario on a fresh service, then again on another issue in the same process."""
    scenario = make(deployment)
    least = minimum(scenario.title, deployment.name)
    with tempfile.TemporaryDirectory() as data_dir:
        sopguard = service(Path(data_dir), deployment)
        first = _run(sopguard, scenario, deployment, scenario.payload, "first")
        warm = _run(sopguard, scenario, deployment, on_another_issue(scenario.payload), "warm")
    return Measured(
        scenario.title, deployment.name, Run(tuple(first), least.first), Run(tuple(warm), least.warm)
    )


def measure_all() -> list[Measured]:
    return [measure(make, deployment) for make in SCENARIOS for deployment in DEPLOYMENTS]


def _short(call: str) -> str:
    """`POST /rest/api/3/issue/TES-41/comment` -> `POST comment (v3)`: what was called, readably."""
    method, path = call.split(" ", 1)
    version = path.split("/")[3]
    rest = _ISSUE_KEY.sub("/issue/{key}", path.split(f"/rest/api/{version}", 1)[1])
    rest = rest.removeprefix("/issue/{key}/").removeprefix("/issue/{key}").strip("/") or "issue"
    rest = re.sub(r"^project/[A-Z][A-Z0-9]*", "project/{key}", rest)
    rest = re.sub(r"/role/[0-9]+$", "/role/{id}", rest)
    return f"{method} {rest}" + (" (v3)" if version == "3" else "")


def _grouped(calls: Iterable[str]) -> str:
    """Consecutive repeats folded: `POST comment x2`."""
    groups: list[list[str | int]] = []
    for call in calls:
        if groups and groups[-1][0] == call:
            groups[-1][1] = int(groups[-1][1]) + 1
        else:
            groups.append([call, 1])
    return ", ".join(f"{c} x{n}" if int(n) > 1 else str(c) for c, n in groups) or "-"


def tables(results: list[Measured]) -> str:
    names = {"cloud": "Cloud", "dc": "Data Center"}
    lines = [
        "| scenario | Jira | first: measured | minimum | ratio | warm: measured | minimum | ratio | beyond the minimum |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in results:
        beyond = ", ".join(m.first.beyond + m.warm.beyond) or "-"
        lines.append(
            f"| {m.scenario} | {names[m.deployment]} | {m.first.measured} | {m.first.minimum} | "
            f"{m.first.ratio:.2f} | {m.warm.measured} | {m.warm.minimum} | {m.warm.ratio:.2f} | {beyond} |"
        )
    worst = max(r.ratio for m in results for r in (m.first, m.warm))
    lines += [
        "",
        f"Highest ratio: {worst:.2f}.",
        "",
        "| scenario | requests of a warm delivery (Cloud; Data Center differs only as noted) |",
        "|---|---|",
    ]
    by_key = {(m.scenario, m.deployment): m for m in results}
    for name in dict.fromkeys(m.scenario for m in results):
        cloud, dc = by_key[(name, "cloud")], by_key[(name, "dc")]
        calls = _grouped(cloud.warm.calls)
        if [c.removesuffix(" (v3)") for c in cloud.warm.calls] != list(dc.warm.calls):
            calls += f"<br>Data Center: {_grouped(dc.warm.calls)}"
        lines.append(f"| {name} | {calls} |")
    return "\n".join(lines)


def main() -> None:
    print(tables(measure_all()))


if __name__ == "__main__":
    main()

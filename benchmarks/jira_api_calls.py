"""Measure the Jira REST calls sopguard makes per scenario, on Cloud and Data Center; print Markdown tables.

    .venv/bin/python -m benchmarks.jira_api_calls

Each scenario runs the whole pipeline (signed delivery -> queue -> engine -> Jira connector) against
the fake Jira of `tests/jira_support.py` on `responses`, from a freshly started service, and counts
the requests it sends; every request is also checked against Atlassian's OpenAPI description. The
first delivery after a start also learns who the service is, the field list and the deployment
type; the "warm" count leaves those three out, as every later delivery does.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import responses

from tests.jira_support import DEPLOYMENTS, SCENARIOS, Deployment, Scenario, fake_for, follow, service

ONCE_PER_PROCESS = frozenset(
    {"GET /rest/api/2/myself", "GET /rest/api/2/field", "GET /rest/api/2/serverInfo"}
)
_ISSUE_KEY = re.compile(r"/issue/[A-Z][A-Z0-9]*-\d+")


@dataclass(frozen=True)
class Measured:
    scenario: str
    deployment: str
    calls: tuple[str, ...]

    @property
    def first(self) -> int:
        return len(self.calls)

    @property
    def warm_calls(self) -> list[str]:
        return [c for c in self.calls if c not in ONCE_PER_PROCESS]

    @property
    def warm(self) -> int:
        return len(self.warm_calls)


def measure(make: Callable[[Deployment], Scenario], deployment: Deployment) -> Measured:
    """One scenario on a fresh service and a fresh fake Jira; the requests it sent, in order."""
    scenario = make(deployment)
    with (
        tempfile.TemporaryDirectory() as data_dir,
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
    ):
        fake = fake_for(mock, deployment, scenario.payload)
        scenario.prepare(fake)
        sopguard = service(Path(data_dir), deployment)
        follow(sopguard, scenario.payload)  # an issue followed from its opening, not adopted
        sopguard.deliver(scenario.payload, f"benchmark-{deployment.name}")
        fake.check_against_openapi()
        return Measured(scenario.title, deployment.name, tuple(fake.calls()))


def measure_all() -> list[Measured]:
    return [measure(make, deployment) for make in SCENARIOS for deployment in DEPLOYMENTS]


def _short(call: str) -> str:
    """`POST /rest/api/3/issue/TES-41/comment` -> `POST comment (v3)`: what was called, readably."""
    method, path = call.split(" ", 1)
    version = path.split("/")[3]
    rest = _ISSUE_KEY.sub("/issue/{key}", path.split(f"/rest/api/{version}", 1)[1])
    rest = rest.removeprefix("/issue/{key}/").removeprefix("/issue/{key}").strip("/") or "issue"
    return f"{method} {rest}" + (" (v3)" if version == "3" else "")


def _grouped(calls: Iterable[str]) -> str:
    """Consecutive repeats folded: `POST issue x3`."""
    groups: list[list[str | int]] = []
    for call in map(_short, calls):
        if groups and groups[-1][0] == call:
            groups[-1][1] = int(groups[-1][1]) + 1
        else:
            groups.append([call, 1])
    return ", ".join(f"{c} x{n}" if int(n) > 1 else str(c) for c, n in groups)


def tables(results: list[Measured]) -> str:
    by_key = {(m.scenario, m.deployment): m for m in results}
    scenarios = list(dict.fromkeys(m.scenario for m in results))
    lines = [
        "| scenario | Cloud: first delivery | Cloud: warm | Data Center: first delivery | Data Center: warm |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in scenarios:
        cloud, dc = by_key[(name, "cloud")], by_key[(name, "dc")]
        lines.append(f"| {name} | {cloud.first} | {cloud.warm} | {dc.first} | {dc.warm} |")
    lines += [
        "",
        "| scenario | requests of a warm delivery (Cloud; Data Center differs only as noted) |",
        "|---|---|",
    ]
    for name in scenarios:
        cloud, dc = by_key[(name, "cloud")], by_key[(name, "dc")]
        calls = _grouped(cloud.warm_calls)
        if [_short(c).removesuffix(" (v3)") for c in cloud.warm_calls] != [_short(c) for c in dc.warm_calls]:
            calls += f"<br>Data Center: {_grouped(dc.warm_calls)}"
        lines.append(f"| {name} | {calls} |")
    return "\n".join(lines)


def main() -> None:
    print(tables(measure_all()))


if __name__ == "__main__":
    main()

"""From a delivery to sopguard's first tracker call: p50 and p99, busy and after a quiet spell.

A running sopguard (`sopguard serve`, and gunicorn with a separate `sopguard worker`, both on a
SQLite file in a temporary directory) acts for GitHub against the loopback fake GitHub
(tests/fake_github.py). Each delivery is an `issues.opened` of a new issue, signed, POSTed to
the receiver; the time is taken from just before the POST to the first request the fake receives
for that issue (`Call.monotonic`, the same clock: the fake runs in this process).

- busy: a stream of deliveries, one POST at a time, `--rate` per second;
- idle: each delivery after `--idle` seconds without any (60 by default; `--idle 2` for a quick run).

    .venv/bin/python -m benchmarks.latency [--busy 200] [--rate 10] [--idle 60] [--idle-samples 5]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from tests.fake_github import FakeGithubServer
from tests.github_support import form_body, issue_payload
from webhooks.signatures import sign

ROOT = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret"
REPO = "Codertocat/Hello-World"


@dataclass
class Sopguard:
    """One running set-up: where its receiver listens, and the numbers of the issues it was sent."""

    name: str
    url: str
    github: FakeGithubServer
    next_issue: int = 1000
    answers: list[float] = field(default_factory=list)

    def deliver(self) -> tuple[int, float]:
        """POST a new issue's `issues.opened`; its number and the monotonic time just before the POST
        (how long the receiver took to answer is kept in `answers`)."""
        self.next_issue += 1
        number = self.next_issue
        payload = issue_payload("opened", labels=[], body=form_body(), issue={"number": number})
        payload["repository"]["full_name"] = REPO
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": f"{self.name}-{number}",
            "X-Hub-Signature-256": sign(SECRET, body),
            "Content-Type": "application/json",
        }
        sent = time.monotonic()
        answer = requests.post(self.url, data=body, headers=headers, timeout=10)
        self.answers.append(time.monotonic() - sent)
        if answer.status_code != 202:
            sys.exit(f"{self.name}: delivery answered {answer.status_code}: {answer.text[:500]}")
        return number, sent

    def first_call(self, number: int, timeout: float = 30.0) -> float:
        """The monotonic time of the first request the fake received for issue `number`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = [c.monotonic for c in self.github.calls() if _names(c.path, number)]
            if calls:
                return min(calls)
            time.sleep(0.002)
        sys.exit(f"{self.name}: no tracker call for issue {number} within {timeout} s")

    def settle(self, seconds: float = 0.5) -> None:
        """Until the fake has seen no request for `seconds`: the last delivery's work is over."""
        while True:
            calls = self.github.calls()
            last = max((c.monotonic for c in calls), default=0.0)
            if time.monotonic() - last >= seconds:
                return
            time.sleep(seconds / 5)


def _names(path: str, number: int) -> bool:
    """Whether a request path is about issue `number` (`.../issues/12`, `.../issues/12/labels`)."""
    parts = path.split("?", 1)[0].split("/")
    return any(a == "issues" and b == str(number) for a, b in itertools.pairwise(parts))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment(data_dir: Path, port: int, github: FakeGithubServer) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))},
        "SOPGUARD_DATA_DIR": str(data_dir),
        "SOPGUARD_HOST": "127.0.0.1",
        "SOPGUARD_PORT": str(port),
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_LOG_LEVEL": "WARNING",
        "GITHUB_TOKEN": "benchmark-token",
        "GITHUB_API_URL": github.url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
    }


def _sopguard(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli import main; main()", *args]


def _wait_ready(port: int, processes: list[subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            output = "\n".join(f.read_text(errors="replace")[-2000:] for f in logs.glob("*.log"))
            sys.exit(f"sopguard exited:\n{output}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    sys.exit("sopguard did not answer /healthz within 60 s")


@contextlib.contextmanager
def running(name: str, github: FakeGithubServer) -> Iterator[Sopguard]:
    """`serve` (receiver and consumers in one process) or `gunicorn` (receiver) + `sopguard worker`."""
    with tempfile.TemporaryDirectory() as root:
        data_dir, port = Path(root), _free_port()
        env = _environment(data_dir, port, github)
        commands = (
            [_sopguard("serve", "--workers", "2")]
            if name == "serve"
            else [
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
                _sopguard("worker", "--workers", "2"),
            ]
        )
        processes: list[subprocess.Popen[bytes]] = []
        for n, command in enumerate(commands):
            with (data_dir / f"process-{n}.log").open("ab") as log:
                processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log))
            if n == 0:
                _wait_ready(port, processes, data_dir)  # the tables exist before a worker starts
        try:
            sopguard = Sopguard(name, f"http://127.0.0.1:{port}/webhooks/github", github)
            number, _ = sopguard.deliver()  # warm: the identity lookup, the connections, the imports
            sopguard.first_call(number, timeout=60)
            sopguard.settle()
            yield sopguard
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def busy(sopguard: Sopguard, count: int, rate: float) -> list[float]:
    """Latencies of `count` deliveries sent one at a time, `rate` per second."""
    sent: list[tuple[int, float]] = []
    started = time.monotonic()
    for n in range(count):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        sent.append(sopguard.deliver())
    return [sopguard.first_call(number) - at for number, at in sent]


def idle(sopguard: Sopguard, samples: int, quiet: float) -> list[float]:
    """Latencies of `samples` deliveries, each after `quiet` seconds with no delivery and no work."""
    latencies: list[float] = []
    for _ in range(samples):
        sopguard.settle()
        time.sleep(quiet)
        number, at = sopguard.deliver()
        latencies.append(sopguard.first_call(number) - at)
    return latencies


def percentile_ms(values: list[float], share: float) -> float:
    """The nearest-rank percentile, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def report(setup: str, case: str, latencies: list[float], answers: list[float]) -> None:
    """The figures of one case: delivery to first tracker call, and (apart) the receiver's answer."""
    print(
        f"{setup:<18} {case:<22} n={len(latencies):<4} p50 {percentile_ms(latencies, 0.5):7.1f} ms   "
        f"p99 {percentile_ms(latencies, 0.99):7.1f} ms   max {1000 * max(latencies):7.1f} ms   "
        f"(the POST answered: p50 {percentile_ms(answers, 0.5):.1f} ms, p99 {percentile_ms(answers, 0.99):.1f} ms)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=200, help="deliveries of the busy stream")
    parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second when busy")
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of quiet before each idle delivery")
    parser.add_argument("--idle-samples", type=int, default=5, help="deliveries after a quiet spell")
    parser.add_argument("--setup", choices=("serve", "gunicorn", "both"), default="both")
    options = parser.parse_args()
    setups = ("serve", "gunicorn") if options.setup == "both" else (options.setup,)
    for setup in setups:
        name = setup if setup == "serve" else "gunicorn + worker"
        with FakeGithubServer() as github, running(setup, github) as sopguard:
            sopguard.answers.clear()
            streamed = busy(sopguard, options.busy, options.rate)
            report(name, f"busy, {options.rate:g}/s", streamed, sopguard.answers)
            sopguard.answers.clear()
            quiet = idle(sopguard, options.idle_samples, options.idle)
            report(name, f"after {options.idle:g} s idle", quiet, sopguard.answers)


if __name__ == "__main__":
    main()

"""Deliveries processed per second by `sopguard worker` processes against a loopback GitHub.

The inbox is filled (through the door, signed) with `--deliveries` `issues.opened` deliveries, each
of its own issue, every intake field answered: each gets its priority label, its status label and
its receipt comment, the common case. Then `--processes` `sopguard worker --drain` processes of
`--threads` consumer threads each run them against tests/fake_github.py on 127.0.0.1 (answers in
well under a millisecond, so the figure is sopguard's own cost: CPU and the database), and the rate
is counted from the first delivery finished to the last (the processes' start-up left out).

    .venv/bin/python -m benchmarks.processing [--deliveries 1000] [--processes 2] [--threads 4] [--runs 3]

Against the real GitHub each call takes 100-300 ms instead, so a consumer thread spends most of its
time waiting: the rate is then about threads / (calls per delivery x latency), and more threads
(SOPGUARD_WORKERS) are what raises it, not more cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

from app import create_app
from config.settings import Settings
from runtime.store import Store
from runtime.store.schema import deliveries
from tests.conftest import GITHUB_SECRET, github_headers
from tests.fake_github import FakeGithubServer
from tests.github_support import form_body, issue_payload

ROOT = Path(__file__).resolve().parent.parent


def fill_inbox(data_dir: Path, count: int) -> None:
    """`count` signed `issues.opened` deliveries of `count` issues, through the door."""
    client = create_app(
        Settings(data_dir=data_dir, trackers=["github"], github_webhook_secret=GITHUB_SECRET)
    ).test_client()
    payload = issue_payload("opened", labels=[], body=form_body(Impact="Degraded service", Urgency="High"))
    for number in range(1, count + 1):
        payload["issue"]["number"] = number
        payload["issue"]["id"] = 10_000 + number
        body = json.dumps(payload).encode()
        answer = client.post(
            "/webhooks/github", data=body, headers=github_headers(body, "issues", f"d-{number}")
        )
        assert answer.status_code == 202, answer.get_json()


def _environment(data_dir: Path, github: FakeGithubServer) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))}
    return kept | {
        "SOPGUARD_DATA_DIR": str(data_dir),
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_LOG_LEVEL": "WARNING",
        "GITHUB_TOKEN": "benchmark",
        "GITHUB_API_URL": github.url,
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }


def run(count: int, processes: int, threads: int) -> tuple[float, float, int]:
    """Deliveries processed per second, tracker calls per delivery, and how many ended processed."""
    with tempfile.TemporaryDirectory() as scratch, FakeGithubServer(rate_limit=10**9) as github:
        data_dir = Path(scratch)
        fill_inbox(data_dir, count)
        command = [sys.executable, "-c", "from cli import main; main()", "worker", "--drain"]
        workers = [
            subprocess.Popen(
                [*command, "--workers", str(threads)],
                cwd=ROOT,
                env=_environment(data_dir, github),
                stdout=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        for worker in workers:
            worker.wait(timeout=1800)
        store = Store(f"sqlite:///{data_dir / 'sopguard.db'}")
        with store.engine.connect() as db:
            first, last, done = db.execute(
                select(
                    func.min(deliveries.c.processed_at),
                    func.max(deliveries.c.processed_at),
                    func.count().filter(deliveries.c.status == "processed"),
                )
            ).one()
        store.engine.dispose()
        seconds = max((last - first).total_seconds(), 1e-9)
        return (done - 1) / seconds, len(github.calls()) / count, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rates, calls = [], 0.0
    for number in range(1, args.runs + 1):
        started = time.monotonic()
        rate, calls, done = run(args.deliveries, args.processes, args.threads)
        rates.append(rate)
        print(
            f"run {number}: {done}/{args.deliveries} processed, {rate:,.0f} deliveries/s, "
            f"{calls:.1f} tracker calls each ({time.monotonic() - started:.0f} s in all)"
        )
    print(
        f"median of {args.runs}: {statistics.median(rates):,.0f} deliveries/s processed "
        f"({args.processes} process(es) x {args.threads} thread(s), SQLite, loopback GitHub)"
    )


if __name__ == "__main__":
    main()

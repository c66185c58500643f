"""A delivery acknowledged with 2xx survives a kill of the service and is processed after restart.

Real processes on loopback: `sopguard serve` (web only) takes a signed delivery and is killed with
SIGKILL before any consumer runs; `sopguard worker --drain` started afterwards processes it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from runtime.store import Store
from tests.conftest import GITHUB_SECRET, fixture_bytes, github_headers

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _sopguard(*args: str) -> list[str]:
    return [sys.executable, "-c", "from cli import main; main()", *args]


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else "exited"
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_acknowledged_delivery_survives_sigkill_and_is_processed_after_restart(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))},
        "SOPGUARD_DATA_DIR": str(tmp_path / "var"),
        "SOPGUARD_PORT": str(port),
        "SOPGUARD_WORKERS": "0",
        "SOPGUARD_TRACKERS": "github",
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    server = subprocess.Popen(
        _sopguard("serve"), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        _wait_until_serving(f"http://127.0.0.1:{port}/healthz", server)
        body = fixture_bytes("github", "issues__opened.json")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/webhooks/github",
            data=body,
            headers=github_headers(body, "issues", delivery="survivor-1"),
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 202
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL

    store = Store(f"sqlite:///{tmp_path / 'var' / 'sopguard.db'}")
    assert store.inbox.status("github", "survivor-1") == "queued"
    assert list(store.audit.entries()) == []

    worker = subprocess.run(
        _sopguard("worker", "--drain"), cwd=ROOT, env=env, capture_output=True, timeout=60
    )

    assert worker.returncode == 0, worker.stderr.decode()
    assert "processed 1 queued deliveries" in worker.stdout.decode()
    assert store.inbox.status("github", "survivor-1") == "processed"
    entries = list(store.audit.entries(issue="Codertocat/Hello-World#1"))
    assert {e.rule_id for e in entries} >= {"intake-required-fields", "follow-the-lifecycle"}
    assert all(e.delivery_id == "survivor-1" for e in entries)

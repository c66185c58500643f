"""Hot reload of the policy: the holder in this process (a change, a refused file, SIGHUP, a
delivery that keeps the policy it started with), then a running `sopguard serve` whose policy file
is edited under it. Every wait has a deadline; nothing asserts how long anything took."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from config.loader import DEFAULT_POLICY_NAME
from config.settings import Settings
from connector.factory import with_policy
from connector.jira.connector import JiraConnector
from runtime.policy_holder import PolicyHolder
from runtime.services import build_services
from runtime.store import Store
from tests.conftest import GITHUB_SECRET, fixture_json, github_headers

ROOT = Path(__file__).parents[1]
SOP_TEXT = (ROOT / "config" / DEFAULT_POLICY_NAME).read_text(encoding="utf-8")
INTAKE_ID = "id: intake-required-fields"
INITIAL = "  initial: new\n"
BROKEN = SOP_TEXT.replace(INITIAL, "  initial: nowhere\n")  # a state the workflow does not have
BROKEN_AT = f":{SOP_TEXT[: SOP_TEXT.index(INITIAL)].count(chr(10)) + 1}:12: workflow.initial: unknown state"


def _renamed_intake(rule_id: str) -> str:
    """The default policy with its intake rule under another id (seen in every audit row it writes)."""
    assert SOP_TEXT.count(INTAKE_ID) == 1
    return SOP_TEXT.replace(INTAKE_ID, f"id: {rule_id}")


def _save(path: Path, text: str) -> None:
    """As an editor saves: a new file put in place, so the change is seen whatever the clock's grain."""
    draft = path.with_suffix(".draft")
    draft.write_text(text, encoding="utf-8")
    draft.replace(path)


def _wait(condition: Callable[[], bool], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# --- the holder --------------------------------------------------------------------------------


def test_a_changed_file_comes_into_force_and_an_invalid_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    _save(path, SOP_TEXT)
    holder = PolicyHolder.load(path)
    assert not holder.check()  # unchanged: not read again

    _save(path, _renamed_intake("intake-v2"))
    assert holder.check() and holder.policy.intake.id == "intake-v2"
    assert holder.current()[0] == 1 and holder.refusal is None

    _save(path, BROKEN)
    assert not holder.check()
    assert holder.policy.intake.id == "intake-v2"  # the last valid policy stays in force
    assert holder.refusal is not None and holder.current()[0] == 1
    assert all(problem.startswith(f"{path}:") for problem in holder.refusal.problems)
    assert holder.refusal.problems[0].startswith(f"{path}{BROKEN_AT}")
    assert not holder.check()  # refused once: not read again until it changes again

    _save(path, SOP_TEXT)
    assert holder.check() and holder.refusal is None and holder.policy.intake.id == "intake-required-fields"


def test_a_removed_file_is_refused_and_the_policy_stays(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    _save(path, SOP_TEXT)
    holder = PolicyHolder.load(path)
    path.unlink()
    assert not holder.check()
    assert holder.refusal is not None and "cannot read the file" in holder.refusal.problems[0]
    assert holder.policy.intake.id == "intake-required-fields"


def test_sighup_reads_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    _save(path, SOP_TEXT)
    holder = PolicyHolder.load(path)
    previous = signal.getsignal(signal.SIGHUP)
    try:
        holder.reload_on_sighup()
        _save(path, _renamed_intake("intake-hup"))
        os.kill(os.getpid(), signal.SIGHUP)
        assert _wait(lambda: holder.policy.intake.id == "intake-hup")
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_a_delivery_keeps_the_policy_it_started_with(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    _save(path, SOP_TEXT)
    services = build_services(Settings(data_dir=tmp_path, policy=path))
    assert services.holder is not None
    in_hand = services.in_force()  # a delivery starts

    _save(path, _renamed_intake("intake-v2"))
    assert services.holder.check()

    assert in_hand.policy.intake.id == "intake-required-fields"  # to its end
    assert services.in_force().policy.intake.id == "intake-v2"  # the next one
    assert in_hand.policy.intake.id == "intake-required-fields"


def test_the_jira_connector_takes_the_new_policy_and_keeps_its_session(tmp_path: Path) -> None:
    path = tmp_path / "sop.yaml"
    _save(path, SOP_TEXT)
    settings = Settings(data_dir=tmp_path, policy=path, jira_url="https://acme.atlassian.net", jira_pat="pat")
    services = build_services(settings)
    before = services.connectors["jira"]
    assert isinstance(before, JiraConnector)
    _save(path, _renamed_intake("intake-v2"))
    assert services.holder is not None and services.holder.check()

    after = services.in_force().connectors["jira"]
    assert isinstance(after, JiraConnector)
    assert after.policy.intake.id == "intake-v2" and after.api is before.api
    assert before.policy.intake.id == "intake-required-fields"
    assert with_policy({"github": services.connectors["github"]}, after.policy) == {
        "github": services.connectors["github"]
    }


# --- a running `sopguard serve` ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """`sopguard serve` on loopback, dry run, with a policy file of its own: its URL, that file and
    its data directory."""
    policy, data, log = tmp_path / "sop.yaml", tmp_path / "var", tmp_path / "serve.log"
    _save(policy, SOP_TEXT)
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))},
        "SOPGUARD_POLICY": str(policy),
        "SOPGUARD_DATA_DIR": str(data),
        "SOPGUARD_PORT": str(port),
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_WORKERS": "1",
        "SOPGUARD_LOG_FORMAT": "text",
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    command = [sys.executable, "-c", "from cli import main; main()", "serve"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        up = _wait(lambda: process.poll() is None and _ready(url) is not None, 30)
        assert up, log.read_text(encoding="utf-8", errors="replace")[-3000:]
        yield url, policy, data
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _ready(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
            body: dict[str, Any] = json.load(answer)
            return body
    except (urllib.error.URLError, ConnectionError):
        return None


def _post_opened(url: str, number: int) -> None:
    payload = fixture_json("github", "issues__opened.json")
    payload["issue"]["number"] = number
    payload["issue"]["id"] += number
    body = json.dumps(payload).encode()
    request = urllib.request.Request(
        f"{url}/webhooks/github", data=body, headers=github_headers(body, "issues", f"opened-{number}")
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 202


def _intake_rule_of(data: Path, number: int) -> str | None:
    """The intake rule the audit log names for issue `number`, once its delivery is processed."""
    store = Store(f"sqlite:///{data / 'sopguard.db'}")
    try:
        for entry in store.audit.entries(f"Codertocat/Hello-World#{number}"):
            if entry.rule_id and entry.rule_id.startswith("intake"):
                return entry.rule_id
        return None
    finally:
        store.engine.dispose()


def test_a_running_service_takes_a_valid_change_and_refuses_an_invalid_one(
    served: tuple[str, Path, Path],
) -> None:
    url, policy, data = served
    _post_opened(url, 1)
    assert _wait(lambda: _intake_rule_of(data, 1) is not None)
    assert _intake_rule_of(data, 1) == "intake-required-fields"

    _save(policy, _renamed_intake("intake-reloaded"))
    _post_opened_until(url, data, 2, "intake-reloaded")

    _save(policy, BROKEN)
    assert _wait(lambda: (_ready(url) or {}).get("status") == "degraded")
    ready = _ready(url)
    assert ready is not None and ready["checks"]["policy"] == "ok"
    assert "refused" in ready["error"] and "last valid policy stays in force" in ready["error"]
    assert ready["policy"]["problems"][0].startswith(f"{policy}{BROKEN_AT}"), ready
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as answer:  # alive, and says why not ok
        alive: dict[str, Any] = json.load(answer)
    assert answer.status == 200 and alive["status"] == "degraded"
    assert alive["policy"]["problems"] == ready["policy"]["problems"]
    _post_opened(url, 50)
    assert _wait(lambda: _intake_rule_of(data, 50) is not None)
    assert _intake_rule_of(data, 50) == "intake-reloaded"  # the last valid policy

    _save(policy, SOP_TEXT)
    assert _wait(lambda: (_ready(url) or {}).get("status") == "ok")


def _post_opened_until(url: str, data: Path, first: int, rule_id: str) -> None:
    """Post new issues until one is judged by `rule_id` (the file is looked at every second)."""
    numbers = iter(range(first, first + 40))

    def judged_by_the_new_policy() -> bool:
        number = next(numbers)
        _post_opened(url, number)
        assert _wait(lambda: _intake_rule_of(data, number) is not None)
        return _intake_rule_of(data, number) == rule_id

    assert _wait(judged_by_the_new_policy, 20)


def test_gunicorn_workers_started_again_on_sighup_keep_the_last_valid_policy(tmp_path: Path) -> None:
    """On SIGHUP the master reads the file again and starts new workers: an invalid file turns their
    /readyz degraded with its problems (the last valid policy stays), a valid one ok again."""
    policy, port = tmp_path / "sop.yaml", _free_port()
    _save(policy, SOP_TEXT)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SOPGUARD_", "GITHUB_", "JIRA_"))},
        "SOPGUARD_POLICY": str(policy),
        "SOPGUARD_DATA_DIR": str(tmp_path / "var"),
        "SOPGUARD_PORT": str(port),
        "SOPGUARD_TRACKERS": "github",
        "SOPGUARD_WEB_WORKERS": "1",
        "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    }
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket"]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        master = subprocess.Popen(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def status() -> str | None:
        assert master.poll() is None, log.read_text(encoding="utf-8", errors="replace")[-3000:]
        return (_ready(url) or {}).get("status")

    try:
        assert _wait(lambda: status() == "ok", 30)
        _save(policy, BROKEN)
        master.send_signal(signal.SIGHUP)
        assert _wait(lambda: status() == "degraded")
        ready = _ready(url)
        assert ready is not None and ready["policy"]["problems"][0].startswith(f"{policy}{BROKEN_AT}")
        _save(policy, SOP_TEXT)
        master.send_signal(signal.SIGHUP)
        assert _wait(lambda: status() == "ok")
    finally:
        master.terminate()
        master.wait(timeout=30)

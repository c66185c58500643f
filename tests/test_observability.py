"""What an operator sees: `/metrics` counts what happened (in this process, and added up across
gunicorn's processes and a separate `sopguard worker`), the JSON log lines of a delivery each name
it and never a secret, and `/healthz` and `/readyz` answer JSON, saying which part is down."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from cli import main
from config.loader import load_policy
from config.schema import Messages, Text
from config.settings import Settings
from connector.metrics import endpoint
from runtime.metrics import action_kind, action_outcome
from runtime.observability import REDACTED, configure_logging, delivery_context
from runtime.services import utc_now
from runtime.sweep import sweep
from tests.conftest import GITHUB_SECRET, JIRA_SECRET, fixture_bytes, github_headers, services_of
from tests.fake_github import FakeGithubServer
from tests.github_support import FakeGithub, Service, form_body, issue_payload
from tests.servers.launch import postgres_bin_dir, redis_binary, running_postgres, running_redis
from tests.test_overload import _environment, _get, _request, _serving
from tests.test_sla_e2e import MONDAY_10, _open_github
from webhooks.receivers import Intake

ROOT = Path(__file__).parents[1]
POLICY = load_policy()
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def github(no_network: responses.RequestsMock) -> Iterator[FakeGithub]:
    fake = FakeGithub(no_network)
    yield fake
    fake.check_against_openapi()


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(client: FlaskClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return _samples(answer.get_data(as_text=True))


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


def _opened() -> dict[str, object]:
    return issue_payload("opened", labels=[], body=form_body(Impact="Degraded service", Urgency="High"))


# --- metrics -------------------------------------------------------------------------------------


def test_metrics_count_a_scripted_run_of_deliveries(sopguard: Service, github: FakeGithub) -> None:
    client = sopguard.app.test_client()
    before = _scrape(client)
    calls_before = len(github.requests())

    sopguard.deliver(_opened(), "m-1")
    body = json.dumps(_opened()).encode()
    duplicate = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "m-1"))
    forged = client.post(
        "/webhooks/github", data=body, headers=github_headers(body, "issues", "m-2", secret="wrong")
    )
    services = services_of(sopguard.app)
    broken = POLICY.messages.templates | {"receipt": Text(en="Received as {{ levle }}.")}
    services.policy = POLICY.model_copy(update={"messages": Messages(templates=broken)})
    sopguard.deliver(_opened(), "m-3")  # its receipt cannot be rendered: failed
    after = _scrape(client)

    assert (duplicate.status_code, forged.status_code) == (202, 401)
    received = "sopguard_deliveries_received_total"
    assert _delta(before, after, received, tracker="github", status="accepted") == 3
    taken_in = "sopguard_deliveries_taken_in_total"
    assert _delta(before, after, taken_in, tracker="github", status="queued") == 2
    assert _delta(before, after, taken_in, tracker="github", status="duplicate") == 1
    assert (
        _delta(before, after, "sopguard_deliveries_rejected_total", tracker="github", reason="signature") == 1
    )
    processing = "sopguard_delivery_processing_seconds_count"
    assert _delta(before, after, processing, tracker="github", outcome="processed") == 1
    assert _delta(before, after, processing, tracker="github", outcome="failed") == 1
    assert _value(after, "sopguard_deliveries_failed") == 1  # read from the inbox at the scrape
    assert _value(after, "sopguard_queue_depth") == 0
    assert _value(after, "sopguard_inbox_up") == 1
    posted = [c for c in github.calls() if c == "POST /repos/Codertocat/Hello-World/issues/1/comments"]
    comments = "sopguard_tracker_calls_total"
    assert posted and _delta(
        before,
        after,
        comments,
        tracker="github",
        method="POST",
        endpoint="/repos/{owner}/{repo}/issues/{id}/comments",
        status="201",
    ) == len(posted)
    every_call = sum(v - before.get(k, 0) for k, v in after.items() if k[0] == comments)
    assert every_call == len(github.requests()) - calls_before
    applied = _delta(
        before, after, "sopguard_actions_total", tracker="github", kind="post_comment", outcome="applied"
    )
    assert applied >= 1


def test_sla_notices_and_tracker_retries_are_counted(tmp_path: Path, github: FakeGithub) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    client = app.test_client()
    before = _scrape(client)
    github.fail("POST", "/issues/1/comments", (502, {}, "{}"))  # the warning gets in at the second try

    warned = sweep(services_of(app), MONDAY_10 + dt.timedelta(minutes=11, seconds=15))
    breached = sweep(services_of(app), MONDAY_10 + dt.timedelta(minutes=15))
    after = _scrape(client)

    assert (warned.notices, breached.notices) == (1, 1)
    assert _delta(before, after, "sopguard_sla_notices_total", tracker="github", kind="warning") == 1
    assert _delta(before, after, "sopguard_sla_notices_total", tracker="github", kind="breach") == 1
    assert _delta(before, after, "sopguard_tracker_retries_total", tracker="github") == 1
    comments = {
        "tracker": "github",
        "method": "POST",
        "endpoint": "/repos/{owner}/{repo}/issues/{id}/comments",
    }
    assert _delta(before, after, "sopguard_tracker_calls_total", **comments, status="502") == 1
    assert _delta(before, after, "sopguard_tracker_calls_total", **comments, status="201") == 2


def test_a_notice_whose_comment_lands_on_a_retry_is_counted_once_when_it_lands(
    tmp_path: Path, github: FakeGithub
) -> None:
    app = _open_github(tmp_path, github, MONDAY_10, "Business outage", "High")
    client, services = app.test_client(), services_of(app)
    sweep(services, MONDAY_10 + dt.timedelta(minutes=11, seconds=15))  # the warning
    before = _scrape(client)
    refused = (422, {"Content-Type": "application/json"}, '{"message": "Validation Failed"}')
    github.fail("POST", "/issues/1/comments", refused)  # the breach's comment; its label goes on

    breached = sweep(services, MONDAY_10 + dt.timedelta(minutes=15))
    retried = sweep(services, MONDAY_10 + dt.timedelta(minutes=16))
    after = _scrape(client)

    assert (breached.notices, retried.notices) == (0, 1)
    assert _delta(before, after, "sopguard_sla_notices_total", tracker="github", kind="breach") == 1
    assert _delta(before, after, "sopguard_sla_notices_total", tracker="github", kind="warning") == 0
    comments = {"tracker": "github", "kind": "post_comment"}
    assert _delta(before, after, "sopguard_actions_total", **comments, outcome="failed") == 1
    assert _delta(before, after, "sopguard_actions_total", **comments, outcome="applied") == 1
    labels = {"tracker": "github", "kind": "change_labels", "outcome": "applied"}
    assert _delta(before, after, "sopguard_actions_total", **labels) == 1


def test_an_endpoint_is_a_route_template_whatever_the_names_and_numbers() -> None:
    assert (
        endpoint("/repos/acme/web/issues/17/comments?per_page=100")
        == "/repos/{owner}/{repo}/issues/{id}/comments"
    )
    assert (
        endpoint("/repos/issues/comments/issues/3/labels/bug")
        == "/repos/{owner}/{repo}/issues/{id}/labels/{name}"
    )
    assert endpoint("/api/v3/repos/a/b/issues/1") == "/repos/{owner}/{repo}/issues/{id}"
    assert endpoint("/app/installations/42/access_tokens") == "/app/installations/{id}/access_tokens"
    assert endpoint("/jira/rest/api/2/issue/PROJ-7/properties/sopguard.state") == (
        "/rest/api/2/issue/{key}/properties/{key}"
    )
    assert endpoint("/rest/api/3/issue/PROJ-7/comment/10001") == "/rest/api/3/issue/{key}/comment/{id}"
    assert endpoint("/rest/api/2/issue/bulk") == "/rest/api/2/issue/bulk"


def test_actions_are_counted_by_kind_and_a_bounded_outcome() -> None:
    from policies.models import PostComment

    assert action_kind(PostComment("confirm-receipt", "receipt", "hello")) == "post_comment"
    assert [action_outcome(o) for o in ("applied (3 created)", "skipped: done", "failed: 422", "odd")] == [
        "applied",
        "skipped",
        "failed",
        "other",
    ]


def test_gunicorn_processes_and_a_worker_process_add_up_to_one_count(tmp_path: Path) -> None:
    """Two gunicorn workers take the deliveries, a separate `sopguard worker` processes them; any
    worker's `/metrics` shows all of it (one metrics directory in the data directory)."""
    with FakeGithubServer() as fake:
        fake.put_issue("Codertocat/Hello-World", 1, labels=[])
        env = _environment(
            tmp_path,
            SOPGUARD_TRACKERS="github",
            GITHUB_WEBHOOK_SECRET=GITHUB_SECRET,
            GITHUB_TOKEN="test-token-0123456789",
            GITHUB_API_URL=fake.url,
            SOPGUARD_WEB_WORKERS="2",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with _serving("app:create_app()", env, "/healthz") as port:
            for number in range(4):
                body = json.dumps(_opened()).encode()
                answer = _request(
                    port, "POST", "/webhooks/github", body, github_headers(body, "issues", f"g-{number}")
                )
                assert answer[0] == 202, answer
            forged = _request(
                port, "POST", "/webhooks/github", b"{}", github_headers(b"{}", "issues", "x", "bad")
            )
            assert forged[0] == 401
            drained = subprocess.run(
                [sys.executable, "-c", "from cli import main; main()", "worker", "--drain"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                timeout=120,
            )
            assert drained.returncode == 0, drained.stderr.decode()
            scrapes = [_samples(_get(port, "/metrics")[2].decode()) for _ in range(6)]
        answered = len(fake.calls())
    assert (tmp_path / "var" / "metrics").is_dir()
    for samples in scrapes:  # whichever gunicorn worker answered
        assert _value(samples, "sopguard_deliveries_received_total", tracker="github", status="accepted") == 4
        assert _value(samples, "sopguard_deliveries_taken_in_total", tracker="github", status="queued") == 4
        assert (
            _value(samples, "sopguard_deliveries_rejected_total", tracker="github", reason="signature") == 1
        )
        processed = "sopguard_delivery_processing_seconds_count"
        assert _value(samples, processed, tracker="github", outcome="processed") == 4
        calls = sum(v for (name, _), v in samples.items() if name == "sopguard_tracker_calls_total")
        assert calls == answered
        assert 0 < _value(samples, "sopguard_tracker_rate_limit_remaining", tracker="github") < 5000
        assert _value(samples, "sopguard_queue_depth") == 0


# --- logs ----------------------------------------------------------------------------------------


def test_each_json_log_line_of_a_delivery_names_it_and_no_secret(
    sopguard: Service, github: FakeGithub, restored_logging: None
) -> None:
    output = io.StringIO()
    secrets = Settings(
        log_format="json",
        log_level="DEBUG",
        github_webhook_secret=GITHUB_SECRET,
        jira_webhook_secret=JIRA_SECRET,
        github_token="test-token",
    )
    configure_logging(secrets, stream=output)
    body = json.dumps(_opened()).encode()
    answer = sopguard.app.test_client().post(
        "/webhooks/github", data=body, headers=github_headers(body, "issues", "log-1")
    )
    assert answer.status_code == 202
    start = output.tell()
    sopguard.deliver(_opened(), "log-1")  # a duplicate, dropped as it is taken in; the first runs now
    lines = [json.loads(line) for line in output.getvalue()[start:].splitlines()]

    assert len(lines) >= 3, lines  # PyGithub's requests at DEBUG, and our own summary
    assert {line["delivery"] for line in lines} == {"log-1"}
    assert {line["issue"] for line in lines} == {"github:Codertocat/Hello-World#1"}
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    everything = output.getvalue()
    for secret in (GITHUB_SECRET, JIRA_SECRET, "test-token"):
        assert secret not in everything


def test_secrets_and_credentials_are_redacted_even_in_a_traceback(restored_logging: None) -> None:
    output = io.StringIO()
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAverysecretkeymaterial\n-----END RSA PRIVATE KEY-----"
    secret, password = 'quote"and\\slash-secret', "db-password-1"
    settings = Settings(
        log_format="json",
        github_webhook_secret=secret,
        github_app_private_key=key,
        database_url=f"postgresql+psycopg://sopguard:{password}@db/sopguard",
    )
    configure_logging(settings, stream=output)
    log = logging.getLogger("tests.redaction")
    log.warning("headers %s", {"Authorization": "Bearer abcdef123456", "Accept": "json"})
    log.warning("token ghs_16C7e42F292c6912E7710c838347Ae178B4a and key %s", key)
    try:
        raise RuntimeError(f"could not connect with {password} and {secret}")
    except RuntimeError:
        log.exception("failed")
    text = output.getvalue()

    for secret in ("abcdef123456", "ghs_16C7e42F", "verysecretkeymaterial", "db-password-1", "slash-secret"):
        assert secret not in text
    assert text.count(REDACTED) >= 6
    assert all(json.loads(line) for line in text.splitlines())


def test_the_report_token_and_a_key_file_are_redacted(restored_logging: None, tmp_path: Path) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEfilebasedkeymaterial0123\n-----END RSA PRIVATE KEY-----\n"
    )
    output = io.StringIO()
    settings = Settings(
        log_format="json", report_token="report-token-4711", github_app_private_key_path=key_file
    )
    configure_logging(settings, stream=output)
    logging.getLogger("tests.redaction").warning(
        "opened with report-token-4711, key MIIEfilebasedkeymaterial0123"
    )
    text = output.getvalue()
    assert "report-token-4711" not in text and "MIIEfilebasedkeymaterial0123" not in text
    assert text.count(REDACTED) == 2


def test_text_logs_for_a_terminal_carry_the_delivery_at_the_end(restored_logging: None) -> None:
    output = io.StringIO()
    configure_logging(Settings(log_format="text"), stream=output)
    with delivery_context("d-9", "jira:PROJ-7"):
        logging.getLogger("tests.text").warning("acting")
    logging.getLogger("tests.text").warning("idle")
    first, second = output.getvalue().splitlines()
    assert first.endswith("tests.text: acting [delivery=d-9 issue=jira:PROJ-7]")
    assert second.endswith("tests.text: idle")


def test_a_typo_in_the_log_level_is_one_line_naming_the_levels(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["worker", "--drain"], env={"SOPGUARD_LOG_LEVEL": "verbose", "SOPGUARD_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert "SOPGUARD_LOG_LEVEL='verbose'" in result.output
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in result.output


def test_a_typo_in_the_log_format_names_the_formats() -> None:
    with pytest.raises(ValueError, match="'json' or 'text'"):
        Settings(log_format="yaml")


# --- health --------------------------------------------------------------------------------------


def test_healthz_says_alive_and_readyz_what_waits_and_what_failed(
    sopguard: Service, github: FakeGithub
) -> None:
    client = sopguard.app.test_client()
    assert client.get("/healthz").get_json()["status"] == "alive"
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["checks"] == {"database": "ok", "queue": "ok", "policy": "ok"}
    assert (ready.get_json()["status"], ready.get_json()["pending"]) == ("ok", 0)

    services = services_of(sopguard.app)
    broken = POLICY.messages.templates | {"receipt": Text(en="Received as {{ levle }}.")}
    services.policy = POLICY.model_copy(update={"messages": Messages(templates=broken)})
    sopguard.deliver(_opened(), "h-1")
    degraded = client.get("/readyz")

    assert degraded.status_code == 200
    health = degraded.get_json()
    assert (health["status"], health["failed"]) == ("degraded", 1)
    assert health["oldest_failed_age_seconds"] >= 0 and "sopguard retry" in health["hint"]


def test_readyz_is_degraded_by_a_delivery_left_unfinished_past_the_retry_horizon(
    app: Flask, client: FlaskClient
) -> None:
    body = fixture_bytes("github", "issues__opened.json")
    hours_ago = utc_now() - dt.timedelta(hours=2)
    intake: Intake = app.extensions["sopguard"]
    intake.store.inbox.put("github", "old-1", "issues", "github:Codertocat/Hello-World#1", body, hours_ago)

    ready = client.get("/readyz").get_json()

    assert (ready["status"], ready["pending"], ready["failed"]) == ("degraded", 1, 0)
    assert ready["oldest_pending_age_seconds"] >= 7200 and "sopguard worker" in ready["stuck"]


def test_readyz_says_the_database_is_down_with_503_in_json(
    tmp_path: Path, postgres_url: str, restored_logging: None
) -> None:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None  # the postgres_url fixture found it
    with running_postgres(bin_dir) as server:
        server.create_database("ready")
        settings = Settings(
            data_dir=tmp_path,
            database_url=server.url("ready"),
            github_webhook_secret=GITHUB_SECRET,
            jira_webhook_secret=JIRA_SECRET,
        )
        client = create_app(settings).test_client()
        assert client.get("/readyz").status_code == 200
    down = client.get("/readyz")  # the server is stopped

    assert down.status_code == 503 and down.is_json
    body = down.get_json()
    assert body["status"] == "down" and "database" in body["error"]
    assert body["checks"]["database"].startswith("unreachable: ")
    assert body["checks"]["policy"] == "ok"
    assert client.get("/healthz").status_code == 200  # alive all the same
    scrape = client.get("/metrics")
    assert (
        scrape.status_code == 200
        and _value(_samples(scrape.get_data(as_text=True)), "sopguard_inbox_up") == 0
    )


def test_readyz_says_the_queue_is_down_when_redis_is(tmp_path: Path, redis_url: str) -> None:
    binary = redis_binary()
    assert binary is not None
    with running_redis(binary) as server:
        settings = Settings(
            data_dir=tmp_path,
            queue_url=server.url,
            github_webhook_secret=GITHUB_SECRET,
            jira_webhook_secret=JIRA_SECRET,
        )
        client = create_app(settings).test_client()
        assert client.get("/readyz").get_json()["checks"]["queue"] == "ok"
    down = client.get("/readyz")

    assert down.status_code == 503
    assert down.get_json()["checks"]["database"] == "ok"
    assert down.get_json()["checks"]["queue"].startswith("unreachable: ")
    assert "queue" in down.get_json()["error"]


def test_readyz_reports_a_policy_with_problems(tmp_path: Path) -> None:
    policy = tmp_path / "sop.yaml"
    policy.write_text("version: 1\nworkflow: {}\n", encoding="utf-8")
    settings = Settings(
        data_dir=tmp_path, policy=policy, github_webhook_secret=GITHUB_SECRET, jira_webhook_secret=JIRA_SECRET
    )
    answer = create_app(settings).test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.get_json()["checks"]["policy"].startswith("has problems")


def test_the_body_limit_and_the_door_count_too_large_deliveries(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        max_body_bytes=1024,
        github_webhook_secret=GITHUB_SECRET,
        jira_webhook_secret=JIRA_SECRET,
    )
    client = create_app(settings).test_client()
    before = _scrape(client)
    body = fixture_bytes("github", "issues__opened.json")
    assert (
        client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "big")).status_code
        == 413
    )
    after = _scrape(client)
    assert (
        _delta(before, after, "sopguard_deliveries_rejected_total", tracker="github", reason="too_large") == 1
    )

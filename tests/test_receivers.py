"""HTTP intake through the Flask test client: every recorded payload replayed, signatures, malformed
bodies, duplicates, a failing queue, the startup secret check, health, and a queued delivery's audit."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import InsecureConfiguration, create_app
from config.settings import Settings
from runtime.services import utc_now
from runtime.store.inbox import Inbox
from tests.conftest import (
    FIXTURES,
    GITHUB_SECRET,
    JIRA_SECRET,
    drain,
    fixture_bytes,
    fixture_json,
    github_event_name,
    github_headers,
    jira_headers,
)
from webhooks import signatures
from webhooks.receivers import Intake

Tracker = Literal["github", "jira"]

GITHUB_FIXTURES = sorted(path.name for path in (FIXTURES / "github").glob("*.json"))
JIRA_FIXTURES = sorted(path.name for path in (FIXTURES / "jira").glob("*.json"))

# What the service procedure acts on, written out here rather than read from the code under test.
GITHUB_HANDLED = {
    ("issues", action)
    for action in (
        "opened",
        "edited",
        "labeled",
        "unlabeled",
        "closed",
        "reopened",
        "assigned",
        "unassigned",
        "deleted",  # no longer followed
        "transferred",  # followed on in the new repository
    )
} | {("issue_comment", "created"), ("issue_comment", "edited")}
JIRA_HANDLED = {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted", "comment_created"}
# A REST API response recorded next to the webhooks: it names no `webhookEvent`, so it is refused.
JIRA_NOT_A_DELIVERY = {"jira-to-matrix__REST-GET-transitions-response.json"}

SIGNATURE_HEADER: dict[Tracker, str] = {"github": "X-Hub-Signature-256", "jira": "X-Hub-Signature"}
OPENED: dict[Tracker, str] = {
    "github": "issues__opened.json",
    "jira": "mattermost__webhook-issue-created.json",
}


def _intake(app: Flask) -> Intake:
    intake: Intake = app.extensions["sopguard"]
    return intake


def _signed(source: Tracker, body: bytes, delivery: str, secret: str | None = None) -> dict[str, str]:
    if source == "github":
        return github_headers(body, "issues", delivery, secret or GITHUB_SECRET)
    return jira_headers(body, delivery, secret or JIRA_SECRET)


def _json_object(size: int) -> bytes:
    """A JSON object of exactly `size` bytes (for the body-size limit)."""
    frame = b'{"zen": ""}'
    body = frame[:-2] + b"x" * (size - len(frame)) + frame[-2:]
    assert len(body) == size and isinstance(json.loads(body), dict)
    return body


# --- every recorded payload -------------------------------------------------------------------------


def test_the_recordings_cover_every_handled_github_event() -> None:
    recorded = {
        (github_event_name(name), str(fixture_json("github", name).get("action", "")))
        for name in GITHUB_FIXTURES
    }
    assert recorded >= GITHUB_HANDLED
    jira_events = {fixture_json("jira", name).get("webhookEvent") for name in JIRA_FIXTURES}
    assert jira_events >= JIRA_HANDLED | {"jira:issue_deleted"}


@pytest.mark.parametrize("name", GITHUB_FIXTURES)
def test_every_recorded_github_delivery_is_queued_or_ignored(
    app: Flask, client: FlaskClient, name: str
) -> None:
    intake = _intake(app)
    body = fixture_bytes("github", name)
    event = github_event_name(name)
    action = str(json.loads(body).get("action", ""))
    before = intake.store.inbox.health().pending

    response = client.post("/webhooks/github", data=body, headers=github_headers(body, event, delivery=name))

    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    if (event, action) in GITHUB_HANDLED:
        assert answer == {"status": "accepted", "delivery": name}
        assert intake.store.inbox.health().pending == before + 1
        assert intake.store.inbox.status("github", name) == "queued"
    else:
        assert answer["status"] == "ignored"
        # A known event is ignored on purpose and says which one; it is not reported as unknown.
        assert event in answer["reason"] and "unknown" not in answer["reason"]
        assert intake.store.inbox.health().pending == before
        assert intake.store.inbox.status("github", name) is None


@pytest.mark.parametrize("name", JIRA_FIXTURES)
def test_every_recorded_jira_delivery_is_queued_ignored_or_refused(
    app: Flask, client: FlaskClient, name: str
) -> None:
    intake = _intake(app)
    body = fixture_bytes("jira", name)
    webhook_event = str(json.loads(body).get("webhookEvent", ""))
    before = intake.store.inbox.health().pending

    response = client.post("/webhooks/jira", data=body, headers=jira_headers(body, delivery=name))

    answer = response.get_json()
    if name in JIRA_NOT_A_DELIVERY:
        assert response.status_code == 400 and "webhookEvent" in answer["error"]
        assert intake.store.inbox.health().pending == before
        assert intake.store.inbox.status("jira", name) is None
    elif webhook_event in JIRA_HANDLED:
        assert (response.status_code, answer) == (202, {"status": "accepted", "delivery": name})
        assert intake.store.inbox.health().pending == before + 1
        assert intake.store.inbox.status("jira", name) == "queued"
    else:
        assert response.status_code == 202 and answer["status"] == "ignored"
        assert webhook_event in answer["reason"]
        assert intake.store.inbox.health().pending == before
        assert intake.store.inbox.status("jira", name) is None


def test_a_comment_on_a_pull_request_is_ignored(app: Flask, client: FlaskClient) -> None:
    payload = fixture_json("github", "issue_comment__created.json")
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/1"}
    body = json.dumps(payload).encode()

    response = client.post("/webhooks/github", data=body, headers=github_headers(body, "issue_comment", "pr"))

    assert response.status_code == 202
    assert response.get_json()["status"] == "ignored" and "pull request" in response.get_json()["reason"]
    assert (
        _intake(app).store.inbox.health().pending == 0
        and _intake(app).store.inbox.status("github", "pr") is None
    )


# --- signatures ---------------------------------------------------------------------------------------


def test_github_official_signature_test_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signatures.sign("It's a Secret to Everybody", b"Hello, World!") == expected
    assert signatures.is_valid("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not signatures.is_valid("It's a Secret to Everybody", b"Hello, World?", expected)
    assert not signatures.is_valid(
        "It's a Secret to Everybody", b"Hello, World!", expected.removeprefix("sha256=")
    )
    assert not signatures.is_valid("It's a Secret to Everybody", b"Hello, World!", None)


REFUSALS = [
    "signed with another secret",
    "no signature header",
    "hex digest without the sha256= prefix",
    "empty sha256= signature",
    "body changed after signing",
]


@pytest.mark.parametrize("how", REFUSALS)
@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_delivery_without_a_valid_signature_is_refused_and_leaves_no_trace(
    app: Flask, client: FlaskClient, source: Tracker, how: str
) -> None:
    body = fixture_bytes(source, OPENED[source])
    headers = _signed(source, body, "refused-1")
    header = SIGNATURE_HEADER[source]
    if how == "signed with another secret":
        headers = _signed(source, body, "refused-1", secret="somebody else's secret")
    elif how == "no signature header":
        del headers[header]
    elif how == "hex digest without the sha256= prefix":
        headers[header] = headers[header].removeprefix("sha256=")
    elif how == "empty sha256= signature":
        headers[header] = "sha256="
    else:
        body += b"\n"  # still the same JSON, but not the bytes that were signed

    response = client.post(f"/webhooks/{source}", data=body, headers=headers)

    assert response.status_code == 401
    assert header in response.get_json()["error"]
    assert _intake(app).store.inbox.status(source, "refused-1") is None
    assert _intake(app).store.inbox.health().pending == 0


def test_a_non_ascii_signature_header_is_refused_not_a_server_error(app: Flask, client: FlaskClient) -> None:
    body = fixture_bytes("github", "issues__opened.json")
    headers = {**github_headers(body, "issues", "accented"), "X-Hub-Signature-256": "sha256=\u00e9"}

    response = client.post("/webhooks/github", data=body, headers=headers)

    assert response.status_code == 401


# --- malformed and unexpected deliveries -------------------------------------------------------------


def _without(source: Tracker, name: str, key: str) -> bytes:
    payload = fixture_json(source, name)
    del payload[key]
    return json.dumps(payload).encode()


BAD_BODIES: list[tuple[Tracker, bytes, str]] = [
    ("github", b"this is not JSON", "not JSON"),
    ("jira", b"<xml>not JSON</xml>", "not JSON"),
    ("github", b'[{"action": "opened"}]', "JSON object"),
    ("jira", b'"jira:issue_created"', "JSON object"),
    ("github", _without("github", "issues__opened.json", "issue"), "'issue'"),
    ("github", _without("github", "issues__opened.json", "repository"), "'repository'"),
    ("jira", _without("jira", "mattermost__webhook-issue-created.json", "issue"), "'issue'"),
    ("jira", _without("jira", "mattermost__webhook-cloud-comment-created.json", "comment"), "'comment'"),
]


@pytest.mark.parametrize(("source", "body", "complaint"), BAD_BODIES)
def test_a_signed_but_malformed_delivery_is_a_400_and_is_not_queued(
    app: Flask, client: FlaskClient, source: Tracker, body: bytes, complaint: str
) -> None:
    response = client.post(f"/webhooks/{source}", data=body, headers=_signed(source, body, "bad-1"))

    assert response.status_code == 400
    assert complaint in response.get_json()["error"]
    assert _intake(app).store.inbox.status(source, "bad-1") is None
    assert _intake(app).store.inbox.health().pending == 0


def test_a_deeply_nested_body_is_a_400(client: FlaskClient) -> None:
    body = b"[" * 100_000 + b"]" * 100_000

    response = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "deep"))

    assert response.status_code == 400


def test_a_body_beyond_the_size_limit_is_a_413_and_the_limit_itself_is_accepted(tmp_path: Path) -> None:
    small = Settings(
        data_dir=tmp_path / "var",
        github_webhook_secret=GITHUB_SECRET,
        jira_webhook_secret=JIRA_SECRET,
        max_body_bytes=1024,
    )
    app = create_app(small)
    client = app.test_client()
    opened = fixture_bytes("github", "issues__opened.json")
    assert len(opened) > 1024

    too_big = client.post("/webhooks/github", data=opened, headers=github_headers(opened, "issues", "big"))
    at_limit = _json_object(1024)
    one_over = _json_object(1025)
    fits = client.post("/webhooks/github", data=at_limit, headers=github_headers(at_limit, "ping", "fits"))
    over = client.post("/webhooks/github", data=one_over, headers=github_headers(one_over, "ping", "over"))

    assert too_big.status_code == 413
    assert "too large" in too_big.get_json()["error"].lower()
    assert (
        _intake(app).store.inbox.status("github", "big") is None
        and _intake(app).store.inbox.health().pending == 0
    )
    assert fits.status_code == 202 and fits.get_json()["status"] == "ignored"
    assert over.status_code == 413


def test_an_unknown_github_event_is_acknowledged_and_named(app: Flask, client: FlaskClient) -> None:
    body = fixture_bytes("github", "issues__opened.json")

    response = client.post("/webhooks/github", data=body, headers=github_headers(body, "discussion", "new"))

    assert response.status_code == 202
    answer = response.get_json()
    assert (
        answer["status"] == "ignored" and "discussion" in answer["reason"] and "unknown" in answer["reason"]
    )
    assert (
        _intake(app).store.inbox.health().pending == 0
        and _intake(app).store.inbox.status("github", "new") is None
    )


def test_an_unknown_tracker_path_is_a_404(app: Flask, client: FlaskClient) -> None:
    body = fixture_bytes("github", "issues__opened.json")

    response = client.post("/webhooks/gitlab", data=body, headers=github_headers(body, "issues", "gl"))

    assert response.status_code == 404 and "gitlab" in response.get_json()["error"]
    assert _intake(app).store.inbox.health().pending == 0


def test_a_disabled_tracker_is_a_404_while_the_enabled_one_works(tmp_path: Path) -> None:
    # No Jira secret is needed once Jira is disabled: the startup check only looks at enabled trackers.
    app = create_app(
        Settings(data_dir=tmp_path / "var", trackers=["github"], github_webhook_secret=GITHUB_SECRET)
    )
    client = app.test_client()
    jira_body = fixture_bytes("jira", OPENED["jira"])
    github_body = fixture_bytes("github", OPENED["github"])

    jira = client.post("/webhooks/jira", data=jira_body, headers=jira_headers(jira_body, "j-1"))
    github = client.post(
        "/webhooks/github", data=github_body, headers=github_headers(github_body, "issues", "g-1")
    )

    assert jira.status_code == 404 and "jira" in jira.get_json()["error"]
    assert _intake(app).store.inbox.status("jira", "j-1") is None
    assert github.status_code == 202 and _intake(app).store.inbox.health().pending == 1


@pytest.mark.parametrize("source", ["github", "jira"])
def test_a_delivery_id_the_inbox_cannot_keep_is_a_400_not_a_503_for_ever(
    tmp_path: Path, fresh_postgres_url: str, source: Tracker
) -> None:
    """Found by tests/test_endpoint_fuzz.py: PostgreSQL refused a 400-character id, or one with a
    NUL, on every redelivery, and the door answered 503 "please redeliver"; the longest id it
    keeps is accepted."""
    app = create_app(
        Settings(
            data_dir=tmp_path / "var",
            database_url=fresh_postgres_url,
            github_webhook_secret=GITHUB_SECRET,
            jira_webhook_secret=JIRA_SECRET,
        )
    )
    client = app.test_client()
    body = fixture_bytes(source, OPENED[source])

    too_long = client.post(f"/webhooks/{source}", data=body, headers=_signed(source, body, "d" * 256))
    with_nul = client.post(f"/webhooks/{source}", data=body, headers=_signed(source, body, "d\x00-1"))
    longest = client.post(f"/webhooks/{source}", data=body, headers=_signed(source, body, "d" * 255))

    assert too_long.status_code == 400 and "longer than 255" in too_long.get_json()["error"]
    assert with_nul.status_code == 400 and "control character" in with_nul.get_json()["error"]
    assert (longest.status_code, longest.get_json()["status"]) == (202, "queued")
    assert _intake(app).store.inbox.health().pending == 1


# --- duplicates ---------------------------------------------------------------------------------------


def test_a_github_redelivery_is_accepted_and_queued_once(app: Flask, client: FlaskClient) -> None:
    """The door keeps what it is sent (one append to its spool); a delivery received before is
    dropped as the inbox takes the spool in."""
    body = fixture_bytes("github", "issues__opened.json")
    headers = github_headers(body, "issues", "72d3162e-cc78-11e3-81ab-4c9367dc0958")

    first = client.post("/webhooks/github", data=body, headers=headers)
    second = client.post("/webhooks/github", data=body, headers=headers)

    assert (first.status_code, first.get_json()["status"]) == (202, "accepted")
    assert (second.status_code, second.get_json()["status"]) == (202, "accepted")
    assert second.get_json()["delivery"] == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert _intake(app).store.inbox.health().pending == 1
    # The id decides, not the body: the same body under a new delivery id is a new delivery.
    other = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "another-id"))
    assert other.status_code == 202 and _intake(app).store.inbox.health().pending == 2


def test_a_redelivery_of_a_failed_delivery_is_accepted_and_queued_again(
    app: Flask, client: FlaskClient
) -> None:
    """A delivery that ended `failed` can run again: GitHub's redelivery (same id) is not a duplicate."""
    intake = _intake(app)
    body = fixture_bytes("github", "issues__opened.json")
    headers = github_headers(body, "issues", "half-1")
    assert client.post("/webhooks/github", data=body, headers=headers).status_code == 202
    (taken,) = [intake.store.inbox.take("test", utc_now(), dt.timedelta(seconds=30))]
    assert taken is not None
    intake.store.inbox.finish(taken.seq, "failed", utc_now(), "the tracker refused it")

    redelivered = client.post("/webhooks/github", data=body, headers=headers)

    assert redelivered.status_code == 202 and redelivered.get_json()["status"] == "accepted"
    assert (
        intake.store.inbox.health().pending == 1 and intake.store.inbox.status("github", "half-1") == "queued"
    )


def test_a_jira_redelivery_with_the_same_identifier_is_processed_once(
    app: Flask, client: FlaskClient
) -> None:
    body = fixture_bytes("jira", "mattermost__webhook-issue-updated-started-working.json")
    headers = jira_headers(body, "b1d3ab7e-4b49-4c5e-9f0c-6b3d5b7a0c11")

    answers = [client.post("/webhooks/jira", data=body, headers=headers) for _ in range(2)]

    assert [(a.status_code, a.get_json()["status"]) for a in answers] == [
        (202, "accepted"),
        (202, "accepted"),
    ]
    assert drain(app) == 1
    assert _intake(app).store.inbox.status("jira", "b1d3ab7e-4b49-4c5e-9f0c-6b3d5b7a0c11") == "processed"


def test_a_jira_delivery_without_an_identifier_is_identified_by_its_body(
    app: Flask, client: FlaskClient
) -> None:
    body = fixture_bytes("jira", "mattermost__webhook-server-issue-updated-resolved.json")
    changed = json.loads(body)
    changed["timestamp"] = changed.get("timestamp", 0) + 1
    other_body = json.dumps(changed).encode()

    first = client.post("/webhooks/jira", data=body, headers=jira_headers(body, delivery=None))
    again = client.post("/webhooks/jira", data=body, headers=jira_headers(body, delivery=None))
    other = client.post("/webhooks/jira", data=other_body, headers=jira_headers(other_body, delivery=None))

    assert (first.status_code, first.get_json()["status"]) == (202, "accepted")
    assert (again.status_code, again.get_json()["status"]) == (202, "accepted")
    assert (other.status_code, other.get_json()["status"]) == (202, "accepted")
    delivery = first.get_json()["delivery"]
    assert hashlib.sha256(body).hexdigest() in delivery and again.get_json()["delivery"] == delivery
    assert other.get_json()["delivery"] != delivery
    assert _intake(app).store.inbox.status("jira", delivery) == "queued"
    assert _intake(app).store.inbox.health().pending == 2


def test_the_same_delivery_id_on_two_trackers_is_two_deliveries(app: Flask, client: FlaskClient) -> None:
    github_body = fixture_bytes("github", OPENED["github"])
    jira_body = fixture_bytes("jira", OPENED["jira"])

    github = client.post(
        "/webhooks/github", data=github_body, headers=github_headers(github_body, "issues", "x")
    )
    jira = client.post("/webhooks/jira", data=jira_body, headers=jira_headers(jira_body, "x"))

    assert [github.get_json()["status"], jira.get_json()["status"]] == ["accepted", "accepted"]
    assert _intake(app).store.inbox.health().pending == 2


# --- a failing queue ---------------------------------------------------------------------------------


def test_when_the_spool_cannot_be_written_the_answer_is_503_and_a_redelivery_is_accepted_later(
    app: Flask, client: FlaskClient
) -> None:
    # A real failure of the door's storage, no patching: the spool directory is replaced by a
    # regular file, so no spool file can be created in it (root or not).
    inbox = _intake(app).store.inbox
    assert isinstance(inbox, Inbox) and inbox.spool_directory is not None
    spool = inbox.spool_directory
    shutil.rmtree(spool, ignore_errors=True)
    spool.write_text("not a directory")
    body = fixture_bytes("github", "issues__opened.json")
    headers = github_headers(body, "issues", "during-outage")

    refused = client.post("/webhooks/github", data=body, headers=headers)

    assert refused.status_code == 503, refused.get_json()
    assert "redeliver" in refused.get_json()["error"]

    spool.unlink()
    redelivered = client.post("/webhooks/github", data=body, headers=headers)

    assert (redelivered.status_code, redelivered.get_json()["status"]) == (202, "accepted")
    assert _intake(app).store.inbox.status("github", "during-outage") == "queued"
    assert _intake(app).store.inbox.health().pending == 1


# --- startup ------------------------------------------------------------------------------------------


def test_the_app_refuses_to_start_without_secrets_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(InsecureConfiguration) as refused:
        create_app(Settings(data_dir=tmp_path / "var"))

    assert "GITHUB_WEBHOOK_SECRET and/or JIRA_WEBHOOK_SECRET" in str(refused.value)
    assert "--insecure-dev" in str(refused.value)
    assert not (tmp_path / "var").exists()


def test_one_secret_enables_its_tracker_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(tmp_path / "var"))
    client = create_app().test_client()
    body = fixture_bytes("github", OPENED["github"])

    github = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "one-1"))
    jira = client.post("/webhooks/jira", data=body, headers={"X-Atlassian-Webhook-Identifier": "one-2"})

    assert client.get("/healthz").get_json()["trackers"] == ["github"]
    assert (github.status_code, jira.status_code) == (202, 404)


@pytest.mark.parametrize(
    ("settings", "enabled"),
    [
        ({"jira_webhook_secret": JIRA_SECRET}, ["jira"]),
        ({"github_token": "t", "jira_webhook_secret": JIRA_SECRET}, ["github", "jira"]),
        ({"jira_url": "https://acme.atlassian.net", "jira_pat": "p"}, ["jira"]),
        ({"github_app_id": "1", "github_app_private_key": "PEM"}, ["github"]),
        ({"jira_url": "https://acme.atlassian.net"}, ["github", "jira"]),  # no credentials: the trial
        ({}, ["github", "jira"]),
    ],
)
def test_without_a_tracker_list_each_tracker_is_enabled_by_its_secret_or_credentials(
    settings: dict[str, str], enabled: list[str]
) -> None:
    assert Settings(**settings).trackers == enabled  # type: ignore[arg-type]


def test_a_listed_tracker_without_a_secret_refuses_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOPGUARD_TRACKERS", "github,jira")
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    with pytest.raises(InsecureConfiguration) as refused:
        create_app(Settings(data_dir=tmp_path / "var"))

    assert "jira is enabled (SOPGUARD_TRACKERS names it): set JIRA_WEBHOOK_SECRET" in str(refused.value)
    assert "GITHUB_WEBHOOK_SECRET" not in str(refused.value)


def test_a_tracker_with_credentials_but_no_secret_refuses_naming_the_variable(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "var",
        github_webhook_secret=GITHUB_SECRET,
        jira_url="https://a.example",
        jira_pat="p",
    )
    with pytest.raises(InsecureConfiguration) as refused:
        create_app(settings)

    assert "jira is enabled (its credentials are set): set JIRA_WEBHOOK_SECRET" in str(refused.value)


def test_the_secrets_are_read_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", GITHUB_SECRET)
    monkeypatch.setenv("JIRA_WEBHOOK_SECRET", JIRA_SECRET)
    monkeypatch.setenv("SOPGUARD_DATA_DIR", str(tmp_path / "var"))
    client = create_app().test_client()
    body = fixture_bytes("jira", OPENED["jira"])

    signed = client.post("/webhooks/jira", data=body, headers=jira_headers(body, "env-1"))
    unsigned = client.post("/webhooks/jira", data=body, headers={"X-Atlassian-Webhook-Identifier": "env-2"})

    assert (signed.status_code, unsigned.status_code) == (202, 401)


def test_insecure_dev_accepts_unsigned_only_where_there_is_no_secret(tmp_path: Path) -> None:
    app = create_app(
        Settings(
            data_dir=tmp_path / "var",
            trackers=["github", "jira"],
            github_webhook_secret=GITHUB_SECRET,
            insecure_dev=True,
        )
    )
    client = app.test_client()
    jira_body = fixture_bytes("jira", OPENED["jira"])
    github_body = fixture_bytes("github", OPENED["github"])
    unsigned_github = {"X-GitHub-Event": "issues", "X-GitHub-Delivery": "gh-unsigned"}

    jira = client.post(
        "/webhooks/jira", data=jira_body, headers={"X-Atlassian-Webhook-Identifier": "j-unsigned"}
    )
    github = client.post("/webhooks/github", data=github_body, headers=unsigned_github)
    signed = client.post(
        "/webhooks/github", data=github_body, headers=github_headers(github_body, "issues", "gh")
    )

    assert (jira.status_code, jira.get_json()["status"]) == (202, "accepted")
    assert _intake(app).store.inbox.status("jira", "j-unsigned") == "queued"
    assert github.status_code == 401
    assert _intake(app).store.inbox.status("github", "gh-unsigned") is None
    assert (signed.status_code, signed.get_json()["status"]) == (202, "accepted")
    assert _intake(app).store.inbox.health().pending == 2


# --- health and the worker ----------------------------------------------------------------------------


def test_readyz_reports_ok_and_the_pending_count(app: Flask, client: FlaskClient) -> None:
    empty = client.get("/readyz")
    body = fixture_bytes("github", "issues__opened.json")
    client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "h-1"))
    one = client.get("/readyz")
    drain(app)
    drained = client.get("/readyz")

    assert empty.status_code == 200
    health: dict[str, Any] = empty.get_json()
    assert health["status"] == "ok" and health["pending"] == 0
    assert set(health["trackers"]) == {"github", "jira"}
    assert (one.get_json()["pending"], drained.get_json()["pending"]) == (1, 0)


def test_a_queued_opened_issue_is_audited_with_the_intake_rule_after_the_worker_runs(
    app: Flask, client: FlaskClient
) -> None:
    body = fixture_bytes("github", "issues__opened.json")
    client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "opened-1"))

    assert drain(app) == 1

    entries = [e for e in _intake(app).store.audit.entries() if e.delivery_id == "opened-1"]
    intake_entry = next(e for e in entries if e.rule_id == "intake-required-fields")
    assert (intake_entry.sop, intake_entry.passed) == ("S1.2", False)
    assert intake_entry.outcome == "recorded (dry run)"
    assert intake_entry.issue == "Codertocat/Hello-World#1" and intake_entry.event == "issues.opened"
    assert {a["type"] for a in intake_entry.actions} >= {"PostComment", "ChangeLabels"}
    assert _intake(app).store.inbox.status("github", "opened-1") == "processed"
    assert _intake(app).store.inbox.health().pending == 0


def test_a_redelivery_of_a_delivery_failed_at_the_upgrade_names_its_issue(
    app: Flask, client: FlaskClient
) -> None:
    """Rows of the release before the inbox kept no issue; redelivered, one runs in its issue's line."""
    from sqlalchemy import insert, select

    from runtime.store.schema import deliveries

    store = _intake(app).store
    with store.engine.begin() as db:
        db.execute(
            insert(deliveries).values(
                key="github:old-1",
                source="github",
                delivery_id="old-1",
                event_name="issues",
                issue="",
                received_at=utc_now(),
                status="failed",
                attempts=0,
                error="queued before the upgrade to the new inbox",
            )
        )
    body = fixture_bytes("github", "issues__opened.json")

    answer = client.post("/webhooks/github", data=body, headers=github_headers(body, "issues", "old-1"))

    assert (answer.status_code, answer.get_json()["status"]) == (202, "accepted")
    assert isinstance(store.inbox, Inbox) and store.inbox.take_in() == 0  # not new: queued again
    with store.engine.connect() as db:
        issue = db.execute(select(deliveries.c.issue).where(deliveries.c.key == "github:old-1")).scalar_one()
    assert issue == "github:Codertocat/Hello-World#1"

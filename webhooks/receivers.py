"""HTTP in: verify, parse and keep, in one durable write. Nothing is decided here.

The raw body is kept as it came (no copy of the parsed payload), with the issue it is about, so that
work on one issue runs in the order received: on SQLite appended to this process's spool file and
de-duplicated as the consumers take it in (`accepted`), elsewhere written to the inbox, whose row
is the de-duplication record (`queued`, or `duplicate`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import orjson
from flask import Blueprint, Response, current_app, request
from sqlalchemy import String
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.datastructures import Headers

from config.settings import Settings
from connector.delivery import Delivery, fallback_delivery_id, parse_body
from connector.errors import BadPayload, Ignored
from connector.github import events as github_events
from connector.jira import events as jira_events
from policies.models import Source
from runtime.metrics import received, rejected
from runtime.services import utc_now
from runtime.store import Store
from runtime.store.schema import deliveries
from webhooks import signatures

log = logging.getLogger(__name__)

blueprint = Blueprint("webhooks", __name__)

# What the inbox keeps of a delivery id: a longer one could never be written (a 503 for ever).
LONGEST_DELIVERY_ID: int = cast(String, deliveries.c.delivery_id.type).length or 0


@dataclass(frozen=True)
class Intake:
    """What the receivers share, kept in `app.extensions["sopguard"]`."""

    settings: Settings
    store: Store


@dataclass(frozen=True)
class TrackerProtocol:
    """How one tracker signs, names and identifies its deliveries."""

    signature_header: str
    delivery_header: str
    event_name: Callable[[Headers, dict[str, Any]], str]
    classify: Callable[[str, dict[str, Any]], object]


PROTOCOLS: dict[Source, TrackerProtocol] = {
    "github": TrackerProtocol(
        signature_header="X-Hub-Signature-256",
        delivery_header="X-GitHub-Delivery",
        event_name=lambda headers, _: headers.get("X-GitHub-Event", ""),
        classify=github_events.classify,
    ),
    "jira": TrackerProtocol(
        signature_header="X-Hub-Signature",
        delivery_header="X-Atlassian-Webhook-Identifier",
        event_name=lambda _, payload: str(payload.get("webhookEvent", "")),
        classify=lambda _, payload: jira_events.classify(payload),
    ),
}


def _answer(code: int, /, **body: object) -> tuple[Response, int]:
    """A JSON answer, serialised by orjson straight into the response (the door's every answer:
    Flask's `jsonify` costs several times as much)."""
    return Response(orjson.dumps(body), mimetype="application/json"), code


def _refuse(tracker: str, reason: str, code: int, error: str) -> tuple[Response, int]:
    rejected(tracker, reason)
    return _answer(code, error=error)


def _intake() -> Intake:
    intake: Intake = current_app.extensions["sopguard"]
    return intake


@blueprint.post("/webhooks/<source>")
def receive(source: str) -> tuple[Response, int]:
    intake = _intake()
    if source not in PROTOCOLS or source not in intake.settings.trackers:
        return _answer(
            404, error=f"no webhook for '{source}' here (enabled: {', '.join(intake.settings.trackers)})"
        )
    tracker: Source = "github" if source == "github" else "jira"
    protocol = PROTOCOLS[tracker]
    body = request.get_data(cache=False)
    secret = intake.settings.secret_for(tracker)
    if secret and not signatures.is_valid(secret, body, request.headers.get(protocol.signature_header)):
        log.warning("%s delivery refused: missing or wrong %s", source, protocol.signature_header)
        return _refuse(tracker, "signature", 401, f"missing or invalid {protocol.signature_header} signature")
    try:
        payload = parse_body(body)
    except BadPayload as problem:
        return _refuse(tracker, "bad_payload", 400, str(problem))
    event_name = protocol.event_name(request.headers, payload)
    try:
        protocol.classify(event_name, payload)
    except Ignored as reason:
        received(tracker, "ignored")
        return _answer(202, status="ignored", reason=str(reason))
    except BadPayload as problem:
        return _refuse(tracker, "bad_payload", 400, str(problem))
    delivery_id = request.headers.get(protocol.delivery_header) or fallback_delivery_id(body)
    if flaw := _unkeepable(delivery_id):
        return _refuse(tracker, "bad_delivery_id", 400, f"{protocol.delivery_header} {flaw}")
    delivery = Delivery(tracker, delivery_id, event_name, payload)
    try:
        issue = delivery.issue_key()
    except BadPayload as problem:
        return _refuse(tracker, "bad_payload", 400, str(problem))
    return _enqueue(intake, delivery, issue, body)


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def _unkeepable(delivery_id: str) -> str | None:
    """Why the inbox could never keep this delivery id (so that every redelivery would get a 503):
    too long for its column, or a control character (PostgreSQL refuses NUL in text)."""
    if len(delivery_id) > LONGEST_DELIVERY_ID:
        return f"is longer than {LONGEST_DELIVERY_ID} characters"
    if _CONTROL_CHARACTER.search(delivery_id):
        return "contains a control character"
    return None


def _enqueue(intake: Intake, delivery: Delivery, issue: str, body: bytes) -> tuple[Response, int]:
    try:
        put = intake.store.inbox.accept(
            delivery.source, delivery.delivery_id, delivery.event_name, issue, body, utc_now()
        )
    except (OperationalError, InterfaceError, PoolTimeout, OSError) as error:  # the store, not the delivery
        log.error("could not keep delivery %s: %s: %s", delivery.delivery_id, type(error).__name__, error)
        return _refuse(
            delivery.source, "inbox_unavailable", 503, "the inbox is unavailable; please redeliver"
        )
    if put == "duplicate":
        received(delivery.source, "duplicate")
        return _answer(200, status="duplicate", delivery=delivery.delivery_id)
    received(delivery.source, put)
    return _answer(202, status=put, delivery=delivery.delivery_id)

"""GET /report: the report page (runtime/report_page.py) for the current data, read-only.

Off (404) unless SOPGUARD_REPORT_TOKEN is set; then the token opens it, as a bearer token
(`Authorization: Bearer TOKEN`) or as the password of HTTP basic auth (any user name), so a browser
asks for it. Filters are query parameters: `since`, `until` (YYYY-MM-DD), `scope`
(`github:OWNER/NAME`, `jira:KEY`) and `priority`; a value that cannot be used is a 400 that says why.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Flask, Response, abort, current_app, request

from config.loader import load_policy
from config.schema import Policy
from config.settings import Settings
from runtime.report_page import BadQuery, as_html, gather, issue_link, parse_query
from runtime.services import Services, utc_now
from runtime.store import Store

blueprint = Blueprint("report", __name__)

REALM = 'Basic realm="sopguard report", charset="UTF-8"'
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class ReportSource:
    """What the page reads, kept in `app.extensions["sopguard.report"]`."""

    settings: Settings
    store: Store
    policy: Callable[[], Policy]


def install(app: Flask, settings: Settings, store: Store, services: Services | None) -> None:
    """Register GET /report; it reads the policy the services hold (a reload included), else the
    policy file, once, on the first request."""
    app.extensions["sopguard.report"] = ReportSource(settings, store, _policy_of(settings, services))
    app.register_blueprint(blueprint)


def _policy_of(settings: Settings, services: Services | None) -> Callable[[], Policy]:
    if services is not None:
        return lambda: services.policy
    return functools.cache(lambda: load_policy(settings.policy))


def _authorized(token: str) -> bool:
    auth = request.authorization
    if auth is None:
        return False
    given = auth.password if auth.type == "basic" else auth.token if auth.type == "bearer" else None
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


@blueprint.get("/report")
def report() -> Response:
    source: ReportSource = current_app.extensions["sopguard.report"]
    token = source.settings.report_token
    if not token:
        abort(404)
    if not _authorized(token):
        return Response("the report needs its token", 401, {"WWW-Authenticate": REALM, **HEADERS})
    policy, now = source.policy(), utc_now()
    try:
        query = parse_query(request.args, policy, now.date())
    except BadQuery as error:
        abort(400, description=str(error))
    policy = query.policy(policy)
    page = as_html(
        gather(policy, source.store, query, now),
        policy,
        policy.locale,
        lambda ref: issue_link(ref, source.settings),
        query=query,
        scopes=source.store.ledger.scopes(),
    )
    return Response(page, 200, {"Content-Type": "text/html; charset=utf-8", **HEADERS})

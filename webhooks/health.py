"""Is it alive, is it ready, what has it done: `/healthz`, `/readyz` and `/metrics`.

- `GET /healthz`: liveness. The process answers; nothing else is read (a liveness probe that read
  the database would have a healthy process restarted for a database outage).
- `GET /readyz`: readiness. The database and the queue (the inbox, in the database or in Redis)
  answer, the policy is loaded; with what waits (`pending`, the oldest's age) and what needs a
  person (`failed`, the oldest's age). `ok` or `degraded` (failed deliveries; one unfinished for
  longer than the retry horizon: `stuck`; a changed policy file that was refused while the last
  valid policy stays in force: `error`, and `policy` with its `PATH:LINE:COLUMN` problems) with
  200; `down` with 503 and, per check, what is wrong. Always JSON.
- `GET /metrics`: the Prometheus text exposition (`runtime.metrics`).

Route only `/webhooks/*` from the internet to sopguard; these three are for the operator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from config.loader import PolicyError
from policies.calendar import holiday_warnings
from runtime import metrics
from runtime.policy_holder import PolicyHolder, shared
from runtime.services import Services, utc_now
from runtime.store.inbox import InboxHealth
from webhooks.receivers import Intake

blueprint = Blueprint("health", __name__)

OK = "ok"
FAILED_HINT = "sopguard audit --failed lists them; sopguard retry --all-failed runs them again"


def _intake() -> Intake:
    intake: Intake = current_app.extensions["sopguard"]
    return intake


@blueprint.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Alive: this process answers (`200` while it does). `degraded` when a changed policy file was
    refused, with its problems (the last valid policy stays in force). Readiness, and what waits or
    failed, is `/readyz`. Reads neither the database nor the policy file."""
    body: dict[str, object] = {"status": "alive", "trackers": _intake().settings.trackers}
    if refused := _refused_policy(_holder_in_hand()):
        body |= {"status": "degraded", **refused}
    return jsonify(body), 200


@blueprint.get("/readyz")
def readyz() -> tuple[Response, int]:
    intake = _intake()
    checks: dict[str, str] = {"database": _check(lambda: _ping(intake))}
    health: InboxHealth | None = None

    def read_inbox() -> None:
        nonlocal health
        health = intake.store.inbox.health()

    checks["queue"] = _check(read_inbox)
    checks["policy"] = _policy_check()
    body: dict[str, object] = {"trackers": intake.settings.trackers, "checks": checks}
    if any(result != OK for result in checks.values()):
        down = ", ".join(name for name, result in checks.items() if result != OK)
        return jsonify(status="down", error=f"not ready: {down}", **body), 503
    assert health is not None  # the queue check passed
    now = utc_now()
    body |= _inbox_summary(health, now)
    stuck = _stuck(health, now, dt.timedelta(seconds=intake.settings.retry_horizon))
    if stuck:
        body["stuck"] = stuck
    services = current_app.extensions.get("sopguard.services")
    if services is not None and (warnings := holiday_warnings(services.policy, now.date())):
        body["warnings"] = warnings  # the calendars' holiday data: a person should look, nothing is failing
    refused = _refused_policy(policy_holder())
    body |= refused
    return jsonify(status="degraded" if health.failed or stuck or refused else OK, **body), 200


@blueprint.get("/metrics")
def prometheus_metrics() -> Response:
    exposition, content_type = metrics.exposition(_intake().store.inbox, utc_now())
    return Response(exposition, content_type=content_type)


def _ping(intake: Intake) -> None:
    with intake.store.engine.connect() as db:
        db.execute(text("SELECT 1"))


def _check(probe: Callable[[], None]) -> str:
    """`ok`, or `unreachable: ` and the kind of error (never its text: it may hold a host or a user)."""
    try:
        probe()
    except Exception as error:
        return f"unreachable: {type(error).__name__}"
    return OK


def _holder_in_hand() -> PolicyHolder | None:
    """The holder `policy_holder` would give, if this app has one already (none is loaded here)."""
    services: Services | None = current_app.extensions.get("sopguard.services")
    if services is not None:
        return services.holder
    holder: PolicyHolder | None = current_app.extensions.get("sopguard.policy")
    return holder


def policy_holder() -> PolicyHolder | None:
    """The holder of the policy this app acts on: its services' (`serve`; `None` for services built
    without one), else one of its own (gunicorn's web workers: inherited from the master, or read
    from `SOPGUARD_POLICY`), which looks at the file again whenever it is asked. Raises
    `PolicyError` while the file has never loaded."""
    services: Services | None = current_app.extensions.get("sopguard.services")
    if services is not None:
        return services.holder
    holder = _holder_in_hand()
    if holder is None:
        path = _intake().settings.policy
        holder = shared(path) or PolicyHolder.load(path)  # raises PolicyError
        current_app.extensions["sopguard.policy"] = holder
    holder.check()
    return holder


def _policy_check() -> str:
    """`ok` when a policy is in force (a refused reload is `degraded`, not `down`), else why not."""
    try:
        policy_holder()
    except PolicyError as error:
        return f"has problems ({len(error.problems)}): sopguard validate lists them"
    except OSError as error:
        return f"cannot be read: {type(error).__name__}"
    return OK


def _refused_policy(holder: PolicyHolder | None) -> dict[str, object]:
    """What `/readyz` says of a policy file that was changed and refused; nothing when none was."""
    refusal = holder.refusal if holder is not None else None
    if holder is None or refusal is None:
        return {}
    return {
        "error": refusal.summary(),
        "policy": {
            "refused_at": refusal.at.isoformat(),
            "problems": list(refusal.problems),
            "in_force_since": holder.loaded_at.isoformat(),
        },
    }


def _stuck(health: InboxHealth, now: dt.datetime, horizon: dt.timedelta) -> str | None:
    """A delivery unfinished for longer than the retry horizon should have ended by now (processed,
    or failed after its last retry): no consumer runs, or none gets to it."""
    if health.oldest_pending is None or now - health.oldest_pending <= horizon:
        return None
    return (
        f"a delivery has waited longer than SOPGUARD_RETRY_HORIZON ({horizon}): "
        "is a sopguard worker running on this database (and queue)?"
    )


def _inbox_summary(health: InboxHealth, now: dt.datetime) -> dict[str, object]:
    body: dict[str, object] = {"pending": health.pending, "failed": health.failed}
    if health.oldest_pending is not None:
        body["oldest_pending_age_seconds"] = round((now - health.oldest_pending).total_seconds())
    if health.oldest_failed is not None:
        body["oldest_failed_age_seconds"] = round((now - health.oldest_failed).total_seconds())
        body["hint"] = FAILED_HINT
    return body

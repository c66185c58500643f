"""The Flask application factory. Importing this module does nothing else."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from config.settings import Settings
from runtime.metrics import rejected
from runtime.services import Services
from runtime.store import Store
from webhooks import health, report
from webhooks.receivers import Intake, blueprint


class InsecureConfiguration(RuntimeError):
    """A tracker is enabled without a webhook secret and the insecure development flag is off."""


def check_secrets(settings: Settings) -> None:
    unsigned = settings.unsigned_trackers()
    if unsigned and not settings.insecure_dev:
        variables = ", ".join(f"{t.upper()}_WEBHOOK_SECRET" for t in unsigned)
        raise InsecureConfiguration(
            f"no webhook secret for {', '.join(unsigned)}: set {variables}, disable the tracker with "
            "SOPGUARD_TRACKERS, or pass --insecure-dev (SOPGUARD_INSECURE_DEV=1) for local development"
        )
    if unsigned:
        logging.getLogger(__name__).warning(
            "INSECURE: accepting unsigned %s deliveries (development mode)", ", ".join(unsigned)
        )


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the web application; `settings` default to the environment, read now, not at import."""
    settings = settings or Settings()
    check_secrets(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    store = services.store if services else Store(settings.resolved_database_url, settings.resolved_queue_url)
    app.extensions["sopguard"] = Intake(settings, store)
    if services is not None:
        app.extensions["sopguard.services"] = services
    app.register_blueprint(blueprint)
    app.register_blueprint(health.blueprint)
    report.install(app, settings, store, services)
    app.register_error_handler(HTTPException, _json_error)

    def too_large(_: RequestEntityTooLarge) -> tuple[Response, int]:
        rejected(str((request.view_args or {}).get("source", "")), "too_large")
        return jsonify(error=f"the body is too large: the limit is {settings.max_body_bytes} bytes"), 413

    app.register_error_handler(RequestEntityTooLarge, too_large)
    return app


def _json_error(error: HTTPException) -> tuple[Response, int]:
    """Errors as JSON like every other answer (413 for an oversized body, 405, ...)."""
    return jsonify(error=error.description), error.code or 500

"""Logs: one JSON object per line (plain text on a terminal if asked), every line of a delivery's work
naming the delivery and its issue, and no secret ever written.

A consumer sets the delivery it works on in a context variable (`delivery_context`) for as long as
it works on it; a filter on the log handler copies it onto each record, whichever module logs (ours,
PyGithub's, jira's, urllib3's). The formatter then removes every secret the settings hold (webhook
secrets, tokens, the App's private key, database and Redis passwords) and anything shaped like a
credential (an `Authorization` header's value, a GitHub token, a JWT) from the finished line, the
traceback included.

`SOPGUARD_LOG_FORMAT` chooses `json` or `text`; unset, gunicorn logs JSON and the `sopguard` commands
log text on a terminal and JSON otherwise (under systemd or in a container).

And the metrics' directory: the long-running processes (gunicorn's, `serve`, `worker`) write their
counts to one directory, so that a scrape of any web process adds up all of them
(`use_metrics_directory`; `runtime.metrics`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import IO, Any

from gunicorn import glogging
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from config.settings import LogFormat, Settings

REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(levelname)s %(name)s %(message)s"
SHORTEST_SECRET = 6  # shorter values would blank out ordinary words

_working_on: ContextVar[tuple[str, str] | None] = ContextVar("sopguard_delivery", default=None)

CREDENTIAL_SHAPES = re.compile(
    r"(?i)(?<=authorization)(['\"]?\s*[:=]\s*['\"]?)(?:bearer |token |basic )?[^\s'\",}]+"
    r"|\b(?:gh[opusr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"
)


@contextmanager
def delivery_context(delivery_id: str, issue: str) -> Iterator[None]:
    """Every log line written in this thread meanwhile names `delivery_id` and `issue`."""
    token = _working_on.set((delivery_id, issue))
    try:
        yield
    finally:
        _working_on.reset(token)


class DeliveryContext(logging.Filter):
    """Puts `delivery` and `issue` on each record written while a delivery is at work."""

    def filter(self, record: logging.LogRecord) -> bool:
        current = _working_on.get()
        if current is not None:
            record.__dict__.setdefault("delivery", current[0])
            record.__dict__.setdefault("issue", current[1])
        return True


def secrets_of(settings: Settings) -> list[str]:
    """The values in the settings that must never appear in a log line."""
    values = [
        settings.github_webhook_secret,
        settings.jira_webhook_secret,
        settings.github_token,
        settings.jira_api_token,
        settings.jira_pat,
        settings.report_token,
        *settings.github_app_private_key.splitlines(),
        *_key_file_lines(settings.github_app_private_key_path),
    ]
    for url in filter(None, (settings.database_url, settings.queue_url)):
        try:
            values.append(make_url(url).password or "")
        except ArgumentError:
            values.append(url)  # an unreadable URL is kept out whole
    return [v.strip() for v in values if len(v.strip()) >= SHORTEST_SECRET]


def _key_file_lines(path: Path | None) -> list[str]:
    """The lines of the App's private key file (a line of it in a log would be a leak)."""
    if path is None:
        return []
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


class Redacting(logging.Formatter):
    """Another formatter's lines, with the secrets and anything shaped like a credential removed."""

    def __init__(self, inner: logging.Formatter, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.inner = inner
        # Each secret as written, and as it reads inside a JSON string (a key's newlines, quotes).
        forms = {form for s in secrets for form in (s, json.dumps(s)[1:-1]) if form}
        self._secrets = sorted(forms, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        line = self.inner.format(record)
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return CREDENTIAL_SHAPES.sub(_redact_credential, line)


def _redact_credential(match: re.Match[str]) -> str:
    return f"{match.group(1)}{REDACTED}" if match.group(1) is not None else REDACTED


class _Text(logging.Formatter):
    """The plain format, with the delivery and issue at the end of the lines that have them."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [f"{k}={record.__dict__[k]}" for k in ("delivery", "issue") if k in record.__dict__]
        if not context:
            return line
        first, newline, rest = line.partition("\n")
        return f"{first} [{' '.join(context)}]{newline}{rest}"


def formatter(log_format: LogFormat, secrets: Iterable[str] = ()) -> logging.Formatter:
    inner: logging.Formatter
    if log_format == "json":
        inner = JsonFormatter(
            JSON_FIELDS, timestamp=True, rename_fields={"levelname": "level", "name": "logger"}
        )
    else:
        inner = _Text(TEXT_FORMAT)
    return Redacting(inner, secrets)


def chosen_format(settings: Settings, *, default: LogFormat | None = None) -> LogFormat:
    """`SOPGUARD_LOG_FORMAT`; unset, `default`, or text on a terminal and JSON elsewhere."""
    if settings.log_format is not None:
        return settings.log_format
    if default is not None:
        return default
    return "text" if sys.stderr.isatty() else "json"


def configure_logging(
    settings: Settings, *, default: LogFormat | None = None, stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log line of this process to stderr (or `stream`) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(chosen_format(settings, default=default), secrets_of(settings)))
    handler.addFilter(DeliveryContext())
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    return handler


class GunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's own lines (workers booting, timeouts) in the same format as the application's."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        settings = Settings()
        chosen = formatter(chosen_format(settings, default="json"), secrets_of(settings))
        for handler in [*self.error_log.handlers, *self.access_log.handlers]:
            handler.setFormatter(chosen)


def metrics_directory(settings: Settings) -> Path:
    """`PROMETHEUS_MULTIPROC_DIR` when set, else `metrics/` in the data directory."""
    return Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR") or settings.data_dir / "metrics")


def use_metrics_directory(settings: Settings) -> Path | None:
    """Make this process (and the processes it forks) count into the shared metrics directory.

    prometheus_client chooses where counts go when it is first imported, so this runs before
    anything imports it; if something already did, the counts stay this process's own, and a
    warning says so. Returns the directory, or `None` then.
    """
    directory = metrics_directory(settings)
    values = sys.modules.get("prometheus_client.values")
    if values is not None and not getattr(values.ValueClass, "_multiprocess", False):
        logging.getLogger(__name__).warning(
            "metrics are this process's own: prometheus_client was imported before %s was set", directory
        )
        return None
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    return directory

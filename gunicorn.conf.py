"""Production web server: `gunicorn` (in this directory, it reads this file), or `gunicorn -c gunicorn.conf.py`.

It serves the webhook receiver only; run the queue consumer beside it with `sopguard worker`.
Environment: SOPGUARD_HOST, SOPGUARD_PORT (as `sopguard serve`), SOPGUARD_WEB_WORKERS (processes,
default 2), SOPGUARD_WEB_THREADS (threads per process, default 8), SOPGUARD_MAX_QUEUE_WAIT
(seconds a request may wait for a thread before it is answered 503, default 5; see
webhooks/overload.py). Options given on gunicorn's command line win over this file.

Logs are JSON lines unless SOPGUARD_LOG_FORMAT=text, gunicorn's own lines too. The workers (and
`sopguard worker` processes given the same directory) count their metrics into
PROMETHEUS_MULTIPROC_DIR, by default `metrics/` in the data directory; `GET /metrics` of any worker
adds them all up (runtime/metrics.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from cli import _policy, _settings
from config.settings import Settings
from runtime.observability import configure_logging, use_metrics_directory
from runtime.store import Store


def _checked_settings() -> Settings:
    try:
        return _settings()
    except click.ClickException as error:
        sys.exit(error.message)


def _count(name: str, default: int) -> int:
    text = os.environ.get(name, str(default))
    if not text.isdigit() or int(text) < 1:
        sys.exit(f"{name}={text!r}: give a whole number above 0")
    return int(text)


_listen = _checked_settings()
configure_logging(_listen, default="json")
use_metrics_directory(_listen)  # before anything imports prometheus_client (`app`, the worker class)

wsgi_app = "app:create_app()"
bind = f"{_listen.host}:{_listen.port}"
workers = _count("SOPGUARD_WEB_WORKERS", 2)
threads = _count("SOPGUARD_WEB_THREADS", 8)
worker_class = "webhooks.overload.SheddingWorker"
# Every connection waiting for a thread is taken into the worker, where its wait is stamped and a
# stale one shed (webhooks/overload.py), instead of in the kernel's backlog, where it is not seen:
# with gunicorn's default of 1000, 500 deliveries/s against a slow receiver time out instead of
# being answered 503. Enough for 400 deliveries/s per worker for GitHub's 10 s.
worker_connections = 4000
loglevel = _listen.log_level.lower()
logger_class = "runtime.observability.GunicornLogger"


def on_starting(server: Any) -> None:
    """In the master, once, before any worker starts: the checks `sopguard serve` makes.

    And two preparations: the open-files limit the workers' connections need, and the database
    tables, since workers creating those of a fresh SQLite file at once race (each
    checks, then creates), and the loser fails to boot, which stops gunicorn altogether.
    """
    from app import InsecureConfiguration, check_secrets
    from webhooks.overload import allow_open_files, max_queue_wait_from_environment

    try:
        settings = _settings()
        _policy(settings.policy)  # every problem as PATH:LINE:COLUMN: message
        check_secrets(settings)
        max_queue_wait_from_environment()
    except (click.ClickException, InsecureConfiguration, ValueError) as error:
        sys.exit(error.message if isinstance(error, click.ClickException) else str(error))
    allow_open_files(server.cfg.worker_connections + 100)
    Store(settings.resolved_database_url).engine.dispose()


def child_exit(server: Any, worker: Any) -> None:
    """A worker that exited takes its live gauges with it (prometheus_client's multiprocess mode)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]

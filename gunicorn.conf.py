"""Production web server: `gunicorn` (in this directory, it reads this file), or `gunicorn -c gunicorn.conf.py`.

It serves the webhook receiver only; run the queue consumer beside it with `sopguard worker`.
Environment: SOPGUARD_HOST, SOPGUARD_PORT (as `sopguard serve`), SOPGUARD_WEB_WORKERS (processes,
default 2), SOPGUARD_WEB_THREADS (threads per process, default 4) and SOPGUARD_MAX_QUEUE_WAIT
(seconds a request may wait for a thread before it is answered 503, default 5; see
webhooks/overload.py). Options given on gunicorn's command line win over this file.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import ValidationError

from app import InsecureConfiguration, check_secrets
from config.loader import PolicyError, load_policy
from config.settings import Settings
from runtime.store import Store


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        sys.exit(f"invalid settings: {problems}")


_listen = _settings()

wsgi_app = "app:create_app()"
bind = f"{_listen.host}:{_listen.port}"
workers = int(os.environ.get("SOPGUARD_WEB_WORKERS", "2"))
threads = int(os.environ.get("SOPGUARD_WEB_THREADS", "4"))
worker_class = "webhooks.overload.SheddingWorker"
loglevel = _listen.log_level.lower()


def on_starting(server: Any) -> None:
    """In the master, once, before any worker starts: the checks `sopguard serve` makes.

    And the database tables: workers creating those of a fresh SQLite file at once race (each
    checks, then creates), and the loser fails to boot, which stops gunicorn altogether.
    """
    settings = _settings()
    try:
        load_policy(settings.policy)
    except PolicyError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        print(f"the policy has {len(error.problems)} problem(s)", file=sys.stderr)
        sys.exit(1)
    try:
        check_secrets(settings)
    except InsecureConfiguration as error:
        print(error, file=sys.stderr)
        sys.exit(1)
    Store(settings.resolved_database_url).engine.dispose()

"""Load shedding for gunicorn's threaded worker: answer 503 at once rather than let deliveries queue.

GitHub gives up on a delivery after 10 seconds. Under overload, gunicorn's gthread worker keeps
accepting connections and hands each to its thread pool, whose queue has no bound: a delivery can
wait there longer than GitHub waits, and the work done for it afterwards is wasted. So the worker
stamps each connection when it is handed to the pool, and the thread that takes it up puts the
time waited into the WSGI environ (`QUEUE_WAIT`). `ShedOverload` answers a request that waited
longer than its limit with `503 {"error": "overloaded; please redeliver"}` and `Retry-After`,
without reading the body or calling the application (no signature check, no database), so an
overloaded server drains its queue at the speed of a bare write.

Connections still waiting in the kernel's listen backlog are not stamped: that wait is not seen
here. So gunicorn.conf.py lets each worker take in enough connections (`worker_connections`) to
hold every delivery that could still be answered in time.
"""

from __future__ import annotations

import json
import math
import os
import resource
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from gunicorn.workers.gthread import ThreadWorker

from runtime.metrics import rejected

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

QUEUE_WAIT = "sopguard.queue_wait"
"""Environ key: seconds the connection waited for a worker thread before this request was handled."""

DEFAULT_MAX_QUEUE_WAIT = 5.0
OVERLOADED_BODY = json.dumps({"error": "overloaded; please redeliver"}).encode()


def max_queue_wait_from_environment() -> float:
    """SOPGUARD_MAX_QUEUE_WAIT in seconds (default 5): half of GitHub's 10 s delivery timeout."""
    text = os.environ.get("SOPGUARD_MAX_QUEUE_WAIT", str(DEFAULT_MAX_QUEUE_WAIT))
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise ValueError(f"SOPGUARD_MAX_QUEUE_WAIT={text!r}: give a number of seconds above 0")
    return seconds


def allow_open_files(count: int) -> None:
    """Raise this process's soft limit on open files (often 1024; children inherit it) to `count`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count if hard == resource.RLIM_INFINITY else min(count, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class ShedOverload:
    """WSGI middleware: 503 for a request whose `QUEUE_WAIT` exceeds `max_wait` seconds.

    A request without the key (another server, a test client) passes through untouched.
    """

    def __init__(self, app: WSGIApplication, max_wait: float) -> None:
        self.app = app
        self.max_wait = max_wait
        self.retry_after = str(max(1, math.ceil(max_wait)))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get(QUEUE_WAIT, 0.0) <= self.max_wait:
            return self.app(environ, start_response)
        rejected(str(environ.get("PATH_INFO", "")).rsplit("/", 1)[-1], "overloaded")
        start_response(
            "503 Service Unavailable",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(OVERLOADED_BODY))),
                ("Retry-After", self.retry_after),
            ],
        )
        return [OVERLOADED_BODY]


class SheddingWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn has no type hints
    """gthread, plus the queue wait in each request's environ and `ShedOverload` around the app."""

    wsgi: WSGIApplication

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._current = threading.local()

    def enqueue_req(self, conn: Any) -> None:
        """Called on the main thread for every request handed to the pool (new or kept-alive)."""
        conn.enqueued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        """Runs in a pool thread: the wait ends here, before any byte of the request is read."""
        self._current.queue_wait = time.monotonic() - conn.enqueued_at
        return super().handle(conn)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        shed = ShedOverload(self.wsgi, max_queue_wait_from_environment())

        def stamped(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            environ[QUEUE_WAIT] = self._current.queue_wait
            return shed(environ, start_response)

        self.wsgi = stamped

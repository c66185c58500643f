"""The one retry layer for tracker calls: tenacity, exponential backoff with jitter, server hints honoured.

The client libraries' own retries and throttles are switched off where the connectors build them,
so that retries never stack. Each connector says which failures are worth another try. A call gets
a few quick tries here (seconds, never holding a consumer for long); a failure worth trying again
that outlasts them, or a server that asks for a longer pause, becomes `TrackerUnavailable`, and the
runtime runs the delivery again later, over a horizon of up to an hour by default.

Each try again is counted (`sopguard_tracker_retries_total`), and so is each request that got no
answer at all; the answers themselves are counted where the sessions get them (`connector.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from connector.base import TrackerUnavailable
from connector.metrics import TRACKER_RETRIES, count_unanswered

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    """Whether a failure is worth another try, and how long the server asked us to wait (if it did)."""

    retry: bool
    wait: float | None = None


GIVE_UP = Verdict(False)
BACK_OFF = Verdict(True)
QUICK_ATTEMPTS = 3
MAX_BLOCKING_WAIT = 10.0


class TooLongToWait(Exception):
    """The server asked for a longer pause than a worker should block."""

    def __init__(self, message: str, wait: float) -> None:
        super().__init__(message)
        self.wait = wait


def server_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After`, or until `X-RateLimit-Reset` when nothing is left."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if (after := lowered.get("retry-after", "").strip()).isdigit():
        return float(after)
    if (
        lowered.get("x-ratelimit-remaining") == "0"
        and (reset := lowered.get("x-ratelimit-reset", "")).isdigit()
    ):
        return max(float(reset) - (time.time() if now is None else now), 0.0) + 1.0
    return None


def retrying(
    classify: Callable[[BaseException], Verdict],
    *,
    tracker: str,
    attempts: int = QUICK_ATTEMPTS,
    max_wait: float = MAX_BLOCKING_WAIT,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """A tenacity policy for `tracker`: up to `attempts` tries; the server's wait when given, else
    1 s, 2 s, 4 s ± jitter."""
    backoff = wait_exponential_jitter(initial=1, max=max_wait, jitter=1)

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = classify(error).wait if error else None
        if hinted is None:
            return float(backoff(state))
        if hinted > max_wait:
            raise TooLongToWait(f"the tracker asked to wait {hinted:.0f} s", hinted) from error
        return hinted

    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception(lambda error: classify(error).retry),
        after=lambda state: _count_failed_try(tracker, state),
        before_sleep=lambda _: TRACKER_RETRIES.labels(tracker).inc(),
        sleep=sleep,
        reraise=True,
    )


def _count_failed_try(tracker: str, state: RetryCallState) -> None:
    """Called after each failed try worth another (a request with no answer always is)."""
    error = state.outcome.exception() if state.outcome else None
    if error is not None:
        count_unanswered(tracker, error)


def unavailable(
    classify: Callable[[BaseException], Verdict], error: BaseException
) -> TrackerUnavailable | None:
    """The `TrackerUnavailable` that `error` amounts to once the quick tries are spent, or `None`
    when it is a refusal (which no later try would change)."""
    if isinstance(error, TrackerUnavailable):
        return error
    if isinstance(error, TooLongToWait):
        return TrackerUnavailable(str(error), error.wait)
    verdict = classify(error)
    if verdict.retry:
        return TrackerUnavailable(f"{type(error).__name__}: {error}", verdict.wait)
    return None


def call(policy: Retrying, classify: Callable[[BaseException], Verdict], function: Callable[[], T]) -> T:
    """`function` with its quick tries; a failure still worth trying later is `TrackerUnavailable`."""
    try:
        return policy(function)
    except Exception as error:
        if (later := unavailable(classify, error)) is not None:
            raise later from error
        raise

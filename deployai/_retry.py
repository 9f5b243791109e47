"""When to retry and how long to wait: pure decisions, shared by both clients.

Nothing here sends, sleeps or reads a clock: the clock value and the random source are passed in,
so every decision can be tested without waiting. `request_flow` writes the whole plan for one call
as a generator that yields `SEND` or a `Sleep` and receives each outcome; `DeployAI` and
`AsyncDeployAI` drive it with blocking or awaiting I/O (see `_http.py`).

The wait before retry number `n` (counting from 0) is, in order of preference:

1. `retry-after-ms` (milliseconds), else `retry-after` (seconds, or an HTTP date);
2. for a 429 with `x-ratelimit-remaining: 0`, the time until `x-ratelimit-reset`;
3. otherwise exponential backoff with jitter:
   `min(8, 0.5 * 2**n) * (1 - 0.25 * random())` seconds.

A wait the server asks for that is longer than `max_retry_wait` is not slept: the error is raised at
once with `retry_after` set, so that a service can reschedule the work instead of blocking a worker.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

import httpx

from ._constants import (
    INITIAL_RETRY_DELAY_SECONDS,
    MAX_RETRY_DELAY_SECONDS,
    RETRY_JITTER_FRACTION,
    RETRYABLE_STATUS_CODES,
)
from ._exceptions import APIConnectionError, APITimeoutError, make_status_error
from ._logging import redact
from ._ratelimit import RateLimit

log = logging.getLogger("deployai")


def _seconds(value: str | None) -> float | None:
    """A finite, non-negative number from a header; None for anything else (NaN, inf, -3, words)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0.0 <= number < math.inf else None


def server_requested_wait(status_code: int | None, headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait, from its headers; None when it did not say."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - now)
    if status_code == 429 and headers.get("x-ratelimit-remaining", "").strip() == "0":
        return RateLimit.from_headers(headers).seconds_until_reset(now)
    return None


def backoff_delay(retry_number: int, random_fraction: float) -> float:
    """Exponential backoff with jitter for retry number `retry_number` (0 for the first retry)."""
    delay = min(MAX_RETRY_DELAY_SECONDS, INITIAL_RETRY_DELAY_SECONDS * 2.0**retry_number)
    return delay * (1.0 - RETRY_JITTER_FRACTION * random_fraction)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What to do after a failed attempt.

    Attributes:
        retry: whether to try again.
        wait_seconds: how long to sleep first (0 when not retrying).
        server_wait: the wait the server asked for, if it asked (becomes `retry_after` on the error).
    """

    retry: bool
    wait_seconds: float = 0.0
    server_wait: float | None = None


def decide_retry(
    *,
    status_code: int | None,
    headers: Mapping[str, str],
    retry_number: int,
    max_retries: int,
    max_retry_wait: float,
    now: float,
    random_fraction: float,
) -> RetryDecision:
    """Decide whether to retry a failed attempt; `status_code` is None for a connection failure or timeout."""
    if status_code is not None and status_code not in RETRYABLE_STATUS_CODES:
        return RetryDecision(retry=False)
    server_wait = None if status_code is None else server_requested_wait(status_code, headers, now)
    if retry_number >= max_retries or (server_wait is not None and server_wait > max_retry_wait):
        return RetryDecision(retry=False, server_wait=server_wait)
    wait = server_wait if server_wait is not None else backoff_delay(retry_number, random_fraction)
    return RetryDecision(retry=True, wait_seconds=wait, server_wait=server_wait)


class _Send:
    """The action "send the request now"."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SEND"


SEND: Final = _Send()


@dataclass(frozen=True, slots=True)
class Sleep:
    """The action "sleep this many seconds before the next attempt"."""

    seconds: float


Action: TypeAlias = _Send | Sleep
Outcome: TypeAlias = httpx.Response | httpx.HTTPError | None
Flow: TypeAlias = Generator[Action, Outcome, httpx.Response]


_LOCAL_FAILURES = (httpx.LocalProtocolError, httpx.UnsupportedProtocol)


def safe_cause(exc: httpx.HTTPError) -> httpx.HTTPError | None:
    """The httpx error to chain as `__cause__`, or None when its message holds a secret (tracebacks print it)."""
    text = str(exc)
    return exc if redact(text) == text else None


def transport_error(exc: httpx.HTTPError, request: httpx.Request | None) -> APIConnectionError:
    """Wrap an httpx failure in the SDK's own error (the caller raises it `from exc`)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out ({type(exc).__name__}).", request=request)
    # httpx quotes header values in some messages (an illegal one, for instance): never the key.
    detail = redact(str(exc)) or type(exc).__name__
    return APIConnectionError(f"Connection error: {detail}", request=request)


def _log_outcome(request: httpx.Request, outcome: Outcome, attempt: int, elapsed: float) -> None:
    if isinstance(outcome, httpx.Response):
        log.debug(
            "%s %s -> %d in %.3f s (request id %s, attempt %d)",
            request.method,
            request.url,
            outcome.status_code,
            elapsed,
            outcome.headers.get("x-request-id"),
            attempt,
        )
    else:
        log.debug("%s %s -> %r after %.3f s (attempt %d)", request.method, request.url, outcome, elapsed, attempt)


def request_flow(
    request: httpx.Request,
    *,
    max_retries: int,
    max_retry_wait: float,
    clock: Callable[[], float],
    random: Callable[[], float],
) -> Flow:
    """The plan for one call: send, and on a retryable failure sleep and send again.

    The driver sends the request for each `SEND` and passes back the `httpx.Response` (error bodies
    already read) or the `httpx.HTTPError` it met; after a `Sleep` it passes back None. The
    generator returns the successful response, or raises the typed error.
    """
    retry_number = 0
    debug = log.isEnabledFor(logging.DEBUG)
    while True:
        sent_at = clock()
        outcome = yield SEND
        if debug:
            _log_outcome(request, outcome, retry_number + 1, clock() - sent_at)
        if isinstance(outcome, httpx.Response):
            if outcome.status_code < 400:
                return outcome
            status: int | None = outcome.status_code
            headers: Mapping[str, str] = outcome.headers
            retryable = True
        else:
            assert isinstance(outcome, httpx.HTTPError)
            status, headers = None, {}
            # A request this machine could not even send (bad URL scheme, illegal header) fails again.
            retryable = isinstance(outcome, httpx.TransportError) and not isinstance(outcome, _LOCAL_FAILURES)
        decision = decide_retry(
            status_code=status,
            headers=headers,
            retry_number=retry_number if retryable else max_retries,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            now=clock(),
            random_fraction=random(),
        )
        if not decision.retry:
            if isinstance(outcome, httpx.Response):
                raise make_status_error(outcome, retry_after=decision.server_wait)
            raise transport_error(outcome, request) from safe_cause(outcome)
        reason = f"status {status}" if status is not None else type(outcome).__name__
        retry_number += 1
        log.info(
            "Retrying %s %s in %.2f s (retry %d of %d) after %s",
            request.method,
            request.url,
            decision.wait_seconds,
            retry_number,
            max_retries,
            reason,
        )
        yield Sleep(decision.wait_seconds)

"""When to retry and how long to wait: pure decisions, shared by both clients.

Nothing here sends, sleeps or reads a clock: the clock value and the random source are passed in,
so every decision can be tested without waiting. After each failed attempt, `_plan.call_plan` judges
its typed error with the public rule (`is_retryable`, `retry_after`) and asks `decide` what follows.

The wait before retry number `n` (counting from 0) is, in order of preference:

1. `retry-after-ms` (milliseconds), else `retry-after` (seconds, or an HTTP date);
2. for a 429 whose window is spent (`remaining` or `tokens_remaining` 0, in any dialect `RateLimit`
   reads), the time until that window resets;
3. otherwise exponential backoff with jitter:
   `min(8, 0.5 * 2**n) * (1 - 0.25 * random())` seconds.

A wait the server asks for is slept a little longer, never shorter: plus up to a quarter of it, at
most one second more. One longer than `max_retry_wait` (or than a day, whatever `max_retry_wait`
says) is not slept: the error is raised at once with `retry_after` set, so that a service can
reschedule the work instead of blocking a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ._constants import (
    INITIAL_RETRY_DELAY_SECONDS,
    LONGEST_BELIEVED_WAIT_SECONDS,
    LONGEST_REPORTED_WAIT_SECONDS,
    MAX_RETRY_DELAY_SECONDS,
    MAX_SERVER_WAIT_SPREAD_SECONDS,
    RETRY_JITTER_FRACTION,
    RETRYABLE_STATUS_CODES,
    SERVER_WAIT_SPREAD_FRACTION,
)
from ._ratelimit import RateLimit, clock_offset, http_date, last_values


def _seconds(value: str | None) -> float | None:
    """A finite, non-negative number from a header; None for anything else (NaN, inf, -3, words).

    Only ASCII decimal notation is read (`3`, `2.5`, `1e3`): `float` alone would also take "nan",
    "infinity", "1_000" and non-ASCII digits. A number too large for a float (`1e400`) is None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or text.strip("0123456789.eE+-"):
        return None
    try:
        number = float(text)
    except ValueError:  # a misplaced sign, dot or exponent: "1-2", "1..2", "e5"
        return None
    return number + 0.0 if 0.0 <= number < math.inf else None  # + 0.0 turns "-0" into 0.0


def server_requested_wait(
    status_code: int | None, headers: Mapping[str, str], now: float, sent: float = -math.inf
) -> float | None:
    """Seconds the server asked us to wait, from its headers; None when it did not say.

    `now` is our unix time when the answer arrived, `sent` before its request went (if known): a
    date is the server's, read against its clock as far as its `Date` header shows ours to differ
    (`clock_offset`). Never raises, and a wait is always finite and non-negative: a header that is
    neither a number of seconds nor a real date counts as not said, and a wait of more than a year
    counts as a year (one that long is never slept, and the call is not retried). A date in the
    past is a wait of 0.
    """
    wait = _requested_wait(status_code, last_values(headers), now, sent)
    return wait if wait is None else min(wait, LONGEST_REPORTED_WAIT_SECONDS)


def _requested_wait(status_code: int | None, headers: Mapping[str, str], now: float, sent: float) -> float | None:
    """`server_requested_wait` before the bound of a year."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000.0
    value = headers.get("retry-after")
    if value is not None:
        seconds = _seconds(value)
        if seconds is not None:
            return seconds
    if value is None and status_code != 429:
        return None
    now -= clock_offset(headers.get("date"), sent, now)  # the server's time
    if value is not None:
        moment = http_date(value)
        if moment is not None and math.isfinite(moment - now):
            return max(0.0, moment - now)
    if status_code == 429:
        # A spent window in any dialect: the wait is until it resets (the later, if both are spent).
        window = RateLimit.from_headers(headers, now)
        waits = [
            wait
            for spent, wait in (
                (window.remaining == 0, window.seconds_until_reset(now)),
                (window.tokens_remaining == 0, window.seconds_until_tokens_reset(now)),
            )
            if spent and wait is not None
        ]
        if waits:
            return max(waits)
    return None


def backoff_delay(retry_number: int, random_fraction: float) -> float:
    """Exponential backoff with jitter for retry number `retry_number` (0 for the first retry)."""
    # The exponent is capped first: 2.0 ** 1024 overflows, and a service may retry that often.
    delay = min(MAX_RETRY_DELAY_SECONDS, INITIAL_RETRY_DELAY_SECONDS * 2.0 ** min(retry_number, 64))
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


def retryable_status(status_code: int, headers: Mapping[str, str]) -> bool:
    """Whether an answer with this status may succeed if sent again.

    The server's `x-should-retry` (`true` or `false`) when it says, else whether the status is one of
    `RETRYABLE_STATUS_CODES`.
    """
    said = headers.get("x-should-retry")
    if said == "true":
        return True
    if said == "false":
        return False
    return status_code in RETRYABLE_STATUS_CODES


def decide(
    *,
    retryable: bool,
    server_wait: float | None,
    retry_number: int,
    max_retries: int,
    max_retry_wait: float,
    random_fraction: float,
) -> RetryDecision:
    """Decide whether to retry, from whether the failure is retryable and the wait the server asked for.

    A server-requested wait is slept a little longer, never shorter: by up to a quarter of it (at most
    one second more), so that the many callers one answer told "retry in 2 s" do not all come back at
    the same instant.
    """
    if not retryable:
        return RetryDecision(retry=False, server_wait=server_wait)
    if retry_number >= max_retries or (
        server_wait is not None and server_wait > min(max_retry_wait, LONGEST_BELIEVED_WAIT_SECONDS)
    ):  # a wait of more than a day is not slept, even with `max_retry_wait=math.inf`
        return RetryDecision(retry=False, server_wait=server_wait)
    if server_wait is None:
        wait = backoff_delay(retry_number, random_fraction)
    else:
        spread = min(server_wait * SERVER_WAIT_SPREAD_FRACTION, MAX_SERVER_WAIT_SPREAD_SECONDS)
        wait = min(server_wait + spread * random_fraction, max(server_wait, max_retry_wait))
    return RetryDecision(retry=True, wait_seconds=wait, server_wait=server_wait)

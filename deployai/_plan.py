"""The call plan: everything one call decides, as a generator of I/O to do. No I/O, no clock, no logging.

`call_plan` yields operations and is sent back the outcome of each, as a value:

- `Send`: the driver sends the request (the body read whole unless `stream`) and sends back the
  `httpx.Response`, or the `httpx.HTTPError` it met;
- `ReadBody`: it reads a streamed response's body whole and closes it; sends back None or the error;
- `Sleep`: it sleeps `seconds`; sends back None;
- `Deliver`: it hands the response to the caller; for a stream that fails before its first event,
  it may later send that failure back (an `httpx.HTTPError`, or the `APIStatusError` of an error
  event that came first).

The plan ends by returning after a `Deliver` that is not answered with a failure, or by raising the
SDK's typed error. A stream is delivered at its headers; until its first event arrives, the driver may
send a failure back, and the plan decides as for any other attempt whether to sleep and send again.
Once an event has been read the plan is closed, so the start of an answer never comes twice. An error
the server reports in a success (a 200 whose body is `{"error": ...}`, a stream whose first event is
an error) counts as the status it names: a 503 there is retried as a 503 would be.

The clock (unix seconds, for `retry-after` dates and rate-limit resets) and the random source (for
jitter) are passed in; `tests/test_plan.py` drives the plan by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import httpx

from ._exceptions import (
    APIError,
    APIResponseValidationError,
    APIStatusError,
    is_retryable,
    make_redirect_error,
    make_status_error,
    make_validation_error,
    reported_error,
    retry_after,
    safe_cause,
    transport_error,
)
from ._response import parse_body
from ._retry import RetryDecision, decide, server_requested_wait
from ._types import OnRetry

if TYPE_CHECKING:
    from ._limiter import RateLimiter
    from .types._base import APIResult

# The operations are plain slotted classes: a frozen dataclass's __init__ goes through
# object.__setattr__, several times slower, and one of these is built on every call.

__all__ = ["Deliver", "Op", "Outcome", "Plan", "ReadBody", "Send", "Sleep", "call_plan", "is_event_stream"]


@dataclass(slots=True)
class Send:
    """Send `request`; with `stream`, return at the headers and leave the body to be read.

    Attributes:
        request: the request.
        stream: whether to stream the body.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        time_left: seconds left before the call's `total_timeout`, to cap this attempt's timeouts by;
            None without one.
        limiter: the client's rate limiter, to wait for before sending and to tell what came back;
            None without one.
        wait_limit: the longest the limiter may hold this attempt (`max_retry_wait`, or less when
            `total_timeout` leaves less).
    """

    request: httpx.Request
    stream: bool
    attempt: int
    time_left: float | None = None
    limiter: RateLimiter | None = None
    wait_limit: float = 0.0


@dataclass(slots=True)
class ReadBody:
    """Read this streamed response's body whole, then close it (an error status, or not an event stream)."""

    response: httpx.Response


@dataclass(slots=True)
class Sleep:
    """Sleep before sending `request` again as retry number `retry` of `max_retries`, because of `reason`.

    Attributes:
        request: the request that will be sent again.
        seconds: how long.
        retry: which retry follows (1 for the first).
        max_retries: how many retries the call may make.
        reason: what failed, in words, for the log (`status 429`, `ConnectError`).
        error: the typed error of the failed attempt (what `on_retry` is told).
        on_retry: the client's `on_retry` callback, for the driver to call before it sleeps.
        cause: what `error` is raised from if the driver does not retry (see `given_up`).
    """

    request: httpx.Request
    seconds: float
    retry: int
    max_retries: int
    reason: str
    error: APIError
    on_retry: OnRetry | None
    cause: BaseException | None = None

    def given_up(self, why: str | None = None) -> APIError:
        """The attempt's error, as the plan raises it when it makes no more retries (raise it from `cause`).

        `why`: why the retry was not made, which its message then says.
        """
        self.error.retries = self.retry - 1
        self.error._given_up = why
        return self.error


@dataclass(slots=True)
class Deliver:
    """The call succeeded: hand `response` to the caller (for a stream: headers read, body not yet).

    Attributes:
        response: the response.
        retries: how many retries it took (0: the first attempt succeeded).
        result: the body parsed as the call's `result` type, when the plan was given one.
    """

    response: httpx.Response
    retries: int
    result: Any = None


Op: TypeAlias = Send | ReadBody | Sleep | Deliver
Outcome: TypeAlias = httpx.Response | httpx.HTTPError | APIStatusError | None
Plan: TypeAlias = Generator[Op, Outcome, None]


def is_event_stream(response: httpx.Response) -> bool:
    """Whether the response says it is a server-sent event stream (a media type is read in any case, RFC 9110)."""
    return "text/event-stream" in response.headers.get("content-type", "").partition(";")[0].lower()


def attempt_error(outcome: Outcome, request: httpx.Request, now: float, sent: float) -> APIError:
    """The typed error of a failed attempt, with the wait the server asked for as its `retry_after`.

    `outcome` is an error answer, an error reported in a successful one (which counts as the status
    it names), or a transport failure; `now` is the time, and `sent` a time before the attempt went.
    """
    if isinstance(outcome, httpx.Response):
        wait = server_requested_wait(outcome.status_code, outcome.headers, now, sent)
        return make_status_error(outcome, retry_after=wait)
    if isinstance(outcome, APIStatusError):
        if outcome.retry_after is None:
            outcome.retry_after = server_requested_wait(outcome.status_code, outcome.response.headers, now, sent)
        return outcome
    assert isinstance(outcome, httpx.HTTPError), outcome
    return transport_error(outcome, request)


def _seconds(*durations: float) -> tuple[str, ...]:
    """`durations` as a message shows them: to a tenth of a second, or to a millisecond where tenths make two alike."""
    tenths = [f"{d:.1f} s" for d in durations]
    if len(set(tenths)) == len(tenths):
        return tuple(tenths)
    return tuple(f"{d:.3f} s" for d in durations)


def call_plan(
    request: httpx.Request,
    *,
    stream: bool,
    max_retries: int,
    max_retry_wait: float,
    clock: Callable[[], float],
    random: Callable[[], float],
    on_retry: OnRetry | None = None,
    total_timeout: float | None = None,
    timer: Callable[[], float] | None = None,
    limiter: RateLimiter | None = None,
    result: type[APIResult] | None = None,
    raw: bool = False,
) -> Plan:
    """The plan for one call: send, and on a retryable failure sleep and send again (see the module docstring).

    With `total_timeout`, a retry whose wait would end past the call's deadline is not started (the
    last error is raised), and each attempt is told the time left (`Send.time_left`). The deadline is
    kept on `timer` (a monotonic clock) when given, else on `clock`. With a `limiter`, each attempt
    carries it, and the longest it may be held (`Send.wait_limit`). With a `result` type, a whole
    success's body is parsed as one before it is delivered (`Deliver.result`), and an error it reports
    instead is an attempt that failed with that error's status; without one, the body is only looked
    at for such an error. With `raw` (`with_raw_response`), a body that is neither is delivered as it
    came (`Deliver.result` None), for its reader's `parse()` to refuse.

    Raises:
        APIStatusError: the subclass for the error status, after retries (also for a 3xx: redirects
            are not followed).
        APIConnectionError: the connection failed or timed out, after retries.
        APIResponseValidationError: a streaming request was answered with something that is not an
            event stream.
    """
    steady = clock if timer is None else timer  # the deadline runs on a steady clock where there is one
    deadline = None if total_timeout is None else steady() + total_timeout
    attempt = 0
    while True:
        attempt += 1
        time_left = None if deadline is None else deadline - steady()
        sent = clock()  # dates in its answer are read against the server's clock, if ours differs
        if limiter is None:
            outcome = yield Send(request, stream, attempt, time_left)
        else:
            wait_limit = max_retry_wait if time_left is None else min(max_retry_wait, time_left)
            outcome = yield Send(request, stream, attempt, time_left, limiter, wait_limit)
        if isinstance(outcome, httpx.Response):
            response = outcome
            status = response.status_code
            if stream and (status >= 300 or not is_event_stream(response)):
                failed_reading = yield ReadBody(response)
                if failed_reading is not None:
                    outcome = failed_reading
            if outcome is response:
                if status < 300:
                    parsed = reported = None
                    if stream:
                        if not is_event_stream(response):  # its body was read: an error it reports counts
                            reported = reported_error(response)
                            if reported is None:
                                what = "event stream (text/event-stream)"
                                raise make_validation_error(response, what)._after(attempt - 1)
                    elif result is None:
                        reported = reported_error(response)
                    else:
                        try:
                            parsed = parse_body(response, result)
                        except APIResponseValidationError as problem:
                            if not raw:
                                problem.retries = attempt - 1
                                raise
                        except APIStatusError as problem:  # the body reports an error
                            # Raised again from here, or not at all: where it was found is no part of it.
                            reported = problem.with_traceback(None)
                            reported.__context__ = None
                    if reported is None:
                        failure = yield Deliver(response, attempt - 1, parsed)
                        if failure is None:
                            return
                        outcome = failure  # a stream that broke before its first event
                    else:
                        outcome = reported
                elif status < 400:
                    raise make_redirect_error(response)._after(attempt - 1)
        # The SDK's public retry rule (`is_retryable`, `retry_after`) decides about the typed error of
        # every failed attempt, as it would in a caller's own retry loop.
        error = attempt_error(outcome, request, clock(), sent)
        status_code = error.status_code if isinstance(error, APIStatusError) else None
        retryable = is_retryable(error)
        decision = decide(
            retryable=retryable,
            server_wait=retry_after(error),
            retry_number=attempt - 1,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            random_fraction=random(),
        )
        given_up = None  # why a retryable failure with retries left is raised
        if decision.retry and deadline is not None and steady() + decision.wait_seconds >= deadline:
            wait, whole = _seconds(decision.wait_seconds, total_timeout or 0.0)  # given: there is a deadline
            given_up = f"its wait of {wait} would end past total_timeout ({whole})"
            decision = RetryDecision(retry=False, server_wait=decision.server_wait)  # it could not finish in time
        elif retryable and not decision.retry and decision.server_wait is not None and attempt - 1 < max_retries:
            asked = decision.server_wait
            if asked > max_retry_wait:
                asked_for, most = _seconds(asked, max_retry_wait)
                limit = f"max_retry_wait ({most})"
            else:
                asked_for, limit = _seconds(asked)[0], "a day, never waited"
            given_up = f"the server asked for a wait of {asked_for}, longer than {limit}"
        if not decision.retry:
            error.retries = attempt - 1
            error._given_up = given_up
            cause = safe_cause(outcome) if isinstance(outcome, httpx.HTTPError) else None
            # The error's traceback keeps this frame: were the frame to keep the error too (as `error`,
            # or as `outcome` for one reported in a success), the cycle would leave the error, its
            # response and its request to the garbage collector.
            outcome = reported = failure = None
            try:
                if cause is None:
                    raise error
                raise error from cause
            finally:
                del error, cause
        if isinstance(outcome, APIStatusError):
            reason = f"error {status_code} in a {outcome.response.status_code} answer"
        else:
            reason = f"status {status_code}" if status_code is not None else type(outcome).__name__
        cause = safe_cause(outcome) if isinstance(outcome, httpx.HTTPError) else None
        yield Sleep(request, decision.wait_seconds, attempt, max_retries, reason, error, on_retry, cause)

"""`RateLimiter`: one API key's pace, shared by every client, thread and task that is given it.

The decisions are `_pacing.Pacing`'s; this module is their edge: a lock around the state, a queue of
callers waiting their turn in order, and the waiting itself (a `threading.Event` for the blocking
client, a future on the caller's event loop for the asyncio one). The I/O shells in `_http` call
`_acquire_sync` / `_acquire_async` before each send and `_settle` with what came back.

Order is first come, first served: a caller that finds others waiting queues behind them, even when
the window would let it through. Only the caller at the head of the queue waits on a timer; the
others sleep until the one before them is let through (or leaves), so nothing polls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from ._exceptions import DeployAIError, InvalidParameterError, RateLimitError
from ._pacing import Pacing
from ._ratelimit import read_window
from ._retry import server_requested_wait

__all__ = ["RateLimiter"]


class _ThreadWaiter:
    """A blocked thread's place in the queue."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = threading.Event()

    def wake(self) -> None:
        self.event.set()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _TaskWaiter:
    """A waiting task's place in the queue; it may be woken from any thread."""

    __slots__ = ("future", "loop", "thread")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.future: asyncio.Future[None] | None = None

    def arm(self) -> asyncio.Future[None]:
        self.future = future = self.loop.create_future()
        return future

    def wake(self) -> None:
        future = self.future
        if future is None or future.done():
            return
        if threading.get_ident() == self.thread:
            future.set_result(None)
        else:
            with contextlib.suppress(RuntimeError):  # its loop is closed: the task is gone with it
                self.loop.call_soon_threadsafe(_resolve, future)


_Waiter = _ThreadWaiter | _TaskWaiter


def _check_per_minute(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidParameterError("requests_per_minute", value, "a whole number >= 1, or None")
    return value


class RateLimiter:
    """Keeps an API key's calls under its rate limit, by making callers wait before they send.

    Give one to a client (`DeployAI(rate_limiter=limiter)`); every call of that client, of its
    `with_options` copies and of any other client given the same limiter (sync or async, from any
    thread or task) is then paced together. Use one limiter per API key.

    It learns the window from every response's rate-limit headers (DeployAI's, OpenAI's and the
    LiteLLM proxy's, as `RateLimit` reads them) and from 429s, and counts the requests already in
    flight against what is left. Before it has seen an answer it lets one request out and holds the
    rest until that answer tells it the budget. A 429 holds every caller for the wait the server asked
    for; one with no hint at all backs off and slows the pace, which then recovers. Callers are let
    through first come, first served; a caller whose wait would be longer than it may wait (the
    client's `max_retry_wait`, or what is left of `total_timeout`) gets a `RateLimitError` at once,
    with `retry_after`, and nothing is sent.

    Args:
        requests_per_minute: your plan's limit, if you know it: at most this many requests are sent
            in any 60 s, on top of what the headers say. None (the default) learns from the headers
            alone.

    Raises:
        InvalidParameterError: `requests_per_minute` is not a whole number >= 1.
    """

    # The clock of the windows (unix time, as rate-limit resets are given); tests replace it.
    _clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, *, requests_per_minute: int | None = None) -> None:
        self._requests_per_minute: Final = _check_per_minute(requests_per_minute)
        self._start()

    def _start(self) -> None:
        self._pacing = Pacing(requests_per_minute=self._requests_per_minute)
        self._lock = threading.Lock()
        self._queue: collections.deque[_Waiter] = collections.deque()
        self._pid = os.getpid()

    @property
    def requests_per_minute(self) -> int | None:
        """The plan's limit it was given, or None."""
        return self._requests_per_minute

    @property
    def in_flight(self) -> int:
        """Requests sent through this limiter and not yet answered."""
        return self._pacing.in_flight

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn right now."""
        return len(self._queue)

    def __repr__(self) -> str:
        pacing = self._pacing
        return (
            f"RateLimiter(requests_per_minute={self._requests_per_minute}, limit={pacing.limit}, "
            f"remaining={pacing.remaining}, in_flight={pacing.in_flight}, waiting={len(self._queue)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # What it learned belongs to this process's calls: a copy starts afresh with the same settings.
        return (_new_limiter, (self._requests_per_minute,))

    # --- the shells' side -------------------------------------------------------------------------

    def _acquire_sync(self, request: httpx.Request, wait_limit: float) -> None:
        """Block until `request` may be sent; raise `RateLimitError` if that is more than `wait_limit` s away."""
        entered = self._enter(request, wait_limit, _ThreadWaiter)
        if entered is None:
            return
        waiter, deadline = entered
        assert isinstance(waiter, _ThreadWaiter)
        try:
            while True:
                with self._lock:
                    timeout = self._turn(waiter, deadline, request)
                    if timeout is None:
                        return
                    waiter.event.clear()
                waiter.event.wait(None if timeout == math.inf else timeout)
        except BaseException:
            with self._lock:
                self._leave(waiter)
            raise

    async def _acquire_async(self, request: httpx.Request, wait_limit: float) -> None:
        """Wait until `request` may be sent; raise `RateLimitError` if that is more than `wait_limit` s away."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise DeployAIError("A RateLimiter paces asyncio tasks: run the client under asyncio.") from None
        entered = self._enter(request, wait_limit, lambda: _TaskWaiter(loop))
        if entered is None:
            return
        waiter, deadline = entered
        assert isinstance(waiter, _TaskWaiter)
        try:
            while True:
                with self._lock:
                    timeout = self._turn(waiter, deadline, request)
                    if timeout is None:
                        return
                    future = waiter.arm()
                timer = None if timeout == math.inf else loop.call_later(timeout, _resolve, future)
                try:
                    await future
                finally:
                    if timer is not None:
                        timer.cancel()
        except BaseException:
            with self._lock:
                self._leave(waiter)
            raise

    def _settle(self, outcome: object) -> None:
        """Learn from what a send came back with; never raises.

        `outcome` is the `httpx.Response` (for a stream: at its headers), or anything else when no
        answer came: the `httpx.HTTPError`, or None for a send that was interrupted.
        """
        now = self._clock()
        if isinstance(outcome, httpx.Response):
            headers = outcome.headers
            status = outcome.status_code
            report = read_window(headers, now)
            server_wait = server_requested_wait(status, headers, now) if status == 429 else None
            with self._lock:
                self._pacing.learn(now, status, report, server_wait)
                if self._queue:
                    self._queue[0].wake()
        else:
            with self._lock:
                self._pacing.lost(now)
                if self._queue:
                    self._queue[0].wake()

    # --- under the lock ---------------------------------------------------------------------------

    def _enter(
        self, request: httpx.Request, wait_limit: float, make_waiter: Callable[[], _Waiter]
    ) -> tuple[_Waiter, float] | None:
        """Admit at once (None), or queue a new waiter and return it with its deadline."""
        if self._pid != os.getpid():
            self._start()  # a forked child: the parent's lock, queue and requests in flight are not its own
        with self._lock:
            now = self._clock()
            queue = self._queue
            if queue:
                wait = self._pacing.delay_behind(now, len(queue))
            else:
                wait = self._pacing.delay(now)
                if wait <= 0:
                    self._pacing.admit(now)
                    return None
            if math.inf > wait > wait_limit:
                raise self._held(request, wait, wait_limit)
            waiter = make_waiter()
            queue.append(waiter)
            return waiter, now + wait_limit

    def _turn(self, waiter: _Waiter, deadline: float, request: httpx.Request) -> float | None:
        """Let `waiter` through (None) if it is its turn and the pace allows, else how long to wait."""
        queue = self._queue
        now = self._clock()
        if queue[0] is waiter:
            wait = self._pacing.delay(now)
            if wait <= 0:
                queue.popleft()
                self._pacing.admit(now)
                if queue:
                    queue[0].wake()  # it may be let through at once too
                return None
            # An unknown wait (until an answer arrives) is waited for up to the deadline.
            if now >= deadline or (wait < math.inf and now + wait > deadline):
                self._leave(waiter)
                raise self._held(request, wait, deadline - now)
            return min(wait, deadline - now)
        if now >= deadline:
            wait = self._pacing.delay_behind(now, queue.index(waiter))
            self._leave(waiter)
            raise self._held(request, wait, 0.0)
        return deadline - now  # woken earlier when it comes to the head of the queue

    def _leave(self, waiter: _Waiter) -> None:
        queue = self._queue
        if queue and queue[0] is waiter:
            queue.popleft()
            if queue:
                queue[0].wake()
        else:
            with contextlib.suppress(ValueError):  # it left already
                queue.remove(waiter)

    def _held(self, request: httpx.Request, wait: float, wait_limit: float) -> RateLimitError:
        """The error for a call the limiter would hold longer than its caller may wait; nothing was sent."""
        pacing = self._pacing
        headers = {"x-ratelimit-remaining": str(max(0, (pacing.remaining or 0) - pacing.in_flight))}
        if pacing.limit is not None:
            headers["x-ratelimit-limit"] = str(pacing.limit)
        if pacing.reset_at is not None:
            headers["x-ratelimit-reset"] = repr(pacing.reset_at)
        known = wait < math.inf
        if known:
            headers["retry-after"] = f"{wait:.3f}"
        response = httpx.Response(429, headers=headers, request=request)
        how_long = f"for {wait:.1f} s" if known else "until an answer tells it the budget"
        message = (
            f"The rate limiter would hold this call {how_long}, longer than it may wait ({max(0.0, wait_limit):.1f} s: "
            "max_retry_wait, or what is left of total_timeout). Nothing was sent."
        )
        return RateLimitError(message, response=response, body=None, retry_after=wait if known else None)


def _new_limiter(requests_per_minute: int | None) -> RateLimiter:
    return RateLimiter(requests_per_minute=requests_per_minute)

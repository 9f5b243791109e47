"""`RateLimiter`: one API key's pace, shared by every client, thread and task that is given it.

The decisions are `_pacing.Pacing`'s; this module is their edge: a lock around the state, a queue of
callers waiting their turn in order, and the waiting itself (a `threading.Event` for the blocking
client, a future on the caller's event loop for the asyncio one). The I/O shells in `_http` call
`_acquire_sync` / `_acquire_async` before each send and `_settle` with what came back.

Order is first come, first served: a caller that finds others waiting queues behind them, even when
the window would let it through. Only the caller at the head of the queue waits on a timer; the
others sleep until the one before them is let through (or leaves). The one exception: behind a
task, a thread or another loop's task looks every `_STUCK_SECONDS`, as the task's own loop may stall
or stop under it (`_TaskWaiter.gone`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, TypeVar, cast

import httpx

from ._constants import COMPLETION_CAP, LONGEST_BELIEVED_WAIT_SECONDS
from ._exceptions import APIStatusError, DeployAIError, InvalidParameterError, RateLimitError, reported_error
from ._pacing import Pacing
from ._ratelimit import UNIX_TIME_FLOOR_SECONDS, WindowReport, read_window
from ._retry import server_requested_wait

if TYPE_CHECKING:
    import asyncio

__all__ = ["RateLimiter"]

_L = TypeVar("_L", bound="RateLimiter")


class _ThreadWaiter:
    """A blocked thread's place in the queue; `owner` is what `_wake_all` wakes it for."""

    __slots__ = ("cost", "due", "event", "owner", "wait_limit")
    away = False  # a thread is never dropped from the queue while it waits (see `_TaskWaiter.away`)

    def __init__(self, owner: object = None) -> None:
        self.event = threading.Event()
        self.owner = owner
        self.cost = 0  # the tokens its request may take (see `RateLimiter._cost`)
        self.due = time.monotonic()  # see `_TaskWaiter.due`
        self.wait_limit = 0.0  # the longest its caller may wait, from when it queued

    def arm(self) -> None:
        self.event.clear()

    def wake(self) -> None:
        self.event.set()

    def gone(self, now: float, here: object) -> bool:
        return False


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _TaskWaiter:
    """A waiting task's place in the queue; it may be woken from any thread. `owner`: see `_ThreadWaiter`."""

    __slots__ = ("away", "cost", "due", "future", "loop", "owner", "thread", "wait_limit")

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: object = None) -> None:
        self.loop = loop
        self.owner = owner
        self.cost = 0  # as `_ThreadWaiter.cost`
        self.wait_limit = 0.0  # as `_ThreadWaiter.wait_limit`
        # When it is to look at the queue again, in real time (`time.monotonic`): when its timer ends,
        # or when it was woken; never while it waits for a wake alone, or for an `Ask`.
        self.due = time.monotonic()
        # Dropped from the queue while its loop stood still (`gone`); it queues again when it looks.
        self.away = False
        self.thread = threading.get_ident()
        self.future: asyncio.Future[None] | None = None

    def arm(self) -> asyncio.Future[None]:
        self.future = future = self.loop.create_future()
        return future

    def wake(self) -> None:
        future = self.future
        if future is None or future.done():
            return
        with contextlib.suppress(RuntimeError):  # its loop is closed: the task is gone with it
            if threading.get_ident() == self.thread:
                future.set_result(None)
            else:
                self.loop.call_soon_threadsafe(_resolve, future)

    def gone(self, now: float, here: object) -> bool:
        """Whether the task cannot take its turn now, and may not for long: at the head, it holds everyone behind.

        Its event loop is not running (a loop stopped with the task pending, as when
        `run_until_complete` returns, may run it again later; a closed one never), or it is running
        but has not let the task look for `_STUCK_SECONDS` past when it was due to (blocking code,
        or long work, in another of its tasks). Only a caller elsewhere (`here`: the loop it runs
        on, or None) can tell the latter: to a task of the same loop, which is running, it is a
        busy loop that will get to the head, and dropping heads there could leave no head to go.
        """
        if not self.loop.is_running():
            return True
        return here is not self.loop and now > self.due + _STUCK_SECONDS


_Waiter = _ThreadWaiter | _TaskWaiter

# Timers longer than this are cut to it (the waiter then looks again): a longer `Event.wait` timeout
# overflows, and nothing the limiter waits for lasts a day.
_LONGEST_TIMER_SECONDS = 86_400.0
# On a test's clock, a caller waiting for another call waits in real time, without moving that clock
# (see `_Behind`), and looks again this often: a head whose event loop stopped or closed under it is
# dropped only when a caller looks, and would otherwise hold those behind it forever.
_BEHIND_SECONDS = 1.0
# On a test's clock, the passes of the event loop a held task lets run before it moves the clock: at
# most this many, and done after this many in a row in which no caller joined the queue.
_SETTLE_PASSES = 64
_SETTLED_PASSES = 4
# A task at the head that has not looked this long after it was due to is stuck (`_TaskWaiter.gone`);
# the callers behind such a task look this often, in real time, so that one of them drops it.
_STUCK_SECONDS = 0.5
# For `RateLimiter._drop_gone`: the caller that looks is of the loop running in this thread, if any.
_HERE: Final = object()


class _Behind(float):
    """Seconds a caller waits for another call, in real time on any clock: for its turn, or an answer.

    On a test's clock only a wait for time itself (a reset, the pace) moves the clock. A caller behind
    the head moved it to its own deadline, and was refused when its turn came; so did a head waiting
    for the answer of a call in flight, which would have told it the window's reset. Decided under
    the lock, with the turn.
    """


class VirtualTime(Protocol):
    """A clock a test moves (`deployai.testing.VirtualClock`): unix time, and waits that move it."""

    def __call__(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


def _check_clock(clock: object) -> VirtualTime | None:
    if clock is not None and not all(callable(getattr(clock, name, None)) for name in ("__call__", "sleep", "asleep")):
        raise InvalidParameterError("clock", clock, "a deployai.testing.VirtualClock, or None for real time")
    if clock is not None and clock() < UNIX_TIME_FLOOR_SECONDS:  # type: ignore[operator]
        # Resets are read against it, and one below 1973 reads as seconds from now (see `_ratelimit`).
        raise InvalidParameterError("clock", clock, "a clock of unix time after 1973 (VirtualClock(start=...))")
    return clock  # type: ignore[return-value]


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

    It learns the window from every response's rate-limit headers (DeployAI's, OpenAI's, Anthropic's and
    the LiteLLM proxy's, as `RateLimit` reads them) and from 429s, and counts the requests already in
    flight against what is left (and, once answers report a token budget, the tokens they may take:
    their body's bytes over four, plus `max_tokens` for each of `n` choices). Before it has seen an
    answer it lets one request out and holds the rest until that answer tells it the budget. A 429 holds
    every caller for the wait the server asked for; one with no hint at all backs off and slows the
    pace, which then recovers. Callers are let through first come, first served; a caller whose wait
    would be longer than it may wait (the client's `max_retry_wait`, or what is left of `total_timeout`)
    gets a `RateLimitError` at once, with `retry_after`, and nothing is sent; for a retry, the call
    raises the failure it was retrying instead (see `docs/rate-limits.md`).

    Args:
        requests_per_minute: your plan's limit, if you know it: at most this many requests are sent
            in any 60 s, on top of what the headers say. None (the default) learns from the headers
            alone.
        clock: for tests, a `deployai.testing.VirtualClock` (the one the emulator runs on): the
            limiter keeps its time, and a caller it holds moves the clock instead of waiting. None
            (the default): real time.

    Raises:
        InvalidParameterError: `requests_per_minute` is not a whole number >= 1.
    """

    # A steady clock for every wait (resets, given in unix time, are moved onto it when read), so that
    # a step of the wall clock neither stalls callers nor lets them through early; tests replace it.
    _clock: Callable[[], float] = staticmethod(time.monotonic)
    _unix: Callable[[], float] = staticmethod(time.time)  # what resets, given in unix time, are read against
    # What callers' deadlines are kept on: `_clock` here, but not where `_clock` follows another
    # machine's clock, which steps as it is read again (`RedisRateLimiter`'s, after a slow answer).
    _steady: Callable[[], float] = staticmethod(time.monotonic)
    _virtual: VirtualTime | None = None
    _unpickled = False  # made in this process from a pickle (see `one_per_process`)
    # Whether a waiter that may go is given its ticket under the lock (here); a limiter whose state
    # lives elsewhere lets it out of `_turn` to ask for one.
    _admits_here: ClassVar[bool] = True
    _round_trip_allowance: float = 0.0  # see `_ask_timeout`

    def __init__(self, *, requests_per_minute: int | None = None, clock: VirtualTime | None = None) -> None:
        self._requests_per_minute: Final = _check_per_minute(requests_per_minute)
        self._virtual = _check_clock(clock)
        if clock is not None:  # unix time, which only moves forward: steady enough, and resets need no moving
            self._clock = self._unix = self._steady = clock
        self._start()
        # What its pickled copies carry, so that those unpickled in one process are this one limiter
        # there (one queue, one count in flight), and never another made with the same settings.
        self._identity = os.urandom(12).hex()
        with _registry_lock:
            _alive[self._identity] = self

    def _start(self) -> None:
        self._fresh()
        self._pid = os.getpid()  # last: another thread that sees it takes the state as ready

    def _fresh(self) -> None:
        """A new state of this process's own: pacing, lock and queue."""
        self._pacing = Pacing(requests_per_minute=self._requests_per_minute)
        self._lock = threading.Lock()
        self._queue: collections.deque[_Waiter] = collections.deque()

    @property
    def requests_per_minute(self) -> int | None:
        """The plan's limit it was given, or None."""
        return self._requests_per_minute

    @property
    def in_flight(self) -> int:
        """Requests sent through this limiter and not yet answered."""
        return self._pacing.in_flight

    @property
    def tokens_in_flight(self) -> int:
        """The tokens the requests in flight may take, as estimated (0 until answers report a token budget)."""
        pacing = self._pacing
        return pacing.tokens_out if pacing.knows_tokens else 0

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn right now."""
        return len(self._queue)

    def __repr__(self) -> str:
        pacing: Pacing | None = getattr(self, "_pacing", None)
        if pacing is None:  # half-built: `__init__` raised (a traceback with its locals shows it so)
            return f"{type(self).__name__}(<not built>)"
        return (
            f"RateLimiter(requests_per_minute={self._requests_per_minute}, limit={pacing.limit}, "
            f"remaining={pacing.remaining}, in_flight={pacing.in_flight}, {_tokens_shown(pacing)}"
            f"waiting={len(self._queue)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # What it learned belongs to this process's calls: in another process, the first copy starts
        # afresh with the same settings, and the copies that follow are that one.
        return (_new_limiter, (self._requests_per_minute, self._identity))

    # --- the shells' side -------------------------------------------------------------------------

    def _acquire_sync(
        self,
        request: httpx.Request,
        wait_limit: float,
        check: Callable[[RateLimiter], None] | None = None,
        owner: object = None,
    ) -> int:
        """Block until `request` may be sent, and return its ticket for `_settle`.

        `check(self)`, called before each wait, raises to end it; `_wake_all(owner)` wakes it to call
        `check` again.

        Raises:
            RateLimitError: it would wait longer than `wait_limit` seconds (nothing is sent).
        """
        entered = self._enter(request, wait_limit, _ThreadWaiter, owner)
        if isinstance(entered, int):
            return entered
        waiter, deadline = entered
        assert isinstance(waiter, _ThreadWaiter)
        turns = self._turns(waiter, deadline, request, check)
        try:
            step = next(turns)
            while True:
                if isinstance(step, Ask):
                    try:
                        given = step.result(self._ask_timeout(deadline))
                    except concurrent.futures.TimeoutError:
                        if not step.done():
                            turns.throw(self._held(request, math.inf, wait_limit, unanswered=True))
                        # Answered after all: with a `TimeoutError` (which on 3.11 and later is the
                        # wait's too), or just as the wait ran out.
                        given = step.result()
                    step = turns.send(given)
                else:
                    if step is None or self._virtual is None or isinstance(step, _Behind):
                        waiter.event.wait(step)
                    else:  # the time until it looks again passes on the test's clock, at once
                        self._virtual.sleep(step)
                    step = next(turns)
        except StopIteration as done:
            ticket: int = done.value
            return ticket
        finally:
            turns.close()  # interrupted while it waited: the turn gives its place (and any ticket) back

    async def _acquire_async(
        self,
        request: httpx.Request,
        wait_limit: float,
        check: Callable[[RateLimiter], None] | None = None,
        owner: object = None,
    ) -> int:
        """Wait until `request` may be sent, and return its ticket for `_settle`.

        `check(self)`, called before each wait, raises to end it; `_wake_all(owner)` wakes it to call
        `check` again.

        Raises:
            RateLimitError: it would wait longer than `wait_limit` seconds (nothing is sent).
        """
        import asyncio  # imported by the async client already; a program that uses only `DeployAI` never does

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise DeployAIError("A RateLimiter paces asyncio tasks: run the client under asyncio.") from None
        entered = self._enter(request, wait_limit, lambda owner: _TaskWaiter(loop, owner), owner)
        if isinstance(entered, int):
            return entered
        waiter, deadline = entered
        assert isinstance(waiter, _TaskWaiter)
        turns = self._turns(waiter, deadline, request, check)
        try:
            step = next(turns)
            while True:
                if isinstance(step, Ask):
                    # A loop closed meanwhile never runs this task again: the ticket goes back at once.
                    step.add_done_callback(lambda done: self._give_back(done) if loop.is_closed() else None)
                    # Not `asyncio.wait_for`, which up to 3.11 returns the ticket of an ask answered
                    # as this task is cancelled, and the cancelled call would go on to send.
                    answered = asyncio.wrap_future(step)
                    try:
                        done, _ = await asyncio.wait((answered,), timeout=self._ask_timeout(deadline))
                    finally:
                        # A ticket it gets after all goes back (`_abandon`). A coroutine closed after
                        # its loop (dropped, collected) cancels nothing: the loop takes no more calls.
                        if not answered.done() and not loop.is_closed():
                            answered.cancel()
                    if not done:
                        turns.throw(self._held(request, math.inf, wait_limit, unanswered=True))
                    given: int = answered.result()
                    step = turns.send(given)
                elif step is not None and self._virtual is not None and not isinstance(step, _Behind):
                    await self._settle_ready()
                    await self._virtual.asleep(step)  # as `_acquire_sync`
                    step = next(turns)
                else:
                    future = waiter.future
                    assert future is not None
                    timer = None if step is None else loop.call_later(step, _resolve, future)
                    try:
                        await future
                    finally:
                        if timer is not None:
                            timer.cancel()
                    step = next(turns)
        except StopIteration as done:
            ticket: int = done.value
            return ticket
        finally:
            turns.close()  # cancelled while it waited: the turn gives its place (and any ticket) back

    async def _settle_ready(self) -> None:
        """Before a wait moves a test's clock: let the tasks ready to run reach this queue first.

        Calls made at once (`asyncio.gather`) start one after the other: moved at the first one's
        wait, the clock would give the others a later start, and a deadline later by that wait,
        than the real time they share. Done when the queue stops growing (`_SETTLE_PASSES` at most).
        """
        import asyncio  # as in `_acquire_async`

        queued, still = len(self._queue), 0
        for _ in range(_SETTLE_PASSES):
            await asyncio.sleep(0)
            queued, still = len(self._queue), still + 1 if len(self._queue) == queued else 0
            if still == _SETTLED_PASSES:
                return

    def _turns(
        self, waiter: _Waiter, deadline: float, request: httpx.Request, check: Callable[[RateLimiter], None] | None
    ) -> Generator[float | Ask | None, int | None, int]:
        """A queued caller's way to its ticket, for `_acquire_sync` and `_acquire_async` to wait through.

        It yields what to wait for next: seconds until it looks again (None: until woken), with its
        waiter armed, or an `Ask`, whose ticket (or 0) is sent back in. It returns the ticket. Closed
        before it returns (its caller was interrupted or cancelled), it leaves the queue, and a ticket
        its `Ask` gets after all is given back.
        """
        asked: Ask | None = None
        try:
            while True:
                with self._lock:
                    ticket, wait = self._turn(waiter, deadline, request)
                    if ticket:
                        return ticket
                    waiter.arm()
                    # Asking, or waiting for a wake alone, it is not late for anything.
                    waiter.due = math.inf if ticket == 0 or wait == math.inf else time.monotonic() + wait
                    # On a test's clock: behind the head, or the head waiting for answers in flight
                    # (all of its wait, or the part of it they may end: tokens they may not take).
                    behind = self._virtual is not None and (
                        self._queue[0] is not waiter or self._answers_first(waiter.cost)
                    )
                if ticket == 0:  # its turn: ask where the state lives
                    asked = self._ask(waiter.cost)
                    ticket, asked = (yield asked), None
                    if ticket:
                        return self._let_through(waiter, ticket)
                    continue
                if check is not None:  # once armed: a wake from now on is not lost
                    check(self)
                if behind:
                    yield _Behind(min(wait, _BEHIND_SECONDS))
                else:
                    yield None if wait == math.inf else min(wait, _LONGEST_TIMER_SECONDS)
        except BaseException:
            self._abandon(waiter, asked)
            raise

    def _wake_all(self, owner: object) -> None:
        """Wake the waiting callers of `owner`, to look again: one whose `check` now raises stops waiting.

        For a client that closes while its calls wait here. The callers of other clients sharing
        the limiter sleep on, and the order of the queue is kept. Not in a forked child, whose lock
        another thread of the parent may have held at the fork (its queue is the parent's).
        """
        if self._pid != os.getpid():
            return
        with self._lock:
            for waiter in self._queue:
                if waiter.owner is owner:
                    waiter.wake()

    # --- hooks for a limiter whose state lives elsewhere (`_admits_here` false) ---------------------

    def _prepare(self, request: httpx.Request) -> None:
        """Before a request takes its place: nothing here."""

    def _ask(self, cost: int) -> Ask:
        """Ask where the state lives whether the head of the queue (`cost` tokens) may go: its ticket, or 0."""
        raise NotImplementedError  # never called: this limiter admits under its lock

    def _ask_timeout(self, deadline: float) -> float | None:
        """How long a caller at the head of the queue waits for its `Ask` (None: for good).

        Until its deadline, and at least as long as a round trip to where the state lives may take
        (`_round_trip_allowance`), so that a caller with no time to wait (`max_retry_wait=0`) still
        hears back from a store that answers.
        """
        left = max(deadline - self._steady(), self._round_trip_allowance)
        return left if left < threading.TIMEOUT_MAX else None  # `math.inf` (and more) overflows a lock's wait

    def _asked_where(self) -> str:
        """Where `_ask` asks, as an error may name it."""
        raise NotImplementedError  # never called, as `_ask`

    def _let_through(self, waiter: _Waiter, ticket: int) -> int:
        with self._lock:
            self._leave(waiter)  # the next one may be let through at once too
        return ticket

    def _abandon(self, waiter: _Waiter, asked: Ask | None) -> None:
        """A caller stopped waiting (cancelled, interrupted, refused): free its place, and any ticket it got."""
        with self._lock:
            self._leave(waiter)
        if asked is not None and not asked.cancel():
            asked.add_done_callback(self._give_back)

    def _give_back(self, asked: concurrent.futures.Future[int]) -> None:
        if asked.cancelled() or asked.exception() is not None or not asked.result():
            return
        with self._lock:
            if not isinstance(asked, Ask) or asked.given_back:  # once, whichever path gets here first
                return
            asked.given_back = True
        self._withdraw(asked.result())

    # --- answers ------------------------------------------------------------------------------------

    def _settle(self, ticket: int, outcome: object, took: float) -> None:
        """Learn from what the send with `ticket` came back with, `took` seconds after it went; never raises.

        `outcome` is the `httpx.Response` (for a stream: at its headers), or anything else when no
        answer came: the `httpx.HTTPError`, or None for a send that was interrupted.
        """
        answer: Answer = None  # unread (a Ctrl+C while reading it): counted as spent, never kept in flight
        try:
            answer = _answer(self._clock(), outcome, self._unix(), took)
        finally:
            with self._lock:
                _apply(self._pacing, ticket, answer)
                if self._queue:
                    self._wake_head()

    def _withdraw(self, ticket: int) -> None:
        """The request with `ticket` was not sent after all: its call was stopped while it waited."""
        with self._lock:
            _apply(self._pacing, ticket, WITHDRAWN)
            self._wake_head()

    def _reported(self, ticket: int, error: APIStatusError) -> None:
        """The stream with `ticket`, settled at its headers, reported `error` as its first event: learn a 429."""
        if error.status_code != 429 or not error._status_named:
            return
        wait = error.retry_after
        if wait is None:  # the plan reads the headers' wait only later, once the stream gives up its attempt
            wait = server_requested_wait(429, error.response.headers, self._unix())
        refused = Refused(self._clock(), _usable_wait(wait))
        self._learn_later(ticket, refused)

    def _learn_later(self, ticket: int, refused: Refused) -> None:
        with self._lock:
            _apply(self._pacing, ticket, refused)

    # --- under the lock ---------------------------------------------------------------------------

    def _enter(
        self, request: httpx.Request, wait_limit: float, make_waiter: Callable[[object], _Waiter], owner: object
    ) -> int | tuple[_Waiter, float]:
        """Admit at once (the ticket), or queue a new waiter of `owner` and return it with its deadline."""
        if self._pid != os.getpid():  # a child forked without Python's fork hooks (see `_restart_in_child`)
            with _restart_lock:
                if self._pid != os.getpid():
                    self._start()
        self._prepare(request)
        cost = self._cost(request)
        with self._lock:
            now = self._clock()
            queue = self._queue
            pacing = self._pacing
            if queue:  # a blocking caller is never its loop's task, even in a thread that runs a loop
                self._drop_gone(None if make_waiter is _ThreadWaiter else _HERE)
            if not cost and pacing.knows_tokens:
                cost = self._cost(request)  # an answer told a token budget meanwhile: rare, once
            if not queue:
                if self._admits_here and pacing.delay(now, cost) <= 0:
                    return pacing.admit(now, cost)
                firm = pacing.firm_delay(now, 0, cost)
            else:
                firm = pacing.firm_delay(now, len(queue), cost)
            if firm > wait_limit:
                queued = bool(queue) and _alone_within(pacing, now, cost, wait_limit)
                raise self._held(request, firm, wait_limit, queued=queued)
            waiter = make_waiter(owner)
            waiter.cost = cost
            waiter.wait_limit = wait_limit
            queue.append(waiter)
            return waiter, self._steady() + wait_limit

    def _turn(self, waiter: _Waiter, deadline: float, request: httpx.Request) -> tuple[int | None, float]:
        """Let `waiter` through if it is its turn and the pace allows: `(ticket, 0)`.

        Otherwise `(None, seconds)`: how long to wait before looking again (`math.inf`: until woken).
        A limiter that does not admit here (`_admits_here` false) returns `(0, 0)` instead of a ticket:
        the waiter is at the head and may go ask for one.
        """
        queue = self._queue
        pacing = self._pacing
        now = self._clock()
        left = deadline - self._steady()  # of the time this caller may wait
        if waiter.away:  # dropped while its event loop stood still: it comes back at the end of the queue
            waiter.away = False
            queue.append(waiter)
        if queue[0] is not waiter:
            self._drop_gone(getattr(waiter, "loop", None))
        if queue[0] is waiter:
            if not waiter.cost:  # a token budget learnt while it waited
                waiter.cost = self._cost(request)
            cost = waiter.cost
            wait = self._delay(now, cost)
            if wait <= 0:
                if not self._admits_here:
                    return 0, 0.0
                queue.popleft()
                ticket = pacing.admit(now, cost)
                self._wake_head()  # the next one may be let through at once too
                return ticket, 0.0
            firm = pacing.firm_delay(now, 0, cost)
            if left <= 0 or firm > left:
                self._leave(waiter)
                # Had it come now, alone, would it have waited? Then its time went on the queue.
                raise self._held(
                    request, firm or wait, left, queued=_alone_within(pacing, now, waiter.cost, waiter.wait_limit)
                )
            return None, min(wait, left)
        if left <= 0:
            ahead = queue.index(waiter)
            firm = pacing.firm_delay(now, ahead, waiter.cost)
            self._leave(waiter)
            queued = _alone_within(pacing, now, waiter.cost, waiter.wait_limit)
            raise self._held(request, firm, 0.0, ahead, queued=queued)
        head = queue[0]
        if isinstance(head, _TaskWaiter) and getattr(waiter, "loop", None) is not head.loop:
            # The head's loop may stop or stall, and then only a caller of another loop or thread
            # can look for it (see `_TaskWaiter.gone`); the tasks of its own loop stall with it.
            return None, min(left, _STUCK_SECONDS)
        return None, left  # woken earlier when it comes to the head of the queue

    def _cost(self, request: httpx.Request) -> int:
        """The tokens `request` may take (`token_cost`), counted once answers report a token budget (else 0)."""
        return token_cost(request) if self._pacing.knows_tokens else 0

    def _delay(self, now: float, cost: int) -> float:
        """How long the head of the queue, whose request may take `cost` tokens, waits before it may go (or go ask)."""
        return self._pacing.delay(now, cost)

    def _answers_first(self, cost: int) -> bool:
        """Whether the head of the queue waits for answers in flight, which may let it go before its wait ends."""
        now = self._clock()
        wait = self._delay(now, cost)
        return wait == math.inf or (
            wait > 0 and self._pacing.tokens_out > 0 and wait > self._pacing.firm_delay(now, 0, cost)
        )

    def _wake_head(self) -> None:
        if self._queue:
            self._drop_gone(_HERE)
            self._rouse_head(time.monotonic())

    def _rouse_head(self, now: float) -> None:
        """Wake the head of the queue, if any, to look now (it may be sleeping until its own deadline)."""
        if self._queue:
            head = self._queue[0]
            head.due = min(head.due, now)
            head.wake()

    def _drop_gone(self, here: object = None) -> None:
        """Drop tasks at the head that cannot take their turn (`_TaskWaiter.gone`): they would hold everyone behind.

        `here`: the event loop of the task that looks (None: a blocking caller, or no loop), or
        `_HERE` for the loop running in this thread, if any. Each task dropped is woken, so that one
        whose loop runs again looks at once and queues again (`_turn`), and so is the new head, which
        may be sleeping until its own deadline.
        """
        queue = self._queue
        if not queue or not isinstance(queue[0], _TaskWaiter):
            return
        if here is _HERE:
            import asyncio  # imported already: the head is a task

            here = asyncio._get_running_loop()
        now = time.monotonic()
        dropped = False
        while queue and queue[0].gone(now, here):
            waiter = queue.popleft()
            assert isinstance(waiter, _TaskWaiter)
            waiter.away = dropped = True
            waiter.wake()
        if dropped:
            self._rouse_head(now)

    def _leave(self, waiter: _Waiter) -> None:
        queue = self._queue
        if queue and queue[0] is waiter:
            queue.popleft()
            self._wake_head()
        else:
            with contextlib.suppress(ValueError):  # it left already
                queue.remove(waiter)

    def _held(
        self,
        request: httpx.Request,
        wait: float,
        wait_limit: float,
        ahead: int = 0,
        *,
        unanswered: bool = False,
        queued: bool = False,
    ) -> RateLimitError:
        """The error for a call the limiter would hold longer than its caller may wait; nothing was sent.

        `ahead`: the callers still queued before it, when it gave up behind them. `unanswered`: it gave
        up at the head of the queue, asking where the state lives (see `_ask`) for an answer that did
        not come in time. `queued`: it is refused over the callers queued before it, not the window.
        """
        pacing = self._pacing
        headers = {"x-ratelimit-remaining": str(max(0, (pacing.remaining or 0) - pacing.in_flight))}
        if pacing.limit is not None:
            headers["x-ratelimit-limit"] = str(pacing.limit)
        if pacing.reset_at is not None:
            headers["x-ratelimit-reset"] = repr(pacing.reset_at - self._clock() + self._unix())
        known = 0 < wait < math.inf
        if known:
            headers["retry-after"] = f"{wait:.3f}"
        response = httpx.Response(429, headers=headers, request=request)
        if known:
            how_long = f"for {wait:.1f} s"
        elif unanswered:
            how_long = f"until {self._asked_where()} answers whether it may go"
        elif ahead:  # their wait, not this one's, is what it is refused over
            how_long = f"behind {ahead} earlier call(s) still waiting their turn"
        else:
            how_long = "until answers still on their way tell it the budget"
        limit = f"{max(0.0, wait_limit):.1f} s"
        message = (
            f"The rate limiter would hold this call {how_long}, longer than it may wait ({limit}: max_retry_wait, "
            "or what is left of total_timeout). Nothing was sent."
        )
        refusal = RateLimitError(message, response=response, body=None, retry_after=wait if known else None)
        refusal._queued = queued
        refusal._hold = f"{how_long}, longer than it may wait ({limit})"
        return refusal


def _alone_within(pacing: Pacing, now: float, cost: int, wait_limit: float) -> bool:
    """Whether a call, come now with no one queued before it, would go within `wait_limit`.

    If so, a refusal of it is over the calls queued before it, not over the window (see `RateLimitError._queued`).
    """
    return pacing.firm_delay(now, 0, cost) <= wait_limit


class Ask(concurrent.futures.Future[int]):
    """An ask for a ticket (see `RateLimiter._ask`): its ticket, or 0 when it may not go yet."""

    given_back = False  # its ticket was withdrawn: its caller stopped waiting
    cost = 0  # the tokens the request that asks may take


class _Withdrawn:
    """The answer of a request that was not sent after all."""

    __slots__ = ()


WITHDRAWN: Final = _Withdrawn()


class Refused:
    """A refusal (a 429) that an answer already settled at its headers reported later: a stream's first event."""

    __slots__ = ("now", "server_wait")

    def __init__(self, now: float, server_wait: float | None) -> None:
        self.now = now
        self.server_wait = server_wait


# What came of a send, for `Pacing`: `(now, status, report, server_wait)` for an answer, None for none,
# `WITHDRAWN` for a request that was not sent, a `Refused` for an answer's later refusal.
Answer = tuple[float, int, WindowReport | None, float | None] | _Withdrawn | Refused | None


def _answer(now: float, outcome: object, unix_now: float, took: float) -> Answer:
    """Read what a send came back with (`now` on the limiter's clock, `unix_now` the time; resets are moved onto it).

    `took`: seconds since the request went, which with the response's `Date` shows whether our
    clock and the server's differ (see `read_window`).
    """
    if not isinstance(outcome, httpx.Response):
        return None
    headers = outcome.headers
    status = outcome.status_code
    # A whole answer that begins as an error object is read for the status it names. Only its start
    # is looked at, on every call through a limiter: an error body has no answer before its `error`.
    if status < 300 and outcome.is_stream_consumed and outcome.content.find(b'"error"', 0, 64) >= 0:
        reported = reported_error(outcome)
        if reported is not None and reported._status_named:
            status = reported.status_code
    sent = unix_now - took
    report = read_window(headers, unix_now, sent)
    if report is not None:
        shift = now - unix_now
        latest = now + LONGEST_BELIEVED_WAIT_SECONDS  # further ahead is not learnt: nothing sent could correct it
        if report.reset_at is not None:
            report.reset_at += shift
            if report.reset_at > latest:  # the count is of a window no gateway keeps: neither is learnt
                report.remaining = report.reset_at = None
        if report.tokens_reset_at is not None:
            report.tokens_reset_at += shift
            if report.tokens_reset_at > latest:  # as above, for the token window
                report.tokens_remaining = report.tokens_reset_at = None
        if report.tokens_spent_until is not None:
            report.tokens_spent_until += shift
            if report.tokens_spent_until > latest:
                report.tokens_spent_until = None
    server_wait = server_requested_wait(status, headers, unix_now, sent) if status == 429 else None
    return now, status, report, _usable_wait(server_wait)


def _tokens_shown(pacing: Pacing) -> str:
    """What a limiter's repr shows of the token budget: nothing until answers report one."""
    if not pacing.knows_tokens:
        return ""
    return (
        f"token_limit={pacing.token_limit}, tokens_remaining={pacing.tokens_left}, "
        f"tokens_in_flight={pacing.tokens_out}, "
    )


def token_cost(request: httpx.Request) -> int:
    """What `request` may take of a token budget.

    An estimate made before sending, as gateways that limit tokens make theirs: the body's length in
    bytes over four (English text takes about four characters a token, and the JSON around the
    messages counts too, so this errs high; a character outside ASCII counts as many times more as
    its UTF-8 has bytes after its first), plus the answer's cap (`max_completion_tokens` or
    `max_tokens`, for each of `n` choices) when the request gives one. A file sent inline (an image,
    audio, a PDF, as base64) counts as a quarter of its text up to `INLINE_FILE_TOKENS` (text that
    is not base64 after such a marker is counted as text). The
    answers' headers then tell what the requests really took.
    """
    cap: int = request.extensions.get(COMPLETION_CAP, 0)
    try:
        body = request.content
    except httpx.RequestNotRead:  # a streamed body the SDK never builds: its size is unknown
        return 1 + cap
    size = len(body)
    if not body.isascii():
        # Text in other scripts takes a token for a character or two, where its UTF-8 takes 2 to 4
        # bytes: a quarter of its bytes counted Chinese at 0.75 tokens a character, about half what
        # gateways then charged. Each byte after a character's first counts a quarter more.
        size += size - len(body.decode("utf-8", "replace"))
    inline = 0
    for marker in _INLINE_MARKERS:  # files sent inline: gateways charge them by what they hold, not their text
        at = body.find(marker)
        while at >= 0:
            start = at + len(marker)
            end = body.find(b'"', start)
            if end < 0:
                break
            # A file, not text that holds the marker: base64 at both ends (prose has a space within
            # a few words; checking all of a file's text would cost about 0.4 us a kilobyte).
            if not (body[start : min(end, start + 1024)] + body[max(start, end - 1024) : end]).translate(None, _BASE64):
                size -= end - start
                inline += min((end - start) // 4, INLINE_FILE_TOKENS)
            at = body.find(marker, end)
    return max(0, size) // 4 + 1 + inline + cap


# Where a file sent inline begins: an image's or a file's data URL, an `input_audio` part's `data`.
_INLINE_MARKERS: Final = (b";base64,", b'"data":"')
# Base64's letters, its URL-safe ones, and the backslash of JSON's escaped `/`.
_BASE64: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_\\"
# The most one file sent inline counts for: OpenAI charges an image by its tiles (85 to about 1,100
# tokens), while its base64 text would count one token per three bytes of the file.
INLINE_FILE_TOKENS: Final = 1_000


def _usable_wait(server_wait: float | None) -> float | None:
    """A 429's wait as the limiter learns it; None, no usable hint (back off, slow down), for 0 s or over a day.

    "Retry in 0 s" says nothing of when the limit lifts, and held to, it sends every caller back at
    once; a wait of more than a day comes from one glitched or hostile header.
    """
    return server_wait if server_wait is not None and 0.0 < server_wait <= LONGEST_BELIEVED_WAIT_SECONDS else None


def _apply(pacing: Pacing, ticket: int, answer: Answer) -> None:
    """Tell `pacing` what came of the send with `ticket`."""
    if answer is None:
        pacing.lost(ticket)
    elif isinstance(answer, _Withdrawn):
        pacing.withdraw(ticket)
    elif isinstance(answer, Refused):
        pacing.refused(answer.now, ticket, answer.server_wait)
    else:
        now, status, report, server_wait = answer
        pacing.learn(now, ticket, status, report, server_wait)


_alive: weakref.WeakValueDictionary[str, RateLimiter] = weakref.WeakValueDictionary()  # by identity
# The limiters this process unpickled last (made here from a pickle), kept alive between the tasks
# that bring copies: a worker's task drops its copy when it ends, and the next task's would have
# started afresh, with what it learned and its `requests_per_minute` sends forgotten.
_KEPT_COPIES: Final = 32
_kept: collections.OrderedDict[str, RateLimiter] = collections.OrderedDict()
_registry_lock = threading.Lock()
_restart_lock = threading.Lock()


def _restart_in_child() -> None:
    """In a forked child, before any other thread runs: every limiter starts afresh.

    The parent's lock, queue, requests in flight (and a `RedisRateLimiter`'s connection and thread)
    are not the child's. Restarting each one lazily, at its first use, raced when the child's first
    calls came from several threads at once: one could queue on the parent's copy, never answered.
    """
    global _registry_lock, _restart_lock
    # A thread of the parent may have held them at the fork.
    _registry_lock, _restart_lock = threading.Lock(), threading.Lock()
    for limiter in list(_alive.values()):
        limiter._start()


if hasattr(os, "register_at_fork"):  # not on Windows, where there is no fork
    os.register_at_fork(after_in_child=_restart_in_child)


def one_per_process(identity: str, make: Callable[[], _L]) -> _L:
    """The limiter `identity` names in this process: the one made or unpickled here first, else `make()`.

    The `_KEPT_COPIES` made here by `make()` and named last are kept alive, though no task holds a
    copy between them (the one made where it was first is its maker's to keep).
    """
    found = _alive.get(identity)
    if found is None:
        made = make()
        made._unpickled = True
        with _registry_lock:
            found = _alive.get(identity)
            if found is None:  # else another thread's, made first
                del _alive[made._identity]
                made._identity = identity
                _alive[identity] = found = made
    if found._unpickled:  # kept, or kept again after others pushed it out while a task held it
        with _registry_lock:
            _kept[identity] = found
            _kept.move_to_end(identity)
            if len(_kept) > _KEPT_COPIES:
                _kept.popitem(last=False)
    return cast("_L", found)  # an identity names one limiter, of one class


def _new_limiter(requests_per_minute: int | None, identity: str | None = None) -> RateLimiter:
    """Unpickle a limiter: copies of one limiter in one process are one limiter.

    A pickle from an earlier version carries no identity: it gives a limiter of its own.
    """
    if identity is None:
        return RateLimiter(requests_per_minute=requests_per_minute)
    return one_per_process(identity, lambda: RateLimiter(requests_per_minute=requests_per_minute))

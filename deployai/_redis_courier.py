"""The thread through which a `RedisRateLimiter` talks to Redis: one per limiter and process.

See `_redis_limiter` for the design. Callers never touch Redis: they hand this thread what they need
and it does the round trips, so that neither threads nor event loops wait on a socket of their own.
"""

from __future__ import annotations

import atexit
import bisect
import contextlib
import logging
import math
import os
import random
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from ._constants import REDIS_LEASE_SECONDS, REDIS_RETRY_SECONDS, REDIS_STATE_TTL_SECONDS
from ._exceptions import DeployAIError
from ._limiter import WITHDRAWN, Answer, Ask, Refused, _apply
from ._pacing import Pacing
from ._redis_state import COMPARE_AND_SET, PER_PROCESS, dump, load, parse

if TYPE_CHECKING:
    from ._limiter import RateLimiter

__all__ = ["Courier"]

log = logging.getLogger("deployai")

_CONFLICTS_BEFORE_GIVING_UP: Final = 64
# After a write that another process's write beat, the next try waits a random moment, up to twice
# as long after each further loss: processes that read one state at once would write at once again
# (two dozen busy processes lost nine writes in ten, and some gave up and paced alone).
_FIRST_CONFLICT_PAUSE_SECONDS: Final = 0.001
_LONGEST_CONFLICT_PAUSE_SECONDS: Final = 0.05
_LONGEST_CONFLICT_PAUSE_ROUND_TRIPS: Final = 16  # the pause's cap for a Redis far away, in its round trips
_CONFLICT_PAUSE_CAP_SECONDS: Final = 1.0  # and whatever the round trips seem to take
_ROUND_TRIPS_KEPT: Final = 8  # the last round trips to Redis, whose fastest tells how far it is
# How long a state this process read or wrote stands in for one Redis lost: what it holds of use
# beyond a window's reset is the last minute's sends.
_KNOWN_STATE_SECONDS: Final = 60.0
# How long a courier's thread outlives its last piece of work (when none of its requests is in flight).
_IDLE_SECONDS: Final = 30.0


class _Redis:
    """The redis-py connection of one process, and the script it runs; created when first needed."""

    __slots__ = ("client", "script")

    def __init__(self, url: str, timeout: float) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:  # pragma: no cover - the extra is installed wherever the tests run
            raise DeployAIError('RedisRateLimiter needs redis-py: pip install "deployai[redis]"') from None
        # No retries inside redis-py: a failed call means pacing locally now, not after several more tries.
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )
        self.script = self.client.register_script(COMPARE_AND_SET)

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes | str, float]:
        """Compare-and-set (or, with `state` empty, read): (written, the current value if not, Redis's time)."""
        ttl = str(int(REDIS_STATE_TTL_SECONDS * 1000))
        written, current, seconds, micros = self.script(keys=[key], args=[version, state, ttl])
        return bool(written), current, int(seconds) + int(micros) / 1e6

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection that is gone already
            self.client.close()


class Courier:
    """The one thread of a process that talks to Redis for a `RedisRateLimiter`.

    Callers hand it `ask()` (may one more request go now? a future of its ticket, or 0) and `tell()`
    (what came of a send; not waited for). Each round trip carries every answer told so far and at
    most one ask. Everything it learns goes into the limiter's `_pacing`, under the limiter's lock,
    and wakes the head of the queue. The thread ends (closing its connection) once it has been idle
    for `_IDLE_SECONDS` with no request of its process in flight, and starts again when needed.
    """

    def __init__(self, limiter: RateLimiter, url: str, shown_url: str, timeout: float) -> None:
        self.limiter = limiter  # its lock guards this too; its `_pacing` is what the courier learned
        self.url, self.shown_url, self.timeout = url, shown_url, timeout
        self.key: str | None = None  # where the state is kept; set before the first ask
        self.offset = time.time() - time.monotonic()  # Redis's clock minus the steady one, as last read
        self.owner = os.urandom(8).hex()  # this process's entry in the shared counts of requests in flight
        self.pid = os.getpid()  # a forked child makes a courier of its own (`RateLimiter._fresh`)
        self.own = 0  # this process's requests in flight
        self.own_tokens = 0  # the tokens they may take (the sum of `costs`)
        self.costs: dict[int, int] = {}  # each one's, by ticket, when it has one (see `RateLimiter._cost`)
        # When each of them was let through, by ticket: the shared state keeps no such record, and a
        # request withdrawn unsent must stop counting as a send of its minute.
        self.admitted: dict[int, float] = {}
        # Its records the shared state has no room for either (`PER_PROCESS`): a stream's 429 reported
        # after its headers must undo their easing in every process's state, for one.
        self.kept: dict[str, Any] = {name: getattr(Pacing(), name) for name in PER_PROCESS}
        self.tickets = 0  # the last ticket this process gave out, or saw given out
        self.token = b""  # the version of the state last read or written (empty: no state)
        self.state: list[Any] | None = None  # as last read or written (None: none, or unreadable)
        self.known_at = -math.inf  # when it was (steady clock)
        self.read_at = -math.inf  # when it was (limiter clock)
        self.written_at = -math.inf
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.asks: deque[Ask] = deque()
        self.answers: list[tuple[int, Answer]] = []
        self.redis: _Redis | None = None  # used by the thread alone
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.round_trips = 0  # for figures: every call of the script
        self.lost_writes = 0  # writes another process's write beat (each is followed by a retry)
        self.round_trip = 0.0  # seconds a write to Redis takes, as learnt (`_timed`); 0 before the first
        self.round_trips_taken: deque[float] = deque(maxlen=_ROUND_TRIPS_KEPT)
        self.wakeup = threading.Condition(limiter._lock)
        self.serving_here = threading.Lock()  # see `_serve_here`

    # --- callers' side (any thread) ---

    def ask(self, cost: int) -> Ask:
        """Ask whether the head of the limiter's queue, of `cost` tokens, may go: an `Ask` of its ticket, or 0."""
        future = Ask()
        future.cost = cost
        with self.wakeup:
            self.asks.append(future)
            running = self._ensure_running()
            self.wakeup.notify()
        if not running:
            self._serve_here()
        return future

    def tell(self, ticket: int, answer: Answer) -> None:
        """Hand over what came of the send with `ticket`, to be written with the next round trip."""
        with self.wakeup:
            self.answers.append((ticket, answer))
            running = self._ensure_running()
            self.wakeup.notify()
        if not running:
            self._serve_here()

    def stop(self, timeout: float | None = None) -> None:
        """Let the thread finish what is pending, close its connection and end; wait for it (at most `timeout`)."""
        with self.wakeup:
            self.stopping = True
            thread = self.thread
            self.wakeup.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self.wakeup:
            self.stopping = False

    def _ensure_running(self) -> bool:
        """Start the thread unless it runs; False when none can run: the process is exiting."""
        if self.thread is None:
            if _exiting:
                return False
            thread = threading.Thread(target=self._run, name="deployai-redis-rate-limiter", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # at interpreter shutdown, Python 3.12 and later start no thread
                return False
            self.thread = thread
            _write_at_exit(self)
        return True

    def _serve_here(self) -> None:
        """Do what the thread would, in the caller's thread, until nothing is pending (when no thread can run).

        At exit, a call made by an exit hook (or by a daemon thread still running) is then let
        through and its answer written at once, instead of waiting for a thread that never starts.
        """
        with self.serving_here:  # one caller at a time: the round trips share one connection and state
            while True:
                with self.wakeup:
                    if self.thread is not None:
                        break
                    asked = self._live_ask()
                    if asked is None and not self.answers:
                        break
                    answers, self.answers = self.answers, []
                self._serve(answers, asked)
            if self.thread is None:
                redis, self.redis = self.redis, None
                if redis is not None:
                    redis.close()

    # --- the thread ---

    def _run(self) -> None:
        renew = REDIS_LEASE_SECONDS / 3
        try:
            while True:
                with self.wakeup:
                    idle_since = time.monotonic()
                    while (asked := self._live_ask()) is None and not self.answers:
                        if self.stopping or (not self.own and time.monotonic() >= idle_since + _IDLE_SECONDS):
                            self.thread = None  # the next ask or answer starts another
                            return
                        if self.own and self.down_since is None and self.limiter._clock() >= self.written_at + renew:
                            break  # renew this process's count of requests in flight
                        self.wakeup.wait(renew if self.own else _IDLE_SECONDS)
                    answers, self.answers = self.answers, []
                self._serve(answers, asked)
        finally:
            redis, self.redis = self.redis, None
            if redis is not None:
                redis.close()

    def _live_ask(self) -> Ask | None:
        """The first ask whose caller still waits for it, now running; None if none. Under the lock.

        The asks of callers that gave up (their deadline, a cancel) are dropped unasked: each would
        cost a round trip, and a slow Redis would take them one at a time before a caller that waits.
        """
        asks = self.asks
        while asks:
            asked = asks.popleft()
            if asked.set_running_or_notify_cancel():
                return asked
        return None

    def _serve(self, answers: list[tuple[int, Answer]], asked: Ask | None) -> None:
        """Settle `answers` and answer `asked` (if any, running) with one round trip."""
        try:
            ticket = self._exchange(answers, None if asked is None else asked.cost)
        except BaseException as exc:  # a bug: tell the caller rather than leave it waiting
            with self.wakeup:
                self.own = max(0, self.own - len(answers))
                self.own_tokens = max(0, self.own_tokens - self._costs_of(answers))
                self._settled(answers, 0, 0, 0.0)
            if asked is not None:
                asked.set_exception(exc)
            return
        if asked is not None:
            asked.set_result(ticket)

    def _exchange(self, answers: list[tuple[int, Answer]], asking: int | None) -> int:
        """Settle `answers` and, when `asking` (the cost of the request that asks), admit it if the pace allows.

        Returns its ticket, or 0.
        """
        limiter = self.limiter
        if self.down_since is None or limiter._clock() >= self.retry_at:
            try:
                return self._remote(answers, asking)
            except Exception as exc:  # Redis down, slow, or answering nonsense: pace here meanwhile
                self._went_down(exc)
        with limiter._lock:  # pacing in this process alone, on what it knew
            now = limiter._clock()
            self.own, self.own_tokens, ticket = self._decide(limiter._pacing, answers, asking, now)
            self._keep_own(limiter._pacing)
            self._settled(answers, ticket, asking or 0, now)
            limiter._wake_head()
        return ticket

    def _remote(self, answers: list[tuple[int, Answer]], asking: int | None) -> int:
        limiter = self.limiter
        key = self.key
        assert key is not None
        if self.redis is None:
            self.redis = _Redis(self.url, self.timeout)
        redis = self.redis
        fresh = False
        if not self.round_trips:  # a first decision on this machine's clock would be written on it
            self._read(redis.call(key, self.token, b""))
            fresh = True
        lost = 0
        while True:
            now = limiter._clock()
            pacing, others = load(
                self.state,
                limiter.requests_per_minute,
                self.owner,
                (self.own, self.own_tokens),
                now - REDIS_LEASE_SECONDS,
            )
            for name, value in self.kept.items():
                setattr(pacing, name, value)
            # While Redis was down, this process gave out tickets past the shared count. Left behind them,
            # the count would give their numbers out again, and make the 429s of requests sent before a
            # strike read as sent after it: a strike each, up to the slowest pace.
            pacing.tickets = max(pacing.tickets, self.tickets)
            own, own_tokens, ticket = self._decide(pacing, answers, asking, now)
            renewing = own and now >= self.written_at + REDIS_LEASE_SECONDS / 3
            if not answers and not ticket and not renewing:
                if fresh:
                    self._keep(pacing, now, written=False)
                    return 0
                self._read(redis.call(key, self.token, b""))
                fresh = True
                continue
            if own:
                others[self.owner] = [own, now, own_tokens]
            state, text = dump(pacing, others)
            token = os.urandom(8).hex().encode()  # never reused, even after the key is lost and made again
            sent = time.monotonic()
            written, current, redis_now = redis.call(key, self.token, token + b" " + text)
            self._timed(time.monotonic() - sent)
            if written:
                self.token, self.state, self.own, self.own_tokens = token, state, own, own_tokens
                self.known_at = time.monotonic()
                self._keep_own(pacing)
                self._settled(answers, ticket, asking or 0, now)
                self._heard(redis_now)
                self._keep(pacing, now, written=True)
                return ticket
            self.lost_writes += 1
            lost += 1
            if lost == _CONFLICTS_BEFORE_GIVING_UP:
                raise RuntimeError("the rate-limit state kept changing under every write")
            self._read((written, current, redis_now))
            fresh = True
            # Measured in round trips: far from Redis, a write is open to others' for a whole round
            # trip, and pauses of a few milliseconds kept six busy processes 20 ms away colliding
            # until some gave up. Bounded whole: while it pauses, no call of this process goes.
            round_trip = self.round_trip
            first = max(_FIRST_CONFLICT_PAUSE_SECONDS, round_trip / 2)
            longest = min(
                _CONFLICT_PAUSE_CAP_SECONDS,
                max(_LONGEST_CONFLICT_PAUSE_SECONDS, _LONGEST_CONFLICT_PAUSE_ROUND_TRIPS * round_trip),
            )
            pause = min(longest, first * 2 ** (lost - 1))
            time.sleep(random.random() * pause)  # noqa: S311  # a jitter, no secret

    def _timed(self, took: float) -> None:
        """Learn how far Redis is: the fastest of the last few round trips (a stall says nothing of the distance)."""
        recent = self.round_trips_taken
        recent.append(took)
        self.round_trip = min(recent)

    def _read(self, answer: tuple[bool, bytes | str, float]) -> None:
        """Take the state and time of a call that wrote nothing as the latest known."""
        _, current, redis_now = answer
        self._heard(redis_now)
        if isinstance(current, str):  # a URL with decode_responses=True
            current = current.encode()
        token, state = parse(current)
        if state is None and self.state is not None:
            # The key was lost (flushed, evicted, Redis restarted without persistence) or spoilt: what
            # this process knew of it, if recent, is written back in its place. Started from nothing,
            # the minute's sends would be forgotten, and `requests_per_minute` would let a whole
            # minute's worth more through. How recent on this machine's steady clock: Redis's, which
            # the limiter's follows, may be another's now (a restart elsewhere).
            if time.monotonic() - self.known_at < _KNOWN_STATE_SECONDS:
                state = self.state
        elif state is not None:
            self.known_at = time.monotonic()
        self.token, self.state = token, state

    def _decide(
        self, pacing: Pacing, answers: list[tuple[int, Answer]], asking: int | None, now: float
    ) -> tuple[int, int, int]:
        """Apply `answers` to `pacing` and admit one if asked (`asking`: its cost) and allowed.

        Returns this process's count in flight, the tokens they may take, and the ticket (0: none).
        """
        own, own_tokens = self.own, self.own_tokens
        for ticket, answer in answers:
            if answer is WITHDRAWN:
                self._unsend(pacing, ticket)
            if not isinstance(answer, Refused):  # a later word on an answer counted already
                own = max(0, own - 1)
                cost = self.costs.get(ticket, 0)
                if cost:  # the state keeps no costs: tell `pacing` this one, for it to stop counting
                    pacing.costs[ticket] = cost
                    own_tokens = max(0, own_tokens - cost)
            _apply(pacing, ticket, answer)
        ticket = 0
        if asking is not None and pacing.delay(now, asking) <= 0:
            ticket = pacing.admit(now, asking)
            own += 1
            own_tokens += asking
        return own, own_tokens, ticket

    def _unsend(self, pacing: Pacing, ticket: int) -> None:
        """Let `pacing` withdraw this process's `ticket`: tell it when the request was let through."""
        at = self.admitted.get(ticket)
        if at is None:
            return
        pacing.admitted[ticket] = at
        sent = pacing.sent
        if at not in sent:  # read back from Redis, where it is kept rounded up (at most to the second)
            kept = bisect.bisect_left(sent, at)
            if kept < len(sent) and sent[kept] - at <= 1.0:  # else a minute old already
                sent[kept] = at

    def _keep_own(self, pacing: Pacing) -> None:
        """Keep this process's records from `pacing`, for the next state read (see `kept` and `tickets`)."""
        self.kept = {name: getattr(pacing, name) for name in PER_PROCESS}
        self.tickets = max(self.tickets, pacing.tickets)

    def _settled(self, answers: list[tuple[int, Answer]], ticket: int, cost: int, now: float) -> None:
        """The round that settled `answers` and gave out `ticket` (0: none) of `cost` tokens at `now` took effect."""
        for answered, answer in answers:
            self.admitted.pop(answered, None)
            if not isinstance(answer, Refused):
                self.costs.pop(answered, None)
        if ticket:
            self.admitted[ticket] = now
            if cost:
                self.costs[ticket] = cost

    def _costs_of(self, answers: list[tuple[int, Answer]]) -> int:
        """The tokens that `answers` free, of the requests they settle."""
        return sum(self.costs.get(ticket, 0) for ticket, answer in answers if not isinstance(answer, Refused))

    def _heard(self, redis_now: float) -> None:
        self.round_trips += 1
        self.offset = redis_now - time.monotonic()
        if self.down_since is not None:
            log.info("Redis answers again: the budget %s is shared again (%s).", self.key, self.shown_url)
            self.down_since = None

    def _keep(self, pacing: Pacing, now: float, *, written: bool) -> None:
        """Make `pacing` what the limiter's queue decides on, and let its head look again."""
        limiter = self.limiter
        with limiter._lock:
            limiter._pacing = pacing
            self.read_at = now
            if written:
                self.written_at = now
            limiter._wake_head()

    def _went_down(self, exc: BaseException) -> None:
        limiter = self.limiter
        now = limiter._clock()
        self.retry_at = now + REDIS_RETRY_SECONDS
        redis, self.redis = self.redis, None  # a new connection next time
        if redis is not None:
            redis.close()
        if self.down_since is None:
            self.down_since = now
            log.warning(
                "Redis is unreachable or failing (%s: %s): pacing the budget %s in this process alone until it answers "
                "again (%s).",
                type(exc).__name__,
                exc,
                self.key,
                self.shown_url,
            )
            with limiter._lock:
                # Other processes' requests in flight can no longer be seen ending: count only ours.
                limiter._pacing.in_flight = self.own
                limiter._pacing.tokens_out = self.own_tokens


# The answers a process told its couriers are written by their threads a moment later. A process
# that exits meanwhile (a one-call script, a worker recycled after each task) would leave the
# requests they answered counted as in flight for every process, until its lease ran out
# (`REDIS_LEASE_SECONDS`): its couriers write what they hold before it exits. The process is the
# owner here, since it is the exit that is waited for; the set holds its couriers weakly.
_running: weakref.WeakSet[Courier] = weakref.WeakSet()
_hooked_pid = 0
_exiting = False  # set once they have: what comes after (another exit hook's call) is done inline


def _write_at_exit(courier: Courier) -> None:
    """Have `courier` write what it holds when this process exits (called as its thread starts)."""
    global _hooked_pid
    _running.add(courier)
    if _hooked_pid != os.getpid():  # once per process: a forked child registers again
        _hooked_pid = os.getpid()
        atexit.unregister(_write_all)  # the parent's, inherited by a forked child: once is enough
        atexit.register(_write_all)
        # A worker process of `multiprocessing` (and `concurrent.futures`) leaves with `os._exit`,
        # which runs no `atexit` hook, after running these finalizers of its own process.
        util = sys.modules.get("multiprocessing.util")
        if util is not None:
            util.Finalize(None, _write_all, exitpriority=0)


def _write_all() -> None:
    """Write what this process's couriers still hold, waiting for each no longer than two Redis calls."""
    global _exiting
    _exiting = True
    pid = os.getpid()
    for courier in list(_running):
        if courier.thread is not None and courier.pid == pid:
            courier.stop(2 * courier.timeout)

"""`RedisRateLimiter`: one API key's pace shared through Redis by every process and machine that uses the key.

It is `RateLimiter` with the budget kept in Redis: the same `Pacing` decisions, the same queue of
callers in each process, the same waiting. What changes is where the state lives.

- The state is one Redis string: a version (a random token, new with every write) and `Pacing`'s
  fields as JSON, with every process's count of requests in flight and the sends of the last minute
  as one [second, count] pair per second. It is only ever replaced by a compare-and-set (a Lua script
  that writes only when the version is the one the change was computed from, and otherwise answers
  with the current state), so that no two processes can both spend the last request of a window. A
  value it cannot read (foreign, corrupt, or of another version of this SDK) counts as no state and
  is replaced.
- The decisions stay in Python, in `Pacing`: a process reads the state, decides, and writes back; a
  write that lost the race is decided again on the state that won.
- Times in it are on Redis's clock (`TIME`), which every process reads along with each answer: no
  machine's wall clock has to agree with another's.
- Each process talks to Redis from one thread of its own (`_Courier`): callers (threads or tasks) hand
  it their request to go and wait for its answer, so an event loop never blocks on Redis and one
  connection serves the whole process. Answers to settle are handed to it without waiting, and
  several that arrive together are written in one round trip. The thread ends when it has been idle
  a while, and copies of one limiter unpickled in one process are that one limiter.
- A process counts its own requests in flight and writes that count (not a difference), renewed at
  least every third of `REDIS_LEASE_SECONDS` while it is not zero: a process that dies stops
  counting after the lease, and a write lost to an outage is corrected by the next.
- When Redis fails (an error, a call slower than `timeout`, or an answer it cannot use), the process
  paces on its own from what it knew, logs one warning, and tries Redis again every
  `REDIS_RETRY_SECONDS`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import urllib.parse
import weakref
from collections import deque
from typing import Any, ClassVar, Final

import httpx

from ._constants import (
    REDIS_LEASE_SECONDS,
    REDIS_POLL_SECONDS,
    REDIS_RETRY_SECONDS,
    REDIS_STATE_TTL_SECONDS,
    REDIS_TIMEOUT_SECONDS,
)
from ._exceptions import DeployAIError, InvalidParameterError
from ._limiter import (
    WITHDRAWN,
    Answer,
    RateLimiter,
    _answer,
    _apply,
    _check_per_minute,
)
from ._pacing import Pacing

__all__ = ["RedisRateLimiter"]

log = logging.getLogger("deployai")

KEY_PREFIX: Final = "deployai:ratelimit:"

# KEYS[1]: the state, "<version> <json>". ARGV: the version the new state was computed from ("" for
# none), the new state ("" only reads), its time to live in ms. Answers {written, the current state
# when not written, TIME}. Versions are random tokens, never reused: a process whose state is stale
# cannot write, even after the key expired or Redis restarted and the state was made again.
_COMPARE_AND_SET: Final = """
local current = redis.call('GET', KEYS[1])
local now = redis.call('TIME')
local version = current and string.match(current, '^%S*') or ''
if ARGV[2] ~= '' and version == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return {1, '', now[1], now[2]}
end
return {0, current or '', now[1], now[2]}
"""

_VERSION: Final = re.compile(rb"\S*")  # as Lua's %S*

# `Pacing`'s fields that every process shares, in the order they are stored.
_SHARED: Final = (
    "limit",
    "remaining",
    "reset_at",
    "told_by",
    "tokens_spent_until",
    "informed",
    "pause_until",
    "spacing",
    "strikes",
    "struck_after",
    "last_sent",
    "tickets",
)
_CONFLICTS_BEFORE_GIVING_UP: Final = 64


def _check_url(url: object) -> str:
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        shown = _redacted_url(url) if isinstance(url, str) else type(url).__name__
        raise InvalidParameterError("url", shown, "a redis://, rediss:// or unix:// URL")
    return url


def _redacted_url(url: str) -> str:
    """The URL without its password, for reprs and messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:" if parts.username else ":"
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name or not name.isprintable():
        raise InvalidParameterError("name", name, "a non-empty printable string, or None")
    return name


def _name_of_key(authorization: str) -> str:
    """A name for the budget of the key in an `Authorization` value; the key cannot be read back from it."""
    return hashlib.sha256(b"deployai rate limit\0" + authorization.encode()).hexdigest()[:24]


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
        self.script = self.client.register_script(_COMPARE_AND_SET)

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes | str, float]:
        """Compare-and-set (or, with `state` "", read): (written, the current state if not, Redis's time)."""
        ttl = str(int(REDIS_STATE_TTL_SECONDS * 1000))
        written, current, seconds, micros = self.script(keys=[key], args=[version, state, ttl])
        return bool(written), current, int(seconds) + int(micros) / 1e6

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a connection that is gone already
            self.client.close()


class RedisRateLimiter(RateLimiter):
    """A `RateLimiter` whose budget is kept in Redis: every process and machine using the key shares it.

    Give the same settings to every process (`RedisRateLimiter(url)`; it pickles, so it can also be
    sent to process pools and Dask workers with the client): they then pace the key's calls together,
    as one `RateLimiter` paces the calls of one process. The decisions are `RateLimiter`'s; the state
    they act on is read from and written to Redis atomically, with Redis's clock as the common time.

    Redis is only ever asked from one background thread per process, so neither threads nor event
    loops block on it. If Redis is unreachable, or slower than `timeout`, the limiter logs one warning
    and paces each process on its own from what it had learned (calls are neither lost nor held), and
    goes back to Redis as soon as it answers again.

    Needs `pip install "deployai[redis]"`.

    Args:
        url: where Redis is, as redis-py takes it (`redis://host:6379/0`, `rediss://…`, `unix://…`).
            A password in it is never shown in a repr, but it is in a pickle of the limiter.
        name: the name of the budget: the state is kept under `deployai:ratelimit:<name>`. The default
            is derived from the API key of the first request (a hash: the key is not stored), so that
            limiters for one key share a budget and limiters for different keys do not.
        requests_per_minute: your plan's limit, if you know it (see `RateLimiter`).
        timeout: seconds a Redis call may take before Redis counts as down.

    Raises:
        InvalidParameterError: a parameter is not valid.
        DeployAIError: redis-py is not installed.
    """

    _admits_here: ClassVar[bool] = False

    def __init__(
        self,
        url: str,
        *,
        name: str | None = None,
        requests_per_minute: int | None = None,
        timeout: float = REDIS_TIMEOUT_SECONDS,
    ) -> None:
        self._url: Final = _check_url(url)
        self._name: Final = _check_name(name)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise InvalidParameterError("timeout", timeout, "a number of seconds > 0")
        self._timeout: Final = float(timeout)
        _check_per_minute(requests_per_minute)
        try:
            import redis
        except ImportError:
            raise DeployAIError('RedisRateLimiter needs redis-py: pip install "deployai[redis]"') from None
        try:
            redis.ConnectionPool.from_url(url)  # reads the URL (port, options) without connecting
        except (ValueError, TypeError):
            raise InvalidParameterError("url", _redacted_url(url), "a Redis URL redis-py can read") from None
        super().__init__(requests_per_minute=requests_per_minute)
        with _limiters_lock:
            _limiters.setdefault((url, name, requests_per_minute, self._timeout), self)

    def _start(self) -> None:
        super()._start()
        self._key: str | None = None if self._name is None else KEY_PREFIX + self._name
        self._offset = time.time() - time.monotonic()  # Redis's clock minus the steady one, as last read
        self._courier = _Courier(self)

    def _clock(self) -> float:
        """Now, on Redis's clock (as last read, carried on by the steady clock)."""
        return time.monotonic() + self._offset

    @property
    def url(self) -> str:
        """Where Redis is, without any password."""
        return _redacted_url(self._url)

    @property
    def key(self) -> str | None:
        """The Redis key the budget is kept under; None until the first request when it is derived from the key."""
        return self._key

    @property
    def shared(self) -> bool:
        """Whether the budget is being shared through Redis right now (False while Redis is down)."""
        return self._courier.down_since is None

    def __repr__(self) -> str:
        pacing = self._pacing
        return (
            f"RedisRateLimiter(url={self.url!r}, key={self._key!r}, requests_per_minute={self._requests_per_minute}, "
            f"limit={pacing.limit}, remaining={pacing.remaining}, in_flight={pacing.in_flight}, "
            f"waiting={len(self._queue)}, shared={self.shared})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_new_redis_limiter, (self._url, self._name, self._requests_per_minute, self._timeout))

    def close(self) -> None:
        """Write what is still pending to Redis and stop this process's Redis thread and connection.

        Optional: a process that exits without it stops counting its requests in flight after a few
        seconds. The limiter can still be used after it; it then starts again.
        """
        self._courier.stop()

    # --- the shells' side -------------------------------------------------------------------------

    def _settle(self, ticket: int, outcome: object) -> None:
        self._courier.tell(ticket, _answer(self._clock(), outcome))

    def _withdraw(self, ticket: int) -> None:
        self._courier.tell(ticket, WITHDRAWN)

    # --- in this process --------------------------------------------------------------------------

    def _prepare(self, request: httpx.Request) -> None:
        """Start afresh in a forked child, and name the budget after the request's key if no name was given."""
        if self._pid != os.getpid():
            self._start()
        if self._name is None:
            name = _name_of_key(request.headers.get("authorization", ""))
            key = KEY_PREFIX + name
            if self._key is None:
                self._key = key
            elif key != self._key:
                raise InvalidParameterError(
                    "rate_limiter",
                    "a RedisRateLimiter already pacing another API key",
                    "one RedisRateLimiter per API key (or give each a name=)",
                )

    def _ask(self) -> concurrent.futures.Future[int]:
        return self._courier.ask()

    def _delay(self, now: float) -> float:
        wait = self._pacing.delay(now)
        if wait > 0 and self._courier.down_since is None and wait > self._pacing.firm_delay(now):
            # Held until answers arrive, which other processes may receive: look again soon.
            wait = min(wait, max(0.0, self._courier.read_at + REDIS_POLL_SECONDS - now))
        return wait


class _Courier:
    """The one thread of a process that talks to Redis for a `RedisRateLimiter`.

    Callers hand it `ask()` (may one more request go now? a future of its ticket, or 0) and `tell()`
    (what came of a send; not waited for). Each round trip carries every answer told so far and at
    most one ask. Everything it learns goes into the limiter's `_pacing`, under the limiter's lock,
    and wakes the head of the queue. The thread ends (closing its connection) once it has been idle
    for `_IDLE_SECONDS` with no request of its process in flight, and starts again when needed.
    """

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self.limiter = limiter
        self.owner = os.urandom(8).hex()  # this process's entry in the shared counts of requests in flight
        self.own = 0  # this process's requests in flight
        self.token = b""  # the version of the state last read or written (empty: no state)
        self.state: list[Any] | None = None  # as last read or written (None: none, or unreadable)
        self.read_at = -math.inf  # when it was (limiter clock)
        self.written_at = -math.inf
        self.down_since: float | None = None
        self.retry_at = 0.0
        self.asks: deque[concurrent.futures.Future[int]] = deque()
        self.answers: list[tuple[int, Answer]] = []
        self.redis: _Redis | None = None  # used by the thread alone
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.round_trips = 0  # for figures: every call of the script
        self.lost_writes = 0  # writes another process's write beat (each is followed by a retry)
        self.wakeup = threading.Condition(limiter._lock)

    # --- callers' side (any thread) ---

    def ask(self) -> concurrent.futures.Future[int]:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with self.wakeup:
            self.asks.append(future)
            self._ensure_running()
            self.wakeup.notify()
        return future

    def tell(self, ticket: int, answer: Answer) -> None:
        with self.wakeup:
            self.answers.append((ticket, answer))
            self._ensure_running()
            self.wakeup.notify()

    def stop(self) -> None:
        """Let the thread finish what is pending, close its connection and end; wait for it."""
        with self.wakeup:
            self.stopping = True
            thread = self.thread
            self.wakeup.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self.wakeup:
            self.stopping = False

    def _ensure_running(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="deployai-redis-rate-limiter", daemon=True)
            self.thread.start()

    # --- the thread ---

    def _run(self) -> None:
        renew = REDIS_LEASE_SECONDS / 3
        try:
            while True:
                with self.wakeup:
                    idle_since = time.monotonic()
                    while not self.asks and not self.answers:
                        if self.stopping or (not self.own and time.monotonic() >= idle_since + _IDLE_SECONDS):
                            self.thread = None  # the next ask or answer starts another
                            return
                        if self.own and self.down_since is None and self.limiter._clock() >= self.written_at + renew:
                            break  # renew this process's count of requests in flight
                        self.wakeup.wait(renew if self.own else _IDLE_SECONDS)
                    answers, self.answers = self.answers, []
                    asked = self.asks.popleft() if self.asks else None
                if asked is not None and not asked.set_running_or_notify_cancel():
                    asked = None  # its caller gave up before it was asked
                try:
                    ticket = self._exchange(answers, asked is not None)
                except BaseException as exc:  # a bug: tell the caller rather than leave it waiting
                    with self.wakeup:
                        self.own = max(0, self.own - len(answers))
                    if asked is not None:
                        asked.set_exception(exc)
                    continue
                if asked is not None:
                    asked.set_result(ticket)
        finally:
            redis, self.redis = self.redis, None
            if redis is not None:
                redis.close()

    def _exchange(self, answers: list[tuple[int, Answer]], asking: bool) -> int:
        """Settle `answers` and, when `asking`, admit one request if the pace allows: its ticket, or 0."""
        limiter = self.limiter
        if self.down_since is None or limiter._clock() >= self.retry_at:
            try:
                return self._remote(answers, asking)
            except Exception as exc:  # Redis down, slow, or answering nonsense: pace here meanwhile
                self._went_down(exc)
        with limiter._lock:  # pacing in this process alone, on what it knew
            self.own, ticket = self._decide(limiter._pacing, answers, asking, limiter._clock())
            limiter._wake_head()
        return ticket

    def _remote(self, answers: list[tuple[int, Answer]], asking: bool) -> int:
        limiter = self.limiter
        key = limiter._key
        assert key is not None
        if self.redis is None:
            self.redis = _Redis(limiter._url, limiter._timeout)
        redis = self.redis
        fresh = False
        for _ in range(_CONFLICTS_BEFORE_GIVING_UP):
            now = limiter._clock()
            pacing, others = self._load(now)
            own, ticket = self._decide(pacing, answers, asking, now)
            renewing = own and now >= self.written_at + REDIS_LEASE_SECONDS / 3
            if not answers and not ticket and not renewing:
                if fresh:
                    self._keep(pacing, now, written=False)
                    return 0
                written, current, redis_now = redis.call(key, self.token, b"")
            else:
                if own:
                    others[self.owner] = [own, now]
                state = [
                    *(getattr(pacing, name) for name in _SHARED),
                    _buckets(pacing.sent),
                    list(pacing.recent),
                    others,
                ]
                token = os.urandom(8).hex().encode()  # never reused, even after the key is lost and made again
                text = json.dumps(state, separators=(",", ":"))
                written, current, redis_now = redis.call(key, self.token, token + b" " + text.encode())
                if written:
                    self.token, self.state, self.own = token, state, own
                    self._heard(redis_now)
                    self._keep(pacing, now, written=True)
                    return ticket
                self.lost_writes += 1
            self._heard(redis_now)
            self._read(current)
            fresh = True
        raise RuntimeError("the rate-limit state kept changing under every write")

    def _decide(self, pacing: Pacing, answers: list[tuple[int, Answer]], asking: bool, now: float) -> tuple[int, int]:
        """Apply `answers` to `pacing` and admit one if asked and allowed: (this process's count in flight, ticket)."""
        own = self.own
        for ticket, answer in answers:
            _apply(pacing, ticket, answer)
            own = max(0, own - 1)
        ticket = 0
        if asking and pacing.delay(now) <= 0:
            ticket = pacing.admit(now)
            own += 1
        return own, ticket

    def _load(self, now: float) -> tuple[Pacing, dict[str, list[Any]]]:
        """`Pacing` at the state last read, counting the requests in flight of every live process."""
        pacing = Pacing(requests_per_minute=self.limiter._requests_per_minute)
        others: dict[str, list[Any]] = {}
        state = self.state
        if state is not None:
            for name, value in zip(_SHARED, state, strict=False):
                setattr(pacing, name, value)
            count = len(_SHARED)
            for at, times in state[count]:
                pacing.sent.extend(itertools.repeat(at, times))
            pacing.recent.extend(state[count + 1])
            lease_start = now - REDIS_LEASE_SECONDS
            others = {owner: entry for owner, entry in state[count + 2].items() if entry[1] >= lease_start}
            others.pop(self.owner, None)
        pacing.in_flight = self.own + sum(entry[0] for entry in others.values())
        return pacing, others

    def _read(self, current: bytes | str) -> None:
        """Take the state Redis answered with; one that cannot be read counts as none (and is replaced)."""
        if isinstance(current, str):  # a URL with decode_responses=True
            current = current.encode()
        # The version is what the script takes it to be: everything up to the first white space.
        token = _VERSION.match(current)
        self.token = token.group() if token is not None else b""
        text = current[len(self.token) :]
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        self.state = state if _readable(state) else None

    def _heard(self, redis_now: float) -> None:
        self.round_trips += 1
        self.limiter._offset = redis_now - time.monotonic()
        if self.down_since is not None:
            log.warning("Redis answers again: the rate limit is shared again (%s).", self.limiter.url)
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
                "Redis is unreachable (%s: %s): pacing in this process alone until it answers again (%s).",
                type(exc).__name__,
                exc,
                limiter.url,
            )
            with limiter._lock:
                # Other processes' requests in flight can no longer be seen ending: count only ours.
                limiter._pacing.in_flight = self.own


# How long a courier's thread outlives its last piece of work (when none of its requests is in flight).
_IDLE_SECONDS: Final = 30.0

_NUMBER: Final = (int, float)
# What each shared field may hold: anything else (a foreign or corrupt value) makes the state unreadable.
_FIELD_TYPES: Final[tuple[tuple[type, ...], ...]] = (
    (int, type(None)),  # limit
    (int, type(None)),  # remaining
    (int, float, type(None)),  # reset_at
    (int,),  # told_by
    _NUMBER,  # tokens_spent_until
    (bool,),  # informed
    _NUMBER,  # pause_until
    _NUMBER,  # spacing
    (int,),  # strikes
    (int,),  # struck_after
    _NUMBER,  # last_sent
    (int,),  # tickets
)


def _readable(state: object) -> bool:
    """Whether `state` has the shape this version writes, every value of the right type."""
    if not isinstance(state, list) or len(state) != len(_SHARED) + 3:
        return False
    count = len(_SHARED)
    sent, recent, flights = state[count], state[count + 1], state[count + 2]
    return (
        all(isinstance(value, types) for value, types in zip(state, _FIELD_TYPES, strict=False))
        and isinstance(sent, list)
        and all(_pair(entry, _NUMBER, int) for entry in sent)
        and isinstance(recent, list)
        and all(isinstance(at, _NUMBER) for at in recent)
        and isinstance(flights, dict)
        and all(_pair(entry, int, _NUMBER) for entry in flights.values())
    )


def _pair(entry: object, first: type | tuple[type, ...], second: type | tuple[type, ...]) -> bool:
    if not isinstance(entry, list) or len(entry) != 2:
        return False
    head, tail = entry
    if not isinstance(head, first) or isinstance(head, bool) or not isinstance(tail, second):
        return False
    return isinstance(tail, (int, float)) and tail >= 0


def _buckets(sent: deque[float]) -> list[list[Any]]:
    """The send times of the last minute (for `requests_per_minute`) as [second, count] pairs.

    Each time is rounded up to the next whole second: the state stays at most 60 pairs whatever the
    rate, and a send counts a little longer than it happened (waits err long, never short).
    """
    pairs: list[list[Any]] = []
    for at in sent:
        second = math.ceil(at)
        if pairs and pairs[-1][0] == second:
            pairs[-1][1] += 1
        else:
            pairs.append([second, 1])
    return pairs


_limiters: weakref.WeakValueDictionary[tuple[Any, ...], RedisRateLimiter] = weakref.WeakValueDictionary()
_limiters_lock = threading.Lock()


def _new_redis_limiter(url: str, name: str | None, requests_per_minute: int | None, timeout: float) -> RedisRateLimiter:
    """Unpickle a limiter: copies with the same settings in one process are one limiter (one queue, one connection)."""
    settings = (url, name, requests_per_minute, timeout)
    limiter = _limiters.get(settings)
    if limiter is None:
        made = RedisRateLimiter(url, name=name, requests_per_minute=requests_per_minute, timeout=timeout)
        limiter = _limiters.get(settings, made)  # another thread's, if it made one first
    return limiter

"""`RedisRateLimiter`: one API key's pace shared through Redis by every process and machine that uses the key.

It is `RateLimiter` with the budget kept in Redis: the same `Pacing` decisions, the same queue of
callers in each process, the same waiting. What changes is where the state lives.

- The state is one Redis string (`_redis_state`): a version (a random token, new with every write) and `Pacing`'s
  fields as JSON, with every process's count of requests in flight (and the tokens they may take) and the sends of
  the last minute as at most 60 [time, count] pairs (see `_redis_state`). It is only ever replaced by a
  compare-and-set (a Lua script that writes only when the version is the one the change was computed from, and
  otherwise answers with the current state), so that no two processes can both spend the last request of a window. A
  value it cannot read (foreign, corrupt, or of another version of this SDK) counts as no state and is replaced.
- The decisions stay in Python, in `Pacing`: a process reads the state, decides, and writes back; a
  write that lost the race is decided again on the state that won.
- Times in it are on Redis's clock (`TIME`), which every process reads along with each answer: no
  machine's wall clock has to agree with another's.
- Each process talks to Redis from one thread of its own (`_redis_courier.Courier`): callers (threads or tasks) hand
  it their request to go and wait for its answer, so an event loop never blocks on Redis and one
  connection serves the whole process. Answers to settle are handed to it without waiting, and
  several that arrive together are written in one round trip. The thread ends when it has been idle
  a while, and copies of one limiter unpickled in one process are that one limiter.
- A process counts its own requests in flight and their tokens and writes them (not a difference), renewed at least
  every third of `REDIS_LEASE_SECONDS` while it is not zero: a process that dies stops counting after the lease, and
  a write lost to an outage is corrected by the next.
- When Redis fails (an error, a read slower than `timeout`, or an answer it cannot use), the process
  paces on its own from what it knew, logs one warning, and tries Redis again every
  `REDIS_RETRY_SECONDS`. A Redis that answers, however slowly, is waited for: by each caller until
  its deadline (at least `_ASK_TIMEOUTS` times `timeout`), which then refuses its call.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
import urllib.parse
from typing import Any, ClassVar, Final

import httpx

from ._config import conceal, kind_of
from ._constants import REDIS_POLL_SECONDS, REDIS_TIMEOUT_SECONDS
from ._exceptions import DeployAIError, InvalidParameterError
from ._limiter import (
    WITHDRAWN,
    Answer,
    Ask,
    RateLimiter,
    Refused,
    _answer,
    _check_per_minute,
    _tokens_shown,
    one_per_process,
    token_cost,
)
from ._public import show_as_public
from ._redis_courier import Courier

__all__ = ["RedisRateLimiter"]

KEY_PREFIX: Final = "deployai:ratelimit:"


def _check_url(url: object) -> str:
    if not isinstance(url, str) or url.partition(":")[0].lower() not in ("redis", "rediss", "unix"):
        shown = _redacted_url(url) if isinstance(url, str) else kind_of(url)
        raise InvalidParameterError("url", shown, "a redis://, rediss:// or unix:// URL")
    return url


# A caller at the head of the queue waits for Redis's answer until its deadline, and at least this
# many `timeout`s: a round trip may take several reads, and more while this process is busy.
_ASK_TIMEOUTS: Final = 4
_QUERY_FIELD: Final = re.compile(r"(?<=[?&])([^=&]*)=([^&]*)")


def _redacted_url(url: str) -> str:
    """The URL without its passwords (`redis://:pw@host`, `?password=pw` as redis-py also takes it, `ssl_password`).

    A password in the user part may hold any character, unescaped: what is hidden errs towards too
    much. The passwords redis-py reads from the URL are hidden wherever they are written.
    """

    def field(found: re.Match[str]) -> str:
        name, value = found.group(1), found.group(2)
        secret = "password" in urllib.parse.unquote_plus(name).lower() or "password" in value.lower()
        return f"{name}=***" if secret else found.group()

    shown = url
    for secret in _passwords_read(url):
        for form in {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret)}:
            shown = shown.replace(form, "***")
    shown = _QUERY_FIELD.sub(field, shown)  # before the user part: such a password may hold an "@"
    scheme, colon, rest = shown.partition(":")
    slashes = len(rest) - len(rest.lstrip("/"))
    head, rest = f"{scheme}{colon}{rest[:slashes]}", rest[slashes:]
    if "@" not in rest:
        return shown
    try:
        netloc = urllib.parse.urlsplit(shown).netloc
    except ValueError:  # such as an unclosed "[" of an IPv6 address
        netloc = ""
    user, at, _ = netloc.rpartition("@")
    if at and rest.startswith(netloc) and "@" not in rest[len(netloc) :]:
        name, colon, _ = user.partition(":")
        # Alone, the user part is a user name to redis-py, and often a password meant as one.
        return f"{head}{name}:***@{rest[len(user) + 1 :]}" if colon else f"{head}***@{rest[len(user) + 1 :]}"
    # An "@" past the host part that urllib read: a password with a "#", "/" or "?" ends that part
    # early. All up to the last "@" may be a password.
    return f"{head}***@{rest.rpartition('@')[2]}"


def _passwords_read(url: str) -> list[str]:
    """The passwords redis-py reads from `url` (none if it cannot read it)."""
    try:
        import redis

        read: dict[str, object] = redis.ConnectionPool.from_url(url).connection_kwargs
    except Exception:  # a URL it cannot read, or no redis-py: the patterns alone hide them
        return []
    return [value for name, value in read.items() if "password" in name and isinstance(value, str) and value]


def _check_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str) or not name or not name.isprintable():
        raise InvalidParameterError("name", name, "a non-empty printable string, or None")
    return name


def _name_of_key(request: httpx.Request) -> str:
    """A name for the budget of the key `request` carries; the key cannot be read back from it.

    The key is its `Authorization` value, and a gateway's key beside it (Azure-style gateways read
    an `api-key` or `x-api-key` header, or a query parameter whose name ends in "key", and the
    client's own key is then a placeholder): two such keys behind one placeholder are two budgets.
    Other query parameters (`api-version`) and per-request signatures leave the name as it is.
    Without those keys, the name is what it always was, so that processes of an earlier release
    share the budget with this one's.
    """
    headers = request.headers
    credential = headers.get("authorization", "")
    gateway_keys = [f"{name}: {value}" for name in _GATEWAY_KEY_HEADERS for value in headers.get_list(name)]
    query = request.url.query
    if query:  # or in the query (`extra_query={"api-key": ...}`), under a name that ends in "key"
        for name, value in urllib.parse.parse_qsl(query.decode("ascii", "replace"), keep_blank_values=True):
            if name.lower().endswith("key"):
                gateway_keys.append(f"?{name}={value}")
    if gateway_keys:
        credential = "\0".join([credential, *gateway_keys])
    return hashlib.sha256(b"deployai rate limit\0" + credential.encode()).hexdigest()[:24]


_GATEWAY_KEY_HEADERS = ("api-key", "x-api-key")


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
        timeout: seconds a read from Redis may take before Redis counts as down.

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
        url = conceal(url)  # its password never shows in a traceback's locals
        self._url: Final = _check_url(url)
        self._name: Final = _check_name(name)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
            raise InvalidParameterError("timeout", timeout, "a number of seconds > 0")
        self._timeout: Final = float(timeout)
        self._round_trip_allowance = _ASK_TIMEOUTS * self._timeout
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

    def _fresh(self) -> None:
        super()._fresh()
        self._courier = Courier(self, self._url, _redacted_url(self._url), self._timeout)
        self._courier.key = None if self._name is None else KEY_PREFIX + self._name

    def _clock(self) -> float:
        """Now, on Redis's clock (as last read, carried on by the steady clock)."""
        return time.monotonic() + self._courier.offset

    @property
    def url(self) -> str:
        """Where Redis is, without any password."""
        return _redacted_url(self._url)

    @property
    def key(self) -> str | None:
        """The Redis key the budget is kept under; None until the first request when it is derived from the key."""
        return self._courier.key

    @property
    def shared(self) -> bool:
        """Whether the budget is being shared through Redis right now (False while Redis is down)."""
        return self._courier.down_since is None

    def __repr__(self) -> str:
        if getattr(self, "_courier", None) is None:  # half-built, as `RateLimiter.__repr__` says
            return f"{type(self).__name__}(<not built>)"
        pacing = self._pacing
        return (
            f"RedisRateLimiter(url={self.url!r}, key={self.key!r}, requests_per_minute={self._requests_per_minute}, "
            f"limit={pacing.limit}, remaining={pacing.remaining}, in_flight={pacing.in_flight}, "
            f"{_tokens_shown(pacing)}waiting={len(self._queue)}, shared={self.shared})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_new_redis_limiter, (self._url, self._name, self._requests_per_minute, self._timeout, self._identity))

    def close(self) -> None:
        """Write what is still pending to Redis and stop this process's Redis thread and connection.

        Optional: a process that exits without it (normally, or as a `multiprocessing` worker) writes
        what is pending first, waiting at most twice `timeout`. The limiter can still be used after
        it; it then starts again.
        """
        self._courier.stop()

    # --- the shells' side -------------------------------------------------------------------------

    def _settle(self, ticket: int, outcome: object, took: float) -> None:
        # Redis's clock is a unix time: resets are read on it, the same in every process, whatever
        # the clock of the machine each one runs on says.
        answer: Answer = None  # as in `RateLimiter._settle`
        try:
            now = self._clock()
            answer = _answer(now, outcome, now, took)
        finally:
            self._courier.tell(ticket, answer)

    def _withdraw(self, ticket: int) -> None:
        self._courier.tell(ticket, WITHDRAWN)

    def _learn_later(self, ticket: int, refused: Refused) -> None:
        self._courier.tell(ticket, refused)

    # --- in this process --------------------------------------------------------------------------

    def _prepare(self, request: httpx.Request) -> None:
        """Name the budget after the request's key if no name was given (refusing a second key)."""
        if self._name is None:
            name = _name_of_key(request)
            key = KEY_PREFIX + name
            if self._courier.key is None:
                self._courier.key = key
            elif key != self._courier.key:
                raise InvalidParameterError(
                    "rate_limiter",
                    "a RedisRateLimiter already pacing another API key",
                    "one RedisRateLimiter per API key (or give each a name=)",
                )

    def _ask(self, cost: int) -> Ask:
        return self._courier.ask(cost)

    def _asked_where(self) -> str:
        return f"Redis ({self.url})"

    def _cost(self, request: httpx.Request) -> int:
        # Always: the state read when it asks may know a token budget this process has not seen yet,
        # and each process's tokens in flight are written whether or not one is known.
        return token_cost(request)

    def _delay(self, now: float, cost: int) -> float:
        wait = self._pacing.delay(now, cost)
        if wait > 0 and self._courier.down_since is None and wait > self._pacing.firm_delay(now, 0, cost):
            # Held until answers arrive, which other processes may receive: look again soon.
            wait = min(wait, max(0.0, self._courier.read_at + REDIS_POLL_SECONDS - now))
        return wait


show_as_public(RedisRateLimiter)  # as the other public classes: it is `deployai.RedisRateLimiter`


def _new_redis_limiter(
    url: str, name: str | None, requests_per_minute: int | None, timeout: float, identity: str
) -> RedisRateLimiter:
    """Unpickle a limiter: copies of one limiter in one process are one limiter (one queue, one connection)."""
    return one_per_process(
        identity, lambda: RedisRateLimiter(url, name=name, requests_per_minute=requests_per_minute, timeout=timeout)
    )

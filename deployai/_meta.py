"""What every answer knows about the response it came from, written once for results, raw responses, streams and errors.

`ResponseMeta` is the plain data (headers and timing); `ResponseInfo` is the mixin that turns it into
`rate_limit`, `request_id` and `elapsed`. Keeping the data plain is what lets an error travel in a
pickle without its live `httpx.Response`.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from ._logging import known_keys_redacted
from ._ratelimit import RateLimit, last_values, rate_limit_on_our_clock

__all__ = ["ResponseInfo", "ResponseMeta"]


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    """The headers of a response and how long it took.

    Attributes:
        headers: the response headers (an `httpx.Headers`, or a plain dict after unpickling).
        elapsed: seconds from sending the request until the whole body was read (for a stream:
            until its headers), or None when not measured.
        received_at: the unix time the response was seen, which resets given as durations
            (`x-ratelimit-reset-requests: 6m0s`) count from.
        retries: how many retries the call made before this response (0: its first attempt).
    """

    headers: Mapping[str, str]
    elapsed: float | None = None
    received_at: float = field(default_factory=time.time)
    retries: int = 0

    def portable(self, secret: str | tuple[str, ...] | None = None) -> ResponseMeta:
        """A copy whose headers are a plain, picklable dict (names in lowercase), without API keys.

        A server may echo the request's key in a header: `secret` and the keys of live clients are
        redacted from them. Nothing else is: a header may hold `Bearer realm=...` or an id that
        starts with `sk-`.
        """
        # A name sent twice stays joined, as httpx joins it, but for the ones `rate_limit` and
        # `retry_after` read: joined, they would read as none, so each is its last value.
        last = last_values(self.headers)
        headers = {}
        for name, value in self.headers.items():
            lowered = name.lower()
            kept = last.get(lowered, value) if lowered in _READ_LAST or lowered.startswith(_LIMITS) else value
            headers[lowered] = known_keys_redacted(kept, secret)
        return ResponseMeta(headers, self.elapsed, self.received_at, self.retries)


_NO_META = ResponseMeta({}, received_at=0.0)
_READ_LAST: Final = frozenset({"date", "retry-after", "retry-after-ms"})
_LIMITS: Final = "x-ratelimit-"


class ResponseInfo:
    """`rate_limit`, `request_id`, `retries` and `elapsed` for anything that knows its `ResponseMeta`."""

    __slots__ = ()

    def _response_meta(self) -> ResponseMeta | None:
        """The meta of the response this object came from; None when it did not come from one."""
        raise NotImplementedError

    @property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with the response (all None when it reported none).

        Its resets are on this machine's clock, also when the response's `Date` shows the server's
        clock differs from it.
        """
        meta = self._response_meta() or _NO_META
        sent_at = -math.inf if meta.elapsed is None else meta.received_at - meta.elapsed
        return rate_limit_on_our_clock(meta.headers, meta.received_at, sent_at)

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for the response: quote it when you ask for support.

        Without the keys of live clients, should the server echo one in it.
        """
        meta = self._response_meta() or _NO_META
        request_id = meta.headers.get("x-request-id")
        return None if request_id is None else known_keys_redacted(request_id)

    @property
    def retries(self) -> int:
        """How many retries the call made before this answer (0: its first attempt succeeded)."""
        meta = self._response_meta()
        return 0 if meta is None else meta.retries

    @property
    def elapsed(self) -> datetime.timedelta | None:
        """Time from sending the answered attempt until its whole body was read (a stream: its headers), or None.

        Earlier attempts and the waits between retries are not counted: `retries` says how many there were.
        """
        meta = self._response_meta()
        if meta is None or meta.elapsed is None:
            return None
        return datetime.timedelta(seconds=meta.elapsed)

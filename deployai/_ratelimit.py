"""`RateLimit`: the rate-limit window a response reported, read from whichever headers the gateway sends.

Four dialects are read into the same fields:

- DeployAI: `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset` (unix seconds);
- OpenAI: `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`, the reset a duration such as `1s`,
  `6m0s`, `20ms` or `1h2m3.5s`;
- the LiteLLM proxy: `x-ratelimit-limit-requests` and friends as OpenAI's, plus its per-key
  `x-ratelimit-api_key-{limit,remaining}-{requests,tokens}`;
- Anthropic: `anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`, the reset an RFC 3339
  time such as `2026-12-06T12:00:30Z` (its `tokens` budget is the most restrictive of its input and
  output ones; those are not read on their own, as a call's estimate is of both together).

When a response reports several budgets of one kind, the fields show the most restrictive: the one
with the fewest requests (or tokens) remaining. Anything malformed reads as None, never as an error.
"""

from __future__ import annotations

import dataclasses
import email.utils
import math
import operator
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ._constants import DATE_HEADER_SLACK_SECONDS

__all__ = ["RateLimit", "WindowReport", "clock_offset", "http_date", "rate_limit_on_our_clock", "read_window"]

_MAX_DURATION_CHARS = 64  # "1h2m3.5s" is 8: anything much longer is not a duration
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# An RFC 3339 time, as Anthropic writes its resets; its fraction of a second may have any length.
_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", re.ASCII)
# A reset given as a plain number above this is a unix time; below it, seconds from now (some
# gateways send `x-ratelimit-reset: 60`). No window lasts until 1973.
UNIX_TIME_FLOOR_SECONDS = 100_000_000
_LAST_UNIX_SECOND = 253_402_300_799.0  # 9999-12-31 23:59:59 UTC, the last moment a datetime can hold


def _int_or_none(value: str | None) -> int | None:
    """A whole, non-negative number from a header (`4.0` reads as 4); None for anything else, never an error.

    Only ASCII decimal notation is read: `int` and `float` alone would also take "1_000", "nan",
    "inf" and non-ASCII digits, and `int` raises ValueError past 4300 digits. Beyond 18 digits the
    value goes through `float`, and a number too large for one (`1e400`, 5000 digits) is None.
    """
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or text.strip("0123456789.eE+-"):
        return None
    if text.isdigit() and len(text) <= 18:
        return int(text)
    try:
        number = float(text)
    except ValueError:  # a misplaced sign, dot or exponent: "1-2", "1..2", "e5"
        return None
    return int(number) if 0.0 <= number < float("inf") else None  # the comparison is False for NaN too


def _duration_seconds(value: str) -> float | None:
    """Seconds in a duration such as `6m0s`, `20ms` or `1h2m3.5s`; None unless the whole text is one."""
    text = value.strip()
    if not text or len(text) > _MAX_DURATION_CHARS:
        return None
    total, position = 0.0, 0
    for part in _DURATION_PART.finditer(text):
        if part.start() != position:
            return None
        total += float(part.group(1)) * _UNIT_SECONDS[part.group(2)]
        position = part.end()
    return total if position == len(text) else None


def _rfc3339_seconds(value: str) -> float | None:
    """The unix time of an RFC 3339 time (`2026-12-06T12:00:30.5Z`, `...+01:00`); None for anything else."""
    match = _RFC3339.fullmatch(value.strip())
    if match is None:
        return None
    day, clock, fraction, zone = match.groups()
    # Python 3.10's `fromisoformat` takes neither `Z` nor a fraction of other than 3 or 6 digits.
    zone = "+00:00" if zone in "Zz" else zone
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{zone}")
    except ValueError:  # a day or an hour out of range
        return None
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def http_date(value: str) -> float | None:
    """The unix time an HTTP date names (`Fri, 04 Dec 2026 23:50:29 GMT`, or an obsolete form); None if none.

    Never raises: a date that is not a real one (year 1 to 9999, every field in range) is None.
    """
    # The range checks keep `mktime_tz` from raising ValueError (year 10000) or OverflowError (a
    # 20-digit year), and from counting a 400-digit day into an int too large for a float. The
    # broad `except` is for `parsedate_tz` itself, which raised IndexError or UnboundLocalError
    # on some malformed dates in earlier Python releases (CPython gh-95087, bpo-45239).
    try:
        parsed = email.utils.parsedate_tz(value)
        if (
            parsed is not None
            and 1 <= parsed[0] <= 9999
            and 1 <= parsed[2] <= 31
            and 0 <= parsed[3] <= 24
            and 0 <= parsed[4] <= 59
            and 0 <= parsed[5] <= 60
            and (parsed[9] is None or abs(parsed[9]) < 86_400)
        ):
            moment = float(email.utils.mktime_tz(parsed))
            return moment if math.isfinite(moment) else None
    except Exception:
        return None
    return None


# The `Date` last read, and its unix time: a server's `Date` changes once a second, and a rate
# limiter reads one on every answer. A tuple, replaced whole, so that threads never see half of one.
_last_date: tuple[str | bytes, float | None] = ("", None)


def clock_offset(date: str | bytes | None, sent: float, received: float) -> float:
    """How far our clock runs ahead of the server's (negative: behind), as far as its `Date` header proves it.

    `sent` and `received` are our unix times from before the request was sent and from when (or
    after) its answer arrived. The server stamped `date` in between, so our clock is ahead by at
    least `sent - date - DATE_HEADER_SLACK_SECONDS` and by at most `received - date`. When those
    bounds allow 0, it is 0: clocks kept by NTP agree to well within a `Date`'s second, and nothing
    is moved. When they do not, the upper bound: a reset read through it is late, never early, by
    at most the answer's way back plus a second, so that a wait it gives errs long rather than
    into a 429. Without a readable `date`, 0.

    Args:
        date: the response's `Date` header, or None.
        sent: our unix time before the request was sent (earlier is allowed: it only loosens the bound).
        received: our unix time when its answer arrived, or later.
    """
    global _last_date
    if date is None:
        return 0.0
    last, stamped = _last_date
    # Compared only with one of its own type: bytes against text warns (or raises, under `python -bb`).
    if type(date) is not type(last) or date != last:
        stamped = http_date(date.decode("latin-1") if isinstance(date, bytes) else date)
        _last_date = (date, stamped)
    if stamped is None:
        return 0.0
    most = received - stamped
    if most < 0.0 or sent - stamped - DATE_HEADER_SLACK_SECONDS > 0.0:
        return most
    return 0.0


def _timestamp(seconds: float) -> datetime | None:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


def _reset_at(value: str | None, now: float) -> datetime | None:
    """When a window resets: from a unix time, a number of seconds from now, or a duration from now."""
    moment = _reset_time(value, now)
    return None if moment is None else _timestamp(moment)


def _reset_time(value: str | None, now: float) -> float | None:
    """`_reset_at` as a unix time; None past the calendar (year 9999) or for anything malformed."""
    if value is None:
        return None
    seconds = _plain_seconds(value)
    if seconds is not None:
        moment = seconds if seconds >= UNIX_TIME_FLOOR_SECONDS else now + seconds
    else:
        duration = _duration_seconds(value)
        if duration is not None:
            moment = now + duration
        else:
            stamped = _rfc3339_seconds(value)
            if stamped is None:
                return None
            moment = stamped
    return moment if 0.0 <= moment <= _LAST_UNIX_SECOND else None  # the comparison is False for NaN too


def _plain_seconds(value: str) -> float | None:
    """A finite, non-negative decimal number (`60`, `1708000060.7`); None for anything else."""
    text = value.strip()
    if not text or not text.isascii() or text.strip("0123456789."):
        return None
    try:
        seconds = float(text)
    except ValueError:  # "1.2.3", "."
        return None
    return seconds if seconds < float("inf") else None


_NAME_AND_VALUE = operator.itemgetter(1, 2)  # of an httpx.Headers' (name, lowercase name, value) triples


def last_values(headers: Mapping[str, str]) -> Mapping[str, str]:
    """`headers` with a name sent more than once read as its last value, as `read_window` reads it.

    A proxy may add a header the server set already (`retry-after`, `date`): httpx joins the values
    with ", ", which reads as no number and as the first of two dates. A plain mapping is as given.
    """
    triples = getattr(headers, "_list", None)
    if not isinstance(triples, list):
        return headers
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in map(_NAME_AND_VALUE, triples)}


# The headers `RateLimit.from_headers` reads beyond DeployAI's three (OpenAI's, the LiteLLM proxy's
# and Anthropic's).
_OTHER_DIALECTS = frozenset(
    [
        *(
            f"x-ratelimit-{name}".encode()
            for name in (
                "limit-requests", "remaining-requests", "reset-requests", "limit-tokens", "remaining-tokens",
                "reset-tokens", "api_key-limit-requests", "api_key-remaining-requests", "api_key-limit-tokens",
                "api_key-remaining-tokens",
            )
        ),
        b"anthropic-ratelimit-requests-limit", b"anthropic-ratelimit-requests-remaining",
        b"anthropic-ratelimit-tokens-limit", b"anthropic-ratelimit-tokens-remaining",
    ]
)  # fmt: skip
_DIALECT_PREFIXES = (b"x-ratelimit-", b"anthropic-ratelimit-")

_Budget = tuple[int | None, int | None, datetime | None]  # limit, remaining, reset_at


def _budget(headers: Mapping[str, str], limit: str, remaining: str, reset: str | None, now: float) -> _Budget:
    return (
        _int_or_none(headers.get(limit)),
        _int_or_none(headers.get(remaining)),
        None if reset is None else _reset_at(headers.get(reset), now),
    )


def _anthropic_budget(headers: Mapping[str, str], budget: str, now: float) -> _Budget:
    name = f"anthropic-ratelimit-{budget}"
    return _budget(headers, f"{name}-limit", f"{name}-remaining", f"{name}-reset", now)


def _most_restrictive(budgets: list[_Budget]) -> _Budget:
    """The budget with the fewest left (on a tie, the one that resets last); else the first one reported."""
    known = [b for b in budgets if b[1] is not None]
    if known:
        latest = datetime.min.replace(tzinfo=timezone.utc)
        return min(known, key=lambda b: (b[1], -(b[2] or latest).timestamp()))
    return next((b for b in budgets if b[0] is not None or b[2] is not None), (None, None, None))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The state of your API key's rate-limit window, as the server reported it with a response.

    Attributes:
        limit: requests allowed per window, or None when not reported (or malformed).
        remaining: requests left in the current window, or None.
        reset_at: when the request window resets, as an aware UTC datetime, or None. On a result's
            or an error's `rate_limit`, on this machine's clock, also when the response's `Date`
            shows the server's clock differs from it.
        token_limit: tokens allowed per window, or None.
        tokens_remaining: tokens left in the current window, or None.
        tokens_reset_at: when the token window resets, or None.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None
    token_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], now: float | None = None) -> RateLimit:
        """Read the rate-limit headers of any dialect leniently: missing or malformed values give None.

        Args:
            headers: the response headers (names in any case for an `httpx.Headers`; a plain mapping
                needs them in lowercase).
            now: the unix time the response arrived, which relative resets count from (default: now).
        """
        if now is None:
            now = time.time()
        headers = last_values(headers)
        get = headers.get
        requests = []
        if get("x-ratelimit-remaining") is not None or get("x-ratelimit-limit") is not None:
            requests.append(_budget(headers, "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", now))
        if get("x-ratelimit-remaining-requests") is not None or get("x-ratelimit-limit-requests") is not None:
            requests.append(
                _budget(
                    headers,
                    "x-ratelimit-limit-requests",
                    "x-ratelimit-remaining-requests",
                    "x-ratelimit-reset-requests",
                    now,
                )
            )
        if get("x-ratelimit-api_key-remaining-requests") is not None:
            requests.append(
                _budget(
                    headers, "x-ratelimit-api_key-limit-requests", "x-ratelimit-api_key-remaining-requests", None, now
                )
            )
        if (
            get("anthropic-ratelimit-requests-remaining") is not None
            or get("anthropic-ratelimit-requests-limit") is not None
        ):
            requests.append(_anthropic_budget(headers, "requests", now))
        if not requests and get("x-ratelimit-reset") is not None:
            requests.append((None, None, _reset_at(get("x-ratelimit-reset"), now)))
        tokens = []
        if get("x-ratelimit-remaining-tokens") is not None or get("x-ratelimit-limit-tokens") is not None:
            tokens.append(
                _budget(
                    headers, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens", now
                )
            )
        if get("x-ratelimit-api_key-remaining-tokens") is not None:
            tokens.append(
                _budget(headers, "x-ratelimit-api_key-limit-tokens", "x-ratelimit-api_key-remaining-tokens", None, now)
            )
        if (
            get("anthropic-ratelimit-tokens-remaining") is not None
            or get("anthropic-ratelimit-tokens-limit") is not None
        ):
            tokens.append(_anthropic_budget(headers, "tokens", now))
        limit, remaining, reset_at = _most_restrictive(requests)
        token_limit, tokens_remaining, tokens_reset_at = _most_restrictive(tokens)
        return cls(limit, remaining, reset_at, token_limit, tokens_remaining, tokens_reset_at)

    def seconds_until_reset(self, now: float | None = None) -> float | None:
        """Seconds from `now` (unix time; default: now) until the request window resets; None if unknown.

        Never raises, and the result is always finite and never negative: a `reset_at` built by hand
        that has no timestamp (a naive datetime at the edge of the calendar) or a `now` that is NaN or
        infinite gives None.
        """
        return _seconds_until(self.reset_at, time.time() if now is None else now)

    def seconds_until_tokens_reset(self, now: float | None = None) -> float | None:
        """Seconds from `now` (default: now) until the token window resets; None if unknown.

        Never raises, and the result is always finite and never negative, as `seconds_until_reset`.
        """
        return _seconds_until(self.tokens_reset_at, time.time() if now is None else now)


def rate_limit_on_our_clock(headers: Mapping[str, str], received_at: float, sent_at: float = -math.inf) -> RateLimit:
    """`RateLimit.from_headers`, its resets moved onto our clock where the response's `Date` shows ours differs.

    `received_at` and `sent_at` are our unix times as in `clock_offset`. With clocks that agree (as
    NTP keeps them) this is `from_headers` itself; with ours minutes off, a reset given as a unix
    time is when the window resets on our clock, as `seconds_until_reset()` and a comparison with
    `datetime.now()` read it.
    """
    headers = last_values(headers)
    offset = clock_offset(headers.get("date"), sent_at, received_at)
    window = RateLimit.from_headers(headers, received_at - offset)
    if offset == 0.0:
        return window
    return dataclasses.replace(
        window, reset_at=_moved(window.reset_at, offset), tokens_reset_at=_moved(window.tokens_reset_at, offset)
    )


def _moved(moment: datetime | None, seconds: float) -> datetime | None:
    try:
        return None if moment is None else moment + timedelta(seconds=seconds)
    except OverflowError:  # past the calendar's end: as unknown as a reset `from_headers` cannot place
        return None


def _seconds_until(moment: datetime | None, now: float) -> float | None:
    if moment is None:
        return None
    try:
        wait = moment.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    return max(0.0, wait) if abs(wait) < float("inf") else None  # the comparison is False for NaN too


@dataclass(slots=True)
class WindowReport:
    """What one response says of the request budget, as plain numbers (what a rate limiter learns from).

    Attributes:
        limit: requests allowed per window, or None.
        remaining: requests left in the window, or None.
        reset_at: the unix time the request window resets, or None.
        tokens_spent_until: the unix time the token budget resets, when the response reported it spent
            (`tokens_remaining` 0); else None.
        token_limit: tokens allowed per token window, or None.
        tokens_remaining: tokens left in the token window, or None.
        tokens_reset_at: the unix time the token window resets, or None.
    """

    limit: int | None
    remaining: int | None
    reset_at: float | None
    tokens_spent_until: float | None
    token_limit: int | None = None
    tokens_remaining: int | None = None
    tokens_reset_at: float | None = None


def read_window(headers: Mapping[str, str], now: float, sent: float = -math.inf) -> WindowReport | None:
    """The budget a response reported, in any dialect `RateLimit` reads; None when it sent none of their headers.

    Its resets are on the clock `now` was read from (`now`: when the answer arrived; `sent`: before
    the request went, if known). A reset given as a unix time is the server's: it is moved by how
    far our clock runs from the server's, when the response's `Date` proves they disagree
    (`clock_offset`).

    A rate limiter calls this on every answer, so the common case costs little: the headers are
    looked up in a dict built by C code, and DeployAI's three headers holding plain digits are read
    as they are, without building a `RateLimit`. Anything else goes through `RateLimit.from_headers`,
    with the same leniency.
    """
    # An httpx.Headers keeps (name, lowercase name, value) triples; read those rather than pay for
    # `.raw` and lowercasing each name again. A plain mapping has lowercase names already. A name
    # sent twice reads as its last value.
    triples = getattr(headers, "_list", None)
    if isinstance(triples, list):
        found = dict(map(_NAME_AND_VALUE, triples))
    else:
        found = {k.lower().encode("latin-1"): v.encode("latin-1") for k, v in headers.items()}
    date = found.get(b"date")
    offset = 0.0 if date is None else clock_offset(date, sent, now)
    if not _OTHER_DIALECTS.isdisjoint(found):
        # Read on the server's clock, then moved onto ours: a duration comes out counted from `now`.
        window = RateLimit.from_headers(
            {n.decode("latin-1"): v.decode("latin-1") for n, v in found.items() if n.startswith(_DIALECT_PREFIXES)},
            now - offset,
        )
        tokens_reset_at = None if window.tokens_reset_at is None else window.tokens_reset_at.timestamp() + offset
        return WindowReport(
            window.limit,
            window.remaining,
            None if window.reset_at is None else window.reset_at.timestamp() + offset,
            tokens_reset_at if window.tokens_remaining == 0 else None,
            window.token_limit,
            window.tokens_remaining,
            tokens_reset_at,
        )
    limit = found.get(b"x-ratelimit-limit")
    remaining = found.get(b"x-ratelimit-remaining")
    reset = found.get(b"x-ratelimit-reset")
    if reset is None:
        if limit is None and remaining is None:
            return None
        reset_at = None
    elif reset.isdigit() and len(reset) <= 18:  # plain digits (`bytes.isdigit` is ASCII-only), read at once
        seconds = int(reset)
        moment = seconds + offset if seconds >= UNIX_TIME_FLOOR_SECONDS else now + seconds
        reset_at = moment if moment <= _LAST_UNIX_SECOND else None
    else:  # anything else as the lenient readers of `RateLimit` read it
        reset_at = _reset_time(reset.decode("latin-1"), now - offset)
        if reset_at is not None:
            reset_at += offset
    return WindowReport(
        None if limit is None else _count(limit),
        None if remaining is None else int(remaining) if remaining.isdigit() and len(remaining) <= 18
        else _int_or_none(remaining.decode("latin-1")),  # as `_count`, inline: it changes with every answer
        reset_at,
        None,
    )  # fmt: skip


def _count(value: bytes) -> int | None:
    if value.isdigit() and len(value) <= 18:
        return int(value)
    return _int_or_none(value.decode("latin-1"))

"""`RateLimit`, read from the `x-ratelimit-*` headers that DeployAI sends with every response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["RateLimit"]


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


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The state of your API key's rate-limit window, as the server reported it with a response.

    Attributes:
        limit: requests allowed per window (`x-ratelimit-limit`), or None when absent or malformed.
        remaining: requests left in the current window (`x-ratelimit-remaining`), or None.
        reset_at: when the window resets, as an aware UTC datetime (`x-ratelimit-reset`, unix
            seconds), or None.
    """

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit:
        """Read the rate-limit headers leniently: a missing or malformed header gives None, never an error."""
        reset = _int_or_none(headers.get("x-ratelimit-reset"))
        reset_at = None
        if reset is not None:
            try:
                reset_at = datetime.fromtimestamp(reset, tz=timezone.utc)
            except (OverflowError, OSError, ValueError):
                reset_at = None
        return cls(
            limit=_int_or_none(headers.get("x-ratelimit-limit")),
            remaining=_int_or_none(headers.get("x-ratelimit-remaining")),
            reset_at=reset_at,
        )

    def seconds_until_reset(self, now: float) -> float | None:
        """Seconds from `now` (unix time) until the window resets, never negative; None if unknown.

        Never raises, and the result is always finite: a `reset_at` built by hand that has no
        timestamp (a naive datetime at the edge of the calendar) or a `now` that is NaN or infinite
        gives None.
        """
        if self.reset_at is None:
            return None
        try:
            wait = self.reset_at.timestamp() - now
        except (OverflowError, OSError, ValueError):
            return None
        return max(0.0, wait) if abs(wait) < float("inf") else None  # the comparison is False for NaN too

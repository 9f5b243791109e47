"""`RateLimit`, read from the `x-ratelimit-*` headers that DeployAI sends with every response."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

__all__ = ["RateLimit"]


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        try:
            as_float = float(value)
        except ValueError:
            return None
        if as_float != as_float or as_float in (float("inf"), float("-inf")):
            return None
        number = int(as_float)
    return number if number >= 0 else None


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
        """Seconds from `now` (unix time) until the window resets, never negative; None if unknown."""
        if self.reset_at is None:
            return None
        return max(0.0, self.reset_at.timestamp() - now)

"""The emulator's rate limiter: a fixed window of requests per API key, with the API's headers and 429."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._wire import Draft, error_draft

__all__ = ["RateWindows"]


@dataclass(slots=True)
class _Window:
    started_at: float
    used: int = 0


class RateWindows:
    """`rate_limit` requests per key per window; a key's window starts with its first request after the last ended.

    It starts at that request's whole second (at the request itself, for a window under a second).

    Not thread-safe: the emulator calls it under its lock.
    """

    def __init__(self, rate_limit: int, window_seconds: float) -> None:
        self.rate_limit = rate_limit
        self.window_seconds = window_seconds
        self._windows: dict[str, _Window] = {}

    def clear(self) -> None:
        """Forget every key's window."""
        self._windows.clear()

    def spend(self, key: str, now: float, headers: list[tuple[str, str]]) -> Draft | None:
        """Count one request of `key`; add the rate-limit headers to `headers`; a 429 when the window is spent."""
        window = self._windows.get(key)
        if window is None or now >= window.started_at + self.window_seconds:
            # From the whole second of its first request, as gateways count fixed windows: its reset,
            # sent in whole seconds, is when it ends, and the wait for it is never longer than a window.
            start = math.floor(now) if self.window_seconds >= 1 else now
            window = self._windows[key] = _Window(start)
        resets_at = window.started_at + self.window_seconds
        exhausted = window.used >= self.rate_limit
        if not exhausted:
            window.used += 1
        headers += [
            ("x-ratelimit-limit", str(self.rate_limit)),
            ("x-ratelimit-remaining", str(self.rate_limit - window.used)),
            ("x-ratelimit-reset", str(math.ceil(resets_at))),
        ]
        if not exhausted:
            return None
        retry_after = max(1, math.ceil(resets_at - now))
        message = f"Rate limit of {self.rate_limit} requests per {self.window_seconds:g} s reached."
        message += f" Try again in {retry_after} s."
        return error_draft(429, message, [*headers, ("retry-after", str(retry_after))])

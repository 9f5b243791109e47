"""`VirtualClock`: time that a test moves, so that latency, windows and `retry-after` cost no real waiting."""

from __future__ import annotations

import threading

__all__ = ["VirtualClock"]

# 2023-11-14 22:13:20 UTC: a fixed, recognisable start, so that `created` and resets are reproducible.
_START_UNIX_SECONDS = 1_700_000_000.0


class VirtualClock:
    """A unix-time clock that moves only when told: by `advance()`, or by waiting on it with `sleep()`.

    Give it to an `Emulator` (`Emulator(clock=VirtualClock())`): its rate-limit windows and `created`
    times follow it, its transports wait on it, and the clients it makes sleep on it between retries.
    Each wait moves the clock forward at once and returns; waits of concurrent tasks add up, one after
    the other, rather than overlapping as they would in real time.

    Args:
        start: the unix time it starts at. A `RateLimiter` refuses a clock before 1973: the API's
            resets are unix times, and a smaller one reads as seconds from now.
    """

    def __init__(self, start: float = _START_UNIX_SECONDS) -> None:
        self._now = float(start)
        self._waited = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        """The current virtual unix time."""
        return self._now

    @property
    def waited(self) -> float:
        """Seconds spent in `sleep()` / `asleep()` so far (not counting `advance()`)."""
        return self._waited

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` (>= 0)."""
        if not seconds >= 0:
            raise ValueError(f"A clock only moves forward; got {seconds!r} seconds.")
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` of virtual time: the clock moves forward and the call returns at once."""
        seconds = max(float(seconds), 0.0)
        with self._lock:
            self._now += seconds
            self._waited += seconds

    async def asleep(self, seconds: float) -> None:
        """The async `sleep()`: it also lets other tasks run, as any `await` of a sleep does."""
        from anyio.lowlevel import checkpoint

        self.sleep(seconds)
        await checkpoint()

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:.3f}, waited={self._waited:g})"

"""The rate limiter's own cost: typed calls through a `RateLimiter` against the same calls without one.

Run: python -m benchmarks.bench_limiter [N]. Target: the limiter adds under 5% to a call's client-side
cost. The two sides run in alternating rounds (15 of each), so that a noisy machine slows both alike.
Both use the same canned in-process transport, whose answers report a window with plenty left: the
limiter learns from every answer but never waits, so the figure is its bookkeeping (its lock, its
decision, and reading each answer's rate-limit headers).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import httpx

from benchmarks._common import COMPLETION, CannedTransport, best_rates, on_loop, report
from deployai import AsyncDeployAI, DeployAI, RateLimiter

KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-ratelimit-limit", b"1000000"),
    (b"x-ratelimit-remaining", b"999999"),
    (b"x-ratelimit-reset", str(int(time.time()) + 3600).encode()),
    (b"x-request-id", b"req_1"),
]


def _sync_client(limiter: RateLimiter | None) -> DeployAI:
    transport = CannedTransport([COMPLETION], HEADERS)
    return DeployAI(api_key=KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter)


def _async_client(limiter: RateLimiter | None) -> AsyncDeployAI:
    transport = CannedTransport([COMPLETION], HEADERS)
    return AsyncDeployAI(api_key=KEY, http_client=httpx.AsyncClient(transport=transport), rate_limiter=limiter)


def sync_ratio(n: int) -> float:
    """Calls per second without and with a limiter on the blocking client; returns the relative cost."""
    plain = _sync_client(None).chat.completions.create
    paced = _sync_client(RateLimiter()).chat.completions.create

    def run(create: Any) -> Any:
        def calls(count: int) -> None:
            for _ in range(count):
                assert create(model="openai/gpt-4o", messages=MESSAGES).choices

        return calls

    plain_rate, paced_rate = best_rates(run(plain), run(paced), n)
    return report("calls through a limiter, sync", plain_rate, paced_rate, "calls/s",
                  higher_is_better=False, target=1.05)  # fmt: skip


def async_ratio(n: int) -> float:
    """Calls per second without and with a limiter on the asyncio client; returns the relative cost."""
    loop = asyncio.new_event_loop()
    plain = _async_client(None).chat.completions.create
    paced = _async_client(RateLimiter()).chat.completions.create

    def run(create: Any) -> Any:
        async def calls(count: int) -> None:
            for _ in range(count):
                assert (await create(model="openai/gpt-4o", messages=MESSAGES)).choices

        return on_loop(loop, calls)

    try:
        plain_rate, paced_rate = best_rates(run(plain), run(paced), n)
        return report("calls through a limiter, async", plain_rate, paced_rate,
                      "calls/s", higher_is_better=False, target=1.05)  # fmt: skip
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def main(n: int = 2_000) -> tuple[float, float]:
    """Run both comparisons; return the (sync, async) cost ratios."""
    return sync_ratio(n), async_ratio(n)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)

"""What one worker process of the multi-process proofs does (a module of its own, importable by "spawn")."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import deployai


def answer_share(client: deployai.AsyncDeployAI, count: int, concurrency: int) -> tuple[int, int, int, int]:
    """Make `count` calls, `concurrency` at a time: (answered, failed, Redis round trips, writes lost to a race)."""

    async def run() -> list[deployai.types.ChatCompletion | deployai.DeployAIError]:
        requests = [
            {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": f"call {n}"}], "max_tokens": 4}
            for n in range(count)
        ]
        try:
            return await client.chat.completions.create_many(requests, concurrency=concurrency)
        finally:
            await client.close()

    results = asyncio.run(run())
    answered = sum(isinstance(r, deployai.types.ChatCompletion) for r in results)
    limiter = client.rate_limiter
    round_trips = lost = 0
    if isinstance(limiter, deployai.RedisRateLimiter):
        limiter.close()
        round_trips, lost = limiter._courier.round_trips, limiter._courier.lost_writes
    return answered, len(results) - answered, round_trips, lost


def one_call_then_leave(redis_url: str) -> None:
    """Make one call through a `RedisRateLimiter` and leave without closing it, as a one-call script does.

    The courier's write of the answer is held until the limiter is being stopped: were the process
    to leave without having its couriers write what they hold, the answer would never be written.
    """
    from deployai import _redis_courier
    from deployai.testing import Emulator

    remote = _redis_courier.Courier._remote

    def held(courier: _redis_courier.Courier, answers: list[Any], asking: int | None) -> int:
        if answers and asking is None:
            deadline = time.monotonic() + 30
            while not courier.stopping and time.monotonic() < deadline:
                time.sleep(0.001)
        return remote(courier, answers, asking)

    _redis_courier.Courier._remote = held  # type: ignore[method-assign, assignment]
    client = Emulator().client(rate_limiter=deployai.RedisRateLimiter(redis_url))
    client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}])


if __name__ == "__main__":  # `python -m tests.scale_worker <redis url>`: the same, leaving by `sys.exit`
    one_call_then_leave(sys.argv[1])

"""What one worker process of the multi-process proofs does (a module of its own, importable by "spawn")."""

from __future__ import annotations

import asyncio

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

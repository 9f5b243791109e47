"""A small service on one API key: a shared RateLimiter, a batch through create_many, and retry metrics.

python examples/service.py

Against the emulator the key's window is small (20 requests a second), so the limiter has to pace
the batch: it learns the window from the answers' headers and holds calls back, and the server
never answers 429.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from _connect import base_url_and_key

import deployai

TICKETS = [f"Ticket #{n}: the export button does nothing" for n in range(1, 61)]


async def main() -> None:
    """Answer every ticket with bounded concurrency, paced under the key's rate limit."""
    retries: collections.Counter[str] = collections.Counter()

    def count_retry(retry: int, wait_seconds: float, error: deployai.APIError) -> None:
        retries[type(error).__name__] += 1  # a metric: what had to be retried

    def progress(done: int, total: int) -> None:
        if done % 20 == 0:
            print(f"progress: {done}/{total}")

    limiter = deployai.RateLimiter()  # one per API key, shared by every client of the service
    with base_url_and_key(rate_limit=20, window_seconds=1) as (base_url, api_key):
        async with deployai.AsyncDeployAI(
            base_url=base_url, api_key=api_key, rate_limiter=limiter, max_retries=4, on_retry=count_retry
        ) as client:
            requests: list[dict[str, Any]] = [
                {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": ticket}], "max_tokens": 8}
                for ticket in TICKETS
            ]
            started = time.monotonic()
            results = await client.chat.completions.create_many(requests, concurrency=16, on_progress=progress)
            seconds = time.monotonic() - started
    answers = [r for r in results if isinstance(r, deployai.types.ChatCompletion)]
    print(f"first answer: {answers[0].choices[0].message.content!r}")
    print(f"{len(answers)} answered, {len(results) - len(answers)} failed, retries: {dict(retries) or 'none'}")
    print(f"[{len(results)} calls in {seconds:.1f} s; {limiter!r}]")


if __name__ == "__main__":
    asyncio.run(main())

"""A small service on one API key: a shared RateLimiter, a batch through create_many, and retry metrics.

python examples/service.py

Against the emulator the key's window is small (20 requests a second), so the limiter has to pace
the batch: it learns the window from the answers' headers and holds calls back, and the server
never answers 429. After it, a limiter given the plan's `requests_per_minute` keeps to it, and a
429 scripted on the emulator reports the key's token budget spent (`rate_limit.tokens_remaining`;
the emulator reports no token budget otherwise, so it is None in its answers).
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

from _connect import base_url_and_key, emulator_fault

import deployai

# What an OpenAI-style gateway sends when a key's tokens for this minute are used up.
TOKENS_SPENT = {
    "x-ratelimit-limit-tokens": "10000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "500ms",
}
TICKETS = [f"Ticket #{n}: the export button does nothing" for n in range(1, 61)]


async def answer_tickets(base_url: str | None, api_key: str | None) -> None:
    """Answer every ticket with bounded concurrency, paced under the key's rate limit."""
    retries: collections.Counter[str] = collections.Counter()

    def count_retry(retry: int, wait_seconds: float, error: deployai.APIError) -> None:
        retries[type(error).__name__] += 1  # a metric: what had to be retried

    def progress(done: int, total: int) -> None:
        if done % 20 == 0:
            print(f"progress: {done}/{total}")

    limiter = deployai.RateLimiter()  # one per API key, shared by every client of the service
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


async def keep_to_the_plan(base_url: str | None, api_key: str | None) -> None:
    """A plan of 3 requests a minute: a spent token budget holds the next call, and a 4th call is refused at once."""
    limiter = deployai.RateLimiter(requests_per_minute=3)  # on top of what the headers say
    emulator_fault(base_url, fault="fail", status=429, headers=TOKENS_SPENT)
    async with deployai.AsyncDeployAI(
        base_url=base_url, api_key=api_key, rate_limiter=limiter, max_retries=0, max_retry_wait=5.0
    ) as client:
        for call in range(1, 5):
            started = time.monotonic()
            try:
                raw = await client.chat.completions.with_raw_response.create(
                    model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
                )
            except deployai.RateLimitError as error:
                # A wait longer than max_retry_wait is never slept: the job can go back on its queue.
                print(
                    f"call {call}: RateLimitError after {time.monotonic() - started:.1f} s, "
                    f"retry after {error.retry_after:.1f} s, tokens left: {error.rate_limit.tokens_remaining}"
                )
            else:
                seconds = time.monotonic() - started
                print(f"call {call}: answered after {seconds:.1f} s, tokens left: {raw.rate_limit.tokens_remaining}")


async def main() -> None:
    """The batch, then the plan's limit on a few calls; against the emulator, each on one of its own."""
    with base_url_and_key(rate_limit=20, window_seconds=1) as (base_url, api_key):
        await answer_tickets(base_url, api_key)
    with base_url_and_key() as (base_url, api_key):  # the batch spent the small window: a fresh one
        await keep_to_the_plan(base_url, api_key)


if __name__ == "__main__":
    asyncio.run(main())

"""A batch spread over worker processes that share one API key's rate limit through Redis.

REDIS_URL=redis://127.0.0.1:6379/0 python examples/process_pool.py

Each worker process gets the client by pickling (it opens its own connections there) and answers
its share with 50 calls at a time. Their RedisRateLimiter keeps the budget in Redis, so that the
four processes together stay under the key's limit: against the emulator's small window (40
requests a second) the server never answers 429.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from _connect import base_url_and_key

import deployai

PROCESSES = 4
CONCURRENCY = 50  # calls in flight in each process
QUESTIONS = [f"Question {n}: how do I rotate my API key?" for n in range(1, 201)]

retries = 0  # in each worker process


def count_retry(retry: int, wait_seconds: float, error: deployai.APIError) -> None:
    """The client's on_retry: count the retries of this process."""
    global retries
    retries += 1


def answer_share(client: deployai.AsyncDeployAI, questions: list[str]) -> tuple[list[str], int]:
    """In a worker process: answer `questions`, CONCURRENCY at a time; the answers (or errors) and the retries."""

    async def answer_all() -> list[str]:
        async with client.with_options(on_retry=count_retry) as worker_client:
            results = await worker_client.chat.completions.create_many(
                [{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": q}], "max_tokens": 8}
                 for q in questions],
                concurrency=CONCURRENCY,
            )  # fmt: skip
        await client.close()  # the pool this process opened for the client
        return [
            r.choices[0].message.content or "" if isinstance(r, deployai.types.ChatCompletion) else f"failed: {r!r}"
            for r in results
        ]

    return asyncio.run(answer_all()), retries


def main() -> None:
    """Split the questions into one share per process, answer them all, and print what came back, in order."""
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with base_url_and_key(rate_limit=40, window_seconds=1) as (base_url, api_key):
        # One limiter for the key, given to the client: both travel to each process with it.
        client = deployai.AsyncDeployAI(
            base_url=base_url, api_key=api_key, max_retries=4, rate_limiter=deployai.RedisRateLimiter(redis_url)
        )
        size = -(-len(QUESTIONS) // PROCESSES)
        shares = [QUESTIONS[i : i + size] for i in range(0, len(QUESTIONS), size)]
        # "spawn": a fresh interpreter per worker, as on macOS and Windows (and never a fork of a process with threads).
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(PROCESSES, mp_context=context) as pool:
            done = list(pool.map(answer_share, [client] * len(shares), shares))
    answers = [answer for share, _ in done for answer in share]
    failed = sum(answer.startswith("failed:") for answer in answers)
    print(f"first answer: {answers[0]!r}")
    print(f"last answer: {answers[-1]!r}")
    retried = sum(r for _, r in done)
    print(f"{len(answers) - failed} answered by {len(shares)} processes, {failed} failed, retries: {retried}")


if __name__ == "__main__":
    main()

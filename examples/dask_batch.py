"""A batch of chat requests spread over a Dask cluster's worker processes, sharing one key's budget in Redis.

REDIS_URL=redis://127.0.0.1:6379/0 python examples/dask_batch.py

The client is scattered to the workers once (it pickles, with its RedisRateLimiter, and opens its
own connections in each worker), then one task per question calls it. The results are gathered in
the order of the questions. Needs `pip install "dask[distributed]"`.
"""

from __future__ import annotations

import logging
import os

from _connect import base_url_and_key
from distributed import Client, LocalCluster, Worker

import deployai

QUESTIONS = [f"Question {n}: which models can I use?" for n in range(1, 81)]


def answer(client: deployai.DeployAI, question: str) -> str:
    """One task, on a worker: a question's answer (the client is shared by the worker's threads)."""
    completion = client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": question}], max_tokens=8
    )
    return completion.choices[0].message.content or ""


def close_on_worker(key: str, dask_worker: Worker) -> None:
    """Close a worker's copy of the client: its connections, and its limiter's connection to Redis."""
    client = dask_worker.data[key]
    assert isinstance(client, deployai.DeployAI)
    client.close()
    if isinstance(client.rate_limiter, deployai.RedisRateLimiter):
        client.rate_limiter.close()


def main() -> None:
    """Start a local cluster of worker processes, answer every question on it, and print the answers in order."""
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    with base_url_and_key(rate_limit=20, window_seconds=1) as (base_url, api_key):
        client = deployai.DeployAI(
            base_url=base_url, api_key=api_key, max_retries=4, rate_limiter=deployai.RedisRateLimiter(redis_url)
        )
        with (
            LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=2,
                threads_per_worker=8,
                processes=True,
                scheduler_port=0,
                dashboard_address=":0",
                # A worker may log a failed heartbeat while the cluster shuts down; a failed task raises anyway.
                silence_logs=logging.CRITICAL,
            ) as cluster,
            Client(cluster) as dask,  # type: ignore[no-untyped-call]
        ):
            shared = dask.scatter(client, broadcast=True)  # one copy per worker, not one per task
            futures = dask.map(answer, [shared] * len(QUESTIONS), QUESTIONS, pure=False)
            answers = dask.gather(futures)
            workers = len(dask.run(close_on_worker, shared.key))
    print(f"first answer: {answers[0]!r}")
    print(f"last answer: {answers[-1]!r}")
    print(f"{len(answers)} answered on {workers} worker processes")


if __name__ == "__main__":
    main()

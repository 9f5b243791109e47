"""A batch of chat requests spread over a Dask cluster's worker processes, sharing one key's budget in Redis.

REDIS_URL=redis://127.0.0.1:6379/0 python examples/dask_batch.py

The client travels to each worker once, inside a worker plugin (it pickles, with its
RedisRateLimiter, and opens its own connections there); the plugin closes it when the worker shuts
down. One task per question calls it, and the results are gathered in the order of the questions.
Needs `pip install "dask[distributed]"`.
"""

from __future__ import annotations

import logging
import os

from _connect import base_url_and_key
from distributed import Client, LocalCluster, Worker, WorkerPlugin, get_worker

import deployai

QUESTIONS = [f"Question {n}: which models can I use?" for n in range(1, 81)]


class DeployAIPlugin(WorkerPlugin):
    """Gives each worker one client, shared by its threads, and closes it with the worker."""

    name = "deployai"

    def __init__(self, client: deployai.DeployAI) -> None:
        self.client = client

    def teardown(self, worker: Worker) -> None:
        """The worker is shutting down: close the client's connections and its limiter's connection to Redis."""
        self.client.close()
        if isinstance(self.client.rate_limiter, deployai.RedisRateLimiter):
            self.client.rate_limiter.close()


def answer(question: str) -> str:
    """One task, on a worker: a question's answer, through the worker's client."""
    plugin = get_worker().plugins[DeployAIPlugin.name]
    assert isinstance(plugin, DeployAIPlugin)
    completion = plugin.client.chat.completions.create(
        model="openai/gpt-4o", messages=[{"role": "user", "content": question}], max_tokens=8
    )
    return completion.choices[0].message.content or ""


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
                dashboard_address="127.0.0.1:0",  # ":0" would listen on every interface
                # A worker may log a failed heartbeat while the cluster shuts down; a failed task raises anyway.
                silence_logs=logging.CRITICAL,
            ) as cluster,
            Client(cluster) as dask,  # type: ignore[no-untyped-call]
        ):
            dask.register_plugin(DeployAIPlugin(client))
            futures = dask.map(answer, QUESTIONS, pure=False)
            answers = dask.gather(futures)
            workers = len(dask.scheduler_info()["workers"])
    print(f"first answer: {answers[0]!r}")
    print(f"last answer: {answers[-1]!r}")
    print(f"{len(answers)} answered on {workers} worker processes")


if __name__ == "__main__":
    main()

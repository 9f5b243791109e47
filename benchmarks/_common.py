"""Shared pieces of the benchmarks: canned responses served in-process, and a fair timer."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import httpx

COMPLETION = (
    b'{"id":"chatcmpl-abc123","object":"chat.completion","created":1708000000,"model":"openai/gpt-4o",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I help you today?"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":9,"total_tokens":29}}'
)
HEADERS = [
    (b"content-type", b"application/json"),
    (b"x-ratelimit-limit", b"60"),
    (b"x-ratelimit-remaining", b"59"),
    (b"x-ratelimit-reset", b"1708000060"),
    (b"x-request-id", b"req_1"),
]


class CannedTransport(httpx.BaseTransport):
    """Answers every request with the same body, so that only client-side work is measured."""

    def __init__(self, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.body = body
        self.headers = headers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, headers=self.headers, stream=httpx.ByteStream(self.body))


def best_rate(run: Callable[[int], Any], n: int, rounds: int = 7) -> float:
    """Operations per second of the fastest of `rounds` runs of `n` operations (GC off while timing)."""
    best = float("inf")
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run(n)
            elapsed = time.perf_counter() - start
        finally:
            gc.enable()
        best = min(best, elapsed)
    return n / best

"""A fake OpenAI-compatible gateway that limits tokens alone, for the rate limiters' tests (in-process)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable

import httpx

from tests.conftest import completion_json


class TokenGateway:
    """An OpenAI-compatible gateway that limits tokens alone: `limit` tokens per window of `window` seconds.

    Its budget is a bucket, as OpenAI's: spent tokens come back evenly, and its reset header tells
    when the bucket is full again. It charges each request as it arrives, before answering, its own
    estimate (a quarter of its messages' characters, plus its `max_tokens`), and refuses with a 429
    one that the tokens left do not cover. Every answer tells the token budget as OpenAI's headers
    do. Its time is `clock`'s (a test's `VirtualClock`, or the real one); with `latency`, each send
    takes that long in real time (otherwise an async send only yields to the other tasks before its
    answer), so that many are in flight at once. `watch`, if given, is called as each request
    arrives, and what it returns is kept in `watched`. Thread-safe.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        limit: int,
        window: float = 60.0,
        latency: float = 0.0,
        watch: Callable[[], int] | None = None,
    ) -> None:
        self.clock = clock
        self.watch = watch
        self.watched: list[int] = []
        self.limit = limit
        self.window = window
        self.latency = latency
        self.used = 0.0  # tokens taken and not yet come back
        self.updated_at = 0.0  # when `used` was last brought up to date
        self.statuses: list[int] = []
        self._lock = threading.Lock()

    def _arrive(self, request: httpx.Request) -> tuple[int, dict[str, str]]:
        body = json.loads(request.content)
        charge = sum(len(m["content"]) for m in body["messages"]) // 4 + body.get("max_tokens", 0)
        with self._lock:
            if self.watch is not None:
                self.watched.append(self.watch())
            now = self.clock()
            # A bucket, as OpenAI's: what was spent comes back evenly, all of it within a window.
            self.used = max(0.0, self.used - (now - self.updated_at) * self.limit / self.window)
            self.updated_at = now
            status = 429 if self.used + charge > self.limit else 200
            if status == 200:
                self.used += charge
            self.statuses.append(status)
            headers = {
                "x-ratelimit-limit-tokens": str(self.limit),
                "x-ratelimit-remaining-tokens": str(int(self.limit - self.used)),
                "x-ratelimit-reset-tokens": f"{self.used * self.window / self.limit:.3f}s",  # until full again
            }
        return status, headers

    @staticmethod
    def _response(status: int, headers: dict[str, str]) -> httpx.Response:
        if status == 429:
            error = {"error": {"message": "Rate limit reached for tokens per min.", "type": "rate_limit_error"}}
            return httpx.Response(429, headers=headers, json=error)
        return httpx.Response(200, headers=headers, json=completion_json())

    def answer(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` (for an `httpx.MockTransport` of a blocking client)."""
        status, headers = self._arrive(request)
        if self.latency:
            time.sleep(self.latency)
        return self._response(status, headers)

    async def answer_async(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` (for an `httpx.MockTransport` of an async client)."""
        status, headers = self._arrive(request)
        if self.latency:
            await asyncio.sleep(self.latency)
        else:
            for _ in range(3):
                await asyncio.sleep(0)
        return self._response(status, headers)

"""Typed stream decoding against bare httpx-sse + json.loads, in-process (client-side cost only).

Run: python -m benchmarks.bench_stream [CHUNKS]. Target: at least 0.8x the baseline's chunks per
second. Both sides read the same recorded stream (one event per network read, as providers send
tokens) through an `httpx` client with the same canned transport.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
from httpx_sse import EventSource

from benchmarks._common import CannedTransport, best_rate, on_loop, report
from deployai import AsyncDeployAI, DeployAI

URL = "https://api.deployai.dev/v1/chat/completions"
KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]
BODY = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True}
AUTH = {"Authorization": f"Bearer {KEY}"}
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"req_1")]
STREAMS = 10


def sse_body(chunks: int) -> list[bytes]:
    """A recorded-looking stream: one event per token, then `[DONE]`."""
    events = []
    for i in range(chunks):
        chunk = {
            "id": "chatcmpl-abc123",
            "object": "chat.completion.chunk",
            "created": 1708000000,
            "model": "openai/gpt-4o",
            "choices": [{"index": 0, "delta": {"content": f" token{i}"}, "finish_reason": None}],
        }
        events.append(b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


def sync_ratio(chunks: int) -> float:
    """Chunks per second of both with the blocking clients; returns the SDK's relative rate."""
    pieces = sse_body(chunks)
    bare = httpx.Client(transport=CannedTransport(pieces, SSE_HEADERS))
    sdk = DeployAI(api_key=KEY, http_client=httpx.Client(transport=CannedTransport(pieces, SSE_HEADERS)))

    def baseline(count: int) -> None:
        for _ in range(count // chunks):
            with bare.stream("POST", URL, json=BODY, headers=AUTH) as response:
                for sse in EventSource(response).iter_sse():
                    if sse.data == "[DONE]":
                        break
                    assert json.loads(sse.data)["choices"][0]["delta"]["content"]

    def typed(count: int) -> None:
        for _ in range(count // chunks):
            with sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True) as stream:
                for chunk in stream:
                    assert chunk.choices[0].delta.content

    n = chunks * STREAMS
    return report("typed stream chunks, sync", best_rate(baseline, n), best_rate(typed, n), "chunks/s",
                  higher_is_better=True, target=0.8)  # fmt: skip


def async_ratio(chunks: int) -> float:
    """Chunks per second of both with the asyncio clients; returns the SDK's relative rate."""
    pieces = sse_body(chunks)
    loop = asyncio.new_event_loop()
    bare = httpx.AsyncClient(transport=CannedTransport(pieces, SSE_HEADERS))
    sdk = AsyncDeployAI(api_key=KEY, http_client=httpx.AsyncClient(transport=CannedTransport(pieces, SSE_HEADERS)))

    async def baseline(count: int) -> None:
        for _ in range(count // chunks):
            async with bare.stream("POST", URL, json=BODY, headers=AUTH) as response:
                async for sse in EventSource(response).aiter_sse():
                    if sse.data == "[DONE]":
                        break
                    assert json.loads(sse.data)["choices"][0]["delta"]["content"]

    async def typed(count: int) -> None:
        for _ in range(count // chunks):
            stream = await sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True)
            async with stream:
                async for chunk in stream:
                    assert chunk.choices[0].delta.content

    n = chunks * STREAMS
    try:
        return report("typed stream chunks, async", best_rate(on_loop(loop, baseline), n),
                      best_rate(on_loop(loop, typed), n), "chunks/s", higher_is_better=True, target=0.8)  # fmt: skip
    finally:
        # Let the loop finish the generators it still holds (and close the clients' pools) before it goes.
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def main(chunks: int = 2_000) -> tuple[float, float]:
    """Run both comparisons; return the (sync, async) rate ratios."""
    return sync_ratio(chunks), async_ratio(chunks)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)

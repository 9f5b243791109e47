"""Typed stream decoding against bare httpx-sse + json.loads, in-process (client-side cost only).

Run: python -m benchmarks.bench_stream. Target: at least 0.8x the baseline's chunks per second.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource

from benchmarks._common import best_rate
from deployai import DeployAI

URL = "https://api.deployai.dev/v1/chat/completions"
KEY = "sk-bench-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Hello!"}]
SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"req_1")]


def sse_body(chunks: int) -> list[bytes]:
    """A recorded-looking stream: one event per token, as a provider sends it (one network read each)."""
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


class _Pieces(httpx.SyncByteStream):
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.pieces)


class SSETransport(httpx.BaseTransport):
    """Streams the same recorded body for every request."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        return httpx.Response(200, headers=SSE_HEADERS, stream=_Pieces(self.pieces))


def main(chunks: int = 2_000, streams: int = 10) -> float:
    """Print chunks per second of both, and return the SDK's rate relative to the baseline."""
    pieces = sse_body(chunks)
    bare = httpx.Client(transport=SSETransport(pieces))
    body = {"model": "openai/gpt-4o", "messages": MESSAGES, "stream": True}

    def baseline(count: int) -> None:
        for _ in range(count // chunks):
            with bare.stream("POST", URL, json=body, headers={"Authorization": f"Bearer {KEY}"}) as response:
                for sse in EventSource(response).iter_sse():
                    if sse.data == "[DONE]":
                        break
                    assert json.loads(sse.data)["choices"][0]["delta"]["content"]

    sdk = DeployAI(api_key=KEY, http_client=httpx.Client(transport=SSETransport(pieces)))

    def typed(count: int) -> None:
        for _ in range(count // chunks):
            with sdk.chat.completions.create(model="openai/gpt-4o", messages=MESSAGES, stream=True) as stream:
                for chunk in stream:
                    assert chunk.choices[0].delta.content

    base_rate = best_rate(baseline, chunks * streams)
    sdk_rate = best_rate(typed, chunks * streams)
    ratio = sdk_rate / base_rate
    print(f"bare httpx-sse + json.loads: {base_rate:10.0f} chunks/s")
    print(f"deployai typed chunks:       {sdk_rate:10.0f} chunks/s")
    print(f"rate ratio (sdk / bare):     {ratio:10.2f}x   (target >= 0.80x)")
    return ratio


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)

"""Helpers to build server-sent event bodies and byte streams for streaming tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import httpx

SSE_HEADERS = {"content-type": "text/event-stream", "x-request-id": "req_stream", "x-ratelimit-remaining": "41"}


def chunk(content: str | None = None, *, index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """A chat completion chunk with one choice."""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1708000000,
        "model": "openai/gpt-4o",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def event(payload: object, *, name: str | None = None) -> bytes:
    """One SSE event carrying `payload` as JSON (or as given, for a str)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {data}\n\n".encode()


DONE = b"data: [DONE]\n\n"


def hello_stream() -> list[bytes]:
    """A short, complete stream: role, three pieces of text, finish, [DONE]."""
    return [
        event(chunk("", role="assistant")),
        event(chunk("Hel")),
        event(chunk("lo")),
        event(chunk(" world")),
        event(chunk(finish="stop")),
        DONE,
    ]


class Pieces(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A response body delivered piece by piece, optionally failing after the last piece."""

    def __init__(self, pieces: Iterable[bytes], fail_with: BaseException | None = None) -> None:
        self.pieces = list(pieces)
        self.fail_with = fail_with
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        yield from self.pieces
        if self.fail_with is not None:
            raise self.fail_with

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece
        if self.fail_with is not None:
            raise self.fail_with

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


def sse_response(pieces: Iterable[bytes], fail_with: BaseException | None = None, **headers: str) -> httpx.Response:
    """A streaming 200 response with SSE headers."""
    return httpx.Response(200, headers={**SSE_HEADERS, **headers}, stream=Pieces(pieces, fail_with))

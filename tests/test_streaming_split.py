"""A stream split anywhere, inside a multi-byte UTF-8 character included, decodes as the unsplit one."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import deployai
from tests.sse import DONE, Pieces, chunk, event

TEXTS = ["Hé", "llo, ", "世界", " 🎉", "\u00a0ok", '\\n"quoted"']


def recorded_body() -> bytes:
    events = [event(chunk(text)) for text in TEXTS]
    events[1] = events[1].replace(b"\n", b"\r\n")
    events[3] = b": comment\r" + events[3].replace(b"\n", b"\r")
    usage = {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9}
    return b"".join([*events, event({**chunk(), "choices": [], "usage": usage}), DONE])


BODY = recorded_body()


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    return [body[a:b] for a, b in itertools.pairwise(points) if b > a]


def transport(pieces: list[bytes]) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Pieces(pieces))
    )


def decode_sync(pieces: list[bytes]) -> list[dict[str, Any]]:
    with deployai.DeployAI(api_key="sk-split", http_client=httpx.Client(transport=transport(pieces))) as client:
        stream = client.chat.completions.create(model="a/b", messages=[{"role": "user", "content": "x"}], stream=True)
        with stream:
            return [c.model_dump() for c in stream]


def decode_async(pieces: list[bytes]) -> list[dict[str, Any]]:
    async def run() -> list[dict[str, Any]]:
        http_client = httpx.AsyncClient(transport=transport(pieces))
        async with deployai.AsyncDeployAI(api_key="sk-split", http_client=http_client) as client:
            stream = await client.chat.completions.create(
                model="a/b", messages=[{"role": "user", "content": "x"}], stream=True
            )
            async with stream:
                result = [c.model_dump() for c in [c async for c in stream]]
        await http_client.aclose()
        return result

    return asyncio.run(run())


EXPECTED = decode_sync([BODY])


def test_the_recorded_body_decodes_to_every_chunk() -> None:
    assert "".join(c["choices"][0]["delta"]["content"] for c in EXPECTED if c["choices"]) == "".join(TEXTS)
    assert EXPECTED[-1]["usage"]["total_tokens"] == 9
    assert json.dumps(EXPECTED)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=40))
def test_any_split_decodes_identically_sync(cuts: list[int]) -> None:
    assert decode_sync(split(BODY, cuts)) == EXPECTED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=40))
def test_any_split_decodes_identically_async(cuts: list[int]) -> None:
    assert decode_async(split(BODY, cuts)) == EXPECTED


def test_one_byte_at_a_time() -> None:
    pieces = [BODY[i : i + 1] for i in range(len(BODY))]
    assert decode_sync(pieces) == EXPECTED
    assert decode_async(pieces) == EXPECTED

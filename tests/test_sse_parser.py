"""The event stream parser against the SSE standard: any stream, split anywhere, gives the standard's events."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import re
from typing import Any

import httpx
from hypothesis import example, given, settings
from hypothesis import strategies as st

import deployai
from deployai._sse import ChunkDecoder, ErrorEvent, EventParser, carries_nothing, error_in_event
from deployai.types import ChatCompletionChunk
from tests.sse import DONE, Pieces, chunk, event


def standard_events(stream: bytes) -> list[tuple[str, str]]:
    """The events of a whole stream, read as the standard's steps read it (one pass, no chunks)."""
    text = stream.decode("utf-8", "replace").removeprefix("\ufeff")
    events: list[tuple[str, str]] = []
    name: str | None = None
    data: list[str] | None = None
    for line in re.split("\r\n|\r|\n", text)[:-1]:  # the last piece is an unended line: dropped
        if not line:
            if name or data is not None:  # a named event with no data is kept (`event: error`)
                events.append((name or "", "\n".join(data or [])))
            name, data = None, None
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                data = [*(data or []), value]
            elif field == "event":
                name = value
    return events


def parsed(pieces: list[bytes]) -> list[tuple[str, str]]:
    parser = EventParser()
    events = [e for piece in pieces for e in parser.feed(piece)]
    return events + parser.end()


_LINE = st.one_of(
    st.builds(lambda v: f"data: {v}", st.text(max_size=8)),
    st.builds(lambda v: f"data:{v}", st.text(max_size=3)),
    st.just("data"),
    st.builds(lambda v: f"event: {v}", st.sampled_from(["", "error", "ping", "é"])),
    st.builds(lambda v: f": {v}", st.text(max_size=3)),
    st.sampled_from(["id: 7", "retry: 100", "unknown: x", ""]),
)


@settings(deadline=None, max_examples=300)
@example([("event: ", "\n"), ("", "\n")], False, b"", [])  # an empty event name makes no event
@example([("data: x", "\r"), ("", "\r")], False, b"", [])  # the body's last CR ends its last line
@given(
    st.lists(st.tuples(_LINE, st.sampled_from(["\n", "\r\n", "\r"])), max_size=12),
    st.booleans(),
    st.binary(max_size=3),
    st.lists(st.integers(0, 400), max_size=6),
)
def test_any_stream_split_anywhere_gives_the_standards_events(
    lines: list[tuple[str, str]], bom: bool, junk: bytes, cuts: list[int]
) -> None:
    stream = ("\ufeff" if bom else "").encode() + "".join(a + b for a, b in lines).encode() + junk
    points = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert parsed(pieces) == standard_events(stream)


@settings(deadline=None, max_examples=300)
@example([("data: a", "\n"), ("", "\n"), ("data: b", "\n"), ("", "\n")], [])  # a read per event, as providers send
@example([("data: a\rb", "\n"), ("", "\n")], [])  # a lone CR inside is a line end
@given(
    st.lists(st.tuples(_LINE, st.sampled_from(["\n", "\r\n", "\r"])), max_size=12),
    st.lists(st.integers(0, 12), max_size=4),
)
def test_a_stream_read_an_event_at_a_time_gives_the_standards_events(
    lines: list[tuple[str, str]], merged: list[int]
) -> None:
    # Each read ending where an event ends, as most providers send a token: the reads a whole
    # `data:` event fills are taken on a shorter way, which must agree with the general one.
    stream = "".join(a + b for a, b in lines).encode()
    ends = [m.end() for m in re.finditer(rb"(\r\n|\r|\n)(\r\n|\r|\n)", stream)]
    points = sorted({0, len(stream), *(end for n, end in enumerate(ends) if n not in merged)})
    pieces = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert parsed(pieces) == standard_events(stream)


def test_a_multi_byte_character_a_bom_and_a_crlf_split_across_reads_are_joined() -> None:
    stream = "data: 世界\r\n\r\n".encode()
    assert parsed([stream[:7], stream[7:12], stream[12:13], stream[13:]]) == [("", "世界")]
    assert parsed([b"\xef", b"\xbb\xbfdata: x\n\n"]) == [("", "x")]  # a BOM split too
    assert parsed([b"data: x\r", b"\r"]) == [("", "x")]  # a last CR ends the body's last line


def test_text_with_unicode_line_separators_arrives_whole(kind: str, make_client: Any) -> None:
    # JSON leaves U+2028, U+2029 and U+0085 unescaped: they are text, not line ends.
    text = "one\u2028two\u2029three\x85four\x0cfive"
    body = event(chunk(text)).replace(json.dumps(text).encode(), json.dumps(text, ensure_ascii=False).encode())
    assert "\u2028".encode() in body
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=Pieces([body, DONE]))
    )
    client = make_client(transport=transport)
    with client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                        stream=True) as stream:  # fmt: skip
        assert "".join(stream.text_stream) == text


def test_a_compressed_stream_is_read_through_httpx_decoder() -> None:
    body = gzip.compress(event(chunk("zipped")) + DONE)

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream", "content-encoding": "gzip"}
        return httpx.Response(200, headers=headers, stream=Pieces([body[:10], body[10:]]))

    async def read() -> str:
        client = deployai.AsyncDeployAI(
            api_key="sk-test", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
        )
        stream = await client.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        async with stream:
            return "".join([c.choices[0].delta.content or "" async for c in stream])

    assert asyncio.run(read()) == "zipped"


_CHUNK = json.dumps(chunk("Hi"))


@given(
    name=st.sampled_from(["", "message", "error", "ping"]),
    data=st.sampled_from(
        [
            "",
            "[DONE]",
            " [DONE] ",
            "{}",
            "not json",
            '{"error": null}',
            '{"error": {"message": "m", "code": 503}}',
            '{"error": "just words"}',
            '["error"]',
            _CHUNK,
            _CHUNK[:-1] + ', "error": null}',
            _CHUNK[:-1] + ', "error": {"message": "late"}}',
            json.dumps(chunk('the "error" word')),
        ]
    ),
)
def test_the_first_events_error_is_the_one_the_decoder_raises(name: str, data: str) -> None:
    # A stream's first event is checked for an error before it is decoded (so that it can be retried):
    # both must agree on which events are errors, and on what they say.
    raised: object = None
    try:
        ChunkDecoder(ChatCompletionChunk).decode(name, data)
    except ErrorEvent as error:
        raised = error.payload
    except Exception:  # not a chunk, and no error either
        pass
    assert error_in_event(name, data) == raised


@given(
    name=st.sampled_from(["", "message", "error", "ping", "keep-alive"]),
    data=st.sampled_from(["", " ", "[DONE]", "{}", "1", "ok", '{"x": "choices"}', _CHUNK, json.dumps({"choices": 1})]),
)
def test_a_keep_alive_before_the_first_event_is_one_the_decoder_skips(name: str, data: str) -> None:
    # A keep-alive does not end the time in which a failure is retried: nothing the decoder would
    # deliver, end the stream with, or raise may be taken for one.
    if carries_nothing(name, data):
        decoder = ChunkDecoder(ChatCompletionChunk)
        assert decoder.decode(name, data) is None
        assert not decoder.done

"""Whatever a server (or a proxy on the way) sends, reading it costs little and never crashes the SDK.

Two kinds of input come from the other side and are read on every failed call: error bodies, which
become messages, and the headers that say when to retry. A hostile body must cost a small, fixed
amount of work (the event loop must not freeze), and no header value may raise.

No test here measures time: the cost is shown by what is examined. An error body is read only up to
`MAX_BODY_EXAMINED_CHARS`, so trimming a 400 KB page gives the same message as trimming its first
64 KiB, and text past that point cannot change it.
"""

from __future__ import annotations

import datetime
import email.utils
import functools
import gzip
import html
import json
import math
import re
import tracemalloc
import zlib
from typing import Any
from unittest import mock

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pytest_httpx import HTTPXMock

import deployai
from deployai import RateLimit
from deployai import _exceptions as exceptions_module
from deployai import _http as http_module
from deployai import _sse as sse_module
from deployai._constants import MAX_BODY_EXAMINED_CHARS, MAX_BODY_IN_MESSAGE_CHARS, MAX_ERROR_BODY_BYTES
from deployai._exceptions import read_error_body, trim_text
from deployai._retry import decide, server_requested_wait
from tests.conftest import ClientFactory, user
from tests.sse import Pieces

NOW = 1_700_000_000.0
SIZE = 400_000
REQUEST = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions")
UNREADABLE = "400 Bad Request (no readable text in the body)"
HEAD = "<html><body><h1>Service down</h1>"

# Each page is about 400 KB and, read with the former `<title[^>]*>(.*?)</title>`,
# `<(script|style)[^>]*>.*?</\1>` and `<[^>]+>` patterns, took from seconds to minutes: every opening
# without an end made the pattern scan the whole rest of the page again.
HOSTILE_PAGES: dict[str, tuple[str, str]] = {
    "unclosed-script": (HEAD + "<script>" * (SIZE // 8), "Service down"),
    "script-openings-without-gt": (HEAD + "<script " * (SIZE // 8), "Service down"),
    "repeated-title-without-gt": (HEAD + "<title" * (SIZE // 6), "Service down"),
    "repeated-title-tags": (HEAD + "<title>" * (SIZE // 7), "Service down"),
    "repeated-style": ("<!DOCTYPE html><html><body><p>Service down</p>" + "<style>" * (SIZE // 7), "Service down"),
    "tag-storm-without-gt": (HEAD + "<a " * (SIZE // 3), "Service down"),
    # A "<" that starts no tag is text, as in a browser: the message shows it, cut to length.
    "lt-storm": (HEAD + "<" * SIZE, "Service down " + "<" * 484 + "..."),
    "html-then-no-gt": ("<html" + " lang=en" * (SIZE // 8), UNREADABLE),
}
PAGE_IDS = list(HOSTILE_PAGES)


def _error_response(text: str, status: int = 400) -> httpx.Response:
    return httpx.Response(status, text=text, headers={"content-type": "text/html"}, request=REQUEST)


@pytest.mark.parametrize("shape", PAGE_IDS)
def test_a_hostile_html_page_gives_a_short_readable_message(shape: str) -> None:
    page, expected = HOSTILE_PAGES[shape]
    assert len(page) >= SIZE
    body, message = read_error_body(_error_response(page))
    assert message == expected
    assert len(message) <= MAX_BODY_IN_MESSAGE_CHARS
    assert isinstance(body, str)
    assert len(body) <= MAX_BODY_IN_MESSAGE_CHARS


@pytest.mark.parametrize("shape", PAGE_IDS)
def test_only_the_first_max_body_examined_chars_are_looked_at(shape: str) -> None:
    page, _ = HOSTILE_PAGES[shape]
    examined = page[:MAX_BODY_EXAMINED_CHARS]
    assert len(page) > 6 * len(examined)
    result = trim_text(page)
    # The 400 KB page costs what its first 64 KiB cost: the rest is never looked at...
    assert result == trim_text(examined)
    # ...not even text that closes every open element and names a title,
    closer = "</script></style></title><title>Late title</title>"
    assert trim_text(examined + closer) == result
    # which does change the result when it comes within the examined part.
    assert trim_text(examined[: -len(closer)] + closer) != result


def test_the_examined_part_is_a_fixed_small_size() -> None:
    assert MAX_BODY_IN_MESSAGE_CHARS < MAX_BODY_EXAMINED_CHARS <= 64 * 1024


# The former implementation, kept as an oracle: on well-formed pages the linear reading agrees with it.
_OLD_TAG = re.compile(r"<[^>]+>")
_OLD_SPACE = re.compile(r"\s+")
_OLD_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_OLD_SCRIPT_OR_STYLE = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def _regex_trim(text: str, limit: int = MAX_BODY_IN_MESSAGE_CHARS) -> str:
    stripped = text.strip()
    if stripped[:1] == "<" and ("<html" in stripped[:500].lower() or "<!doctype" in stripped[:50].lower()):
        title = _OLD_TITLE.search(stripped)
        if title and title.group(1).strip():
            stripped = title.group(1)
        else:
            stripped = _OLD_TAG.sub(" ", _OLD_SCRIPT_OR_STYLE.sub(" ", stripped))
        stripped = html.unescape(_OLD_SPACE.sub(" ", stripped)).strip()
    if len(stripped) > limit:
        stripped = stripped[: limit - 3].rstrip() + "..."
    return stripped


_WORDS = st.lists(
    st.sampled_from(["Bad", "gateway", "é", "&amp;", "&lt;", "&#65;", "&nbsp;", " ", "\n", "\t", "x" * 60]),
    max_size=12,
).map("".join)
_CODE = st.text(alphabet="abc <>=;{}()'\"\n", max_size=30)
_ELEMENTS = st.one_of(
    _WORDS.map(lambda text: f"<p>{text}</p>"),
    _WORDS.map(lambda text: f'<div class="x">{text}</div>'),
    _WORDS,
    _CODE.map(lambda code: f"<script>{code}</script>"),
    _CODE.map(lambda code: f'<SCRIPT type="module">{code}</SCRIPT>'),
    _CODE.map(lambda code: f"<style>{code}</style>"),
    st.just("<br/>"),
)
_PAGES = st.builds(
    lambda doctype, title, elements: (
        f"{doctype}<html><head>{title}</head><body>" + "".join(elements) + "</body></html>"
    ),
    st.sampled_from(["", "<!DOCTYPE html>", "<!doctype html>\n"]),
    st.one_of(st.just(""), _WORDS.map(lambda text: f"<title>{text}</title>")),
    st.lists(_ELEMENTS, max_size=8),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_PAGES)
def test_well_formed_pages_read_as_they_did(page: str) -> None:
    assert trim_text(page) == _regex_trim(page)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*"<>/!&#;= ab\n", "<html>", "<title>", "</title>", "<script>", "&#65;"])).map("".join))
def test_trimming_any_text_is_short_and_depends_only_on_the_examined_part(text: str) -> None:
    # With a small cap standing in for the real one, arbitrary text can run past it.
    with mock.patch.object(exceptions_module, "MAX_BODY_EXAMINED_CHARS", 40):
        result = trim_text(text, limit=30)
        assert len(result) <= 30
        assert result == trim_text(text[:40], limit=30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>x</body></html>", "502 Bad Gateway"),
        (
            "<html><head><title> </title><style>p{}</style></head><body><h1>Oops &amp; sorry</h1>\n"
            "<p>try   later</p><script>var a = '<p>';</script></body></html>",
            "Oops & sorry try later",
        ),
        ("<html><body>Down<script>never closed", "Down"),
        ("<html><body>Down <a href=", "Down"),
        ("<html><body>1 <> 2, 3 < 4", "1 <> 2, 3 < 4"),
        ("<html><title>Error &#" + "9" * 5000 + ";</title></html>", "Error \ufffd"),
        ("<html><title>&#65;&#x42;&#0000067;</title></html>", "ABC"),
        ("<p>not a page</p>", "<p>not a page</p>"),
        ("y" * 600, "y" * 497 + "..."),
    ],
    ids=[
        "title",
        "visible-text",
        "unclosed-script",
        "unfinished-tag",
        "lone-lt",
        "huge-charref",
        "charrefs",
        "not-a-page",
        "long-text",
    ],
)
def test_what_a_page_becomes(text: str, expected: str) -> None:
    assert trim_text(text) == expected


def test_a_huge_character_reference_is_not_a_crash() -> None:
    # `html.unescape` hands the digits to `int`, which raised ValueError past 4300 of them.
    page = "<html><head><title>Gateway &#" + "9" * SIZE + "</title></head></html>"
    _, message = read_error_body(_error_response(page, 502))
    assert message == "Gateway \ufffd"


def test_a_deeply_nested_json_body_is_not_a_crash() -> None:
    # `json.loads` raised RecursionError (not ValueError) for a body nested deeper than it recurses.
    body, message = read_error_body(_error_response("[" * SIZE))
    assert message == "[" * 497 + "..."
    assert body == message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (HEAD + "<script>" * 1_250_000, "Service down"),
        (json.dumps({"error": {"message": "m" * 10_000_000}}), "m" * 497 + "..."),
    ],
    ids=["html", "json"],
)
def test_a_10_mb_body_is_decoded_as_json_once_at_most(
    text: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(text) >= 10_000_000
    calls: list[int] = []
    loads = json.loads

    def counting_loads(document: str) -> Any:
        calls.append(len(document))
        return loads(document)

    monkeypatch.setattr(json, "loads", counting_loads)
    _, message = read_error_body(_error_response(text))
    assert message == expected
    assert calls == [len(text)]


def test_a_400_with_a_hostile_html_page_raises_a_short_bad_request(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    page, _ = HOSTILE_PAGES["unclosed-script"]
    httpx_mock.add_response(status_code=400, text=page, headers={"content-type": "text/html"})
    with pytest.raises(deployai.BadRequestError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert info.value.message == "Service down"
    assert str(info.value) == "Error code: 400 - Service down"


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_whose_body_does_not_decode_keeps_its_status_and_is_retried(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float], stream: bool
) -> None:
    # A proxy's error page labelled gzip that is not: the status is what the answer says.
    garbled = {"content-encoding": "gzip", "retry-after": "1"}
    httpx_mock.add_callback(
        lambda request: httpx.Response(503, headers=garbled, stream=Pieces([b"<html>busy</html>"])), is_reusable=True
    )
    with pytest.raises(deployai.ServiceUnavailableError) as info:
        make_client(max_retries=2).chat.completions.create(model="openai/gpt-4o", messages=user(), stream=stream)
    assert info.value.status_code == 503
    assert info.value.message.startswith("(The body could not be decoded:")
    assert len(httpx_mock.get_requests()) == 3
    assert len(sleeps) == 2
    assert all(1.0 <= seconds <= 1.25 for seconds in sleeps)  # the answer's retry-after, kept with its status


@pytest.mark.parametrize("stream", [False, True])
def test_an_error_body_is_read_only_so_far_so_a_compressed_bomb_costs_little(
    make_client: ClientFactory, httpx_mock: HTTPXMock, stream: bool
) -> None:
    bomb = gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9)  # 64 MiB once inflated
    pieces = [bomb[i : i + 4096] for i in range(0, len(bomb), 4096)]  # as it comes off a socket
    httpx_mock.add_callback(
        lambda request: httpx.Response(500, headers={"content-encoding": "gzip"}, stream=Pieces(pieces))
    )
    with pytest.raises(deployai.InternalServerError) as info:
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user(), stream=stream)
    assert len(info.value.response.content) == MAX_ERROR_BODY_BYTES
    assert info.value.message == "500 Internal Server Error (empty body)"


@functools.cache
def _bomb(encoding: str, mebibytes: int) -> bytes:
    """A body in `encoding` that inflates to `mebibytes` MiB of spaces, made without holding them."""
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "raw deflate": -zlib.MAX_WBITS}[encoding]
    squeeze = zlib.compressobj(9, zlib.DEFLATED, wbits)
    block = b" " * (1024 * 1024)
    return b"".join(squeeze.compress(block) for _ in range(mebibytes)) + squeeze.flush()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_a_success_that_inflates_past_its_bound_is_refused_as_it_is_read_never_held_whole(
    make_client: ClientFactory, httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    # A 200 was inflated whole: 1 MiB of gzip on the wire took 3 GiB, and a stream's one endless
    # line was kept until the body ended. The bounds are lowered here, so that the test stays small.
    monkeypatch.setattr(http_module, "MAX_ANSWER_BYTES", 2 * 1024 * 1024)
    monkeypatch.setattr(sse_module, "MAX_EVENT_BYTES", 2 * 1024 * 1024)
    bomb = _bomb("gzip", 16)  # 16 MiB of spaces: no line end, no JSON
    pieces = [bomb[i : i + 1024] for i in range(0, len(bomb), 1024)]  # each about 1 MiB once inflated
    kind = "text/event-stream" if stream else "application/json"
    headers = {"content-encoding": "gzip", "content-type": kind}
    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=headers, stream=Pieces(pieces)))
    client = make_client(max_retries=0)

    def call() -> None:
        if stream:
            with client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True) as events:
                list(events)
        else:
            client.chat.completions.create(model="openai/gpt-4o", messages=user())

    httpx_mock.add_callback(lambda request: httpx.Response(200, headers=headers, stream=Pieces(pieces)))
    with pytest.raises(deployai.APIConnectionError, match="larger than 2,097,152 bytes"):
        call()  # once before measuring: what a first call of the process sets up is no part of it
    tracemalloc.start()
    try:
        with pytest.raises(deployai.APIConnectionError, match="larger than 2,097,152 bytes") as info:
            call()
        held, peak = tracemalloc.get_traced_memory()  # while the error lives, with its traceback
    finally:
        tracemalloc.stop()
    assert info.value.__traceback__ is not None  # alive, as measured
    assert peak < 8 * 1024 * 1024  # the bound and a piece or two, never the 16 MiB
    # None of the pieces gathered (the bound's 2 MiB) is kept by the error's traceback; Python 3.10
    # keeps the last piece read (about 1 MiB here) somewhere of its own.
    assert held < 1536 * 1024


@pytest.mark.parametrize(
    ("encoding", "stream"), [("gzip", False), ("gzip", True), ("deflate", False), ("raw deflate", False)]
)
def test_an_error_body_inflates_no_further_than_it_is_read_whatever_the_size_of_its_pieces(
    make_client: ClientFactory, httpx_mock: HTTPXMock, encoding: str, stream: bool
) -> None:
    # A piece as large as a socket read (64 KiB) of a bomb inflates to 64 MiB at once if decoded
    # whole; this one (about 256 KiB, 256 MiB inflated) comes in one piece.
    bomb = _bomb(encoding, 256)
    label = encoding.removeprefix("raw ")  # some servers send raw deflate as `deflate`
    httpx_mock.add_callback(
        lambda request: httpx.Response(500, headers={"content-encoding": label}, stream=Pieces([bomb]))
    )
    client = make_client(max_retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(deployai.InternalServerError) as info:
            client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=stream)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert bytes(info.value.response.content) == b" " * MAX_ERROR_BODY_BYTES
    assert peak < 32 * 1024 * 1024


# Headers: every parser is total.

_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
HTTP_DATES = st.from_regex(
    rf"{_DAY}, [0-9]{{1,25}} {_MONTH} [0-9]{{1,25}} [0-9]{{1,25}}:[0-9]{{1,25}}(:[0-9]{{1,25}})?"
    r" (GMT|UTC|[+-][0-9]{1,25})",
    fullmatch=True,
)
NUMBERS = st.from_regex(r"\s?[+-]?[0-9]{0,30}(\.[0-9]{0,10})?([eE][+-]?[0-9]{1,4})?\s?", fullmatch=True)
HUGE_NUMBERS = st.integers(min_value=4200, max_value=5100).map(lambda digits: "9" * digits)
SPECIAL_VALUES = st.sampled_from(
    [
        "",
        " ",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "infinity",
        "1e400",
        "-1e400",
        "1e308",
        "-0",
        "-5",
        "1_000",
        "\u0663",
        "\uff11\uff12",
    ]
)
HEADER_VALUES = st.one_of(st.text(), NUMBERS, HUGE_NUMBERS, HTTP_DATES, SPECIAL_VALUES)
RATE_LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


def _header_sets(value: str) -> list[dict[str, str]]:
    """Every header a parser reads, carrying `value`, alone and in the 429 "window exhausted" shape."""
    return [
        {"retry-after": value},
        {"retry-after-ms": value},
        {"retry-after-ms": value, "retry-after": value},
        {"x-ratelimit-remaining": "0", "x-ratelimit-reset": value},
        {"x-ratelimit-remaining": value, "x-ratelimit-reset": str(int(NOW) + 5)},
        dict.fromkeys(RATE_LIMIT_HEADERS, value),
    ]


def _is_wait(seconds: float | None) -> bool:
    return seconds is None or (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0.0)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(HEADER_VALUES, st.floats(min_value=0.0, max_value=1e10))
@example("Fri, 31 Dec 9999 23:59:59 GMT", NOW)
@example("Sat, 01 Jan 10000 00:00:00 GMT", NOW)
@example("Mon, 01 Jan 0000 00:00:00 GMT", NOW)
@example("Fri, 31 Dec 99999999999 23:59:59 GMT", NOW)
@example("Wed, 64364 Nov 1061771476872076000625674 3:9:0 -4840318843", NOW)
@example("1e400", NOW)
@example("9" * 5000, NOW)
def test_every_header_parser_is_total(value: str, now: float) -> None:
    for name in RATE_LIMIT_HEADERS:
        limit = RateLimit.from_headers({name: value})
        for number in (limit.limit, limit.remaining):
            assert number is None or (isinstance(number, int) and number >= 0)
        assert limit.reset_at is None or limit.reset_at.tzinfo is datetime.timezone.utc
        assert _is_wait(limit.seconds_until_reset(now))
    for headers in _header_sets(value):
        for status in (429, 503):
            assert _is_wait(server_requested_wait(status, headers, now))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    HEADER_VALUES,
    st.sampled_from([None, 408, 429, 500, 503, 400]),
    st.integers(min_value=0, max_value=3),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_retry_decisions_are_total(value: str, status: int | None, retry_number: int, random_fraction: float) -> None:
    for headers in _header_sets(value):
        decision = decide(
            retryable=True,  # the longest path: a wait is chosen
            server_wait=None if status is None else server_requested_wait(status, headers, NOW),
            retry_number=retry_number,
            max_retries=2,
            max_retry_wait=60.0,
            random_fraction=random_fraction,
        )
        assert math.isfinite(decision.wait_seconds)
        assert decision.wait_seconds >= 0.0
        assert _is_wait(decision.server_wait)
        assert not decision.retry or decision.wait_seconds <= 60.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Fri, 31 Dec 9999 23:59:59 GMT", 366 * 86_400.0),  # a year at most, though a datetime holds it
        ("Sat, 01 Jan 10000 00:00:00 GMT", None),  # was ValueError: year 10000 is out of range
        ("Fri, 31 Dec 99999999999 23:59:59 GMT", None),  # was OverflowError: signed integer is greater than maximum
        ("Wed, 64364 Nov 1061771476872076000625674 3:9:0 -4840318843", None),  # was OverflowError
        ("Fri, 31 Dec 2100 23:59:59 +99999999999999999999", None),  # was 0.0: "retry now"
        ("Fri, 31 Dec 2100 99:00:00 GMT", None),
        ("Mon, 01 Jan 0000 00:00:00 GMT", 0.0),  # a two-digit-style year: 2000, in the past
        (email.utils.formatdate(NOW + 7, usegmt=True), 7.0),
        ("99999999999999999999999", 366 * 86_400.0),  # was 1e23, which no sleep takes: a year at most
        ("1e400", None),
        ("9" * 5000, None),
        ("-0", 0.0),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("infinity", None),
        ("1_000", None),
        ("\u0663", None),
        ("\uff11\uff12", None),
        ("", None),
        ("   ", None),
        ("0x10", None),
        ("1e", None),
    ],
)
def test_retry_after_extremes(value: str, expected: float | None) -> None:
    wait = server_requested_wait(503, {"retry-after": value}, NOW)
    assert wait == expected
    assert wait is None or math.copysign(1.0, wait) == 1.0


@pytest.mark.parametrize(
    "value", ["1e400", "9" * 5000, "nan", "-1", "\u0663", "1_000", "", "Sat, 01 Jan 10000 00:00:00 GMT"]
)
def test_retry_after_ms_extremes_are_none(value: str) -> None:
    assert server_requested_wait(503, {"retry-after-ms": value}, NOW) is None


@pytest.mark.parametrize(
    "value", ["1e400", "9" * 5000, "99999999999999999999", "1e308", "-1", "nan", "inf", "\u0663", "1_000", " ", "4e"]
)
def test_rate_limit_extremes_are_none(value: str) -> None:
    limit = RateLimit.from_headers(
        {"x-ratelimit-limit": value, "x-ratelimit-remaining": "0", "x-ratelimit-reset": value}
    )
    assert limit.reset_at is None
    assert limit.seconds_until_reset(NOW) is None
    assert server_requested_wait(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": value}, NOW) is None
    if value not in ("99999999999999999999", "1e308"):
        assert limit.limit is None


@pytest.mark.parametrize(
    ("reset_at", "now"),
    [
        (datetime.datetime.min, NOW),  # naive: was ValueError: year 0 is out of range
        (datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), math.nan),  # was 0.0
        (datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), -math.inf),  # was inf
    ],
    ids=["naive-min", "nan-now", "minus-inf-now"],
)
def test_seconds_until_reset_is_none_when_it_cannot_be_known(reset_at: datetime.datetime, now: float) -> None:
    assert RateLimit(reset_at=reset_at).seconds_until_reset(now) is None


@pytest.mark.parametrize(
    ("status", "retry_after", "cls", "requests"),
    [
        (429, "Fri, 31 Dec 9999 23:59:59 GMT", deployai.RateLimitError, 1),
        (503, "99999999999999999999999", deployai.ServiceUnavailableError, 1),
        (429, "Sat, 01 Jan 10000 00:00:00 GMT", deployai.RateLimitError, 3),
    ],
    ids=["429-year-9999", "503-huge-seconds", "429-year-10000"],
)
def test_extreme_retry_after_reaches_the_typed_error(
    make_client: ClientFactory,
    httpx_mock: HTTPXMock,
    sleeps: list[float],
    status: int,
    retry_after: str,
    cls: type[deployai.APIStatusError],
    requests: int,
) -> None:
    for _ in range(requests):
        httpx_mock.add_response(
            status_code=status, json={"error": {"message": "wait"}}, headers={"retry-after": retry_after}
        )
    with pytest.raises(cls) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert type(info.value) is cls
    assert info.value.message == "wait"
    wait = info.value.retry_after
    if requests == 1:  # a wait far longer than max_retry_wait: raised at once, with the wait
        assert wait is not None
        assert math.isfinite(wait)
        assert wait > 60.0
        assert sleeps == []
    else:  # no usable wait: the usual backoff, then the error without one
        assert wait is None
        assert len(sleeps) == 2
    assert len(httpx_mock.get_requests()) == requests

"""The emulator in-process: its core, its httpx transports, and the SDK's clients against it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import deployai
from deployai import AsyncDeployAI, DeployAI
from deployai.testing import MODEL_IDS, Emulator, EmulatorResponse, count_tokens
from deployai.testing._text import split_tokens
from tests.emulator_helpers import (
    HELLO,
    TEST_KEY,
    FakeClock,
    SleepRecorder,
    chat_body,
    error_of,
    raw_client,
    sse_chunks,
    sse_data,
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
def raw(emulator: Emulator) -> Iterator[httpx.Client]:
    with raw_client(emulator) as client:
        yield client


# The tokenizer and the replies


def test_tokens_are_words_and_single_punctuation_marks() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("You are a helpful assistant.") == 6
    assert count_tokens("   ") == 0
    assert count_tokens("don't") == 3


@pytest.mark.parametrize("text", ["You said: Hello!", "  two  spaces  ", "a\nb\tc ", "", "?!"])
def test_split_tokens_gives_one_piece_per_token_and_joins_back(text: str) -> None:
    pieces = split_tokens(text)
    assert len(pieces) == count_tokens(text)
    assert "".join(pieces) == (text if pieces else "")


# The core, called directly


def test_handle_is_usable_without_any_adapter() -> None:
    emulator = Emulator()
    response = emulator.handle(
        "POST", "/v1/chat/completions", {"Authorization": f"Bearer {TEST_KEY}"}, json.dumps(chat_body()).encode()
    )
    assert isinstance(response, EmulatorResponse)
    assert response.status == 200
    assert response.delay == 0.0
    assert not response.abort
    assert isinstance(response.body, bytes)
    assert response.header("Content-Type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    assert json.loads(response.body)["choices"][0]["message"]["content"] == "You said: Hello!"


def test_constructor_refuses_bad_settings() -> None:
    with pytest.raises(deployai.InvalidParameterError, match="rate_limit"):
        Emulator(rate_limit=0)
    with pytest.raises(deployai.InvalidParameterError, match="window_seconds"):
        Emulator(window_seconds=0)
    with pytest.raises(deployai.InvalidParameterError, match="token_latency"):
        Emulator(token_latency=-1)


# Authentication


@pytest.mark.parametrize(
    ("authorization", "fragment"),
    [
        (None, "Missing API key"),
        ("Bearer", "Malformed"),
        ("Basic sk-abcdef", "Malformed"),
        ("Bearer abc-not-a-key", "start with 'sk-'"),
    ],
)
def test_requests_without_a_valid_key_get_401_in_the_api_error_form(
    emulator: Emulator, authorization: str | None, fragment: str
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    with raw_client(emulator, key=None) as client:
        response = client.post("/v1/chat/completions", json=chat_body(), headers=headers)
    assert response.status_code == 401
    error = error_of(response)
    assert error["type"] == "authentication_error"
    assert error["code"] == "invalid_api_key"
    assert error["param"] is None
    assert fragment in error["message"]
    assert response.headers["x-request-id"] == "req_1"
    assert "abc-not-a-key" not in response.text
    assert "sk-abcdef" not in response.text


def test_only_the_given_api_keys_are_accepted_when_a_list_is_set() -> None:
    emulator = Emulator(api_keys=["sk-good"])
    with raw_client(emulator, key="sk-good") as good, raw_client(emulator, key="sk-bad") as bad:
        assert good.get("/v1/models").status_code == 200
        refused = bad.get("/v1/models")
    assert refused.status_code == 401
    assert error_of(refused)["message"] == "Incorrect API key provided."


def test_the_sdk_raises_authentication_error(emulator: Emulator) -> None:
    with emulator.client(api_key="wrong", max_retries=0) as client, pytest.raises(deployai.AuthenticationError) as info:
        client.models.list()
    assert info.value.status_code == 401
    assert info.value.request_id == "req_1"


# Models


def test_models_lists_the_seven_documented_models(raw: httpx.Client) -> None:
    response = raw.get("/v1/models")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["object"] == "list"
    table = {m["id"]: (m["object"], m["owned_by"], m["provider"], m["context_window"]) for m in body["data"]}
    assert table == {
        "openai/gpt-4o": ("model", "openai", "OpenAI", 128_000),
        "openai/o3-mini": ("model", "openai", "OpenAI", 128_000),
        "anthropic/claude-3.5-sonnet": ("model", "anthropic", "Anthropic", 200_000),
        "google/gemini-2.0-flash": ("model", "google", "Google", 1_000_000),
        "mistralai/mistral-large": ("model", "mistralai", "Mistral AI", 128_000),
        "meta/llama-3.1-405b": ("model", "meta", "Meta", 128_000),
        "deepseek/deepseek-r1": ("model", "deepseek", "DeepSeek", 64_000),
    }
    assert all(isinstance(m["created"], int) for m in body["data"])
    assert [m["id"] for m in body["data"]] == list(MODEL_IDS)


# Chat completions


def test_chat_completion_has_the_documented_shape_and_honest_usage() -> None:
    with raw_client(Emulator(clock=FakeClock(1_708_000_000.75))) as raw:
        response = raw.post("/v1/chat/completions", json=chat_body(messages=HELLO, temperature=0.7, max_tokens=1000))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["id", "object", "created", "model", "choices", "usage"]
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert body["created"] == 1_708_000_000
    assert body["model"] == "openai/gpt-4o"
    assert body["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "You said: Hello!"}, "finish_reason": "stop"}
    ]
    # "You are a helpful assistant." is 6 tokens and "Hello!" 2; "You said: Hello!" is 5.
    assert body["usage"] == {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13}


def test_the_same_prompt_gets_the_same_reply_and_another_prompt_another(raw: httpx.Client) -> None:
    def ask(text: str) -> dict[str, Any]:
        body: dict[str, Any] = raw.post(
            "/v1/chat/completions", json=chat_body(messages=[{"role": "user", "content": text}])
        ).json()
        return {"choices": body["choices"], "usage": body["usage"]}

    assert ask("What is 2 + 2?") == ask("What is 2 + 2?")
    assert ask("What is 2 + 2?")["choices"][0]["message"]["content"] == "You said: What is 2 + 2?"
    assert ask("Something else") != ask("What is 2 + 2?")


def test_the_reply_answers_the_last_user_message_and_counts_every_message(raw: httpx.Client) -> None:
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}],
        },
    ]
    body = raw.post("/v1/chat/completions", json=chat_body(messages=messages)).json()
    assert body["choices"][0]["message"]["content"] == "You said: look"
    assert body["usage"]["prompt_tokens"] == 5


def test_max_tokens_truncates_with_finish_reason_length(raw: httpx.Client) -> None:
    body = raw.post("/v1/chat/completions", json=chat_body(max_tokens=2)).json()
    assert body["choices"][0]["message"]["content"] == "You said"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2


@pytest.mark.parametrize(
    "caps", [{"max_completion_tokens": 2}, {"max_completion_tokens": None, "max_tokens": 2}], ids=["given", "null"]
)
def test_max_completion_tokens_truncates_and_a_null_one_leaves_max_tokens_to_cap(
    raw: httpx.Client, caps: dict[str, Any]
) -> None:
    body = raw.post("/v1/chat/completions", json=chat_body(**caps)).json()
    assert body["choices"][0]["message"]["content"] == "You said"
    assert body["choices"][0]["finish_reason"] == "length"


def test_max_tokens_at_the_reply_length_is_not_a_truncation(raw: httpx.Client) -> None:
    body = raw.post("/v1/chat/completions", json=chat_body(max_tokens=5)).json()
    assert body["choices"][0]["message"]["content"] == "You said: Hello!"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_stop_and_n_are_honoured(raw: httpx.Client) -> None:
    body = raw.post("/v1/chat/completions", json=chat_body(stop=[":"], n=2)).json()
    assert [c["message"]["content"] for c in body["choices"]] == ["You said", "You said"]
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert body["usage"]["completion_tokens"] == 4


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"temperature": 3}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": "Hello!"}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "gpt-4o"}, "model"),
        ({"model": 4}, "model"),
        ({"stream": "yes"}, "stream"),
        ({"n": 0}, "n"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_parameters_the_sdk_refuses_get_400_naming_the_param(
    raw: httpx.Client, change: dict[str, Any], param: str
) -> None:
    response = raw.post("/v1/chat/completions", json=chat_body(**change))
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_parameter"
    assert error["param"] == param
    assert error["message"].startswith(f"{param} must be ")


@pytest.mark.parametrize("content", [b"{not json", b"", b"[1, 2]", b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000])
def test_a_body_that_is_not_a_json_object_gets_400(raw: httpx.Client, content: bytes) -> None:
    response = raw.post("/v1/chat/completions", content=content)
    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "invalid_json", None)


def test_an_unknown_model_gets_404_model_not_found(raw: httpx.Client) -> None:
    response = raw.post("/v1/chat/completions", json=chat_body(model="openai/gpt-5-imaginary"))
    assert response.status_code == 404
    error = error_of(response)
    assert (error["type"], error["code"], error["param"]) == ("not_found_error", "model_not_found", "model")
    assert "openai/gpt-5-imaginary" in error["message"]


def test_unknown_paths_get_404_and_wrong_methods_405(raw: httpx.Client) -> None:
    missing = raw.get("/v1/embeddings")
    assert missing.status_code == 404
    assert error_of(missing)["type"] == "not_found_error"
    wrong = raw.post("/v1/models", json={})
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert error_of(wrong)["code"] == "method_not_allowed"
    assert raw.get("/v1/chat/completions").headers["allow"] == "POST"
    assert raw.get("/v1/models/").status_code == 200


# Streaming


def test_a_stream_sends_role_then_one_chunk_per_token_then_finish_then_done(raw: httpx.Client) -> None:
    response = raw.post("/v1/chat/completions", json=chat_body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert "content-length" not in response.headers
    assert response.text.endswith("data: [DONE]\n\n")
    assert all(event.startswith("data: ") for event in response.text.split("\n\n") if event)
    chunks = sse_chunks(response.text)
    assert {(c["id"], c["object"], c["model"]) for c in chunks} == {
        (chunks[0]["id"], "chat.completion.chunk", "openai/gpt-4o")
    }
    assert chunks[0]["id"].startswith("chatcmpl-")
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d["content"] for d in deltas[1:-1]] == ["You", " said", ":", " Hello", "!"]
    assert deltas[-1] == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 6 + ["stop"]
    assert all("usage" not in c for c in chunks)


def test_include_usage_adds_a_last_chunk_with_usage_and_no_choices(raw: httpx.Client) -> None:
    body = chat_body(stream=True, max_tokens=3, stream_options={"include_usage": True})
    chunks = sse_chunks(raw.post("/v1/chat/completions", json=body).text)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert all(c["usage"] is None for c in chunks[:-1])


def test_token_latency_is_waited_before_each_token_chunk_only() -> None:
    sleeps = SleepRecorder()
    with raw_client(Emulator(token_latency=0.25), sleep=sleeps) as client:
        text = client.post("/v1/chat/completions", json=chat_body(stream=True)).text
    assert sleeps.calls == [0.25] * 5
    assert sse_data(text)[-1] == "[DONE]"


def test_the_stream_reaches_the_sdk_chunk_by_chunk() -> None:
    # Each wait happens after the SDK has handed out the chunk before it: the body really streams.
    received: list[str] = []
    seen_at_each_wait: list[int] = []
    emulator = Emulator(token_latency=1.0)
    transport = emulator.transport(sleep=lambda seconds: seen_at_each_wait.append(len(received)))
    with (
        DeployAI(
            api_key=TEST_KEY, base_url="https://emulator.invalid/v1", http_client=httpx.Client(transport=transport)
        ) as client,
        client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
    ):
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
        client._http.client.close()
    assert "".join(received) == "You said: Hello!"
    assert seen_at_each_wait == [1, 2, 3, 4, 5]


# Rate limits


def test_rate_limit_headers_count_down_and_429_comes_with_retry_after() -> None:
    clock = FakeClock(1_700_000_000.25)
    emulator = Emulator(rate_limit=2, window_seconds=10, clock=clock)
    with raw_client(emulator) as client:
        first = client.get("/v1/models")
        clock.advance(3.5)
        second = client.post("/v1/chat/completions", json=chat_body())
        clock.advance(1)
        third = client.post("/v1/chat/completions", json=chat_body())
        clock.advance(5.0)  # the window, from the whole second of the first request, ends at 1_700_000_010
        fourth = client.get("/v1/models")
        clock.advance(0.5)
        fifth = client.get("/v1/models")
    reset = "1700000010"
    assert [(r.status_code, r.headers["x-ratelimit-remaining"]) for r in (first, second, third, fourth, fifth)] == [
        (200, "1"),
        (200, "0"),
        (429, "0"),
        (429, "0"),
        (200, "1"),
    ]
    assert {r.headers["x-ratelimit-limit"] for r in (first, second, third)} == {"2"}
    assert {r.headers["x-ratelimit-reset"] for r in (first, second, third, fourth)} == {reset}
    assert fifth.headers["x-ratelimit-reset"] == "1700000020"
    assert third.headers["retry-after"] == "6"  # 5.25 s left, rounded up
    assert fourth.headers["retry-after"] == "1"  # 0.25 s left
    error = error_of(third)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert [r.headers["x-request-id"] for r in (first, second, third, fourth, fifth)] == [
        f"req_{n}" for n in range(1, 6)
    ]


def test_a_new_window_starts_exactly_when_the_last_one_ends() -> None:
    clock = FakeClock(1_700_000_000.0)
    emulator = Emulator(rate_limit=1, window_seconds=10, clock=clock)
    with raw_client(emulator) as client:
        statuses = [client.get("/v1/models").status_code]
        clock.advance(9.5)
        statuses.append(client.get("/v1/models").status_code)
        clock.advance(0.5)  # exactly 1_700_000_010.0: both steps are exact in binary floating point
        statuses.append(client.get("/v1/models").status_code)
    assert statuses == [200, 429, 200]


def test_each_key_has_its_own_window() -> None:
    emulator = Emulator(rate_limit=1, clock=FakeClock())
    with raw_client(emulator, key="sk-one") as one, raw_client(emulator, key="sk-two") as two:
        assert one.get("/v1/models").status_code == 200
        assert one.get("/v1/models").status_code == 429
        assert two.get("/v1/models").status_code == 200


def test_every_answered_request_carries_rate_limit_and_request_id_headers(raw: httpx.Client) -> None:
    responses = [
        raw.get("/v1/models"),
        raw.post("/v1/chat/completions", json=chat_body()),
        raw.post("/v1/chat/completions", json=chat_body(stream=True)),
        raw.post("/v1/chat/completions", json=chat_body(temperature=9)),
        raw.post("/v1/chat/completions", json=chat_body(model="x/y")),
        raw.get("/v1/nothing"),
        raw.delete("/v1/models"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 400, 404, 404, 405]
    for count, response in enumerate(responses, start=1):
        assert response.headers["x-ratelimit-limit"] == "60"
        assert response.headers["x-ratelimit-remaining"] == str(60 - count)
        assert int(response.headers["x-ratelimit-reset"]) > 1_700_000_000
        assert response.headers["x-request-id"] == f"req_{count}"


def test_the_sdk_reads_the_429(emulator: Emulator) -> None:
    limited = Emulator(rate_limit=1, window_seconds=30, clock=FakeClock())
    with limited.client(max_retries=0) as client:
        assert client.models.list().rate_limit.remaining == 0
        with pytest.raises(deployai.RateLimitError) as info:
            client.models.list()
    assert info.value.retry_after == 30
    assert info.value.rate_limit.limit == 1
    assert info.value.rate_limit.remaining == 0


# Faults


def test_fail_next_answers_with_the_status_then_things_go_back_to_normal(raw: httpx.Client, emulator: Emulator) -> None:
    emulator.fail_next(503)
    assert emulator.pending_faults == 1
    failed = raw.get("/v1/models")
    assert failed.status_code == 503
    error = error_of(failed)
    assert (error["type"], error["code"]) == ("overloaded_error", "service_unavailable")
    assert failed.headers["x-ratelimit-remaining"] == "59"
    assert emulator.pending_faults == 0
    assert raw.get("/v1/models").status_code == 200


def test_fail_next_sends_any_body_and_headers(raw: httpx.Client, emulator: Emulator) -> None:
    page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    emulator.fail_next(502, page, headers={"X-Ratelimit-Limit": "7"})
    emulator.fail_next(418, {"detail": "teapot"})
    emulator.fail_next(500, b"\x00\x01")
    html = raw.post("/v1/chat/completions", json={"not": "checked"})
    assert (html.status_code, html.text, html.headers["content-type"]) == (502, page, "text/html; charset=utf-8")
    assert html.headers.get_list("x-ratelimit-limit") == ["7"]
    teapot = raw.get("/v1/models")
    assert (teapot.status_code, teapot.json()) == (418, {"detail": "teapot"})
    binary = raw.get("/v1/models")
    assert (binary.status_code, binary.content) == (500, b"\x00\x01")


def test_faults_are_used_in_the_order_they_were_queued(raw: httpx.Client, emulator: Emulator) -> None:
    emulator.fail_next(500, times=2)
    emulator.fail_next(429)
    assert [raw.get("/v1/models").status_code for _ in range(4)] == [500, 500, 429, 200]


def test_fail_next_refuses_a_status_that_is_not_an_error(emulator: Emulator) -> None:
    for status in (200, 302, 600, True):
        with pytest.raises(deployai.InvalidParameterError, match="status"):
            emulator.fail_next(status)
    with pytest.raises(deployai.InvalidParameterError, match="times"):
        emulator.fail_next(500, times=0)


def test_the_sdk_retries_emulated_failures(emulator: Emulator) -> None:
    emulator.fail_next(503, headers={"retry-after": "0"}, times=2)
    with emulator.client() as client:
        completion = client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)
    assert completion.choices[0].message.content == "You said: Hello!"
    assert [r.request_id for r in emulator.requests] == ["req_1", "req_2", "req_3"]
    assert completion.request_id == "req_3"


def test_stall_next_waits_before_the_headers() -> None:
    emulator, sleeps = Emulator(), SleepRecorder()
    emulator.stall_next(1.5)
    response = emulator.handle("GET", "/v1/models", {"authorization": f"Bearer {TEST_KEY}"}, b"")
    assert (response.status, response.delay) == (200, 1.5)
    emulator.stall_next(2.5)
    with raw_client(emulator, sleep=sleeps) as client:
        assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert sleeps.calls == [2.5]


def test_slow_next_waits_before_the_body_or_between_chunks() -> None:
    emulator, sleeps = Emulator(token_latency=0.01), SleepRecorder()
    emulator.slow_next(0.75, times=2)
    with raw_client(emulator, sleep=sleeps) as client:
        assert client.get("/v1/models").status_code == 200
        assert sleeps.calls == [0.75]
        sleeps.calls.clear()
        text = client.post("/v1/chat/completions", json=chat_body(stream=True)).text
    events = sse_data(text)
    assert events[-1] == "[DONE]"
    assert sleeps.calls == [0.75] * (len(events) - 1)


def test_cut_stream_after_drops_the_connection_before_done(raw: httpx.Client, emulator: Emulator) -> None:
    emulator.cut_stream_after(3)
    received = b""
    with (
        raw.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for piece in response.iter_raw():
            received += piece
    assert [c["choices"][0]["delta"].get("content") for c in sse_chunks(received.decode())] == ["", "You", " said"]
    assert b"[DONE]" not in received


def test_stream_faults_wait_for_a_successful_stream(raw: httpx.Client, emulator: Emulator) -> None:
    emulator.cut_stream_after(1)
    emulator.error_event_after(1)
    assert raw.post("/v1/chat/completions", json=chat_body()).status_code == 200
    assert raw.post("/v1/chat/completions", json=chat_body(stream=True, top_p=7)).status_code == 400
    assert raw.get("/v1/models").status_code == 200
    assert emulator.pending_faults == 2


def test_the_sdk_raises_connection_error_on_a_cut_stream(emulator: Emulator) -> None:
    emulator.cut_stream_after(4)
    contents: list[str | None] = []
    with emulator.client() as client:
        stream = client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        with stream, pytest.raises(deployai.APIConnectionError, match="after 4 chunk"):
            for chunk in stream:
                contents.append(chunk.choices[0].delta.content)
    assert contents == ["", "You", " said", ":"]
    assert len(emulator.requests) == 1  # a stream that has started is never retried


@pytest.mark.parametrize("as_event", [False, True])
def test_error_event_after_sends_the_error_mid_stream(raw: httpx.Client, emulator: Emulator, as_event: bool) -> None:
    emulator.error_event_after(2, as_event=as_event)
    text = raw.post("/v1/chat/completions", json=chat_body(stream=True)).text
    events = text.split("\n\n")
    assert events[-1] == ""
    assert len(events) == 4
    assert events[2].startswith("event: error\ndata: {" if as_event else "data: {")
    assert json.loads(events[2].split("data: ", 1)[1])["error"]["type"] == "server_error"
    assert "[DONE]" not in text


def test_the_sdk_raises_the_typed_error_of_an_error_event(emulator: Emulator) -> None:
    emulator.error_event_after(1, {"message": "Slow down.", "type": "rate_limit_error"}, as_event=True)
    emulator.error_event_after(3)
    with emulator.client() as client:
        with (
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
            pytest.raises(deployai.RateLimitError, match="Slow down"),
        ):
            list(stream)
        with (
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
            pytest.raises(deployai.InternalServerError, match="upstream provider failed"),
        ):
            list(stream)


def test_an_error_event_before_any_chunk_is_retried_by_the_sdk_as_its_status(emulator: Emulator) -> None:
    emulator.error_event_after(0)  # a server_error: a 500
    with emulator.client() as client:
        with client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream:
            assert stream.get_final_completion().choices[0].message.content
        assert len(emulator.requests) == 2
        emulator.error_event_after(0, {"message": "No such model.", "code": "model_not_found"})
        with (
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
            pytest.raises(deployai.NotFoundError, match="No such model"),
        ):
            list(stream)
        assert len(emulator.requests) == 3


def test_malformed_json_next_breaks_a_body_or_one_chunk(raw: httpx.Client, emulator: Emulator) -> None:
    emulator.malformed_json_next(times=2)
    emulator.malformed_json_next(at_chunk=99)
    broken = raw.get("/v1/models")
    assert broken.status_code == 200
    assert broken.headers["content-length"] == str(len(broken.content))
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    events = sse_data(raw.post("/v1/chat/completions", json=chat_body(stream=True)).text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(events[1])
    assert [json.loads(e)["choices"][0]["delta"] for e in (events[0], events[2])] == [
        {"role": "assistant", "content": ""},
        {"content": " said"},
    ]
    assert events[-1] == "[DONE]"
    last = sse_data(raw.post("/v1/chat/completions", json=chat_body(stream=True)).text)
    assert last[-1] == "[DONE]"
    with pytest.raises(json.JSONDecodeError):
        json.loads(last[-2])


def test_the_sdk_raises_validation_errors_on_malformed_json(emulator: Emulator) -> None:
    emulator.malformed_json_next(times=2)
    with emulator.client() as client:
        with pytest.raises(deployai.APIResponseValidationError, match="ChatCompletion"):
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)
        with (
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
            pytest.raises(deployai.APIResponseValidationError, match="chunk"),
        ):
            list(stream)


def test_reset_forgets_requests_faults_windows_and_ids() -> None:
    emulator = Emulator(rate_limit=1, clock=FakeClock())
    with raw_client(emulator) as client:
        client.get("/v1/models")
        emulator.fail_next(500)
        assert client.get("/v1/models").status_code == 429  # a refused request uses no fault
        assert emulator.pending_faults == 1
        emulator.reset()
        assert emulator.requests == []
        assert emulator.pending_faults == 0
        again = client.get("/v1/models")
    assert (again.status_code, again.headers["x-request-id"]) == (200, "req_1")


# Recorded requests


def test_requests_are_recorded_with_their_json_and_the_key_redacted(raw: httpx.Client, emulator: Emulator) -> None:
    raw.get("/v1/models", params={"limit": "3"})
    raw.post("/v1/chat/completions", json=chat_body(temperature=0.5), headers={"X-Trace": "abc"})
    raw.post("/v1/chat/completions", content=b"not json")
    models, chat, broken = emulator.requests
    assert (models.method, models.path, models.query, models.json) == ("GET", "/v1/models", "limit=3", None)
    assert (chat.method, chat.path, chat.json) == ("POST", "/v1/chat/completions", chat_body(temperature=0.5))
    assert chat.headers["x-trace"] == "abc"
    # The key itself is not kept, so that a test report or a log of `requests` never shows it.
    assert chat.headers["authorization"] == "Bearer [redacted]"
    assert TEST_KEY not in repr(chat.to_json())
    assert chat.sent_key(TEST_KEY)
    assert not chat.sent_key(TEST_KEY + "x")
    assert (broken.json, broken.body) == (None, b"not json")
    assert [r.request_id for r in emulator.requests] == ["req_1", "req_2", "req_3"]


@pytest.mark.parametrize(
    ("sent", "recorded"),
    [
        (f"Basic {TEST_KEY}", "Basic [redacted]"),
        (f"token {TEST_KEY}", "token [redacted]"),
        (TEST_KEY, "[redacted]"),
        (f"{TEST_KEY} {TEST_KEY}", "[redacted]"),  # a first word that may be a key is not shown
    ],
)
def test_a_record_shows_which_authorization_scheme_was_sent_but_no_key(
    emulator: Emulator, sent: str, recorded: str
) -> None:
    with raw_client(emulator, key=None) as client:
        assert client.get("/v1/models", headers={"Authorization": sent}).status_code == 401
    (record,) = emulator.requests
    assert record.headers["authorization"] == recorded
    assert TEST_KEY not in repr(record.to_json())
    assert not record.sent_key(TEST_KEY)  # the emulator takes a bearer key only


def test_only_the_most_recent_requests_are_kept() -> None:
    emulator = Emulator(max_recorded_requests=2)
    with raw_client(emulator) as client:
        for _ in range(3):
            client.get("/v1/models")
    assert [r.request_id for r in emulator.requests] == ["req_2", "req_3"]


def test_no_repr_shows_the_api_key(raw: httpx.Client, emulator: Emulator) -> None:
    raw.get("/v1/models")
    shown = repr(emulator.requests) + repr(emulator) + repr(Emulator(api_keys=[TEST_KEY]))
    assert TEST_KEY not in shown
    assert "/v1/models" in shown


# The SDK's clients in-process


def test_the_sync_client_completes_streams_and_lists(emulator: Emulator) -> None:
    with emulator.client() as client:
        completion = client.chat.completions.create(model="anthropic/claude-3.5-sonnet", messages=HELLO)
        with client.chat.completions.create(
            model="openai/gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_completion()
        models = client.models.list()
    assert client.base_url == "https://emulator.invalid/v1"
    assert (completion.model, completion.choices[0].message.content) == ("anthropic/claude-3.5-sonnet", text)
    assert completion.usage == final.usage
    assert completion.rate_limit.remaining == 59
    assert [m.id for m in models] == list(MODEL_IDS)
    assert emulator.requests[0].sent_key("sk-emulator-test")


def test_the_client_closes_its_transport(emulator: Emulator) -> None:
    client = emulator.client()
    http = client._http.client
    client.close()
    assert http.is_closed
    with pytest.raises(TypeError, match="http_client"):
        emulator.client(http_client=httpx.Client())


@pytest.mark.anyio
async def test_the_async_client_completes_streams_and_lists(emulator: Emulator) -> None:
    async with emulator.async_client() as client:
        completion = await client.chat.completions.create(model="deepseek/deepseek-r1", messages=HELLO, max_tokens=3)
        stream = await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        async with stream:
            pieces = [piece async for piece in stream.text_stream]
        models = await client.models.list()
    assert completion.choices[0].message.content == "You said:"
    assert completion.choices[0].finish_reason == "length"
    assert pieces == ["You", " said", ":", " Hello", "!"]
    assert len(models) == 7
    http = client._http.client
    assert http is not None
    assert http.is_closed


@pytest.mark.anyio
async def test_the_async_models_list_is_awaited_or_iterated_and_sent_once_when_first_used(emulator: Emulator) -> None:
    # `async for model in client.models.list()` is how the openai SDK's users write it.
    async with emulator.async_client() as client:
        ids = [model.id async for model in client.models.list()]
        listing = client.models.list()
        with pytest.warns(RuntimeWarning, match=r"models\.list\(\) was never awaited nor iterated: nothing was sent"):
            client.models.list()  # never used (an `await` forgotten): nothing is sent, as Python warns of a coroutine
        task = asyncio.create_task(listing)  # a coroutine, as an `async def` method's result is
        page = await task
        # Used again, it gives the same page without sending: it raised RuntimeError ("cannot reuse
        # already awaited coroutine"), where a sync `ModelList` can be iterated again.
        assert await listing is page
        assert [model.id async for model in listing] == [model.id async for model in listing] == ids
    assert ids == [model.id for model in page]
    assert len(ids) == 7
    assert [(r.method, r.path) for r in emulator.requests] == [("GET", "/v1/models")] * 2


@pytest.mark.anyio
async def test_an_async_models_list_that_failed_or_was_cancelled_sends_again(emulator: Emulator) -> None:
    async with emulator.async_client(max_retries=0) as client:
        emulator.fail_next(404)
        listing = client.models.list()
        with pytest.raises(deployai.NotFoundError):
            await listing
        assert len([model async for model in listing]) == 7  # no answer came: it asks again
        assert len(await asyncio.gather(listing)) == 1  # then keeps it, for a task too
        assert len(emulator.requests) == 2
        cancelled = client.models.list()
        emulator.stall_next(30.0)
        task = asyncio.ensure_future(cancelled)
        while not emulator.requests[2:]:  # until the request is in flight, then cancel it
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(await cancelled) == 7
        assert len(await asyncio.create_task(cancelled)) == 7  # given to a task once answered: kept
    assert len(emulator.requests) == 4


@pytest.mark.anyio
async def test_an_async_models_list_refuses_a_second_awaiter_while_its_request_is_in_flight(
    emulator: Emulator,
) -> None:
    # The second awaiter stepped the first one's request: both failed, one with an
    # APIConnectionError (a class callers retry) for a network fault that never happened.
    async with emulator.async_client(max_retries=0) as client:
        listing = client.models.list()
        emulator.stall_next(0.2)
        task = asyncio.ensure_future(listing)
        while not emulator.requests:  # until the request is in flight
            await asyncio.sleep(0)
        with pytest.raises(deployai.DeployAIError, match="awaited by another task") as refused:
            await listing
        assert not isinstance(refused.value, deployai.APIError)
        page = await task
        assert len(page.data) == 7
        assert await listing is page  # once answered, any task may have it
    assert len(emulator.requests) == 1


@pytest.mark.anyio
async def test_the_async_transport_waits_with_the_given_sleep_and_cuts_streams() -> None:
    emulator, sleeps = Emulator(token_latency=0.5), SleepRecorder()
    emulator.stall_next(3.0)
    emulator.cut_stream_after(2)
    transport = emulator.async_transport(sleep=sleeps.asleep)
    async with AsyncDeployAI(
        api_key=TEST_KEY, base_url="https://emulator.invalid/v1", http_client=httpx.AsyncClient(transport=transport)
    ) as client:
        assert (await client.models.list()).data[0].id == "openai/gpt-4o"
        stream = await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        received = 0
        async with stream:
            with pytest.raises(deployai.APIConnectionError):
                async for _ in stream:
                    received += 1
        http = client._http.client
        assert http is not None
        await http.aclose()
    assert sleeps.calls == [3.0, 0.5]
    assert received == 2


# The pytest plugin


def test_the_plugin_fixtures_are_wired_together(deployai_emulator: Emulator, deployai_client: DeployAI) -> None:
    deployai_emulator.fail_next(404)
    with pytest.raises(deployai.NotFoundError):
        deployai_client.models.list()
    assert deployai_client.models.list()[0].provider == "OpenAI"
    assert len(deployai_emulator.requests) == 2


@pytest.mark.anyio
async def test_the_async_plugin_fixture(deployai_emulator: Emulator, deployai_async_client: AsyncDeployAI) -> None:
    completion = await deployai_async_client.chat.completions.create(model="meta/llama-3.1-405b", messages=HELLO)
    assert completion.id == "chatcmpl-emu1"
    assert deployai_emulator.requests[0].json["model"] == "meta/llama-3.1-405b"


def test_importing_the_plugin_or_the_kit_does_not_import_uvicorn() -> None:
    code = (
        "import sys, deployai.testing.pytest_plugin, deployai.testing; "
        "assert 'uvicorn' not in sys.modules, 'uvicorn was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_the_plugin_pytest_loads_imports_nothing_of_deployai() -> None:
    # pytest loads it in every run of every project where deployai is installed: it imported the
    # whole SDK and its kit (about 180 modules more than pytest's own), 0.16 s of every such run.
    (plugin,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "deployai"]
    code = f"import sys, {plugin.value}; assert not [m for m in sys.modules if m.startswith('deployai')]"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("autoload", [True, False], ids=["autoloaded-too", "autoload-off"])
def test_the_plugin_listed_by_its_name_in_pytest_plugins_gives_the_fixtures(tmp_path: Path, autoload: bool) -> None:
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["deployai.testing.pytest_plugin"]\n')
    (tmp_path / "test_it.py").write_text(
        "import pytest\n"
        "@pytest.mark.deployai_emulator(rate_limit=5)\n"
        "def test_it(deployai_emulator, deployai_client):\n"
        "    assert deployai_client.models.list().data\n"
        "    assert deployai_emulator.statuses == [200]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_DISABLE_PLUGIN_AUTOLOAD"}
    if not autoload:
        env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "--strict-markers",
            "test_it.py",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout

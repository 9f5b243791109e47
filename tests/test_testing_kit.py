"""The testing kit: scripted replies, aimed faults, recorded exchanges, the virtual clock and the fixtures."""

from __future__ import annotations

import datetime
import json
import math
import time
from collections.abc import Iterator
from typing import Any

import pytest

import deployai
from deployai import DeployAI
from deployai._error_codes import ERROR_KINDS
from deployai.testing import Emulator, EmulatorServer, Reply, ToolCall, VirtualClock, _emulator
from deployai.types import ChatCompletion
from tests.emulator_helpers import HELLO, chat_body, error_of, raw_client, sse_chunks

GPT = "openai/gpt-4o"
CLAUDE = "anthropic/claude-3.5-sonnet"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(rate_limit=None, clock=VirtualClock())


@pytest.fixture
def client(emulator: Emulator) -> Iterator[DeployAI]:
    with emulator.client() as made:
        yield made


def ask(client: DeployAI, model: str = GPT, **params: Any) -> str | None:
    completion: ChatCompletion = client.chat.completions.create(model=model, messages=HELLO, **params)
    return completion.choices[0].message.content


def stream_pieces(client: DeployAI, model: str = GPT, **params: Any) -> list[str]:
    with client.chat.completions.create(model=model, messages=HELLO, stream=True, **params) as stream:
        return [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]


# Scripted replies


def test_queued_replies_answer_the_next_chat_calls_in_order_then_the_echo_returns(
    emulator: Emulator, client: DeployAI
) -> None:
    first, second = emulator.reply("First."), emulator.reply("Second.")
    models = client.models.list()  # not a chat call: the queue waits
    assert [ask(client), ask(client), ask(client)] == ["First.", "Second.", "You said: Hello!"]
    assert len(models) == 7
    assert (first.hits, second.hits, emulator.rules) == (1, 1, [])


def test_a_stream_sends_the_pieces_as_given(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply(pieces=["Bon", "jour", " le monde", "!"])
    assert stream_pieces(client) == ["Bon", "jour", " le monde", "!"]


def test_stop_and_max_tokens_apply_to_a_scripted_reply(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply(pieces=["one", " two", " three", " four"], times=2)
    assert stream_pieces(client, stop=" thr") == ["one", " two"]
    completion = client.chat.completions.create(model=GPT, messages=HELLO, max_tokens=3)
    assert (completion.choices[0].message.content, completion.choices[0].finish_reason) == ("one two three", "length")


def test_tool_calls_stream_as_deltas_and_the_sdk_puts_them_together(emulator: Emulator) -> None:
    calls = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", '{"tz": "CET"}', id="call_t")]
    emulator.reply(tool_calls=calls, times=2)
    with raw_client(emulator) as raw:
        chunks = sse_chunks(raw.post("/v1/chat/completions", json=chat_body(stream=True)).text)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    starts = [d["tool_calls"][0] for d in deltas if "tool_calls" in d and "id" in d["tool_calls"][0]]
    assert starts == [
        {"index": 0, "id": "call_1_0", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
        {"index": 1, "id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": ""}},
    ]
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas if "tool_calls" in d]
    assert len(pieces) > 4  # the arguments arrive a token at a time
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    with emulator.client() as client, client.chat.completions.create(model=GPT, messages=HELLO, stream=True) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.content is None
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []] == [
        ("call_2_0", "get_weather", {"city": "Paris"}),
        ("call_t", "get_time", {"tz": "CET"}),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_finish_reason_usage_refusal_and_extra_fields_are_sent_as_scripted(
    emulator: Emulator, client: DeployAI
) -> None:
    emulator.reply(
        Reply(
            refusal="I can't help with that.",
            finish_reason="content_filter",
            usage={"prompt_tokens": 100, "completion_tokens": 7},
            extra={"system_fingerprint": "fp_emu", "provider": "emulated"},
        )
    )
    completion = client.chat.completions.create(model=GPT, messages=HELLO)
    choice = completion.choices[0]
    assert (choice.message.content, choice.message.refusal) == (None, "I can't help with that.")
    assert choice.finish_reason == "content_filter"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (100, 7)
    assert completion.usage.total_tokens == 107
    assert (completion.system_fingerprint, completion.model_extra) == ("fp_emu", {"provider": "emulated"})


def test_rules_aim_replies_at_a_model_with_a_count(emulator: Emulator, client: DeployAI) -> None:
    rule = emulator.on(model=CLAUDE).reply("Bonjour !", times=2)
    answers = [ask(client, GPT), ask(client, CLAUDE), ask(client, CLAUDE), ask(client, CLAUDE)]
    assert answers == ["You said: Hello!", "Bonjour !", "Bonjour !", "You said: Hello!"]
    assert (rule.hits, rule.remaining, rule.used_up) == (2, 0, True)


def test_a_predicate_picks_requests_and_unlimited_rules_come_after_counted_ones(
    emulator: Emulator, client: DeployAI
) -> None:
    emulator.on(when=lambda r: r.json.get("temperature") == 0).reply("Cold.", times=None)
    emulator.reply("Next.")
    assert [ask(client, temperature=0), ask(client, temperature=0), ask(client)] == [
        "Next.",
        "Cold.",
        "You said: Hello!",
    ]


def test_a_reply_waits_for_the_retry_when_a_fault_replaced_the_answer(emulator: Emulator, client: DeployAI) -> None:
    rule = emulator.reply("Kept for the retry.")
    emulator.fail_next(503, headers={"retry-after": "0"})
    assert ask(client) == "Kept for the retry."
    assert (emulator.statuses, rule.hits) == ([503, 200], 1)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Reply(content="a", pieces=["b"]),
        lambda: Reply(pieces=[1]),  # type: ignore[list-item]
        lambda: Reply(tool_calls=[{"name": "x"}]),  # type: ignore[list-item]
        lambda: Reply(usage={"prompt_tokens": -1}),
        lambda: ToolCall(""),
        lambda: Emulator().reply(Reply(content="a"), content="b"),
        lambda: Emulator().reply("a", times=0),
        lambda: Emulator().on(route="chats"),  # type: ignore[arg-type]
        # Scripts that could not be sent: refused when written, not when a request meets them.
        lambda: Reply("x", extra={"at": datetime.date(2024, 1, 1)}),
        lambda: Reply("x", extra={"score": math.nan}),
        lambda: ToolCall("f", {"ids": {1, 2}}),
        lambda: Reply("x", usage={"prompt_tokens": True}),
        lambda: Emulator().on(route="models").reply("x"),
        lambda: Emulator().fail_next(503, headers={"retry-after": 0}),  # type: ignore[dict-item]
        lambda: Emulator().fail_next(503, headers={"retry-after": "0\r\nx-injected: 1"}),
        lambda: Emulator().fail_next(503, body=3),  # type: ignore[arg-type]
        lambda: Emulator().error_event_after(1, as_event="no"),  # type: ignore[arg-type]
        lambda: Emulator().reply(),  # its text forgotten: it answered with no content at all
        # Settings its own clients could never get through with: every call a 401, or a 500.
        lambda: Emulator(api_keys=["test-key"]),
        lambda: Emulator(api_keys=[]),
        lambda: Emulator(api_keys=["sk-a", 3]),  # type: ignore[list-item]
        lambda: Emulator(api_keys=["sk-abc "]),  # read stripped by the server: its own clients' calls were 401s
        lambda: Emulator(api_keys=["sk-a b"]),
        lambda: Emulator().on(route="models", stream=False),  # could never match
        lambda: Emulator(clock="now"),  # type: ignore[arg-type]
    ],
    ids=[
        "pieces-not-content",
        "piece-not-str",
        "call-not-ToolCall",
        "negative-usage",
        "nameless-call",
        "reply-and-fields",
        "times-0",
        "unknown-route",
        "date-in-extra",
        "nan-in-extra",
        "set-in-arguments",
        "bool-usage",
        "reply-for-models",
        "int-header",
        "crlf-header",
        "int-body",
        "str-as-event",
        "empty-reply",
        "key-without-sk",
        "no-keys",
        "key-not-str",
        "clock-not-callable",
        "key-with-space-after",
        "key-with-space-inside",
        "stream-on-models",
    ],
)
def test_a_bad_script_is_refused_when_written(make: Any) -> None:
    with pytest.raises(deployai.InvalidParameterError):
        make()


def test_an_emulator_told_no_clock_keeps_real_time_and_a_refused_key_is_never_shown() -> None:
    emulator = Emulator(clock=None)
    before = time.time()
    with emulator.client() as client:
        assert ask(client, GPT) == "You said: Hello!"
    assert before <= emulator.requests[0].received_at <= time.time()
    for secret in ("live-secret-123", b"sk-live-secret-123", "sk-live-secret-123\n"):
        with pytest.raises(deployai.InvalidParameterError) as refused:
            Emulator(api_keys=["sk-good", secret])  # type: ignore[list-item]
        assert "live-secret-123" not in str(refused.value)


# Aimed faults


def test_a_fault_aimed_at_a_model_leaves_other_models_alone(emulator: Emulator) -> None:
    rule = emulator.on(model=CLAUDE).fail(503, times=2)
    with emulator.client(max_retries=0) as client:
        assert ask(client, GPT) == "You said: Hello!"
        for _ in range(2):
            with pytest.raises(deployai.ServiceUnavailableError):
                ask(client, CLAUDE)
        assert ask(client, CLAUDE) == "You said: Hello!"
    assert (emulator.statuses, rule.hits) == ([200, 503, 503, 200], 2)


def test_faults_aimed_at_a_route_and_at_streams(emulator: Emulator) -> None:
    emulator.on(route="models").fail(500, times=None)
    emulator.on(stream=True).cut_stream_after(2)
    with emulator.client(max_retries=0) as client:
        assert ask(client) == "You said: Hello!"
        with pytest.raises(deployai.InternalServerError):
            client.models.list()
        with pytest.raises(deployai.APIConnectionError):
            stream_pieces(client)
        assert stream_pieces(client) == ["You", " said", ":", " Hello", "!"]


def test_a_fault_for_whole_answers_leaves_the_listing_of_models_alone(emulator: Emulator) -> None:
    emulator.on(stream=False).fail(503)
    with emulator.client(max_retries=0) as client:
        assert [model.id for model in client.models.list()][:1] == ["openai/gpt-4o"]
        with pytest.raises(deployai.ServiceUnavailableError):
            ask(client)
        assert ask(client) == "You said: Hello!"


def test_an_unused_rule_for_whole_answers_is_named_by_that_criterion(emulator: Emulator) -> None:
    emulator.on(stream=False).fail(503)
    with pytest.raises(AssertionError, match=r"stream=False"):  # it read "any request"
        emulator.assert_scripts_used()


def test_assert_scripts_used_names_what_was_never_used(emulator: Emulator, client: DeployAI) -> None:
    emulator.on(model=CLAUDE).reply("Unused.")
    emulator.reply("Used.")
    # Unlimited: never "left over", but one no request matched is named too (a typo in the model
    # went unnoticed: the rule sat there unused, and the check passed).
    emulator.on(route="models").stall(5, times=None)
    emulator.on(model="anthropic/claude-3-5-sonnet").fail(503, times=None)
    ask(client)
    with pytest.raises(AssertionError) as info:
        emulator.assert_scripts_used()
    named = str(info.value).splitlines()[1:]
    assert len(named) == 3
    assert "reply for model='anthropic/claude-3.5-sonnet' (0 of 1 used)" in named[0]
    assert "claude-3-5-sonnet" in str(info.value)
    ask(client, CLAUDE)
    client.models.list()
    with pytest.raises(AssertionError, match="claude-3-5-sonnet") as info:
        emulator.assert_scripts_used()
    assert len(str(info.value).splitlines()) == 2  # that one alone


# Recorded exchanges


def test_each_exchange_records_its_response_stream_flag_and_timing() -> None:
    clock = VirtualClock(start=1_000.0)
    emulator = Emulator(rate_limit=None, clock=clock, token_latency=0.25)
    emulator.on(model=CLAUDE).stall(2)
    with emulator.client() as client:
        ask(client, CLAUDE)
        clock.advance(10)
        pieces = stream_pieces(client)
        with pytest.raises(deployai.NotFoundError):
            client.models.retrieve("nobody/nothing")
    whole, streamed, missing = emulator.requests
    assert (whole.route, whole.model, whole.status, whole.streamed) == ("chat", CLAUDE, 200, False)
    assert (whole.received_at, whole.duration) == (1_000.0, 2.0)
    assert whole.response_headers["content-type"] == "application/json"
    assert (streamed.streamed, streamed.response_headers["content-type"]) == (True, "text/event-stream")
    assert streamed.received_at == 1_012.0  # the stall's 2 s, then the 10 s advanced
    assert streamed.duration == 0.25 * len(pieces)
    assert (missing.route, missing.status) == ("model", 404)
    assert emulator.statuses == [200, 200, 404]
    assert emulator.calls(model=CLAUDE) == [whole]
    assert emulator.calls(route="chat", status=200) == [whole, streamed]
    assert emulator.last_request is missing


def test_last_request_says_when_there_was_none() -> None:
    with pytest.raises(AssertionError, match="no request"):
        _ = Emulator().last_request


# The fixtures and the virtual clock


def test_the_fixture_emulator_is_not_rate_limited_and_sends_no_rate_limit_headers(
    deployai_emulator: Emulator, deployai_client: DeployAI
) -> None:
    for _ in range(100):
        assert deployai_client.models.list().rate_limit.limit is None
    assert deployai_emulator.statuses == [200] * 100


def test_the_fixture_client_waits_for_retry_after_on_the_virtual_clock(
    deployai_emulator: Emulator,
    deployai_client: DeployAI,
    deployai_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_real_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s of real time")

    monkeypatch.setattr("deployai._http._sleep", no_real_sleep)
    deployai_emulator.fail_next(503, headers={"retry-after": "30"}, times=2)
    assert ask(deployai_client) == "You said: Hello!"
    assert deployai_emulator.statuses == [503, 503, 200]
    # Each wait is the server's, plus at most 1 s of spread (see the retry policy).
    assert 60 <= deployai_clock.waited <= 62


@pytest.mark.deployai_emulator(rate_limit=2, window_seconds=60)
def test_a_marker_opts_in_to_rate_limits_and_two_429s_then_a_200_is_read_back(
    deployai_emulator: Emulator, deployai_client: DeployAI, deployai_clock: VirtualClock
) -> None:
    ask(deployai_client), ask(deployai_client)
    deployai_emulator.fail_next(429, headers={"retry-after": "1"})
    assert ask(deployai_client) == "You said: Hello!"
    # The window's own 429 first (a refused request uses no script), then, in a new window, the scripted one.
    assert deployai_emulator.statuses == [200, 200, 429, 429, 200]
    limited = deployai_emulator.calls(status=429)
    assert [r.response_headers["retry-after"] for r in limited] == ["60", "1"]
    assert limited[1].received_at - limited[0].received_at >= 60
    assert 61 <= deployai_clock.waited <= 62.25  # each wait plus at most a quarter of it


@pytest.mark.deployai_emulator(api_keys=["sk-mine", "sk-theirs"])
def test_an_emulator_that_takes_only_given_keys_makes_clients_that_send_one_of_them(
    deployai_emulator: Emulator, deployai_client: DeployAI, deployai_emulator_server: EmulatorServer
) -> None:
    # Its clients sent "sk-emulator-test" whatever the keys: each call was a 401.
    assert ask(deployai_client) == "You said: Hello!"
    with deployai_emulator_server.client() as over_http:
        assert ask(over_http) == "You said: Hello!"
    refused = pytest.raises(deployai.AuthenticationError)
    with deployai_emulator.client(api_key="sk-other", max_retries=0) as other, refused:
        ask(other)
    assert [r.status for r in deployai_emulator.requests] == [200, 200, 401]


@pytest.mark.deployai_emulator(token_latency=0.5)
def test_token_latency_passes_on_the_virtual_clock(deployai_client: DeployAI, deployai_clock: VirtualClock) -> None:
    assert len(stream_pieces(deployai_client)) == 5
    assert deployai_clock.waited == 2.5


@pytest.mark.anyio
async def test_the_async_fixture_client_waits_on_the_virtual_clock(
    deployai_emulator: Emulator,
    deployai_async_client: deployai.AsyncDeployAI,
    deployai_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def no_real_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds} s of real time")

    monkeypatch.setattr("deployai._http._async_sleep", no_real_sleep)
    deployai_emulator.fail_next(503, headers={"retry-after": "45"})
    completion = await deployai_async_client.chat.completions.create(model=GPT, messages=HELLO)
    assert completion.choices[0].message.content == "You said: Hello!"
    assert 45 <= deployai_clock.waited <= 46


def test_a_virtual_clock_moves_only_forward() -> None:
    clock = VirtualClock(start=10.0)
    clock.advance(5)
    clock.sleep(2.5)
    assert (clock(), clock.waited) == (17.5, 2.5)
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


# The error vocabulary, shared by the emulator and the SDK


@pytest.mark.parametrize("status", sorted(ERROR_KINDS))
def test_each_status_error_code_the_emulator_sends_maps_back_to_its_status_in_the_sdk(
    emulator: Emulator, client: DeployAI, status: int
) -> None:
    emulator.fail_next(status)
    with raw_client(emulator) as raw:
        error = error_of(raw.get("/v1/models"))
    assert (error["type"], error["code"]) == ERROR_KINDS[status]
    # An error event carries no status: the SDK finds it again from the code.
    emulator.error_event_after(1, error)
    with pytest.raises(deployai.APIStatusError) as info:
        stream_pieces(client.with_options(max_retries=0))
    assert info.value.status_code == status


# Found by review: each of these once failed


def test_a_predicate_may_read_the_emulator_while_it_answers(emulator: Emulator, client: DeployAI) -> None:
    emulator.on(when=lambda r: len(emulator.requests) >= 1).reply("Second or later.", times=None)
    assert [ask(client), ask(client)] == ["You said: Hello!", "Second or later."]


def test_a_predicate_that_raises_is_answered_as_a_500_naming_it(emulator: Emulator) -> None:
    def broken(request: Any) -> bool:
        return bool(1 / 0)

    emulator.on(when=broken).fail(503)
    with emulator.client(max_retries=0) as client, pytest.raises(deployai.InternalServerError, match="broken raised"):
        ask(client)
    assert emulator.statuses == [500]


def test_a_reply_waits_for_the_retry_when_its_stream_was_cut_or_broken(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply("Scripted answer.", times=2)
    emulator.cut_stream_after(0)  # before any event: the SDK retries it
    assert "".join(stream_pieces(client)) == "Scripted answer."
    emulator.malformed_json_next()
    with pytest.raises(deployai.APIResponseValidationError):
        ask(client.with_options(max_retries=0))
    assert ask(client) == "Scripted answer."
    assert emulator.rules == []


def test_scripted_pieces_are_counted_and_capped_in_tokens(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply(pieces=["Hello world foo"], times=2)
    completion = client.chat.completions.create(model=GPT, messages=HELLO)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    capped = client.chat.completions.create(model=GPT, messages=HELLO, max_tokens=1)
    assert (capped.choices[0].message.content, capped.choices[0].finish_reason) == ("Hello", "length")


def test_a_reply_of_only_spaces_and_empty_pieces_are_sent_as_given(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply("  \n")
    emulator.reply(pieces=["a", "", "b"])
    assert ask(client) == "  \n"
    with client.chat.completions.create(model=GPT, messages=HELLO, stream=True) as stream:
        assert [c.choices[0].delta.content for c in stream if c.choices][1:4] == ["a", "", "b"]


def test_key_headers_of_other_clients_are_redacted_too(emulator: Emulator) -> None:
    with raw_client(emulator) as raw:
        headers = {"api-key": "sk-azure-style", "x-api-key": "sk-other", "proxy-authorization": "Basic cHJveHk6cHc="}
        raw.get("/v1/models", headers=headers)
    for secret in ("sk-azure-style", "sk-other", "cHJveHk6cHc="):
        assert secret not in repr(emulator.last_request.to_json())
    assert emulator.last_request.headers["proxy-authorization"] == "Basic [redacted]"


def test_a_lone_surrogate_in_a_request_is_echoed_and_read_back_as_valid_json(emulator: Emulator) -> None:
    body = b'{"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "a\\ud800b"}]}'
    with raw_client(emulator) as raw:
        answer = raw.post("/v1/chat/completions", content=body)
        exchanges = raw.get("/_emulator/requests")
    assert answer.json()["choices"][0]["message"]["content"] == "You said: a\ud800b"
    assert exchanges.json()["data"][0]["json"]["messages"][0]["content"] == "a\ud800b"


@pytest.mark.deployai_emulator(rate_limit=5, token_latency=0.25)
class TestMarkers:
    """Markers from a class and from a test combine; the closest wins for each option."""

    @pytest.mark.deployai_emulator(rate_limit=7)
    def test_the_closest_marker_wins_option_by_option(self, deployai_emulator: Emulator) -> None:
        assert (deployai_emulator.rate_limit, deployai_emulator.token_latency) == (7, 0.25)


def test_a_request_the_emulator_fails_to_answer_is_an_api_500_and_recorded(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(body: object, call_prefix: str) -> Reply:
        raise KeyError("tools")

    monkeypatch.setattr(_emulator, "default_reply", broken)
    with emulator.client(max_retries=0) as client, pytest.raises(deployai.InternalServerError) as failed:
        ask(client)
    assert failed.value.code == "emulator_error"
    assert "The emulator failed to answer this request (KeyError: 'tools')" in str(failed.value)
    assert emulator.statuses == [500]
    assert [r.getMessage() for r in caplog.records] == ["The emulator failed to answer POST /v1/chat/completions"]


MARKED_START = 1_800_000_000.0


@pytest.mark.parametrize("case", [1, 2])
@pytest.mark.deployai_emulator(clock=VirtualClock(start=MARKED_START), token_latency=0.5)
def test_a_clock_a_marker_gives_starts_each_test_as_given(
    deployai_client: DeployAI, deployai_clock: VirtualClock, case: int
) -> None:
    # The marker's clock was one object for both cases: the second began where the first had left it.
    assert (deployai_clock(), deployai_clock.waited) == (MARKED_START, 0)
    assert len(stream_pieces(deployai_client)) == 5
    assert (deployai_clock(), deployai_clock.waited) == (MARKED_START + 2.5, 2.5)


def test_a_streamed_refusal_puts_together_the_same_message_as_a_whole_one(emulator: Emulator, client: DeployAI) -> None:
    emulator.reply(refusal="I can't help with that.", times=2)
    whole = client.chat.completions.create(model=GPT, messages=HELLO)
    with client.chat.completions.create(model=GPT, messages=HELLO, stream=True) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message == whole.choices[0].message
    assert (final.choices[0].message.content, final.choices[0].message.refusal) == (None, "I can't help with that.")


def test_the_in_process_emulator_records_the_headers_the_sdk_sends_over_http() -> None:
    # Its client is the SDK over the emulator's own httpx client, which is no user's `http_client`:
    # httpx's defaults (`accept-encoding`, `connection`) were merged in, which the SDK never sends.
    emulator = Emulator()
    with emulator.client() as client:
        ask(client, CLAUDE)
    (recorded,) = emulator.requests
    assert set(recorded.headers) == {"host", "authorization", "user-agent", "content-type", "accept", "content-length"}

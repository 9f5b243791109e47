"""The call plan driven by hand: every decision of a call, tested without HTTP, sockets, clocks or sleeping."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

import deployai
from deployai._plan import Deliver, Plan, ReadBody, Send, Sleep, call_plan
from deployai.types import ModelList

SSE = {"content-type": "text/event-stream"}
REQUEST = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions")
NOW = 1_700_000_000.0


def plan_for(stream: bool, max_retries: int = 2, max_retry_wait: float = 60.0, random: float = 0.0) -> Plan:
    return call_plan(
        REQUEST,
        stream=stream,
        max_retries=max_retries,
        max_retry_wait=max_retry_wait,
        clock=lambda: NOW,
        random=lambda: random,
    )


def response(status: int, headers: dict[str, str] | None = None, content: bytes = b"{}") -> httpx.Response:
    return httpx.Response(status, headers=headers, content=content, request=REQUEST)


def test_a_whole_call_sends_then_delivers_the_response_and_ends() -> None:
    plan = plan_for(stream=False)
    send = next(plan)
    assert isinstance(send, Send)
    assert (send.request, send.stream, send.attempt) == (REQUEST, False, 1)
    ok = response(200)
    delivered = plan.send(ok)
    assert isinstance(delivered, Deliver)
    assert delivered.response is ok
    with pytest.raises(StopIteration):
        plan.send(None)


def test_a_failed_send_is_fed_back_as_a_value_then_the_plan_sleeps_the_backoff_and_sends_again() -> None:
    plan = plan_for(stream=False, random=1.0)
    next(plan)
    sleep = plan.send(httpx.ConnectError("refused"))
    assert isinstance(sleep, Sleep)
    # min(8, 0.5 * 2**0) * (1 - 0.25 * 1.0): the random source is the plan's only source of jitter.
    assert sleep.seconds == pytest.approx(0.375)
    assert (sleep.retry, sleep.max_retries, sleep.reason) == (1, 2, "ConnectError")
    again = plan.send(None)
    assert isinstance(again, Send)
    assert again.attempt == 2


def test_the_clock_is_the_plans_own_so_a_retry_after_date_is_measured_against_it() -> None:
    plan = plan_for(stream=False)
    next(plan)
    sleep = plan.send(response(503, {"retry-after": "Tue, 14 Nov 2023 22:13:30 GMT"}))  # NOW + 10 s
    assert isinstance(sleep, Sleep)
    assert sleep.seconds == pytest.approx(10.0)
    assert sleep.reason == "status 503"


def test_an_error_status_is_raised_typed_when_retries_are_spent() -> None:
    plan = plan_for(stream=False)
    next(plan)
    for _ in range(2):
        assert isinstance(plan.send(response(500)), Sleep)
        assert isinstance(plan.send(None), Send)
    with pytest.raises(deployai.InternalServerError):
        plan.send(response(500))


def test_a_local_failure_is_not_retried() -> None:
    plan = plan_for(stream=False)
    next(plan)
    with pytest.raises(deployai.APIConnectionError):
        plan.send(httpx.UnsupportedProtocol("ftp is not http"))


def test_a_redirect_is_an_error_that_says_where_to_and_is_not_retried() -> None:
    plan = plan_for(stream=False)
    next(plan)
    with pytest.raises(deployai.APIStatusError, match=r"301 .*redirect to https://elsewhere\.example/v1") as info:
        plan.send(response(301, {"location": "https://elsewhere.example/v1"}))
    assert info.value.status_code == 301


def test_a_stream_error_status_has_its_body_read_first() -> None:
    plan = plan_for(stream=True)
    next(plan)
    failed = response(400, content=b'{"error": {"message": "bad"}}')
    op = plan.send(failed)
    assert isinstance(op, ReadBody)
    assert op.response is failed
    with pytest.raises(deployai.BadRequestError, match="bad"):
        plan.send(None)


def test_a_stream_body_that_fails_to_read_counts_as_a_failed_attempt() -> None:
    plan = plan_for(stream=True)
    next(plan)
    assert isinstance(plan.send(response(503)), ReadBody)
    assert isinstance(plan.send(httpx.ReadError("reset while reading the error")), Sleep)


def test_a_stream_that_is_not_an_event_stream_is_refused_after_reading_it() -> None:
    plan = plan_for(stream=True)
    next(plan)
    assert isinstance(plan.send(response(200, {"content-type": "application/json"})), ReadBody)
    with pytest.raises(deployai.APIResponseValidationError):
        plan.send(None)


def test_a_stream_is_delivered_at_its_headers_and_resumed_by_a_failure_before_its_first_event() -> None:
    plan = plan_for(stream=True)
    next(plan)
    first = response(200, SSE)
    delivered: Any = plan.send(first)
    assert isinstance(delivered, Deliver)
    assert delivered.response is first
    assert isinstance(plan.send(httpx.RemoteProtocolError("dropped before the first event")), Sleep)
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, SSE)), Deliver)
    assert isinstance(plan.send(httpx.ReadTimeout("stalled")), Sleep)
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, SSE)), Deliver)
    with pytest.raises(deployai.APIConnectionError):  # two retries spent
        plan.send(httpx.RemoteProtocolError("dropped again"))


def test_a_200_whose_body_is_an_error_counts_as_the_status_it_names() -> None:
    # A gateway that answers a provider's failure with a 200 and the error in the body.
    plan = plan_for(stream=False)
    next(plan)
    overloaded = response(200, {"retry-after": "3"}, b'{"error": {"message": "provider overloaded", "code": 503}}')
    sleep = plan.send(overloaded)
    assert isinstance(sleep, Sleep)
    assert (sleep.seconds, sleep.reason) == (3.0, "error 503 in a 200 answer")
    assert isinstance(sleep.error, deployai.ServiceUnavailableError)
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, content=b'{"id": "ok", "choices": []}')), Deliver)


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "x", "choices": [{"message": {"content": "the word \\"error\\""}, "finish_reason": "error"}]}',
        b'{"error": {"message": "m"}, "choices": []}',  # an answer after all: it has its result
        b'{"object": "list", "data": [], "error": {"message": "m"}}',
        b'{"error": null}',
        b'["error"]',
        b'{"error": "not JSON',
    ],
)
def test_a_200_that_carries_no_error_object_alone_is_delivered(body: bytes) -> None:
    plan = plan_for(stream=False)
    next(plan)
    assert isinstance(plan.send(response(200, content=body)), Deliver)


def test_a_200_whose_body_is_an_error_that_is_not_retryable_is_raised_at_once() -> None:
    plan = plan_for(stream=False)
    next(plan)
    with pytest.raises(deployai.BadRequestError, match="bad model") as info:
        plan.send(response(200, content=b'\xef\xbb\xbf{"error": {"message": "bad model", "code": 400}}'))
    assert (info.value.status_code, info.value.retries) == (400, 0)


def test_a_streams_error_event_sent_back_before_its_first_chunk_is_retried_as_its_status() -> None:
    plan = plan_for(stream=True)
    next(plan)
    first = response(200, SSE)
    assert isinstance(plan.send(first), Deliver)
    reported = deployai.RateLimitError("slow down", response=first, body=None, status_code=429)
    sleep = plan.send(reported)
    assert isinstance(sleep, Sleep)
    assert sleep.error is reported
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, SSE)), Deliver)
    refused = deployai.AuthenticationError("no", response=first, body=None, status_code=401)
    with pytest.raises(deployai.AuthenticationError) as info:
        plan.send(refused)
    assert info.value.retries == 1


def test_with_a_result_type_the_body_is_parsed_before_it_is_delivered() -> None:
    plan = call_plan(REQUEST, stream=False, max_retries=1, max_retry_wait=60.0, clock=lambda: NOW, random=lambda: 0.0,
                     result=ModelList)  # fmt: skip
    next(plan)
    assert isinstance(plan.send(response(200, content=b'{"error": {"message": "busy", "code": 503}}')), Sleep)
    next(plan)
    delivered = plan.send(response(200, content=b'{"object": "list", "data": [{"id": "openai/gpt-4o"}]}'))
    assert isinstance(delivered, Deliver)
    assert isinstance(delivered.result, ModelList)
    assert [model.id for model in delivered.result.data] == ["openai/gpt-4o"]


def test_a_body_that_is_no_result_and_no_error_is_a_validation_error_at_once() -> None:
    plan = call_plan(REQUEST, stream=False, max_retries=1, max_retry_wait=60.0, clock=lambda: NOW, random=lambda: 0.0,
                     result=ModelList)  # fmt: skip
    next(plan)
    with pytest.raises(deployai.APIResponseValidationError):
        plan.send(response(200, content=b'{"object": "list"}'))


@pytest.mark.parametrize(
    "error",
    [{"message": "Your prompt was flagged."}, {"code": "context_length_exceeded"}, {"type": "insufficient_quota"}],
)
def test_a_200_whose_error_names_no_status_is_raised_at_once_not_retried_on_a_guess(error: dict[str, str]) -> None:
    plan = plan_for(stream=False)
    next(plan)
    with pytest.raises(deployai.InternalServerError) as info:  # the class is a guess: the retry rule is not
        plan.send(response(200, content=json.dumps({"error": error}).encode()))
    assert info.value.retries == 0
    assert not deployai.is_retryable(info.value)


def test_a_200_error_with_a_null_result_beside_it_is_still_the_error() -> None:
    plan = plan_for(stream=False, max_retries=0)
    next(plan)
    with pytest.raises(deployai.RateLimitError):
        plan.send(response(200, content=b'{"error": {"type": "rate_limit_error"}, "data": null, "choices": null}'))


def test_a_stream_answered_with_a_json_error_is_retried_as_its_status() -> None:
    # A gateway whose provider failed before the stream began answers a 200 with the error as JSON.
    plan = plan_for(stream=True)
    next(plan)
    assert isinstance(
        plan.send(response(200, {"content-type": "application/json"}, b'{"error": {"code": 503}}')), ReadBody
    )
    sleep = plan.send(None)
    assert isinstance(sleep, Sleep)
    assert isinstance(sleep.error, deployai.ServiceUnavailableError)

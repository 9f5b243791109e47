"""The call plan driven by hand: every decision of a call, tested without HTTP, sockets or sleeping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import deployai
from deployai._config import resolve_options
from deployai._http import Opened, ReadBody, Send, call_plan
from deployai._request import build_chat_request
from deployai._retry import Sleep

OPTIONS = resolve_options(
    api_key="sk-plan",
    base_url=None,
    timeout=deployai.NOT_GIVEN,
    max_retries=2,
    max_retry_wait=60.0,
    default_headers=None,
    borrowed_client=False,
    environ={},
)
SSE = {"content-type": "text/event-stream"}


def plan_for(stream: bool) -> Any:
    params: dict[str, Any] = {"model": "a/b", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    return call_plan(build_chat_request(OPTIONS, params), OPTIONS)


def response(status: int, headers: dict[str, str] | None = None, content: bytes = b"{}") -> httpx.Response:
    request = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions")
    return httpx.Response(status, headers=headers, content=content, request=request)


def test_a_whole_call_sends_then_returns_the_response() -> None:
    plan = plan_for(stream=False)
    assert isinstance(next(plan), Send)
    ok = response(200)
    with pytest.raises(StopIteration) as done:
        plan.send(ok)
    assert isinstance(done.value.value, Opened)
    assert done.value.value.response is ok


def test_a_failed_send_sleeps_then_sends_again() -> None:
    plan = plan_for(stream=False)
    next(plan)
    assert isinstance(plan.throw(httpx.ConnectError("refused")), Sleep)
    assert isinstance(plan.send(None), Send)


def test_an_error_status_is_raised_typed_when_retries_are_spent() -> None:
    plan = plan_for(stream=False)
    next(plan)
    for _ in range(2):
        assert isinstance(plan.send(response(500)), Sleep)
        assert isinstance(plan.send(None), Send)
    with pytest.raises(deployai.InternalServerError):
        plan.send(response(500))


def test_a_stream_error_status_has_its_body_read_first() -> None:
    plan = plan_for(stream=True)
    next(plan)
    failed = response(400, content=b'{"error": {"message": "bad"}}')
    op = plan.send(failed)
    assert isinstance(op, ReadBody)
    assert op.response is failed
    with pytest.raises(deployai.BadRequestError, match="bad"):
        plan.send(None)


def test_a_stream_that_is_not_an_event_stream_is_refused_after_reading_it() -> None:
    plan = plan_for(stream=True)
    next(plan)
    assert isinstance(plan.send(response(200, {"content-type": "application/json"})), ReadBody)
    with pytest.raises(deployai.APIResponseValidationError):
        plan.send(None)


def test_a_stream_is_handed_over_at_its_headers_and_resumed_by_a_failure_before_its_first_event() -> None:
    plan = plan_for(stream=True)
    next(plan)
    first = response(200, SSE)
    opened = plan.send(first)
    assert isinstance(opened, Opened)
    assert opened.response is first
    assert isinstance(plan.send(httpx.RemoteProtocolError("dropped before the first event")), Sleep)
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, SSE)), Opened)
    assert isinstance(plan.send(httpx.ReadTimeout("stalled")), Sleep)
    assert isinstance(plan.send(None), Send)
    assert isinstance(plan.send(response(200, SSE)), Opened)
    with pytest.raises(deployai.APIConnectionError):  # two retries spent
        plan.send(httpx.RemoteProtocolError("dropped again"))

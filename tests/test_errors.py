"""Error responses and transport failures become typed errors that carry what a user needs."""

from __future__ import annotations

import datetime
import json
import pickle
import ssl
import traceback

import httpx
import pytest
from pytest_httpx import HTTPXMock

import deployai
from tests.conftest import API_KEY, RATE_HEADERS, ClientFactory, user

STATUS_CLASSES = [
    (400, deployai.BadRequestError),
    (401, deployai.AuthenticationError),
    (403, deployai.PermissionDeniedError),
    (404, deployai.NotFoundError),
    (409, deployai.ConflictError),
    (422, deployai.UnprocessableEntityError),
    (429, deployai.RateLimitError),
    (500, deployai.InternalServerError),
    (502, deployai.InternalServerError),
    (503, deployai.ServiceUnavailableError),
    (504, deployai.InternalServerError),
    (418, deployai.APIStatusError),
]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES, ids=[str(s) for s, _ in STATUS_CLASSES])
def test_status_maps_to_its_class_with_details(
    make_client: ClientFactory, httpx_mock: HTTPXMock, status: int, cls: type[deployai.APIStatusError]
) -> None:
    body = {"error": {"message": "Something specific", "type": "invalid_request_error", "param": "x", "code": None}}
    httpx_mock.add_response(status_code=status, json=body, headers={"x-request-id": "req_42", **RATE_HEADERS})
    with pytest.raises(cls) as info:
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
    error = info.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.message == "Something specific"
    assert error.body == body
    assert error.request_id == "req_42"
    assert error.rate_limit.limit == 60
    assert error.rate_limit.remaining == 59
    assert error.response.status_code == status
    assert str(error) == f"Error code: {status} - Something specific (request id req_42)"
    # The fields of the error object, as the openai SDK's errors have them (handlers port as they are).
    assert (error.type, error.param, error.code) == ("invalid_request_error", "x", None)


def test_service_unavailable_is_an_internal_server_error() -> None:
    assert issubclass(deployai.ServiceUnavailableError, deployai.InternalServerError)
    assert issubclass(deployai.APITimeoutError, deployai.APIConnectionError)
    assert issubclass(deployai.APIStatusError, deployai.APIError)
    assert issubclass(deployai.APIError, deployai.DeployAIError)


@pytest.mark.parametrize(
    ("content", "content_type", "expected"),
    [
        (b"upstream exploded", "text/plain", "upstream exploded"),
        (b'{"error": "plain string error"}', "application/json", "plain string error"),
        (b'{"message": "top-level message"}', "application/json", "top-level message"),
        (b'{"error": {"message": "trunc', "application/json", '{"error": {"message": "trunc'),
        (b"", "text/plain", "400 Bad Request (empty body)"),
    ],
    ids=["text", "error-string", "message", "invalid-json", "empty"],
)
def test_any_error_body_gives_a_readable_message(
    make_client: ClientFactory, httpx_mock: HTTPXMock, content: bytes, content_type: str, expected: str
) -> None:
    httpx_mock.add_response(status_code=400, content=content, headers={"content-type": content_type})
    with pytest.raises(deployai.BadRequestError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert info.value.message == expected


def test_an_empty_error_without_a_reason_phrase_reads_as_an_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # Cloudflare's 520 has no phrase httpx knows: it read "520 - 520 no body (empty body)".
    httpx_mock.add_response(status_code=520, content=b"")
    with pytest.raises(deployai.InternalServerError) as info:
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert str(info.value) == "Error code: 520 - 520 error (empty body)"


def test_an_html_error_page_is_trimmed_to_its_title(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    page = "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>" + "x" * 50_000 + "</body></html>"
    httpx_mock.add_response(status_code=403, text=page, headers={"content-type": "text/html"})
    with pytest.raises(deployai.PermissionDeniedError) as info:
        make_client().models.list()
    assert info.value.message == "502 Bad Gateway"
    assert len(str(info.value.body)) <= 500


def test_a_long_text_body_is_cut_in_the_message(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=404, text="y" * 50_000)
    with pytest.raises(deployai.NotFoundError) as info:
        make_client().models.list()
    assert len(info.value.message) <= 500
    assert info.value.message.endswith("...")


@pytest.mark.parametrize(
    ("failure", "cls"),
    [
        (httpx.ConnectError("connection refused"), deployai.APIConnectionError),
        (httpx.ReadTimeout("timed out"), deployai.APITimeoutError),
        (httpx.ConnectTimeout("timed out"), deployai.APITimeoutError),
        (httpx.RemoteProtocolError("peer closed connection"), deployai.APIConnectionError),
    ],
    ids=["connect", "read-timeout", "connect-timeout", "protocol"],
)
def test_transport_failures_are_wrapped(
    make_client: ClientFactory, httpx_mock: HTTPXMock, failure: Exception, cls: type[Exception]
) -> None:
    httpx_mock.add_exception(failure)
    with pytest.raises(cls) as info:
        make_client(max_retries=0).chat.completions.create(model="openai/gpt-4o", messages=user())
    assert type(info.value) is cls
    assert info.value.__cause__ is failure
    assert not isinstance(info.value, httpx.HTTPError)
    assert isinstance(info.value, deployai.APIError)
    assert info.value.body is None  # no answer: a handler that logs `e.body` for any APIError still runs
    # As on the openai SDK's `APIError`: a handler for any APIError may read them.
    assert (info.value.code, info.value.type, info.value.param) == (None, None, None)


def test_a_transport_failure_without_a_message_says_what_caused_it(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    # A TLS handshake cut short under asyncio: the error said "Connection error: ConnectError" alone.
    eof = httpx.ConnectError("")
    eof.__cause__ = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    silent = httpx.ConnectError("")
    silent.__context__ = EOFError()
    httpx_mock.add_exception(eof)
    httpx_mock.add_exception(silent)
    client = make_client(max_retries=0)
    with pytest.raises(deployai.APIConnectionError, match=r"ConnectError \(SSLEOFError: .*EOF occurred"):
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    with pytest.raises(
        deployai.APIConnectionError, match=r"Connection error to api\.deployai\.dev: ConnectError \(EOFError\)$"
    ):
        client.chat.completions.create(model="openai/gpt-4o", messages=user())

    class MuteError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("cannot say")

    for cause, said in ((MuteError(), r"ConnectError \(MuteError\)$"), (OSError("x" * 10**6), r"xxx\.\.\.\)$")):
        failure = httpx.ConnectError("")
        failure.__cause__ = cause
        httpx_mock.add_exception(failure)
        with pytest.raises(deployai.APIConnectionError, match=said) as info:
            client.chat.completions.create(model="openai/gpt-4o", messages=user())
        assert len(info.value.message) < 1000  # a cause's message is bounded as a body's is


def test_errors_with_an_answer_say_how_long_its_attempt_took_as_results_do(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    error = {"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}}
    httpx_mock.add_response(status_code=429, json=error)
    first = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "openai/gpt-4o"}
    chunk = {**first, "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n".encode()
    httpx_mock.add_response(headers={"content-type": "text/event-stream"}, content=body)
    httpx_mock.add_response(
        headers={"content-type": "text/event-stream"}, content=b"data: " + json.dumps(error).encode() + b"\n\n"
    )
    client = make_client(max_retries=0)
    with pytest.raises(deployai.RateLimitError) as whole:
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    stream = client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True)
    with stream, pytest.raises(deployai.APIStatusError) as mid_stream:
        list(stream)
    failing = client.chat.completions.create(model="openai/gpt-4o", messages=user(), stream=True)
    with failing, pytest.raises(deployai.APIStatusError) as first_event:
        list(failing)
    errors = [whole.value, mid_stream.value, first_event.value]
    assert all(isinstance(e.elapsed, datetime.timedelta) for e in errors)
    assert mid_stream.value.elapsed == stream.elapsed  # a stream's, as its chunks have it
    assert [e.code for e in errors] == ["rate_limit_exceeded"] * 3
    assert [pickle.loads(pickle.dumps(e)).elapsed for e in errors] == [e.elapsed for e in errors]


def test_a_success_body_that_does_not_parse_is_a_validation_error(
    make_client: ClientFactory, httpx_mock: HTTPXMock
) -> None:
    httpx_mock.add_response(status_code=200, text="<html><title>Captive portal</title></html>")
    with pytest.raises(deployai.APIResponseValidationError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    assert info.value.status_code == 200
    assert "Captive portal" in str(info.value)


def test_truncated_json_success_body_is_a_validation_error(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=200, text='{"id": "chatcmpl-1", "choices": [')
    with pytest.raises(deployai.APIResponseValidationError):
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())


def test_tracebacks_show_public_names_and_never_the_key(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=429, json={"error": {"message": "slow down"}}, headers={"retry-after": "600"})
    with pytest.raises(deployai.RateLimitError) as info:
        make_client().chat.completions.create(model="openai/gpt-4o", messages=user())
    text = "".join(traceback.format_exception(info.value))
    assert "deployai.RateLimitError: Error code: 429 - slow down" in text
    assert API_KEY not in text
    assert API_KEY not in repr(info.value)
    assert API_KEY not in str(vars(info.value).get("message"))


def test_a_long_json_error_message_is_trimmed(make_client: ClientFactory, httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(status_code=400, json={"error": {"message": "z" * 50_000}})
    with pytest.raises(deployai.BadRequestError) as info:
        make_client().models.list()
    assert len(str(info.value)) < 600
    assert len(info.value.body["error"]["message"]) == 50_000  # type: ignore[index]


def test_transport_error_messages_never_carry_the_key(
    make_client: ClientFactory, httpx_mock: HTTPXMock, sleeps: list[float]
) -> None:
    httpx_mock.add_exception(httpx.LocalProtocolError(f"Illegal header value b'Bearer {API_KEY}\\n'"))
    with pytest.raises(deployai.APIConnectionError) as info:
        make_client().models.list()
    text = "".join(traceback.format_exception(info.value))
    assert API_KEY not in str(info.value)
    assert "Bearer [redacted]" in str(info.value)
    assert API_KEY not in text
    assert sleeps == []  # a request this machine cannot send is not retried

"""The emulator over real HTTP on loopback: `EmulatorServer`, the CLI, and unchanged clients against it."""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import enum
import json
import logging
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

import anyio
import httpx
import openai
import pydantic
import pytest

import deployai
from deployai.testing import MODEL_IDS, Emulator, EmulatorServer, VirtualClock
from deployai.testing import __main__ as serve_command
from deployai.testing.__main__ import main as serve_main
from tests.emulator_helpers import HELLO, TEST_KEY, chat_body, error_of, sse_chunks, sse_data

AUTH = {"authorization": f"Bearer {TEST_KEY}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmulatorServer]:
    # One server for the module: starting and stopping uvicorn costs a few tenths of a second.
    with EmulatorServer(Emulator()) as server:
        yield server


@pytest.fixture
def server(shared_server: EmulatorServer) -> EmulatorServer:
    shared_server.emulator.reset()
    return shared_server


@pytest.fixture
def raw(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url.removesuffix("/v1"), headers=AUTH, timeout=10) as client:
        yield client


# The server itself


def test_the_server_listens_on_loopback_and_reports_its_url(server: EmulatorServer) -> None:
    assert server.running
    assert server.port > 0
    assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
    assert str(server.port) in repr(server)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_non_loopback_hosts_are_refused_unless_allowed(host: str) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        EmulatorServer(host=host)


def test_start_stop_and_restart_rules() -> None:
    server = EmulatorServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    with server:
        url = server.base_url
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        assert httpx.get(url + "/models", headers=AUTH).status_code == 200
    assert not server.running
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/models", headers=AUTH)


def test_a_missing_uvicorn_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "deployai\[emulator\]"'):
        EmulatorServer().start()


def test_the_server_fixture_serves_the_emulator_fixture(
    deployai_emulator: Emulator, deployai_emulator_server: EmulatorServer
) -> None:
    assert deployai_emulator_server.emulator is deployai_emulator
    deployai_emulator.fail_next(409)
    with deployai_emulator_server.client(max_retries=0) as client, pytest.raises(deployai.ConflictError):
        client.models.list()


# The API over HTTP


def test_every_response_carries_rate_limit_and_request_id_headers(raw: httpx.Client) -> None:
    responses = [
        raw.get("/v1/models"),
        raw.post("/v1/chat/completions", json=chat_body()),
        raw.post("/v1/chat/completions", json=chat_body(max_tokens=0)),
        raw.post("/v1/chat/completions", json=chat_body(model="acme/nothing")),
        raw.get("/v2/anything"),
    ]
    assert [r.status_code for r in responses] == [200, 200, 400, 404, 404]
    for count, response in enumerate(responses, start=1):
        assert response.headers["x-ratelimit-limit"] == "60"
        assert response.headers["x-ratelimit-remaining"] == str(60 - count)
        assert response.headers["x-ratelimit-reset"].isdigit()
        assert response.headers["x-request-id"] == f"req_{count}"
        assert response.headers["content-length"] == str(len(response.content))
    assert error_of(responses[2])["param"] == "max_tokens"
    assert error_of(responses[3])["code"] == "model_not_found"


def test_the_date_header_is_one_on_the_emulators_clock_as_its_resets_are() -> None:
    # A client reads the unix time of a reset against the answer's `Date`: both must be on one clock.
    clock = VirtualClock()
    with EmulatorServer(Emulator(clock=clock, rate_limit=5, window_seconds=60)) as server:
        response = httpx.get(server.base_url + "/models", headers=AUTH)
    assert response.headers.get_list("date") == [email.utils.formatdate(clock(), usegmt=True)]
    assert int(response.headers["x-ratelimit-reset"]) == clock() + 60


def test_401_over_http(server: EmulatorServer) -> None:
    response = httpx.post(server.base_url + "/chat/completions", json=chat_body())
    assert response.status_code == 401
    assert error_of(response)["type"] == "authentication_error"


def test_a_stream_is_sent_in_chunks_and_ends_with_done(raw: httpx.Client) -> None:
    with raw.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response:
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        text = response.read().decode()
    assert sse_data(text)[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in sse_chunks(text)) == "You said: Hello!"


def test_429_over_http_after_a_small_limit_is_spent() -> None:
    with EmulatorServer(Emulator(rate_limit=2, window_seconds=3600)) as server:
        url = server.base_url + "/models"
        statuses = [httpx.get(url, headers=AUTH) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[2]
    assert limited.headers["x-ratelimit-remaining"] == "0"
    assert 3598 <= int(limited.headers["retry-after"]) <= 3600
    assert int(limited.headers["x-ratelimit-reset"]) == int(statuses[0].headers["x-ratelimit-reset"])
    assert error_of(limited)["code"] == "rate_limit_exceeded"


def test_concurrent_requests_are_counted_exactly_once() -> None:
    with (
        EmulatorServer(Emulator(rate_limit=10, window_seconds=3600)) as server,
        httpx.Client(headers=AUTH, timeout=10) as client,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        responses = list(pool.map(lambda _: client.get(server.base_url + "/models"), range(16)))
    assert sorted(r.status_code for r in responses) == [200] * 10 + [429] * 6
    assert len({r.headers["x-request-id"] for r in responses}) == 16
    assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in responses if r.status_code == 200) == list(range(10))


# Faults over HTTP


def test_a_cut_stream_drops_the_connection_mid_body(raw: httpx.Client, server: EmulatorServer) -> None:
    server.emulator.cut_stream_after(2)
    received = b""
    with (
        raw.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        for piece in response.iter_raw():
            received += piece
    assert len(sse_chunks(received.decode())) == 2
    assert b"[DONE]" not in received
    assert raw.get("/v1/models").status_code == 200


def test_the_deliberate_cut_is_not_logged_as_a_server_error(
    server: EmulatorServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.emulator.cut_stream_after(3)
    with (
        caplog.at_level(logging.INFO, logger="uvicorn.error"),
        server.client() as client,
        client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
        pytest.raises(deployai.APIConnectionError, match="after 3 chunk"),
    ):
        list(stream)
    # uvicorn logs before it closes the connection, so the record would be here by now.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_stall_trips_the_client_timeout(server: EmulatorServer) -> None:
    server.emulator.stall_next(30)
    with server.client(timeout=0.3, max_retries=0) as client:
        with pytest.raises(deployai.APITimeoutError):
            client.models.list()
        assert len(client.models.list()) == 7


def _asgi_request(path: str) -> MutableMapping[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "query_string": b"",
            "headers": [(b"authorization", f"Bearer {TEST_KEY}".encode())]}  # fmt: skip


def test_the_server_log_hides_the_emulators_cancelled_tasks_and_no_other_apps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The filter is on uvicorn's logger, which the user's own apps served by uvicorn in the same
    # tests log to as well: their cancelled tasks' tracebacks were hidden too.
    from deployai.testing._asgi import hide_expected_server_errors

    hide_expected_server_errors()

    async def receive() -> MutableMapping[str, Any]:
        raise asyncio.CancelledError  # the server stopping while the request's body arrives

    async def own_app() -> None:
        await receive()

    async def emulator_app() -> None:
        await Emulator().asgi_app()(_asgi_request("/v1/models"), receive, _never_sent)

    async def caught(app: Callable[[], Awaitable[None]]) -> BaseException:
        try:  # in the task, as uvicorn catches it: outside, Python 3.10 makes a new one, without its frames
            await app()
        except asyncio.CancelledError as exc:
            return exc
        raise AssertionError("not cancelled")

    log = logging.getLogger("uvicorn.error")
    for app in (emulator_app, own_app):
        exc = asyncio.run(caught(app))
        with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
            log.error("Exception in ASGI application (%s)", app.__name__, exc_info=exc)
    assert [record.getMessage() for record in caplog.records] == ["Exception in ASGI application (own_app)"]


async def _never_sent(message: MutableMapping[str, Any]) -> None:
    raise AssertionError("nothing is sent")


@pytest.mark.anyio
async def test_a_client_that_gives_up_ends_the_stalled_response() -> None:
    emulator = Emulator()
    emulator.stall_next(60)
    messages: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": b"", "more_body": False},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return messages.pop(0)  # the body, then the client is gone

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(20):  # a guard: the stall would last 60 s
        await emulator.asgi_app()(_asgi_request("/v1/models"), receive, send)
    assert sent == []  # it stopped during its stall


@pytest.mark.anyio
async def test_after_finish_now_a_stalled_response_is_sent_whole_at_once() -> None:
    emulator = Emulator()
    emulator.stall_next(60)
    app = emulator.asgi_app()
    app.finish_now()  # a server shutting down
    body: list[MutableMapping[str, Any]] = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        if body:
            return body.pop()
        await anyio.sleep_forever()  # the client stays
        raise AssertionError

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    with anyio.fail_after(20):  # a guard: the stall would last 60 s
        await app(_asgi_request("/v1/models"), receive, send)
    assert sent[0]["status"] == 200
    assert sent[-1]["more_body"] is False
    assert len(json.loads(b"".join(m["body"] for m in sent[1:]))["data"]) == len(MODEL_IDS)


def test_a_server_stopped_mid_stream_sends_the_rest_of_the_answer_at_once(caplog: pytest.LogCaptureFixture) -> None:
    # 30 s between chunks: waited out, the stream would outlast uvicorn's graceful shutdown (2 s) and be cut.
    with caplog.at_level(logging.INFO, logger="uvicorn.error"), EmulatorServer(Emulator(token_latency=30)) as server:
        with (
            server.client(max_retries=0) as client,
            client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True) as stream,
        ):
            stopping = threading.Thread(target=server.stop)  # as the headers have come
            stopping.start()
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        stopping.join()
    assert text == "You said: Hello!"
    assert not server.running
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_slow_stream_times_out_between_chunks(server: EmulatorServer) -> None:
    server.emulator.slow_next(30)
    with server.client(timeout=0.3, max_retries=0) as client:
        stream = client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        with stream, pytest.raises(deployai.APITimeoutError, match="after 1 chunk"):
            list(stream)


def test_error_events_and_malformed_json_over_http(server: EmulatorServer) -> None:
    server.emulator.error_event_after(2, {"message": "Try later.", "type": "rate_limit_error"}, as_event=True)
    server.emulator.malformed_json_next()
    with server.client(max_retries=0) as client:
        stream = client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        with stream, pytest.raises(deployai.RateLimitError, match="Try later"):
            list(stream)
        with pytest.raises(deployai.APIResponseValidationError):
            client.models.list()


def test_an_html_error_page_over_http(server: EmulatorServer) -> None:
    server.emulator.fail_next(502, "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>")
    with server.client(max_retries=0) as client, pytest.raises(deployai.InternalServerError) as info:
        client.models.list()
    assert info.value.status_code == 502
    assert info.value.message == "502 Bad Gateway"


def test_the_sdk_retries_over_http(server: EmulatorServer) -> None:
    server.emulator.fail_next(500, headers={"retry-after": "0"}, times=2)
    with server.client() as client:
        assert client.chat.completions.create(model="openai/gpt-4o", messages=HELLO).request_id == "req_3"


# The SDK's clients over HTTP


def test_the_sync_client_over_http(server: EmulatorServer) -> None:
    with deployai.DeployAI(api_key=TEST_KEY, base_url=server.base_url) as client:
        completion = client.chat.completions.create(model="google/gemini-2.0-flash", messages=HELLO, max_tokens=4)
        with client.chat.completions.create(
            model="openai/gpt-4o", messages=HELLO, stream=True, stream_options={"include_usage": True}
        ) as stream:
            final = stream.get_final_completion()
        models = client.models.list()
    assert completion.choices[0].message.content == "You said: Hello"
    assert completion.choices[0].finish_reason == "length"
    assert final.choices[0].message.content == "You said: Hello!"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (8, 5)
    assert [m.id for m in models] == list(MODEL_IDS)
    assert models.rate_limit.remaining == 57


@pytest.mark.anyio
async def test_the_async_client_over_http(server: EmulatorServer) -> None:
    async with server.async_client() as client:
        completion = await client.chat.completions.create(model="mistralai/mistral-large", messages=HELLO)
        stream = await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO, stream=True)
        async with stream:
            pieces = [piece async for piece in stream.text_stream]
        models = await client.models.list()
    assert completion.choices[0].message.content == "".join(pieces) == "You said: Hello!"
    assert {m.context_window for m in models} == {64_000, 128_000, 200_000, 1_000_000}


# The official openai package, unchanged


def test_the_openai_package_completes_streams_and_lists(server: EmulatorServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "Hello!"}]
        )
        with client.chat.completions.create(
            model="openai/gpt-4o",
            messages=[{"role": "user", "content": "Hello!"}],
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            chunks = list(stream)
        models = client.models.list()
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="openai/gpt-4o", messages=[{"role": "user", "content": "Hello!"}], temperature=3
            )
    assert completion.choices[0].message.content == "You said: Hello!"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 7
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: Hello!"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert [m.id for m in models.data] == list(MODEL_IDS)
    assert info.value.code == "invalid_parameter"
    assert info.value.param == "temperature"


class _Unit(str, enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class _Place(pydantic.BaseModel):
    city: str
    country: str | None = None


class GetWeather(pydantic.BaseModel):
    """What `openai.pydantic_function_tool` and `response_format=Model` make schemas of: `$ref`s, `anyOf`, `const`."""

    place: _Place
    unit: _Unit
    days: Annotated[int, pydantic.Field(ge=1, le=7)]
    hours: list[int] = pydantic.Field(min_length=2)
    on: datetime.date | None
    kind: Literal["forecast"]
    note: Annotated[str, pydantic.Field(min_length=12)]


def test_the_openai_packages_structured_outputs_parse_the_emulators_unscripted_answers(server: EmulatorServer) -> None:
    # The emulator filled a `$ref`, an `anyOf` or a `const` with the user's word: `parse()` failed.
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    with openai.OpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0) as client:
        called = client.chat.completions.parse(
            model="openai/gpt-4o", messages=messages, tools=[openai.pydantic_function_tool(GetWeather)]
        )
        answered = client.chat.completions.parse(model="openai/gpt-4o", messages=messages, response_format=GetWeather)
    (call,) = called.choices[0].message.tool_calls or []
    arguments = call.function.parsed_arguments
    assert isinstance(arguments, GetWeather)
    assert (arguments.place.city, arguments.unit, arguments.days, len(arguments.hours)) == (
        "Paris",
        _Unit.CELSIUS,
        1,
        2,
    )
    assert answered.choices[0].message.parsed == arguments


def test_a_json_object_answer_is_a_json_object(server: EmulatorServer) -> None:
    with deployai.DeployAI(api_key=TEST_KEY, base_url=server.base_url) as client:
        completion = client.chat.completions.create(
            model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}], response_format={"type": "json_object"}
        )
    assert json.loads(completion.choices[0].message.content or "") == {"reply": "You said: Hi"}


@pytest.mark.anyio
async def test_the_async_openai_client_streams(server: EmulatorServer) -> None:
    async with openai.AsyncOpenAI(base_url=server.base_url, api_key=TEST_KEY, max_retries=0) as client:
        stream = await client.chat.completions.create(
            model="deepseek/deepseek-r1", messages=[{"role": "user", "content": "Hi there"}], stream=True
        )
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "You said: Hi there"


# The command line


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output within {timeout} s")
    return process.stdout.readline().strip()


def test_the_cli_serves_until_interrupted() -> None:
    command = [sys.executable, "-m", "deployai.testing", "serve", "--port", "0", "--rate-limit", "5"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            url = _first_line(process, timeout=30)
            assert url.startswith("http://127.0.0.1:")
            assert url.endswith("/v1")
            response = httpx.get(url + "/models", headers=AUTH, timeout=10)
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=30)
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "5"
    assert process.returncode == 0, err
    assert out == ""  # only the URL line goes to stdout; logs go to stderr
    assert '"GET /v1/models HTTP/1.1" 200' in err


def test_ctrl_c_during_a_stream_sends_the_rest_of_it_and_logs_no_error() -> None:
    # 30 s between chunks: waited out, the stream would outlast uvicorn's graceful shutdown (2 s), be
    # cancelled, and leave a traceback on stderr.
    command = [sys.executable, "-m", "deployai.testing", "serve", "--port", "0", "--token-latency", "30"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            url = _first_line(process, timeout=30)
            with (
                httpx.Client(headers=AUTH, timeout=60) as client,
                client.stream("POST", url + "/chat/completions", json=chat_body(stream=True)) as response,
            ):
                process.send_signal(signal.SIGINT)  # as the headers have come
                text = response.read().decode()
        finally:
            _, err = process.communicate(timeout=30)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in sse_chunks(text)) == "You said: Hello!"
    assert sse_data(text)[-1] == "[DONE]"
    assert process.returncode == 0, err
    assert "Shutting down" in err
    assert "Traceback" not in err
    assert "ERROR" not in err


def _line_with(process: subprocess.Popen[str], text: str, timeout: float) -> None:
    assert process.stderr is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stderr, selectors.EVENT_READ)
        while selector.select(timeout):
            line = process.stderr.readline()
            if text in line or not line:
                assert text in line, f"the server's log ended before {text!r}"
                return
    raise AssertionError(f"no {text!r} in the server's log within {timeout} s")


def test_a_second_ctrl_c_stops_the_server_at_once_without_tracebacks() -> None:
    command = [sys.executable, "-m", "deployai.testing", "serve", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            host, port = _first_line(process, timeout=30).removeprefix("http://").removesuffix("/v1").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                # A request whose body has not come: the server waits for it, and "100 Continue" says
                # that the app is waiting in its handler.
                sock.sendall(
                    b"POST /v1/chat/completions HTTP/1.1\r\nHost: emulator\r\nAuthorization: Bearer "
                    + TEST_KEY.encode()
                    + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
                )
                assert sock.recv(100).startswith(b"HTTP/1.1 100 ")
                process.send_signal(signal.SIGINT)
                _line_with(process, "Waiting for connections to close", timeout=30)
                process.send_signal(signal.SIGINT)  # it forces the exit: the request and the lifespan are cancelled
                _, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "Exception in" not in err


def test_ctrl_c_before_uvicorn_takes_it_over_still_stops_the_server_with_0(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:  # Ctrl+C right after the URL was printed
        raise KeyboardInterrupt

    # Before uvicorn is configured at all, so that it sets up no logging in this test process.
    monkeypatch.setattr(serve_command, "uvicorn_config", interrupted)
    assert serve_main(["serve", "--port", "0"]) == 0
    assert capsys.readouterr().out.startswith("http://127.0.0.1:")


def test_the_cli_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "deployai.testing", "serve", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr
    assert result.stdout == ""


def test_the_cli_names_the_address_it_cannot_listen_on_and_a_window_that_must_be_above_zero(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_main(["serve", "--port", str(port)]) == 2
        said = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}: " in said  # it was "[Errno 98] Address already in use" alone
    assert serve_main(["serve", "--port", "0", "--window-seconds", "nan"]) == 2
    assert "window_seconds must be a number of seconds > 0; got nan" in capsys.readouterr().err


def test_the_openai_package_meets_a_429_with_correct_headers_after_the_window_is_spent() -> None:
    with (
        EmulatorServer(Emulator(rate_limit=2, window_seconds=60.0)) as limited,
        openai.OpenAI(base_url=limited.base_url, api_key=TEST_KEY, max_retries=0) as client,
    ):
        for _ in range(2):
            client.models.list()
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    headers = info.value.response.headers
    assert headers["x-ratelimit-limit"] == "2"
    assert headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    assert int(headers["x-ratelimit-reset"]) >= int(headers["retry-after"])
    assert info.value.code == "rate_limit_exceeded"

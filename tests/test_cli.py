"""The `deployai` command: the installed console script against the emulator over loopback."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from deployai._cli import EXIT_CODES, main
from deployai.testing import Emulator, EmulatorServer
from tests.emulator_helpers import TEST_KEY
from tests.sse import DONE, chunk, event, sse_response

SCRIPT = Path(sys.executable).with_name("deployai")


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(rate_limit=None)) as served:
        yield served


@pytest.fixture
def env(server: EmulatorServer) -> dict[str, str]:
    server.emulator.reset()
    settings = {key: value for key, value in os.environ.items() if not key.startswith("DEPLOYAI_")}
    return settings | {"DEPLOYAI_BASE_URL": server.base_url, "DEPLOYAI_API_KEY": TEST_KEY}


@pytest.fixture
def mocked(httpx_mock: HTTPXMock, monkeypatch: pytest.MonkeyPatch) -> HTTPXMock:
    """pytest-httpx answering in place of the API at its default URL, a key set: nothing leaves this machine."""
    monkeypatch.setenv("DEPLOYAI_API_KEY", TEST_KEY)
    monkeypatch.delenv("DEPLOYAI_BASE_URL", raising=False)
    return httpx_mock


def start(command: list[str], *, ctrl_c_ignored: bool = False, **popen: Any) -> subprocess.Popen[Any]:
    """Start `command` with Ctrl+C at its default, as from a terminal, or ignored, as in `command &` in a script.

    A child inherits an ignored SIGINT and starts with a caught one at its default: the tests set
    this process's own for the moment of the start, so that they hold even when the test run was
    itself started with Ctrl+C ignored (in the background of a script).
    """
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if ctrl_c_ignored else signal.default_int_handler)
    try:
        return subprocess.Popen(command, **popen)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if before is None else before)  # None: set in C


def run(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_the_console_script_is_installed() -> None:
    assert SCRIPT.exists()


def test_chat_streams_the_answer_and_reads_a_dash_prompt_from_stdin(
    env: dict[str, str], server: EmulatorServer
) -> None:
    said = run("chat", "Hello there!", env=env)
    piped = run("chat", "-", "-m", "anthropic/claude-3.5-sonnet", "-s", "Be brief.", env=env, stdin="From stdin\n")
    assert (said.returncode, said.stdout, said.stderr) == (0, "You said: Hello there!\n", "")
    assert (piped.returncode, piped.stdout) == (0, "You said: From stdin\n")
    sent = server.emulator.last_request.json
    assert sent["model"] == "anthropic/claude-3.5-sonnet"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "From stdin"}]
    assert sent["stream"] is True


def test_chat_json_prints_the_final_completion(env: dict[str, str]) -> None:
    result = run("chat", "Hi", "--json", "--max-tokens", "2", env=env)
    completion = json.loads(result.stdout)
    assert completion["choices"][0]["message"]["content"] == "You said"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["completion_tokens"] == 2  # it was null: a stream has no usage unless asked


def test_models_prints_a_table_or_json(env: dict[str, str]) -> None:
    table = run("models", env=env).stdout.splitlines()
    listed = json.loads(run("models", "--json", env=env).stdout)
    assert table[0].split() == ["ID", "PROVIDER", "CONTEXT"]
    assert table[4].split() == ["google/gemini-2.0-flash", "Google", "1,000,000"]
    assert len(table) == 8
    assert [m["id"] for m in listed][:2] == ["openai/gpt-4o", "openai/o3-mini"]


def test_an_error_is_one_line_on_stderr_and_exits_with_its_code(env: dict[str, str]) -> None:
    result = run("chat", "x", "-m", "nobody/nothing", env=env)
    assert (result.returncode, result.stdout) == (5, "")
    assert result.stderr.startswith("deployai: NotFoundError: ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "settings", "code", "error"),
    [
        (["chat", "x", "--temperature", "9"], {}, 3, "InvalidParameterError"),
        (["models"], {"DEPLOYAI_API_KEY": ""}, 3, "DeployAIError: No API key: pass --api-key, or set"),
        (
            ["models", "--timeout", "-1"],
            {},
            3,
            "InvalidParameterError: --timeout must be a positive number of seconds up to 2147483 (about 24.8 days); "
            "got -1",
        ),
        # The SDK's errors named the Python parameters (`max_retries`), which no CLI user typed.
        (["models", "--max-retries", "-1"], {}, 3, "InvalidParameterError: --max-retries must be a whole number"),
        (["chat", "x", "--max-tokens", "0"], {}, 3, "InvalidParameterError: --max-tokens must be a whole number"),
        (["chat", "x", "-m", "gpt-4o"], {}, 3, "InvalidParameterError: --model must be a model id"),
        (["models", "--base-url", "ftp://x/v1"], {}, 3, "InvalidParameterError: --base-url must be an absolute"),
        (["models"], {"DEPLOYAI_BASE_URL": "ftp://x/v1"}, 3, "InvalidParameterError: base_url must be an absolute"),
        (
            ["models", "--api-key", "a b"],
            {},
            3,
            "DeployAIError: The API key contains spaces, line breaks or "
            "non-ASCII characters: check --api-key or DEPLOYAI_API_KEY.",
        ),
        (["models", "--api-key", "not-a-key"], {}, 4, "AuthenticationError"),
        (["models", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"], {}, 8, "APIConnectionError"),
    ],
    ids=[
        "bad-argument",
        "no-key",
        "bad-timeout",
        "bad-retries",
        "bad-max-tokens",
        "bad-model",
        "bad-base-url",
        "bad-base-url-from-the-environment",
        "key-with-a-space",
        "401",
        "no-connection",
    ],
)
def test_each_kind_of_error_has_its_exit_code(
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    settings: dict[str, str],
    code: int,
    error: str,
) -> None:
    for name, value in (env | settings).items():
        if name.startswith("DEPLOYAI_"):
            monkeypatch.setenv(name, value)
    assert main(args) == code
    err = capsys.readouterr().err
    assert err.startswith(f"deployai: {error}")
    assert err.count("\n") == 1


def test_a_bad_setting_of_the_emulator_command_is_reported_as_argparse_reports_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["emulator", "--port", "99999"]) == 2
    expected = "deployai emulator: error: port must be a whole number from 0 to 65535; got 99999\n"
    assert capsys.readouterr().err == expected


def test_every_exit_code_of_the_table_is_distinct_per_kind_and_documented_in_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for kind, code, _ in EXIT_CODES:
        assert f"{code:>3}  {kind.__name__}" in out
    assert "130  interrupted" in out
    for command, options in {"chat": ["--model", "--system", "--json", "--api-key", "--base-url"], "models": ["--json"],
                             "emulator": ["--port", "--rate-limit", "--token-latency"]}.items():  # fmt: skip
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(option in text for option in options), command


def test_ctrl_c_stops_a_stream_with_code_130_and_no_traceback(server: EmulatorServer, env: dict[str, str]) -> None:
    server.emulator.slow_next(30)  # the headers at once, then a long wait before each chunk
    process = start([str(SCRIPT), "chat", "Hello"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with selectors.DefaultSelector() as selector:  # wait for the request to be answered, not for a time
            selector.register(process.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
            while not server.emulator.requests and process.poll() is None:
                selector.select(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()  # reaped and its pipes closed, so a failure here shows in this test alone
    assert process.returncode == 130
    assert err == "deployai: interrupted\n"
    assert out.strip() == ""


def test_the_emulator_command_serves_until_ctrl_c(env: dict[str, str]) -> None:
    process = start(
        [str(SCRIPT), "emulator", "--port", "0", "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert run("models", "--base-url", url, env=env).returncode == 0
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()  # reaped and its pipes closed, so a failure here shows in this test alone
    assert url.startswith("http://127.0.0.1:")
    assert process.returncode == 0


def test_the_emulators_server_serves_with_stdout_closed(env: dict[str, str]) -> None:
    # Started in the background with `>&-`, it failed at once with a traceback: uvicorn's log
    # formatter asked the closed stdout whether it was a terminal.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = f'exec "$0" -m deployai.testing serve --port {port} >&-'
    process = start(["sh", "-c", command, sys.executable], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()[1]
        assert run("models", "--base-url", f"http://127.0.0.1:{port}/v1", env=env).returncode == 0
    finally:
        process.kill()
        _, err = process.communicate()
    assert "Traceback" not in err


def test_a_server_message_with_line_breaks_is_printed_on_one_line(
    server: EmulatorServer, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("DEPLOYAI_BASE_URL", "DEPLOYAI_API_KEY"):
        monkeypatch.setenv(name, env[name])
    server.emulator.fail_next(400, {"error": {"message": "line one\nline two", "type": "invalid_request_error"}})
    assert main(["models"]) == 7
    assert (
        capsys.readouterr().err == "deployai: BadRequestError: Error code: 400 - line one line two (request id req_1)\n"
    )


def test_control_characters_in_a_server_message_are_printed_as_escapes(
    server: EmulatorServer, env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A hostile message could retitle the terminal, erase the line, and write a fake one over it.
    for name in ("DEPLOYAI_BASE_URL", "DEPLOYAI_API_KEY"):
        monkeypatch.setenv(name, env[name])
    # Its own backslashes are doubled, so that a literal "\x07" it wrote reads otherwise than a BEL.
    message = "bad\x1b]0;pwned\x07\x1b[2K\rdeployai: OK\x00 \u202eright-to-left, not \\x07"
    server.emulator.fail_next(400, {"error": {"message": message, "type": "invalid_request_error"}})
    assert main(["models"]) == 7
    assert capsys.readouterr().err == (
        "deployai: BadRequestError: Error code: 400 - "
        "bad\\x1b]0;pwned\\x07\\x1b[2K deployai: OK\\x00 \\u202eright-to-left, not \\\\x07 (request id req_1)\n"
    )


def test_chat_prints_the_first_choice_alone_when_a_server_streams_others(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    pieces = [event(chunk("ONE", index=1)), event(chunk("ZERO")), event(chunk(finish="stop")), DONE]
    mocked.add_callback(lambda request: sse_response(pieces))
    assert main(["chat", "hi"]) == 0
    assert capsys.readouterr().out == "ZERO\n"


@pytest.mark.parametrize(
    ("pieces", "printed"),
    [
        (["smile \ud83d", "\ude00 done"], "smile \U0001f600 done\n"),  # an emoji cut in its UTF-16 halves
        (["a\ud800b", "c"], "a\ufffdbc\n"),  # a half never matched
        (["ends \ud83d"], "ends \ufffd\n"),
    ],
)
def test_chat_joins_the_halves_of_a_character_a_server_split_between_chunks(
    mocked: HTTPXMock,
    capsys: pytest.CaptureFixture[str],
    pieces: list[str],
    printed: str,
) -> None:
    # Each half is a lone surrogate, which no encoding writes: the answer stopped at the first one
    # with advice to set PYTHONIOENCODING=utf-8, on a terminal that was UTF-8 already.
    events = [*(event(chunk(piece)) for piece in pieces), event(chunk(finish="stop")), DONE]
    mocked.add_callback(lambda request: sse_response(events))
    assert main(["chat", "hi"]) == 0
    assert capsys.readouterr().out.encode("utf-8") == printed.encode("utf-8")


def test_a_stream_broken_after_half_a_character_reports_the_break_on_a_terminal_without_unicode(
    mocked: HTTPXMock, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The U+FFFD written for the unmatched half failed on ascii (or cp1252), and its error took the
    # place of the connection error: exit 1 with advice on encodings, the line not ended.
    broken = httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    mocked.add_callback(lambda request: sse_response([event(chunk("ab \ud83d"))], broken))
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["chat", "hi", "--max-retries", "0"]) == 8
    out.flush()
    assert isinstance(out.buffer, io.BytesIO)
    assert out.buffer.getvalue() == b"ab \n"
    assert capsys.readouterr().err.startswith("deployai: APIConnectionError: ")


def test_chat_json_writes_a_lone_surrogate_as_the_escape_it_came_as(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    answer = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "openai/gpt-4o",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x\ud800y é"}}],
    }
    body = json.dumps(answer).encode()  # the lone half as its escape, as JSON may carry it
    mocked.add_response(content=body, headers={"content-type": "application/json"})
    assert main(["chat", "hi", "--json"]) == 0  # it was pydantic's serialization error, as a traceback
    out = capsys.readouterr().out
    assert '"content": "x\\ud800y é"' in out
    assert json.loads(out)["choices"][0]["message"]["content"] == "x\ud800y é"


def test_a_plain_http_gateway_on_the_network_is_reached_only_when_allowed(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    # The refusal told a CLI user to pass `allow_insecure_http=True` to a client: no option did.
    # pytest-httpx answers in-process: nothing leaves this machine.
    gateway = ["--base-url", "http://gateway.example/v1"]
    assert main(["models", *gateway]) == 3
    assert "use https://, or pass --allow-insecure-http if you really mean it" in capsys.readouterr().err
    mocked.add_response(url="http://gateway.example/v1/models", json={"object": "list", "data": []})
    assert main(["models", *gateway, "--allow-insecure-http"]) == 0
    assert capsys.readouterr().out.startswith("ID")


def test_models_prints_control_characters_in_a_servers_names_as_escapes(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    model = {"id": "x/\x1b]0;pwned\x07m", "object": "model", "created": 1, "owned_by": "x", "provider": "\x1b[2Kp"}
    mocked.add_response(json={"object": "list", "data": [model]})
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "x/\\x1b]0;pwned\\x07m  \\x1b[2Kp" in out


def test_a_prompt_on_stdin_that_is_not_utf8_is_refused_in_one_line(env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(SCRIPT), "chat", "-"], input=b"caf\xe9\n", capture_output=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 3
    assert result.stderr.decode().startswith("deployai: InvalidParameterError: prompt must be UTF-8 text")
    assert result.stderr.count(b"\n") == 1


@pytest.mark.parametrize("key", ["sk-secret-0123456789", "dpl_live_0123456789abcdef"])
@pytest.mark.parametrize(
    "typed",
    [
        ["--api_key", "{key}"],
        ["--api_key={key}"],
        ["--apikey", "{key}"],
        ["--key={key}", "--x"],
        ["--ap={key}"],  # argparse took `--ap` and `--a` for `--api-key`, and echoed them unredacted
        ["--a", "{key}"],
        ["-api-key", "{key}"],  # one dash
        ["--api-key {key}"],  # one word, as a list of arguments may hold it
        ["--token", "{key}"],
        ["-k", "{key}"],
        ["--password={key}"],
    ],
)
def test_a_usage_error_does_not_repeat_an_api_key(
    capsys: pytest.CaptureFixture[str], key: str, typed: list[str]
) -> None:
    # A misspelt option (`--api_key`, Python's spelling) is repeated in the error, which CI logs keep;
    # a key not shaped like `sk-...` has no pattern to be found by, and no client knows it yet.
    with pytest.raises(SystemExit) as done:
        main(["chat", "hi", *(word.format(key=key) for word in typed)])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments" in err
    assert key not in err
    assert "[redacted]" in err
    # Typed before the command, it is reported by the command's parser (or, read as the command,
    # by the top-level one), which must take it out too.
    with pytest.raises(SystemExit) as done:
        main([*(word.format(key=key) for word in typed), "chat", "hi"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "error: " in err
    assert key not in err


def test_a_usage_error_hides_a_key_that_starts_with_a_dash_and_keeps_typos_in_the_commands_own_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--api-key", "-Xq9secretTokenValue123", "chat", "hi"])  # a URL-safe base64 token may start so
    assert "Xq9secretTokenValue123" not in capsys.readouterr().err
    # `--max-tokens` has "token" in it, yet is no credential: what was mistyped there is shown.
    with pytest.raises(SystemExit):
        main(["chat", "hi", "--max-tokens", "4096tokens"])
    assert "invalid int value: '4096tokens'" in capsys.readouterr().err


def test_a_usage_error_keeps_what_no_key_option_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["chat", "hi", "--key=a"])  # "a" is no key: redacting it would garble the message
    # Reported by the command's own parser, with its usage, as the docs show (it was `deployai: error:`).
    err = capsys.readouterr().err
    assert "deployai chat: error: unrecognized arguments: --key=a" in err
    assert err.startswith("usage: deployai chat ")
    with pytest.raises(SystemExit):
        main(["chat", "--bogus", "--", "unrecognized arguments"])  # after `--`: no option's value
    assert "error: unrecognized arguments: --bogus" in capsys.readouterr().err


def test_a_refusal_is_printed_as_the_answer_and_an_empty_system_message_is_sent(
    env: dict[str, str], server: EmulatorServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    server.emulator.reply(refusal="I can't help with that.")
    assert main(["chat", "Do the bad thing", "-s", ""]) == 0
    assert capsys.readouterr().out == "I can't help with that.\n"
    assert server.emulator.last_request.json["messages"][0] == {"role": "system", "content": ""}


def test_closed_stdout_or_stdin_is_one_line_on_stderr_and_no_traceback(env: dict[str, str]) -> None:
    script = "; ".join(
        [
            f"'{SCRIPT}' models >&-",
            'echo "models, stdout closed: $?" >&2',
            f"'{SCRIPT}' emulator --port 0 >&-",
            'echo "emulator, stdout closed: $?" >&2',
            f"'{SCRIPT}' chat - <&-",
            'echo "chat -, stdin closed: $?" >&2',
            # The help, which argparse wrote into a failed stdout and exited 0.
            f"'{SCRIPT}' --help >&-",
            'echo "help, stdout closed: $?" >&2',
            f"'{SCRIPT}' --help > /dev/full",
            'echo "help, disk full: $?" >&2',
            f"'{SCRIPT}' --version >&-",
            'echo "version, stdout closed: $?" >&2',
            # Both closed: argparse had nowhere to print it, and exited 0 as if it had.
            f"'{SCRIPT}' --version >&- 2>&-",
            'echo "version, stdout and stderr closed: $?" >&2',
            # A usage error with stderr closed: argparse printed the usage on stdout instead.
            f"'{SCRIPT}' chat 2>&-",
            'echo "usage error, stderr closed: $?" >&2',
        ]
    )
    shell = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert shell.stderr.splitlines() == [
        "deployai: standard output is closed",
        "models, stdout closed: 1",
        "deployai: standard output is closed",
        "emulator, stdout closed: 1",
        "deployai: InvalidParameterError: prompt must be text on stdin, which is closed; got '-'",
        "chat -, stdin closed: 3",
        "deployai: standard output is closed",
        "help, stdout closed: 1",
        "deployai: No space left on device",
        "help, disk full: 1",
        "deployai: standard output is closed",
        "version, stdout closed: 1",
        "version, stdout and stderr closed: 1",
        "usage error, stderr closed: 2",
    ]
    assert shell.stdout == ""


@pytest.mark.parametrize("command", [["models"], ["models", "--json"], ["chat", "hi"], ["chat", "hi", "--json"]])
def test_output_that_cannot_be_written_keeps_its_exit_status_through_pythons_last_flush(
    env: dict[str, str], command: list[str]
) -> None:
    buffered = {key: value for key, value in env.items() if key != "PYTHONUNBUFFERED"}  # output held until exit
    with open("/dev/full", "w") as disk_full:
        full = subprocess.run(
            [str(SCRIPT), *command], stdout=disk_full, stderr=subprocess.PIPE, text=True, env=buffered, timeout=60,
            check=False,
        )  # fmt: skip
    assert (full.returncode, full.stderr) == (1, "deployai: No space left on device\n")
    reader, writer = os.pipe()
    os.close(reader)  # the reader left before the first byte: `deployai ... | head -0`
    try:
        gone = subprocess.run(
            [str(SCRIPT), *command], stdout=writer, stderr=subprocess.PIPE, text=True, env=buffered, timeout=60,
            check=False,
        )  # fmt: skip
    finally:
        os.close(writer)
    assert (gone.returncode, gone.stderr) == (0, "")


def test_an_answer_stdouts_encoding_cannot_write_is_one_line_on_stderr(env: dict[str, str]) -> None:
    result = run("chat", "Grüße", env=env | {"PYTHONIOENCODING": "ascii"})
    assert (result.returncode, result.stderr) == (
        1,
        "deployai: the output holds characters that stdout's encoding (ascii) cannot write; "
        "set PYTHONIOENCODING=utf-8\n",
    )


def test_ctrl_c_with_stderr_closed_writes_nothing_to_the_connection_that_took_its_place(env: dict[str, str]) -> None:
    # Started with descriptor 2 closed, the command's first socket gets it: the line about Ctrl+C
    # must not go to the server.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        process = start(
            ["sh", "-c", f"exec '{SCRIPT}' chat hi 2>&-"],
            env=env | {"DEPLOYAI_BASE_URL": f"http://127.0.0.1:{port}/v1"},
            stdout=subprocess.DEVNULL,
        )
        try:
            listener.settimeout(30)
            connection, _ = listener.accept()
            with connection:
                connection.settimeout(30)
                received = b""
                while not _whole_request(received):  # then it waits for the answer, which never comes
                    received += connection.recv(65536)
                process.send_signal(signal.SIGINT)
                assert process.wait(timeout=30) == 130
                after = b"".join(iter(lambda: connection.recv(65536), b""))  # until the process's end closed it
        finally:
            process.kill()
            process.wait()
    assert after == b""


def _whole_request(received: bytes) -> bool:
    head, found, body = received.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
    return bool(found) and length is not None and len(body) >= int(length.group(1))


def _interrupted_when_asked(
    server: EmulatorServer, command: list[str], env: dict[str, str], **popen: Any
) -> subprocess.Popen[str]:
    """Start `command`, and send it SIGINT once the server has its request."""
    process = start(command, env=env, text=True, stderr=subprocess.PIPE, **popen)
    while not server.emulator.requests and process.poll() is None:
        time.sleep(0.01)  # polling for the request, not waiting for a time to pass
    process.send_signal(signal.SIGINT)
    return process


def _finished(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The process's output once it ends; if it does not within 30 s, killed and reaped (its pipes closed)."""
    try:
        return process.communicate(timeout=30)
    finally:
        process.kill()
        process.communicate()


def test_ctrl_c_ignored_by_the_shell_stays_ignored(server: EmulatorServer, env: dict[str, str]) -> None:
    # `deployai chat ... &` in a script: the shell starts it with Ctrl+C ignored, and it must finish.
    server.emulator.stall_next(1.0)
    process = _interrupted_when_asked(
        server,
        [str(SCRIPT), "chat", "hi"],
        env,
        stdout=subprocess.PIPE,
        ctrl_c_ignored=True,
    )
    out, err = _finished(process)
    assert (process.returncode, out, err) == (0, "You said: hi\n", "")


def test_main_called_in_process_returns_130_on_ctrl_c_and_lets_its_caller_finish(
    server: EmulatorServer, env: dict[str, str]
) -> None:
    server.emulator.stall_next(30)
    code = "\n".join(
        [
            "from deployai._cli import main",
            "try:",
            "    print('returned', main(['chat', 'hi']))",
            "finally:",
            "    print('went on')",
        ]
    )
    process = _interrupted_when_asked(server, [sys.executable, "-c", code], env, stdout=subprocess.PIPE)
    out, err = _finished(process)
    assert (process.returncode, out, err) == (0, "returned 130\nwent on\n", "deployai: interrupted\n")


def test_ctrl_c_ends_the_command_while_it_waits_on_a_full_pipe(server: EmulatorServer, env: dict[str, str]) -> None:
    server.emulator.reply("x" * 300_000)
    reader, writer = os.pipe()  # a pager that stopped reading
    process = start([str(SCRIPT), "chat", "hi"], env=env, stdout=writer, stderr=subprocess.PIPE)
    os.close(writer)
    try:
        while _bytes_waiting(reader) < 65_536 and process.poll() is None:  # Linux's pipe size: full
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
    finally:
        process.kill()
        process.communicate()
        os.close(reader)


def _bytes_waiting(fd: int) -> int:
    waiting: int = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
    return waiting


@pytest.mark.parametrize(
    ("args", "stdin", "refusal"),
    [
        (["chat", "-", "--system", "Review this diff."], "", "prompt must be text on stdin, which was empty"),
        (["chat", "-"], "\n\n", "prompt must be text on stdin, which was empty"),
        (["chat", ""], "", "prompt must be text that is not empty ('-' reads it from stdin)"),
        (["chat", "  "], "", "prompt must be text that is not empty"),
    ],
    ids=["empty-stdin", "blank-lines-on-stdin", "empty-argument", "blank-argument"],
)
def test_an_empty_prompt_is_refused_before_anything_is_sent(
    env: dict[str, str], server: EmulatorServer, args: list[str], stdin: str, refusal: str
) -> None:
    # `git diff | deployai chat - --system "Review this diff."` with nothing to diff sent an empty
    # message, paid for and answered, and exited 0.
    result = run(*args, env=env, stdin=stdin)
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr.startswith(f"deployai: InvalidParameterError: {refusal}")
    assert server.emulator.requests == []


def test_a_stream_that_fails_before_any_text_writes_nothing_to_stdout(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    # A script appending answers to a file (`deployai chat ... >> answers.txt`) got an empty line for
    # each failure: the line of an answer that never began was ended all the same.
    failure = {"error": {"message": "upstream overloaded", "type": "server_error", "code": 503}}
    mocked.add_callback(lambda request: sse_response([event(failure, name="error")]))
    assert main(["chat", "hi", "--max-retries", "0"]) != 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "upstream overloaded" in captured.err
    # An answer that is empty is still an empty line, as a whole answer is always a line.
    mocked.add_callback(lambda request: sse_response([event(chunk(finish="stop")), DONE]))
    assert main(["chat", "hi"]) == 0
    assert capsys.readouterr().out == "\n"


def test_a_prompt_on_a_stdin_left_non_blocking_is_read_whole(env: dict[str, str], server: EmulatorServer) -> None:
    # A parent that set O_NONBLOCK on the pipe (or a crashed program that left the terminal so) cut
    # the prompt to what had come when it was read, silently, or failed with a traceback (None read).
    reader, writer = os.pipe()
    os.set_blocking(reader, False)
    try:
        os.write(writer, b"Review this diff: first half,")
        process = subprocess.Popen(
            [str(SCRIPT), "chat", "-"], stdin=reader, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        os.close(reader)
        reader = -1
        deadline = time.monotonic() + 60
        while _bytes_waiting(writer) and time.monotonic() < deadline:  # until it has read the first half
            time.sleep(0.01)
        with contextlib.suppress(BrokenPipeError):  # it may have gone with the first half alone
            os.write(writer, b" second half.\n")
    finally:
        os.close(writer)
        if reader >= 0:
            os.close(reader)
    out, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (0, b"")
    assert out == b"You said: Review this diff: first half, second half.\n"


def test_a_usage_error_hides_the_value_of_a_mistyped_api_key_option(capsys: pytest.CaptureFixture[str]) -> None:
    # `--api-kye KEY` is no option, and no credential word: a gateway key not shaped like `sk-...`
    # was printed whole in the error.
    key = "NOPREFIXSECRETKEY0123456789abcdef"
    for typo in ("--api-kye", "--api-ket", "--apu-key"):
        with pytest.raises(SystemExit):
            main(["chat", "hi", typo, key])
        err = capsys.readouterr().err
        assert "unrecognized arguments" in err
        assert key not in err
    with pytest.raises(SystemExit):  # another option's value stays readable
        main(["chat", "hi", "--modle", "openai/gpt-4o-2024-08-06"])
    assert "--modle openai/gpt-4o-2024-08-06" in capsys.readouterr().err


def test_the_models_table_keeps_its_columns_for_long_windows_and_wide_characters(
    mocked: HTTPXMock, capsys: pytest.CaptureFixture[str]
) -> None:
    # A 10,000,000-token window jutted out of its 9 places, and a CJK name took twice the places
    # its `len()` counts, pushing the rest of its row out of line.
    models = [
        {"id": "meta/llama-4-scout", "object": "model", "created": 1, "owned_by": "meta", "provider": "Meta",
         "context_window": 10_000_000},
        {"id": "qwen/通义千问", "object": "model", "created": 1, "owned_by": "qwen", "provider": "阿里云",
         "context_window": 32_000},
        {"id": "typhoon/ไทยกินข้าว", "object": "model", "created": 1, "owned_by": "scb", "provider": "SCB 10X",
         "context_window": 8_192},  # two of its letters are vowel signs, which take no place of their own
    ]  # fmt: skip
    mocked.add_response(json={"object": "list", "data": models})
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    thai_signs = {"\u0e31", *map(chr, range(0x0E34, 0x0E3B)), *map(chr, range(0x0E47, 0x0E4F))}
    shown = [sum(0 if c in thai_signs else 2 if "\u4e00" <= c <= "\u9fff" else 1 for c in line) for line in lines]
    assert len(set(shown)) == 1, lines  # every row as wide on a terminal
    assert lines[1].endswith("10,000,000")
    assert lines[2].endswith("32,000")

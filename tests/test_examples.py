"""The examples run as a user runs them: a fresh interpreter, no API key, so against the local emulator."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import deployai
from deployai.testing import Emulator, EmulatorServer
from tests.forward_proxy import ForwardProxy
from tests.redis_server import needs_redis, redis_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EMULATOR_LINE = re.compile(
    r"DEPLOYAI_API_KEY is not set: using the local DeployAI emulator at http://127\.0\.0\.1:\d+/v1"
)


def _unwanted(name: str) -> bool:
    # A developer's proxy would carry the examples' loopback traffic to the emulator through it.
    return name.startswith("DEPLOYAI_") or name.lower() in {"http_proxy", "https_proxy", "all_proxy"}


def run_example(name: str, **settings: str) -> list[str]:
    """Run an example without DEPLOYAI_* settings or proxies; every warning is an error, and stderr must stay empty."""
    env = {key: value for key, value in os.environ.items() if not _unwanted(key)} | settings
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_quickstart_streams_an_answer_from_the_emulator() -> None:
    lines = run_example("quickstart.py")
    assert len(lines) == 3
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "You said: Hello! What can you do?"
    # "Hello! What can you do?" is 7 tokens; the reply adds "You said:".
    assert lines[2] == "[7 prompt + 10 completion tokens; rate limit: 59/60 requests left this window]"


def test_models_lists_the_seven_models() -> None:
    lines = run_example("models.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[-2:] == [
        "anthropic/claude-3.5-sonnet: 200000 tokens of context",
        "openai/gpt-5-turbo-max: not found (The model 'openai/gpt-5-turbo-max' does not exist or you do not have "
        "access to it.)",
    ]
    lines = lines[:-2]
    assert [line.split()[0] for line in lines[1:-1]] == [
        "openai/gpt-4o",
        "openai/o3-mini",
        "anthropic/claude-3.5-sonnet",
        "google/gemini-2.0-flash",
        "mistralai/mistral-large",
        "meta/llama-3.1-405b",
        "deepseek/deepseek-r1",
    ]
    assert lines[4].split(maxsplit=1)[1] == "Google       1,000,000 tokens"
    assert lines[-1] == "[7 models; request id req_1]"


def test_async_stream_prints_the_answer_and_its_total() -> None:
    lines = run_example("async_stream.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "You said: Stream this, please."
    # 5 prompt tokens ("Stream this , please .") + 8 in the reply.
    assert lines[2] == "[stop; 13 tokens; request req_1]"


def test_errors_and_retries_shows_each_failure_mode() -> None:
    lines = run_example("errors_and_retries.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "refused: temperature must be a number from 0 to 2 (inclusive); got 3"
    assert lines[2] == "  param='temperature' value=3 allowed='a number from 0 to 2 (inclusive)'"
    assert lines[3] == "status 200, request req_1, 59 requests left"
    assert lines[4] == "answer: 'You said: Hi' (stop)"
    assert lines[5].startswith("not found: ")
    assert lines[5].endswith("(status 404, code model_not_found)")  # read from error.body
    # The server asked for 120 s, over max_retry_wait: raised at once, with no retry and no wait.
    assert re.fullmatch(r"503, retry after 120 s: raised after 0\.\d s, 0 retries", lines[6]), lines[6]
    # Both breaks come after the text that did arrive (the role chunk, "You", " said").
    assert lines[7].startswith("a dropped connection: APIConnectionError after 'You said': ")
    assert lines[7].endswith("The stream broke after 3 chunk(s): the answer is incomplete.")
    event = "InternalServerError after 'You said': The upstream provider failed in the middle of the stream."
    assert lines[8] == f"an error event: {event}"
    assert len(lines) == 9


def test_service_paces_a_batch_under_a_small_window_with_no_retry() -> None:
    lines = run_example("service.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1:4] == ["progress: 20/60", "progress: 40/60", "progress: 60/60"]
    assert lines[4] == "first answer: 'You said: Ticket #1: the'"
    # 60 calls against 20 a second, retried on any 429: none was met, so none was retried.
    assert lines[5] == "60 answered, 0 failed, retries: none"
    assert lines[6].endswith("in_flight=0, waiting=0)]")
    # The plan's limit, on a fresh emulator: a 429 whose token budget is spent (read as tokens_remaining 0)...
    assert EMULATOR_LINE.fullmatch(lines[7])
    assert re.fullmatch(r"call 1: RateLimitError after 0\.\d s, retry after 0\.5 s, tokens left: 0", lines[8]), lines[8]
    # ... holds the next call until the tokens reset, half a second later ...
    held = re.fullmatch(r"call 2: answered after ([\d.]+) s, tokens left: None", lines[9])
    assert held, lines[9]
    assert float(held[1]) >= 0.4
    assert re.fullmatch(r"call 3: answered after 0\.\d s, tokens left: None", lines[10]), lines[10]
    # ... and requests_per_minute=3 refuses a 4th call at once, since it would wait about a minute.
    assert re.fullmatch(r"call 4: RateLimitError after 0\.\d s, retry after 5\d\.\d s, tokens left: None", lines[11])
    assert len(lines) == 12


def test_every_example_is_tested_here() -> None:
    source = Path(__file__).read_text()
    examples = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
    assert examples == sorted(name for name in examples if f'run_example("{name}"' in source)


def test_with_a_key_the_quickstart_talks_to_the_configured_api() -> None:
    # The "real API" branch, pointed at a loopback emulator through DEPLOYAI_BASE_URL.
    with EmulatorServer(Emulator()) as server:
        env = {key: value for key, value in os.environ.items() if not key.startswith("DEPLOYAI_")}
        env |= {"DEPLOYAI_API_KEY": "sk-from-the-environment", "DEPLOYAI_BASE_URL": server.base_url}
        result = subprocess.run(
            [sys.executable, "-W", "error", str(EXAMPLES / "quickstart.py")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        recorded = server.emulator.requests
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "You said: Hello! What can you do?"
    assert "emulator" not in result.stdout
    assert [r.sent_key("sk-from-the-environment") for r in recorded] == [True]


@needs_redis
def test_process_pool_shares_one_budget_through_redis_with_no_retry() -> None:
    with redis_server() as redis:
        lines = run_example("process_pool.py", REDIS_URL=redis.url)
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "first answer: 'You said: Question 1: how do'"
    assert lines[2] == "last answer: 'You said: Question 200: how do'"
    # 4 processes x 50 calls at a time against 40 requests a second, retried on any 429: none was met.
    assert lines[3] == "200 answered by 4 processes, 0 failed, retries: 0"


@needs_redis
def test_dask_batch_answers_in_order_on_worker_processes() -> None:
    with redis_server() as redis:
        lines = run_example("dask_batch.py", REDIS_URL=redis.url)
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1:] == [
        "first answer: 'You said: Question 1: which models'",
        "last answer: 'You said: Question 80: which models'",
        "80 answered on 2 worker processes",
    ]


def test_tool_calling_runs_two_turns_against_the_emulator() -> None:
    lines = run_example("tool_calling.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    # The emulator calls the offered tool with arguments shaped by its schema, then repeats its result.
    assert lines[1] == "-> the model calls get_weather({'city': 'Paris', 'unit': 'celsius'})"
    assert lines[2] == 'Tool result: {"city": "Paris", "temperature": 21, "unit": "celsius", "sky": "clear"}'


def test_testing_your_app_passes_its_own_tests_with_the_installed_fixtures() -> None:
    lines = run_example("testing_your_app.py")
    assert re.fullmatch(r"6 passed in [\d.]+s", lines[-1]), lines


def test_batch_jsonl_answers_each_request_once_with_its_place_and_the_failure_in_it() -> None:
    lines = run_example("batch_jsonl.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    results = sorted((json.loads(line) for line in lines[1:]), key=lambda r: r["index"])
    assert [(r["index"], r["model"]) for r in results] == [
        (0, "openai/gpt-4o"),
        (1, "anthropic/claude-3.5-sonnet"),
        (2, "nobody/no-such-model"),
        (3, "google/gemini-2.0-flash"),
    ]
    assert results[2] == {"index": 2, "model": "nobody/no-such-model", "error": "NotFoundError", "status": 404}
    assert results[3]["answer"] == "You said: What is streaming?"


def test_retry_loops_retry_with_stamina_and_tenacity_as_the_sdk_would() -> None:
    lines = run_example("retry_loops.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    # Two scripted 503s each, then the answer: the third attempt.
    assert lines[1:] == [
        "stamina: 'You said: Hello again!' after 3 attempts",
        "tenacity: 'You said: Hello again!' after 3 attempts",
    ]


def test_configuration_sends_the_headers_bounds_the_call_and_sends_the_alias() -> None:
    lines = run_example("configuration.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "sent X-Team: search, X-Trace-Id: trace-42, X-Priority: low"
    assert lines[2] == "answer: 'You said: Hi' (status 200, request req_1)"
    # Every attempt at the slow model stalls 3 s. With only the 0.5 s timeout, three attempts and their
    # waits would take about 2.6 s; the 1.5 s total_timeout leaves no room for the third.
    timed_out = re.fullmatch(r"openai/o3-mini: APITimeoutError, 2 attempts in ([\d.]+) s", lines[3])
    assert timed_out, lines[3]
    assert float(timed_out[1]) < 2.0
    refusal = "model must be a model id in provider/model form, such as 'openai/gpt-4o'; got 'fast'"
    assert lines[4] == f"'fast': refused before sending: {refusal}"
    assert lines[5] == f"ModelAlias('fast'): sent; the server answered 400: {refusal}"
    # NOT_GIVEN through the wrapper sends no temperature; extra_body and extra_query go with both calls.
    extra = "provider {'order': ['openai', 'azure']}, query trace=example"
    assert lines[6:] == [f"temperature 0.2: sent 0.2, {extra}", f"temperature NOT_GIVEN: sent nothing, {extra}"]


def test_configuration_headers_and_the_alias_arrive_at_the_server() -> None:
    # The "real API" branch, pointed at an emulator this test reads: what the server received.
    with EmulatorServer(Emulator()) as server:
        lines = run_example("configuration.py", DEPLOYAI_API_KEY="sk-configuration", DEPLOYAI_BASE_URL=server.base_url)
        recorded = server.emulator.requests
    assert "emulator" not in "\n".join(lines)
    assert lines[2] == "openai/o3-mini: answered in time, after 0 retries"  # nothing made it slow here
    # The plain "fast" was never sent; ModelAlias("fast") was, as given.
    models = [(r.json or {}).get("model") for r in recorded]
    assert models == ["openai/gpt-4o", "openai/o3-mini", "fast", "openai/gpt-4o", "openai/gpt-4o"]
    assert [r.status for r in recorded] == [200, 200, 400, 200, 200]
    assert [r.headers.get("x-team") for r in recorded] == ["search"] * 5
    assert [r.headers.get("x-trace-id") for r in recorded] == ["trace-42", None, None, None, None]
    assert [r.headers.get("x-priority") for r in recorded] == ["low", None, None, None, None]
    # The extra fields reached the server; the temperature only when the wrapper's caller gave one.
    wrapped = [r.json or {} for r in recorded[3:]]
    assert [body.get("provider") for body in wrapped] == [{"order": ["openai", "azure"]}] * 2
    assert [r.query for r in recorded[3:]] == ["trace=example"] * 2
    assert wrapped[0]["temperature"] == 0.2
    assert "temperature" not in wrapped[1]


def test_http_client_sends_through_the_users_clients_and_their_proxy() -> None:
    with ForwardProxy() as proxy:
        lines = run_example("http_client.py", PROXY_URL=proxy.url)
        forwarded = list(proxy.seen)
    assert lines[0] == f"through the proxy at {proxy.url.removeprefix('http://')}"
    assert EMULATOR_LINE.fullmatch(lines[1])
    assert lines[2:] == [
        "  GET /v1/models -> 200 (req_1)",
        "  POST /v1/chat/completions -> 200 (req_2)",
        "DeployAI: 'You said: Hello through my own client!'",
        "DeployAI closed; your httpx.Client is still open: True",
        "  POST /v1/chat/completions -> 200 (req_3)",
        "AsyncDeployAI: 'You said: Hello through my own client!'",
    ]
    # Every request the event hooks saw went through the proxy, from the sync and the async client.
    assert forwarded == ["GET /v1/models", "POST /v1/chat/completions", "POST /v1/chat/completions"]


def test_logging_and_metrics_logs_the_retry_counts_it_and_times_the_call() -> None:
    lines = run_example("logging_and_metrics.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    chat = r"POST http://127\.0\.0\.1:\d+/v1/chat/completions"
    assert re.fullmatch(rf"DEBUG deployai: {chat} -> 503 in [\d.]+ s \(request id req_1, attempt 1\)", lines[1])
    # The server asked for 0.1 s; the SDK waits up to a quarter longer, never shorter.
    assert re.fullmatch(
        rf"INFO deployai: Retrying {chat} in 0\.1\d s \(retry 1 of 2\) after status 503 \(request id req_\d+\)",
        lines[2],
    )
    assert re.fullmatch(rf"DEBUG deployai: {chat} -> 200 in [\d.]+ s \(request id req_2, attempt 2\)", lines[3])
    assert lines[4] == "answer: 'You said: Hi', request req_2"
    assert re.fullmatch(r"retries: 1; last attempt took \d+ ms", lines[5])
    # The emulator's window: 60 requests a minute, of which the 503 and the answer used two.
    assert re.fullmatch(r"rate limit: 58/60 requests left, the window resets in (59|60|61) s", lines[6])
    assert lines[7:] == ["retry metric: {'ServiceUnavailableError': 1}"]


def test_stop_stream_stops_the_answer_from_another_thread_and_the_client_goes_on() -> None:
    lines = run_example("stop_stream.py")
    assert EMULATOR_LINE.fullmatch(lines[0])
    assert lines[1] == "[200 text/event-stream, request req_1: before any token]"
    whole = "You said: Tell me the whole story of the web, from the first browser to the streaming chat APIs of today."
    # The start of the answer, cut short by the button: at least a word in, never the whole.
    assert lines[2].startswith("You")
    assert whole.startswith(lines[2])
    assert len(lines[2]) < len(whole)
    assert re.fullmatch(r"\[stopped after \d+ chunks; the first came after [\d.]+ s\]", lines[3])
    assert lines[4:] == ["next call: 'You said: Still there?'"]


def test_stop_stream_lets_its_button_go_when_the_answer_fails_before_any_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # The button thread waits for the first words; were it left waiting, the script would never exit.
    monkeypatch.syspath_prepend(str(EXAMPLES))
    stop_stream: Any = importlib.import_module("stop_stream")
    emulator = Emulator(rate_limit=None)
    emulator.error_event_after(1)  # after the first event, which carries the role and no text
    threads = threading.active_count()
    with emulator.client() as client, pytest.raises(deployai.APIStatusError):
        stop_stream.stream_until_stopped(client)
    assert threading.active_count() == threads


def test_openai_sdk_talks_to_the_emulator_server_and_gets_its_own_errors() -> None:
    lines = run_example("openai_sdk.py")
    assert lines == [
        "models: openai/gpt-4o, openai/o3-mini, anthropic/claude-3.5-sonnet, ...",
        "answer from anthropic/claude-3.5-sonnet: 'You said: Hello from openai!'",
        # The reply scripted through /_emulator/replies, streamed in its pieces.
        "stream: ['Stre', 'amed ', 'as scripted.']",
        # The fault scripted through /_emulator/faults, raised as openai's own error type.
        "failure: openai.InternalServerError, status 503: Error code: 503 - Emulated failure: 503 Service Unavailable.",
        "the emulator answered: [200, 200, 200, 503]",
    ]


def test_in_process_scripts_the_emulator_and_reads_back_what_it_received() -> None:
    lines = run_example("in_process.py")
    assert lines == [
        "summary: 'A fox jumps.'",  # the scripted reply, after two 503s the client retried
        "without a script: 'You said: Summarize in one line: Hello'",
        "statuses: [503, 503, 200, 200]",
        "last request: POST /v1/chat/completions, model openai/gpt-4o, key sent: True",
        "GET /v1/models/openai/gpt-4o: 200, 128000 tokens of context",
        "async stream: 'Streamed, in process.'",
        # Two calls fill the window; the third waits out its 60 s on the clock, not in real time.
        "rate limited: statuses [200, 200, 429, 200], 60 s waited on the virtual clock",
    ]

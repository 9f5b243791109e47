"""RedisRateLimiter on a real redis-server: one key's budget shared by processes, through Redis faults.

The proofs run worker processes (started with "spawn") against the emulator's loopback server with a
small window, and count 429s at the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import httpx
import pytest

import deployai
from deployai import _redis_courier, _redis_state
from deployai.testing import EmulatorServer
from tests.conftest import API_KEY, completion_json, user
from tests.redis_server import NO_REDIS_SERVER, REDIS_SERVER, RedisServer, needs_redis, redis_server
from tests.scale_worker import answer_share, one_call_then_leave
from tests.test_limiter import CountingEmulator, window
from tests.token_gateway import TokenGateway

MODEL = "openai/gpt-4o"


@pytest.fixture(scope="module")
def redis_once() -> Iterator[RedisServer]:
    if REDIS_SERVER is None:
        pytest.skip(NO_REDIS_SERVER)
    with redis_server() as server:
        yield server


@pytest.fixture
def redis(redis_once: RedisServer) -> RedisServer:
    """The module's redis-server, emptied for each test."""
    redis_once.flush()
    return redis_once


def stored(server: RedisServer) -> dict[bytes, bytes]:
    import redis

    with redis.Redis.from_url(server.url) as client:
        return {key: client.get(key) or b"" for key in client.keys("*")}


def test_the_budget_is_kept_under_a_hash_of_the_key_never_the_key(redis: RedisServer) -> None:
    limiter = deployai.RedisRateLimiter(redis.url)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=completion_json(), headers=window(remaining=7, limit=20))

    client = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=limiter
    )
    client.chat.completions.create(model=MODEL, messages=user("hi"))
    limiter.close()
    (key, value), *others = stored(redis).items()
    assert not others
    assert key.decode() == limiter.key
    assert key.startswith(b"deployai:ratelimit:")
    assert API_KEY.encode() not in key + value
    assert (limiter.in_flight, limiter._pacing.remaining, limiter._pacing.limit) == (0, 7, 20)
    # A second limiter (another process, say) on the same key starts from what the first learned.
    other = deployai.RedisRateLimiter(redis.url)
    other._courier.state = None
    client2 = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=other
    )
    client2.chat.completions.create(model=MODEL, messages=user("hi"))
    other.close()
    assert other.key == limiter.key


def test_a_name_keys_the_budget_and_one_limiter_refuses_a_second_key(redis: RedisServer) -> None:
    named = deployai.RedisRateLimiter(redis.url, name="team-a")
    assert named.key == "deployai:ratelimit:team-a"
    limiter = deployai.RedisRateLimiter(redis.url)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=completion_json()))
    deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter)
    first = deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter)
    first.chat.completions.create(model=MODEL, messages=user("hi"))
    second = deployai.DeployAI(
        api_key="sk-another-key-0000", http_client=httpx.Client(transport=transport), rate_limiter=limiter
    )
    with pytest.raises(deployai.InvalidParameterError, match="one RedisRateLimiter per API key") as info:
        second.chat.completions.create(model=MODEL, messages=user("hi"))
    assert "sk-another" not in str(info.value)
    limiter.close()


def test_keys_sent_in_a_gateways_key_header_behind_one_placeholder_are_two_budgets(redis: RedisServer) -> None:
    # Azure-style gateways read `api-key`, and the client's own key is then a placeholder: every
    # such key was one budget, one key's spent window holding the other's calls.
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=completion_json()))
    keys = []
    for gateway_key in ("KEY-A-0123456789", "KEY-B-0123456789"):
        limiter = deployai.RedisRateLimiter(redis.url)
        client = deployai.DeployAI(
            api_key="sk-placeholder",
            default_headers={"api-key": gateway_key},
            http_client=httpx.Client(transport=transport),
            rate_limiter=limiter,
        )
        client.chat.completions.create(model=MODEL, messages=user("hi"))
        with pytest.raises(deployai.InvalidParameterError, match="one RedisRateLimiter per API key"):
            client.chat.completions.create(model=MODEL, messages=user("hi"), extra_headers={"api-key": "KEY-C-0123"})
        limiter.close()
        keys.append(limiter.key)
    assert keys[0] != keys[1]
    assert all(b"KEY-" not in key + value for key, value in stored(redis).items())
    # Or in the query, under a name ending in "key"; other parameters leave the name as it is.
    named = []
    for query in ({"api-key": "KEY-A-0123456789"}, {"api-key": "KEY-B-0123456789", "api-version": "2024"}):
        limiter = deployai.RedisRateLimiter(redis.url)
        placeholder = deployai.DeployAI(
            api_key="sk-placeholder", http_client=httpx.Client(transport=transport), rate_limiter=limiter
        )
        placeholder.chat.completions.create(model=MODEL, messages=user("hi"), extra_query=query)
        placeholder.chat.completions.create(model=MODEL, messages=user("hi"), extra_query={**query, "api-version": "1"})
        limiter.close()
        named.append(limiter.key)
    assert named[0] != named[1]
    assert all(b"KEY-" not in key + value for key, value in stored(redis).items())
    # A key sent only as a bearer token keeps the budget name of earlier releases: their processes share it.
    bearer = deployai.RedisRateLimiter(redis.url)
    plain = deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport), rate_limiter=bearer)
    plain.chat.completions.create(model=MODEL, messages=user("hi"))
    bearer.close()
    digest = hashlib.sha256(f"deployai rate limit\0Bearer {API_KEY}".encode()).hexdigest()[:24]
    assert bearer.key == f"deployai:ratelimit:{digest}"


def test_with_no_time_to_wait_calls_queued_behind_a_redis_round_trip_go_when_the_window_has_room(
    redis: RedisServer,
) -> None:
    # `max_retry_wait=0`: all but the caller at the head of the queue were refused, with 959 of 1,000
    # left (each behind a round trip to Redis); in a batch, such a call queues again.
    limiter = deployai.RedisRateLimiter(redis.url, name="no-wait")
    transport = httpx.MockTransport(
        lambda request: httpx.Response(200, json=completion_json(), headers=window(remaining=900, limit=1000))
    )
    client = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter, max_retry_wait=0
    )
    client.chat.completions.create(model=MODEL, messages=user("probe"))
    until(lambda: limiter._courier.own == 0, "the probe's answer was written")
    results = client.chat.completions.create_many([{"model": MODEL, "messages": user("hi")}] * 40, concurrency=8)
    limiter.close()
    assert [type(result).__name__ for result in results] == ["ChatCompletion"] * 40


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"url": "http://127.0.0.1:6379"}, "url"),
        ({"url": "redis://127.0.0.1", "name": ""}, "name"),
        ({"url": "redis://127.0.0.1", "timeout": 0}, "timeout"),
        ({"url": "redis://127.0.0.1", "requests_per_minute": 0}, "requests_per_minute"),
    ],
)
def test_bad_settings_are_refused_at_once(options: dict[str, Any], message: str) -> None:
    with pytest.raises(deployai.InvalidParameterError, match=message):
        deployai.RedisRateLimiter(**options)


def test_import_deployai_does_not_import_redis() -> None:
    code = (
        "import sys, deployai; assert 'redis' not in sys.modules, 'redis was imported'; "
        "assert 'deployai._redis_limiter' not in sys.modules, 'loaded before it was used'; "
        "assert deployai.RedisRateLimiter.__module__ == 'deployai'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_redis_py_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # as if redis-py were not installed
    with pytest.raises(deployai.DeployAIError, match=r'pip install "deployai\[redis\]"'):
        deployai.RedisRateLimiter("redis://127.0.0.1:6379/0")


def test_it_pickles_with_its_settings_and_no_repr_shows_the_password() -> None:
    limiter = deployai.RedisRateLimiter(
        "redis://user:s3cret@127.0.0.1:6390/2", name="batch", requests_per_minute=90, timeout=0.25
    )
    copy = pickle.loads(pickle.dumps(limiter))
    assert type(copy) is deployai.RedisRateLimiter
    assert (copy.url, copy.key, copy.requests_per_minute, copy._timeout) == (
        "redis://user:***@127.0.0.1:6390/2",
        "deployai:ratelimit:batch",
        90,
        0.25,
    )
    assert "s3cret" not in repr(limiter) + repr(copy)
    with pytest.raises(deployai.InvalidParameterError) as info:
        deployai.RedisRateLimiter("http://user:s3cret@127.0.0.1:6390/2")
    assert "s3cret" not in str(info.value)


def test_a_password_given_as_a_query_parameter_is_never_shown_either() -> None:
    # redis-py also reads `?password=`; the limiter hid only the `redis://:pw@host` form.
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:6390/2?db=2&password=s3cret")
    assert limiter.url == "redis://127.0.0.1:6390/2?db=2&password=***"
    assert "s3cret" not in repr(limiter)
    with pytest.raises(deployai.InvalidParameterError) as info:
        deployai.RedisRateLimiter("redis://127.0.0.1:6390/2?Password=s3cret&socket_timeout=abc")
    assert "s3cret" not in str(info.value)


def test_two_limiters_on_one_key_share_one_budget_across_threads_and_tasks(redis: RedisServer) -> None:
    """Two limiters stand for two processes: 120 calls through both, 0 x 429 at the server."""
    with EmulatorServer(counting := CountingEmulator(rate_limit=20, window_seconds=1)) as server:
        first = deployai.RedisRateLimiter(redis.url)
        second = deployai.RedisRateLimiter(redis.url)
        sync = deployai.DeployAI(api_key=API_KEY, base_url=server.base_url, rate_limiter=first, max_retries=0)
        requests = [{"model": MODEL, "messages": user(f"t{n}"), "max_tokens": 2} for n in range(60)]
        threaded: list[Any] = []
        thread = threading.Thread(
            target=lambda: threaded.extend(sync.chat.completions.create_many(requests, concurrency=16))
        )
        thread.start()

        async def tasks() -> list[Any]:
            async with deployai.AsyncDeployAI(
                api_key=API_KEY, base_url=server.base_url, rate_limiter=second, max_retries=0
            ) as client:
                return await client.chat.completions.create_many(requests, concurrency=30)

        from_tasks = asyncio.run(tasks())
        thread.join(60)
        sync.close()
        first.close()
        second.close()
        statuses = counting.status_counts
    assert all(isinstance(r, deployai.types.ChatCompletion) for r in threaded + from_tasks)
    assert (statuses[200], statuses[429]) == (120, 0)


def test_two_limiters_on_one_key_share_the_tokens_their_calls_in_flight_may_take(redis: RedisServer) -> None:
    """Two limiters stand for two processes, against a gateway that limits tokens alone: 0 x 429 there.

    40 calls of up to 100 tokens, 1,000 tokens a window: each limiter must count the other's calls
    in flight too. Sharing only whether the budget was spent, they met 429s in every window.
    """
    gateway = TokenGateway(time.time, limit=1000, window=0.5, latency=0.02)
    call = {"model": MODEL, "messages": user("Tell me a story."), "max_tokens": 100}
    options: dict[str, Any] = {"api_key": API_KEY, "max_retries": 0}
    first = deployai.RedisRateLimiter(redis.url)
    second = deployai.RedisRateLimiter(redis.url)
    http = httpx.Client(transport=httpx.MockTransport(gateway.answer))
    sync = deployai.DeployAI(http_client=http, rate_limiter=first, **options)
    threaded: list[Any] = []
    thread = threading.Thread(
        target=lambda: threaded.extend(sync.chat.completions.create_many([call] * 20, concurrency=10))
    )
    thread.start()

    async def tasks() -> list[Any]:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(gateway.answer_async)) as http,
            deployai.AsyncDeployAI(http_client=http, rate_limiter=second, **options) as client,
        ):
            return await client.chat.completions.create_many([call] * 20, concurrency=10)

    from_tasks = asyncio.run(tasks())
    thread.join(60)
    sync.close()
    http.close()
    first.close()
    second.close()
    assert [type(r).__name__ for r in threaded + from_tasks] == ["ChatCompletion"] * 40
    assert gateway.statuses == [200] * 40


def test_while_redis_is_down_the_tokens_in_flight_are_counted_in_the_process(caplog: pytest.LogCaptureFixture) -> None:
    # Paced locally from the start: each call's tokens were written off at its answer without having
    # been counted, and the count went below 0 (-126 after 40 calls), letting through one call too many.
    limiter = deployai.RedisRateLimiter(RedisServer().url, name="down", timeout=0.1)  # nothing listens there
    gateway = TokenGateway(time.time, limit=1000, window=0.5, latency=0.02, watch=lambda: limiter._pacing.tokens_out)
    call = {"model": MODEL, "messages": user("Tell me a story."), "max_tokens": 100}

    async def tasks() -> list[Any]:
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(gateway.answer_async)) as http,
            deployai.AsyncDeployAI(api_key=API_KEY, http_client=http, rate_limiter=limiter, max_retries=0) as client,
        ):
            return await client.chat.completions.create_many([call] * 30, concurrency=10)

    with caplog.at_level(logging.WARNING, logger="deployai"):
        results = asyncio.run(tasks())
    limiter.close()
    assert not limiter.shared
    assert [type(r).__name__ for r in results] == ["ChatCompletion"] * 30
    assert gateway.statuses == [200] * 30
    assert min(gateway.watched) >= 0
    assert limiter.tokens_in_flight == 0


def run_processes(
    server: EmulatorServer, limiter: Any, *, processes: int = 4, tasks: int = 50, max_retries: int = 0
) -> list[tuple[int, int, int, int]]:
    client = deployai.AsyncDeployAI(
        api_key=API_KEY, base_url=server.base_url, rate_limiter=limiter, max_retries=max_retries
    )
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(answer_share, client, tasks, tasks) for _ in range(processes)]
        return [future.result() for future in futures]


def test_proof_4_processes_of_50_tasks_on_one_key_meet_no_429(redis: RedisServer) -> None:
    with EmulatorServer(counting := CountingEmulator(rate_limit=40, window_seconds=1)) as server:
        done = run_processes(server, deployai.RedisRateLimiter(redis.url))
        statuses = counting.status_counts
    answered = sum(d[0] for d in done)
    round_trips, lost = sum(d[2] for d in done), sum(d[3] for d in done)
    print(
        f"shared budget: {answered} answered, {dict(statuses)}, {round_trips / answered:.2f} Redis round trips "
        f"per call, of which {lost / answered:.2f} writes lost to another process's"
    )
    assert (answered, sum(d[1] for d in done)) == (200, 0)
    assert (statuses[200], statuses[429]) == (200, 0)
    assert round_trips / answered < 10  # no busy polling


def test_without_the_shared_budget_the_same_processes_meet_429s() -> None:
    with EmulatorServer(counting := CountingEmulator(rate_limit=40, window_seconds=1)) as server:
        done = run_processes(server, deployai.RateLimiter())  # each process paces alone
        statuses = counting.status_counts
    print(f"a limiter per process: {dict(statuses)}, {sum(d[1] for d in done)} calls failed")
    assert statuses[429] > 0
    assert sum(d[1] for d in done) == statuses[429]  # no retries: each 429 ended a call


@needs_redis
def test_fault_redis_stopped_mid_run_every_call_still_completes() -> None:
    with (
        redis_server() as redis,
        EmulatorServer(counting := CountingEmulator(rate_limit=40, window_seconds=1)) as server,
    ):

        def stop_redis_after_60_answers() -> None:
            deadline = time.monotonic() + 60
            while counting.status_counts[200] < 60 and time.monotonic() < deadline:
                time.sleep(0.005)
            redis.stop()

        stopper = threading.Thread(target=stop_redis_after_60_answers)
        stopper.start()
        done = run_processes(server, deployai.RedisRateLimiter(redis.url), max_retries=10)
        stopper.join()
    assert redis.process is None
    assert sum(d[0] for d in done) == 200
    assert counting.status_counts[200] == 200


@needs_redis
def test_redis_down_paces_locally_with_one_warning_and_shares_again_when_back(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_redis_courier, "REDIS_RETRY_SECONDS", 0.0)
    server = RedisServer()  # not started yet
    limiter = deployai.RedisRateLimiter(server.url, timeout=0.2)
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append("x")
        return httpx.Response(200, json=completion_json(), headers=window(remaining=10, limit=20))

    client = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=limiter
    )
    with caplog.at_level(logging.INFO, logger="deployai"):
        for _ in range(5):
            client.chat.completions.create(model=MODEL, messages=user("hi"))
        assert not limiter.shared
        assert len(sent) == 5
        warnings = [r.getMessage() for r in caplog.records if r.name == "deployai" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "Redis is unreachable" in warnings[0]
        server.start()
        try:
            client.chat.completions.create(model=MODEL, messages=user("hi"))
            assert limiter.shared
            assert "Redis answers again" in [r for r in caplog.records if r.name == "deployai"][-1].getMessage()
            assert stored(server)  # the state is in Redis again
        finally:
            limiter.close()
            server.stop()


def test_a_dead_process_count_in_flight_stops_counting_after_its_lease(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_redis_courier, "REDIS_LEASE_SECONDS", 0.3)
    request = httpx.Request(
        "POST", "http://127.0.0.1/v1/chat/completions", headers={"authorization": f"Bearer {API_KEY}"}
    )
    dead = deployai.RedisRateLimiter(redis.url)
    tickets = [dead._acquire_sync(request, 5.0)]  # the probe: the rest would wait for its answer
    dead._settle(tickets[0], httpx.Response(200, headers=window(remaining=3, limit=3), request=request), 0.0)
    tickets += [dead._acquire_sync(request, 5.0) for _ in range(3)]
    dead.close()  # the process dies with 3 requests in flight; nothing renews its count
    alive = deployai.RedisRateLimiter(redis.url)
    alive._prepare(request)
    assert alive._courier.ask(0).result(5) == 0  # the dead process's requests hold the whole window
    assert alive.in_flight == 3
    deadline = time.monotonic() + 10
    while not alive._courier.ask(0).result(5):  # until their lease has run out
        assert time.monotonic() < deadline, "the dead process's requests still count"
    assert alive.in_flight == 1  # its own, just admitted
    alive.close()


def counted_in_flight(server: RedisServer) -> int:
    """The requests that the processes' entries in the shared state count as in flight."""
    (value,) = stored(server).values()
    _, state = _redis_state.parse(value)
    assert state is not None
    return sum(count for count, _ in state[len(_redis_state.SHARED) + 2].values())


@pytest.mark.parametrize("leaving", ["sys.exit", "a multiprocessing worker's os._exit"])
def test_a_process_that_leaves_unclosed_writes_its_answers_first(redis: RedisServer, leaving: str) -> None:
    # A one-call script, or a worker recycled after each task: its answered request must not go on
    # holding a place in everyone's budget for the lease's 10 s.
    if leaving == "sys.exit":
        subprocess.run([sys.executable, "-m", "tests.scale_worker", redis.url], check=True, timeout=60)
    else:
        worker = multiprocessing.get_context("forkserver").Process(target=one_call_then_leave, args=(redis.url,))
        worker.start()
        worker.join(60)
        assert worker.exitcode == 0
    assert counted_in_flight(redis) == 0


def test_calls_an_exit_hook_makes_after_the_limiter_wrote_at_exit_go_and_are_written(redis: RedisServer) -> None:
    # A final report registered before the first call runs after the limiter's own exit hook: its
    # calls found the limiter's thread stopped, and on Python 3.12 and later (which starts no thread
    # at exit) the first raised RuntimeError and the second waited for good.
    code = f"""
import atexit
import time
import types
import deployai
from deployai import _redis_courier
from deployai.testing import Emulator

remote = _redis_courier.Courier._remote

def held(courier, answers, asking):  # an answer's write waits until the process is leaving
    if answers and asking is None:
        deadline = time.monotonic() + 30
        while not (courier.stopping or getattr(_redis_courier, "_exiting", False)) and time.monotonic() < deadline:
            time.sleep(0.001)
    return remote(courier, answers, asking)

_redis_courier.Courier._remote = held
client = Emulator().client(rate_limiter=deployai.RedisRateLimiter({redis.url!r}))

def final_report():
    for _ in range(2):
        client.chat.completions.create(model="openai/gpt-4o", messages=[{{"role": "user", "content": "bye"}}])
    print("final report sent")

atexit.register(final_report)
client.chat.completions.create(model="openai/gpt-4o", messages=[{{"role": "user", "content": "hi"}}])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "final report sent\n", "")
    assert counted_in_flight(redis) == 0


REQUEST = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions", headers={"authorization": f"Bearer {API_KEY}"})


def answer(remaining: int, limit: int = 10) -> httpx.Response:
    return httpx.Response(200, headers=window(remaining=remaining, limit=limit), request=REQUEST)


def until(condition: Any, what: str, seconds: float = 10.0) -> None:
    """Wait for another thread to reach a state (not for time to pass)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw-se-cret@127.0.0.1:notaport/0",
        # A generated password with an unescaped "#", "/" or "?" cuts the host part short before its
        # "@": it was read as no password at all, and shown whole.
        "redis://:pw-se#cret@127.0.0.1:6379/0",
        "redis://:pw-se/cret@127.0.0.1:6379/0",
        "redis://user:pw-se?cret@127.0.0.1:6379/0",
        "redis://:pw-se@cret#x@127.0.0.1:6379/0",  # urllib reads ":pw-se@cret" as the host part
        "redis://:pw-se-cret@[::1/0",  # no URL at all to urllib (it raised its own ValueError)
        "redis:/:pw-se-cret@127.0.0.1/0",
        # A password in the query, with an "@" in it: not to be taken for the end of a user part.
        "redis://127.0.0.1:6379/2?password=pw-se@cret",
        "rediss://127.0.0.1:6379/2?ssl_password=pw-se#x@cret",
        "redis://127.0.0.1:6379/0?db=0?password=pw-se-cret",  # a "?" typed for "&"
        "redis://admin:pw-se&password=cret@127.0.0.1:6379/0",  # redis-py's password: "pw-se&password=cret"
        "redis://pw-se-cret@127.0.0.1:6379/0",  # a user name to redis-py: a password written without its ":"
    ],
)
def test_no_password_in_a_redis_url_is_ever_shown(url: str) -> None:
    try:
        limiter = deployai.RedisRateLimiter(url)
    except deployai.InvalidParameterError as error:  # not a URL redis-py reads: refused at once
        shown = f"{error.param} {error} {error!r} {pickle.loads(pickle.dumps(error))}"
        assert shown.startswith("url ")
    else:
        shown = f"{limiter!r} {limiter.url}"
    assert "pw-se" not in shown
    assert "cret" not in shown
    assert "127.0.0.1" in shown or "::1" in shown  # where Redis was to be is still said


@needs_redis
def test_while_redis_is_down_a_caller_held_for_an_answer_does_not_spin() -> None:
    limiter = deployai.RedisRateLimiter(RedisServer().url, name="down")  # nothing listens there
    exchanges = 0
    exchange = limiter._courier._exchange

    def counted(*args: Any) -> int:
        nonlocal exchanges
        exchanges += 1
        return exchange(*args)

    limiter._courier._exchange = counted  # type: ignore[method-assign,assignment]
    probe = limiter._acquire_sync(REQUEST, 60)  # the rest wait for its answer (or 1 s)
    second: list[int] = []
    thread = threading.Thread(target=lambda: second.append(limiter._acquire_sync(REQUEST, 60)))
    thread.start()
    until(lambda: limiter.waiting == 1, "the second caller waits")
    before = exchanges
    time.sleep(0.3)  # room for a spin to show: thousands of exchanges; a wait makes none
    assert exchanges - before <= 2
    limiter._settle(probe, answer(remaining=5), 0.0)
    thread.join(10)
    assert second
    assert second[0] > probe
    limiter.close()


@pytest.mark.parametrize(
    "value",
    [
        b"garbage",
        b"7 [null,null,null,0,0,false,0,0,0,0,0,-1,[],[],{}]",
        b"garbage\nwith lines",
        b" \xff\xfe",
        b"7 garbage",
        b"7 [1,2",
        b"7 {}",
        b"07 [null,null,null,0,0,false,0,0,0,0,0,0,[],[],[]]",
        b'7 [10,"9",null,0,0,true,0,0,0,0,0,0,[],[],{}]',
        b'7x [10,9,null,0,0,true,0,0,0,0,0,0,[[1,"x"]],[],{"a":[1,"now"]}]',
        b"7 " + b"[" * 5000,  # nested past Python's limit: taken for Redis failing, so never replaced
    ],
)
def test_a_foreign_or_corrupt_value_under_the_key_is_replaced_not_raised(redis: RedisServer, value: bytes) -> None:
    import redis as redis_py

    limiter = deployai.RedisRateLimiter(redis.url, name="corrupt")
    assert limiter.key is not None
    with redis_py.Redis.from_url(redis.url) as client:
        client.set(limiter.key, value)
        for remaining in (4, 3):
            ticket = limiter._acquire_sync(REQUEST, 5)
            limiter._settle(ticket, answer(remaining=remaining), 0.0)
        limiter.close()
        stored_value = client.get(limiter.key) or b""
    assert limiter.shared
    assert (limiter._courier.own, limiter._pacing.remaining) == (0, 3)
    assert _redis_state._readable(json.loads(stored_value.partition(b" ")[2]))


@pytest.mark.parametrize("kind", ["list", "hash", "set"])
def test_a_value_of_another_type_under_the_key_is_replaced_and_the_budget_stays_shared(
    redis: RedisServer, kind: str
) -> None:
    # Redis's GET refuses a list or a hash: the script failed at every call, and each process paced
    # on its own for good, as if Redis were down.
    import redis as redis_py

    limiter = deployai.RedisRateLimiter(redis.url, name="typed")
    assert limiter.key is not None
    with redis_py.Redis.from_url(redis.url) as client:
        {"list": client.rpush, "hash": lambda key, value: client.hset(key, "field", value), "set": client.sadd}[kind](
            limiter.key, "something else's"
        )
        for remaining in (4, 3):
            limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=remaining), 0.0)
        limiter.close()
        assert client.type(limiter.key) == b"string"
    assert limiter.shared
    assert (limiter._courier.own, limiter._pacing.remaining) == (0, 3)


def test_a_stale_limiter_cannot_write_after_the_state_was_lost_and_made_again(redis: RedisServer) -> None:
    first = deployai.RedisRateLimiter(redis.url, name="aba")
    second = deployai.RedisRateLimiter(redis.url, name="aba")
    first._settle(first._acquire_sync(REQUEST, 5), answer(remaining=9), 0.0)
    redis.flush()  # Redis restarted without persistence, or the state expired
    second._settle(second._acquire_sync(REQUEST, 5), answer(remaining=1), 0.0)  # one request left
    admitted = []
    for limiter in (first, second):
        with contextlib.suppress(deployai.RateLimitError):
            admitted.append(limiter._acquire_sync(REQUEST, 0.5))
    assert len(admitted) == 1  # the stale first one decided again on the newer state
    first.close()
    second.close()


def test_the_minutes_sends_outlive_the_loss_of_the_key(redis: RedisServer) -> None:
    # The key lost mid-minute (FLUSHALL, an eviction, a restart without persistence): the next
    # decision started from nothing, and `requests_per_minute` let a whole minute's worth more through,
    # though the processes still knew the minute's sends.
    first = deployai.RedisRateLimiter(redis.url, name="minute", requests_per_minute=10)
    second = deployai.RedisRateLimiter(redis.url, name="minute", requests_per_minute=10)
    unlimited = httpx.Response(200, request=REQUEST)  # a gateway that sends no rate-limit headers
    for limiter, calls in ((first, 6), (second, 1)):
        for _ in range(calls):
            limiter._settle(limiter._acquire_sync(REQUEST, 5), unlimited, 0.0)
    redis.flush()
    let_through = 0
    for limiter in (second, first):
        while True:
            try:
                limiter._settle(limiter._acquire_sync(REQUEST, 0.0), unlimited, 0.0)
            except deployai.RateLimitError:
                break
            let_through += 1
            assert let_through <= 10, "a whole minute's worth let through again"
    assert let_through == 3
    first.close()
    second.close()


def test_close_while_in_use_neither_hangs_nor_loses_a_call(redis: RedisServer) -> None:
    limiter = deployai.RedisRateLimiter(redis.url, name="closing")
    done = [0] * 4
    stop = threading.Event()

    def work(n: int) -> None:
        while not stop.is_set():
            limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=1000, limit=1000), 0.0)
            done[n] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(100):
        limiter.close()
    until(lambda: min(done) >= 5, "every thread makes calls after the closes")
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    limiter.close()
    assert (limiter._courier.own, limiter.waiting) == (0, 0)


def test_two_limiters_with_the_same_settings_stay_two_when_unpickled_elsewhere() -> None:
    # Two keys, each with its own `RedisRateLimiter(url)`, sent to a worker with their clients: there
    # they used to become one limiter, which then refused the second key's calls.
    first, second = (
        deployai.RedisRateLimiter("redis://127.0.0.1:6390/2"),
        deployai.RedisRateLimiter("redis://127.0.0.1:6390/2"),
    )
    blobs = [pickle.dumps(first), pickle.dumps(second)]
    del first, second
    gc.collect()  # as in another process, where neither exists yet
    copies = [pickle.loads(blob) for blob in blobs]
    assert copies[0] is not copies[1]
    assert [pickle.loads(blob) for blob in blobs] == copies  # and copies of each one are that one


def test_copies_unpickled_in_one_process_are_one_limiter_whose_thread_ends_when_idle(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_redis_courier, "_IDLE_SECONDS", 0.05)
    blob = pickle.dumps(deployai.RedisRateLimiter(redis.url, name="travels", requests_per_minute=120))
    limiter = pickle.loads(blob)
    assert pickle.loads(blob) is limiter
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=5), 0.0)
    until(lambda: limiter._courier.thread is None, "the idle thread ends")
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=4), 0.0)  # and starts again
    limiter.close()


def test_the_shared_state_stays_small_whatever_requests_per_minute(redis: RedisServer) -> None:
    limiter = deployai.RedisRateLimiter(redis.url, name="big", requests_per_minute=100_000)
    for _ in range(2000):
        limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=100_000, limit=100_000), 0.0)
    limiter.close()
    assert len(limiter._pacing.sent) == 2000  # every send of the last minute still counts
    (value,) = stored(redis).values()
    assert len(value) < 4096  # as one pair per second, not one time per send


def test_a_429_a_stream_reports_after_its_headers_holds_every_process_and_counts_once(redis: RedisServer) -> None:
    # A stream is settled at its headers (a 200); a refusal it reports as its first event comes after.
    limiter = deployai.RedisRateLimiter(redis.url, name="reported")
    stream, other_call = limiter._acquire_sync(REQUEST, 5), limiter._acquire_sync(REQUEST, 5)
    limiter._settle(stream, answer(remaining=5), 0.0)
    refusal = deployai.RateLimitError("slow down", response=httpx.Response(429, request=REQUEST), body=None)
    limiter._reported(stream, refusal)
    until(lambda: limiter._pacing.strikes == 1, "the refusal was written")
    assert limiter._courier.own == 1  # the other call, still in flight: the refusal is no second answer
    other = deployai.RedisRateLimiter(redis.url, name="reported")
    with pytest.raises(deployai.RateLimitError):  # another process is held back by the strike
        other._acquire_sync(REQUEST, 0.01)
    limiter._settle(other_call, answer(remaining=4), 0.0)
    until(lambda: limiter._courier.own == 0, "the other call's answer was written")
    limiter.close()
    other.close()


def test_429s_streams_report_after_their_headers_grow_the_backoff_as_in_one_process(redis: RedisServer) -> None:
    # Each stream's headers (a 200) ease the backoff before its refusal is read. The in-process
    # limiter undoes that easing; the shared state kept no record of it, so every such 429 started
    # the backoff again from its first step.
    limiter = deployai.RedisRateLimiter(redis.url, name="grows")
    refusal = deployai.RateLimitError("slow down", response=httpx.Response(429, request=REQUEST), body=None)
    for strikes in (1, 2):
        stream = limiter._acquire_sync(REQUEST, 10)  # after the first strike: once its backoff is over
        limiter._settle(stream, answer(remaining=5), 0.0)
        until(lambda: limiter._courier.own == 0, "the headers were written")  # in a round trip of their own
        limiter._reported(stream, refusal)
        until(lambda: limiter._pacing.strikes == strikes, f"strike {strikes} was written")  # noqa: B023
    limiter.close()
    other = deployai.RedisRateLimiter(redis.url, name="grows")
    other._settle(other._acquire_sync(REQUEST, 10), answer(remaining=5), 0.0)
    until(lambda: other._courier.own == 0, "the success was written")
    assert other._pacing.strikes == 0  # a success that is no stream's refusal still clears them
    other.close()


def test_429s_that_keep_coming_after_the_waits_they_ask_for_back_off_as_in_one_process(redis: RedisServer) -> None:
    # The shared state has no room for the record of the last such 429: the process keeps it.
    limiter = deployai.RedisRateLimiter(redis.url, name="hinted")
    refused = httpx.Response(429, request=REQUEST, headers={"retry-after-ms": "1"})
    for strikes in (0, 1):
        limiter._settle(limiter._acquire_sync(REQUEST, 10), refused, 0.0)
        until(lambda: limiter._courier.own == 0, "the refusal was written")
        assert limiter._pacing.strikes == strikes
    limiter.close()


def test_a_machine_whose_clock_is_off_reads_resets_as_every_other_process_does(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Resets are unix times. Read against this machine's clock, one 100 s ahead saw every window as
    # over already and let its sends go uncounted, so that the processes overran the key's limit.
    limiter = deployai.RedisRateLimiter(redis.url, name="skewed")
    limiter._settle(limiter._acquire_sync(REQUEST, 5), httpx.Response(200, request=REQUEST), 0.0)
    until(lambda: limiter._courier.own == 0, "Redis's clock was read")
    reset = round(time.time() + 30)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 100)
    spent = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
    limiter._settle(limiter._acquire_sync(REQUEST, 5), httpx.Response(200, headers=spent, request=REQUEST), 0.0)
    until(lambda: limiter._courier.own == 0, "the answer was written")
    limiter.close()
    assert limiter._pacing.remaining == 0
    assert limiter._pacing.reset_at == pytest.approx(reset, abs=2)  # on Redis's clock, a unix time as well


def test_a_new_process_whose_clock_is_an_hour_ahead_holds_no_process_for_that_hour(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its first decision was made, and written, on its own clock before it had heard Redis's: its
    # send stood an hour ahead at the head of the minute's sends, and every process's eleventh call
    # of a minute was held for an hour and a minute (`retry_after` 3660).
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    ahead = deployai.RedisRateLimiter(redis.url, name="ahead", requests_per_minute=10)
    monkeypatch.setattr(time, "time", real_time)
    ahead._settle(ahead._acquire_sync(REQUEST, 5), answer(remaining=9), 0.0)
    until(lambda: ahead._courier.own == 0, "the answer was written")
    ahead.close()
    other = deployai.RedisRateLimiter(redis.url, name="ahead", requests_per_minute=10)
    for _ in range(9):
        other._settle(other._acquire_sync(REQUEST, 5), answer(remaining=9), 0.0)
    with pytest.raises(deployai.RateLimitError) as info:  # the minute's eleventh send
        other._acquire_sync(REQUEST, 5)
    other.close()
    assert info.value.retry_after is not None
    assert info.value.retry_after <= 60


def test_a_request_withdrawn_unsent_no_longer_counts_against_requests_per_minute(redis: RedisServer) -> None:
    # A call stopped after its turn came but before it was sent used to count as a send of its minute
    # in every process, since the state in Redis does not say when each request was let through.
    limiter = deployai.RedisRateLimiter(redis.url, name="withdrawn", requests_per_minute=2)
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=5), 0.0)
    limiter._withdraw(limiter._acquire_sync(REQUEST, 5))
    until(lambda: limiter._courier.own == 0, "the withdrawal was written")
    limiter.close()
    other = deployai.RedisRateLimiter(redis.url, name="withdrawn", requests_per_minute=2)
    other._settle(other._acquire_sync(REQUEST, 5), answer(remaining=5), 0.0)  # the minute's second send: at once
    with pytest.raises(deployai.RateLimitError):  # and a third waits for the first to be a minute old
        other._acquire_sync(REQUEST, 5)
    other.close()
    assert limiter._courier.admitted == other._courier.admitted == {}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_childs_first_calls_from_several_threads_all_go(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The child used to restart the limiter at its first use, from whichever thread came first,
    # setting the process id before replacing the Redis thread: another thread could then ask the
    # parent's copy of that thread, which does not run in the child, and wait forever. A slow
    # start (made slow here, off the main thread) widened that gap at will.
    limiter = deployai.RedisRateLimiter(redis.url, name="fork")
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=1000, limit=1000), 0.0)  # its thread runs
    made = _redis_courier.Courier.__init__

    def slow_off_the_main_thread(self: Any, *args: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)
        made(self, *args)

    monkeypatch.setattr(_redis_courier.Courier, "__init__", slow_off_the_main_thread)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the limiter's thread is running
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        went = []
        try:

            def call() -> None:
                limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=1000, limit=1000), 0.0)
                went.append(1)

            threads = [threading.Thread(target=call) for _ in range(4)]
            for thread in threads:
                thread.start()
                time.sleep(0.05)  # the first is inside its start when the others come
            for thread in threads:
                thread.join()
        finally:
            os._exit(0 if len(went) == 4 else 1)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the child's calls hung")
        time.sleep(0.05)
    assert os.waitstatus_to_exitcode(done[1]) == 0
    limiter.close()


def test_a_caller_a_minute_of_sends_behind_waits_its_minute_out_rather_than_being_refused(
    redis: RedisServer,
) -> None:
    # Sends were kept by the second, rounded up: the third caller under requests_per_minute=2 was
    # told 60.x s, longer than the default max_retry_wait of 60 s, and refused at once (in every
    # process sharing the budget), where a `RateLimiter` holds it for the minute.
    limiter = deployai.RedisRateLimiter(redis.url, name="minute", requests_per_minute=2)
    for _ in range(2):
        limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=1000, limit=1000), 0.0)
    until(lambda: limiter._courier.own == 0, "both answers were written")

    class StoppedError(Exception):
        pass

    stop = threading.Event()
    outcome: list[BaseException] = []

    def check(_: object) -> None:
        if stop.is_set():
            raise StoppedError

    def third() -> None:
        try:
            limiter._acquire_sync(REQUEST, 60.0, check, owner=stop)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=third)
    thread.start()
    until(lambda: limiter.waiting == 1 or outcome, "the third caller queued or was refused")
    stop.set()
    limiter._wake_all(stop)
    thread.join(10)
    assert [type(exc) for exc in outcome] == [StoppedError]  # it was waiting, not refused
    limiter.close()


def test_sends_are_kept_as_finely_as_a_small_state_allows() -> None:
    from collections import deque

    spread = deque(1_000.25 + i * 0.1 for i in range(600))  # a minute's worth at 10 a second
    burst = deque(1_000.2501 + i * 0.00001 for i in range(600))  # the same count in 6 ms
    assert len(_redis_state._buckets(spread)) <= 61  # one count per second, as small as ever
    kept = [at for at, _ in _redis_state._buckets(burst)]
    assert kept == [1000.251, 1000.252, 1000.253, 1000.254, 1000.255, 1000.256, 1000.257]  # to the millisecond
    assert sum(count for _, count in _redis_state._buckets(spread)) == 600


def test_a_ticket_given_to_a_task_whose_loop_closed_goes_back(redis: RedisServer) -> None:
    import redis as redis_py

    limiter = deployai.RedisRateLimiter(redis.url, name="closed-loop")
    with redis_py.Redis.from_url(redis.url) as client:
        limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=5), 0.0)
        client.execute_command("CLIENT", "PAUSE", "300", "ALL")  # the next ask is answered after the loop closed
        loop = asyncio.new_event_loop()
        task = loop.create_task(limiter._acquire_async(REQUEST, 5))
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        # Its ask is answered (ticket 2) after the loop closed, and the ticket goes back at once.
        until(lambda: limiter._pacing.tickets == 2 and limiter._courier.own == 0, "the ticket went back")
        limiter.close()
        del task  # never to run again: asyncio logs that it was destroyed pending
        gc.collect()  # its coroutine is closed now, and abandons its place (without a second withdrawal)
        assert (limiter._courier.own, limiter._courier.thread) == (0, None)


def test_a_slow_redis_counts_as_down_and_calls_go_on_without_it(
    redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import redis as redis_py

    monkeypatch.setattr(_redis_courier, "REDIS_RETRY_SECONDS", 0.0)
    limiter = deployai.RedisRateLimiter(redis.url, name="slow", timeout=0.2)
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=50, limit=50), 0.0)
    assert limiter.shared
    with redis_py.Redis.from_url(redis.url) as client, caplog.at_level(logging.INFO, logger="deployai"):
        client.execute_command("CLIENT", "PAUSE", "3000", "ALL")  # Redis answers nobody for 3 s
        started = time.monotonic()
        limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=49, limit=50), 0.0)
        assert time.monotonic() - started < 2.5  # it did not wait for Redis (0.2 s, but a busy machine is slow)
        assert not limiter.shared
        until(lambda: client.ping(), "Redis answers again")
        limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=48, limit=50), 0.0)
        assert limiter.shared
    messages = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "deployai"]
    assert [level for level, _ in messages] == ["WARNING", "INFO"], messages  # one warning per outage
    assert "Redis is unreachable or failing (TimeoutError" in messages[0][1]
    assert "Redis answers again" in messages[1][1]
    limiter.close()


class FlakyRedis:
    """Redis in this process: one key, replaced by compare-and-set as the script does; every call fails while `down`."""

    def __init__(self) -> None:
        self.value = b""
        self.down = False

    def __call__(self, url: str, timeout: float) -> FlakyRedis:  # made as `_redis_courier._Redis` is
        return self

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes, float]:
        if self.down:
            raise ConnectionError("Connection closed by server.")
        if state and self.value.split(b" ", 1)[0] == version:
            self.value = state
            return True, b"", time.time()
        return False, self.value, time.time()

    def close(self) -> None:
        pass


class FarRedis(FlakyRedis):
    """`FlakyRedis` `away` seconds away (one call's each, the last for good); others' writes beat its next `losses`."""

    def __init__(self, losses: int, away: list[float]) -> None:
        super().__init__()
        self.losses = losses
        self.away = away

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes, float]:
        time.sleep(self.away.pop(0) if len(self.away) > 1 else self.away[0])
        if state and self.losses:
            self.losses -= 1
            return False, self.value, time.time()
        return super().call(key, version, state)


class GatedRedis(FlakyRedis):
    """`FlakyRedis` whose calls, while `held`, answer only once `gate` opens: a Redis slow to answer, not down."""

    def __init__(self) -> None:
        super().__init__()
        self.held = False
        self.gate = threading.Event()
        self.calls = 0

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes, float]:
        self.calls += 1
        if self.held:
            self.gate.wait(10)  # on code that waits for Redis for good: answered after all, and the test fails
        return super().call(key, version, state)


@pytest.mark.parametrize("side", ["sync", "async"])
def test_a_call_waits_for_a_slow_redis_no_longer_than_it_may_wait(monkeypatch: pytest.MonkeyPatch, side: str) -> None:
    # A Redis answering a byte at a time (each read inside `timeout`) held calls past their
    # total_timeout and max_retry_wait, for as long as it dripped. Now a call waits for its answer
    # until its deadline, and at least four `timeout`s: it is refused then, nothing sent, and the
    # ticket Redis gives later goes back.
    redis = GatedRedis()
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="slow", timeout=0.05)
    redis.held = True
    with pytest.raises(deployai.RateLimitError, match=r"until Redis \(redis://127\.0\.0\.1:1/0\) answers whether"):
        if side == "sync":
            limiter._acquire_sync(REQUEST, 0.1)
        else:
            asyncio.run(limiter._acquire_async(REQUEST, 0.1))
    redis.gate.set()
    until(lambda: not limiter._courier.asks and limiter._courier.own == 0, "the ticket it was given went back")
    assert limiter.shared
    limiter.close()


def test_the_asks_of_callers_that_gave_up_cost_a_slow_redis_no_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each was still sent, one slow round trip after another, before the ask of a caller that waits.
    redis = GatedRedis()
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="gave-up", timeout=0.01)
    redis.held = True
    for _ in range(4):  # the first ask is in Redis's hands, the next three wait behind it
        with pytest.raises(deployai.RateLimitError, match="until Redis"):
            limiter._acquire_sync(REQUEST, 0.0)
    tickets: list[int] = []
    waiting = threading.Thread(target=lambda: tickets.append(limiter._acquire_sync(REQUEST, 30)), daemon=True)
    waiting.start()
    until(lambda: len(limiter._courier.asks) == 4, "the caller that waits has asked")
    before = redis.calls
    redis.held = False
    redis.gate.set()
    waiting.join(10)
    assert len(tickets) == 1
    # The first ask's call ends, and the ticket it got goes back with the ask of the one that waits.
    assert redis.calls - before <= 2
    limiter._settle(tickets[0], answer(remaining=40, limit=50), 0.0)
    until(lambda: limiter._courier.own == 0, "the answer was written")
    limiter.close()


class LateRedis(FlakyRedis):
    """`FlakyRedis` whose answers, once `late` is set, arrive that many seconds after Redis read its clock."""

    late = 0.0

    def call(self, key: str, version: bytes, state: bytes) -> tuple[bool, bytes, float]:
        answer = super().call(key, version, state)
        time.sleep(self.late)  # the answer on its slow way back, the time in it read before
        return answer


def test_a_late_answer_that_steps_redis_clock_back_holds_no_caller_past_its_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each answer resets the limiter's clock to Redis's, which a late one sets back by its lateness:
    # a caller behind, its deadline on that clock, was held that much past its limit, and let through.
    redis = LateRedis()
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="late", timeout=0.05)
    limiter._withdraw(limiter._acquire_sync(REQUEST, 5))
    until(lambda: not limiter._courier.answers and limiter._courier.own == 0, "the first exchange is done")
    redis.late = 1.0
    first = threading.Thread(target=lambda: limiter._acquire_sync(REQUEST, 5), daemon=True)
    first.start()
    until(lambda: limiter.waiting == 1, "the first caller asks")
    with pytest.raises(deployai.RateLimitError, match="until Redis"):
        # Its turn comes after the first answer, a second late; its own takes two (a read, a write).
        limiter._acquire_sync(REQUEST, 2.5)
    first.join(10)
    limiter.close()


def test_a_timeout_error_redis_answers_with_is_raised_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # On 3.11 and later it is the `TimeoutError` a wait for the ask raises: it read as Redis's silence.
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="raises")

    def failing(answers: object, asking: object) -> int:
        raise TimeoutError("a bug in the courier")

    monkeypatch.setattr(limiter._courier, "_exchange", failing)
    with pytest.raises(TimeoutError, match="a bug in the courier"):
        limiter._acquire_sync(REQUEST, 5)
    with pytest.raises(TimeoutError, match="a bug in the courier"):
        asyncio.run(limiter._acquire_async(REQUEST, 5))
    limiter.close()


@pytest.mark.parametrize("side", ["sync", "async"])
@pytest.mark.parametrize("wait_limit", [0.0, math.inf])
def test_a_call_with_no_time_or_all_the_time_to_wait_hears_back_from_redis(
    redis: RedisServer, side: str, wait_limit: float
) -> None:
    # `max_retry_wait=0` refused every call, Redis given no time to answer; `math.inf` overflowed the wait.
    limiter = deployai.RedisRateLimiter(redis.url, name="bounds")
    if side == "sync":
        ticket = limiter._acquire_sync(REQUEST, wait_limit)
    else:
        ticket = asyncio.run(limiter._acquire_async(REQUEST, wait_limit))
    limiter._settle(ticket, answer(remaining=40, limit=50), 0.0)
    until(lambda: limiter._courier.own == 0, "the answer was written")
    limiter.close()


def test_a_task_cancelled_as_redis_answers_is_cancelled_and_gives_its_ticket_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Up to Python 3.11, `asyncio.wait_for` returned the ticket of an ask answered in the same step
    # of the loop as the cancel: the cancelled call went on, to send its request.
    redis = GatedRedis()
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="cancel")
    ask = limiter._courier.ask

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def ask_then_cancel(cost: int) -> Any:
            asked = ask(cost)
            # Run first when Redis answers: the cancel lands in the step of the loop the answer does.
            asked.add_done_callback(lambda _: loop.call_soon_threadsafe(task.cancel))
            return asked

        monkeypatch.setattr(limiter._courier, "ask", ask_then_cancel)
        await limiter._acquire_async(REQUEST, 5)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    until(lambda: limiter._courier.own == 0, "the ticket went back")
    limiter.close()


def _pauses_after_lost_writes(monkeypatch: pytest.MonkeyPatch, redis: FarRedis) -> list[float]:
    """The longest pause the courier may take after each of `redis`'s lost writes, for one answer written."""
    pauses: list[float] = []
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    monkeypatch.setattr(
        _redis_courier, "time", types.SimpleNamespace(time=time.time, monotonic=time.monotonic, sleep=pauses.append)
    )
    monkeypatch.setattr(_redis_courier, "random", types.SimpleNamespace(random=lambda: 1.0))  # the longest
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="far")
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=50, limit=50), 0.0)
    until(lambda: limiter._courier.own == 0, "the answer was written")
    limiter.close()
    assert limiter.shared
    return pauses


def test_the_pause_after_a_lost_write_is_measured_in_round_trips_to_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pauses of a millisecond or two kept busy processes 20 ms from Redis colliding: some lost 64
    # writes in a row, gave up sharing, and paced alone, overrunning the key together.
    pauses = _pauses_after_lost_writes(monkeypatch, FarRedis(losses=6, away=[0.02]))
    assert len(pauses) == 6
    assert pauses[0] >= 0.01  # half a round trip, where it was a millisecond
    assert all(later >= 1.9 * earlier for earlier, later in itertools.pairwise(pauses[:5]))  # doubling
    assert max(pauses) <= 16 * 0.1  # at most 16 round trips (each well under 0.1 s here)


def test_one_slow_round_trip_to_redis_makes_no_long_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    # Measured by the last round trip alone, one Redis call that stalled 0.3 s made pauses of
    # seconds, in which no call of the process went: calls outlasted their `total_timeout`.
    pauses = _pauses_after_lost_writes(monkeypatch, FarRedis(losses=6, away=[0.001, 0.001, 0.001, 0.3, 0.001]))
    assert len(pauses) == 6
    assert max(pauses) <= 0.05  # as near Redis: a stall says nothing of how far it is


@pytest.mark.parametrize(
    ("hint", "strikes"), [({"retry-after": "1"}, 0), ({}, 1)], ids=["asking for a wait", "with no hint"]
)
def test_the_429s_of_requests_sent_while_redis_was_down_count_as_one_burst_once_it_is_back(
    monkeypatch: pytest.MonkeyPatch, hint: dict[str, str], strikes: int
) -> None:
    # Paced in the process alone, they took tickets past the shared count, which went on from where
    # it was. Each of their 429s then read as sent after the strike before it: 4 processes cut off
    # from Redis for 2 s ended at 10 strikes, sending one request every 10 s for minutes.
    redis = FlakyRedis()
    monkeypatch.setattr(_redis_courier, "_Redis", redis)
    monkeypatch.setattr(_redis_courier, "REDIS_RETRY_SECONDS", 0.0)
    limiter = deployai.RedisRateLimiter("redis://127.0.0.1:1/0", name="cut-off")
    limiter._settle(limiter._acquire_sync(REQUEST, 5), answer(remaining=50, limit=50), 0.0)
    until(lambda: limiter._courier.own == 0, "the answer was written")
    redis.down = True
    tickets = [limiter._acquire_sync(REQUEST, 5) for _ in range(5)]
    assert not limiter.shared
    redis.down = False
    for ticket in tickets:
        limiter._settle(ticket, httpx.Response(429, headers=hint, request=REQUEST), 0.0)
    until(lambda: limiter.shared and limiter._pacing.in_flight == 0, "the refusals were written")
    limiter.close()
    assert limiter._pacing.strikes == strikes  # as the same 429s make in one process

"""RateLimiter through the clients: order, cancellation, refusing long waits, 429s, streams, sharing, and the proofs.

Most tests freeze the limiter's clock: a waiting caller then moves only when an answer arrives, so the
order of events is fixed by the test, never by timing. The proofs at the end run against the
emulator's loopback server on the real clock with a small window, and count 429s at the server.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import datetime
import email.utils
import functools
import gc
import json
import pickle
import re
import signal
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import deployai
from deployai import _http, _limiter
from deployai.testing import Emulator, EmulatorServer, VirtualClock
from tests.conftest import API_KEY, ClientFactory, completion_json, user
from tests.token_gateway import TokenGateway

T = 1_700_000_000.0
MODEL = "openai/gpt-4o"


def window(remaining: int, reset_in: float = 100.0, limit: int = 20) -> dict[str, str]:
    """DeployAI's headers: `remaining` left of `limit`, the window resetting `reset_in` s from now (whole seconds)."""
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(round(time.time() + reset_in)),
    }


def frozen(limiter: deployai.RateLimiter, at: float = T) -> deployai.RateLimiter:
    """Stop the limiter's steady clock: what it waits for then ends only when an answer arrives."""
    limiter._clock = lambda: at
    return limiter


def text_of(request: httpx.Request) -> str:
    return str(json.loads(request.content)["messages"][0]["content"])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for another thread to reach a state (not for time to pass): fail after 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


def a_thread_waits(limiter: deployai.RateLimiter) -> bool:
    """Whether a blocked thread holds a place in the limiter's queue (a task's place is another kind)."""
    return any(isinstance(waiter, _limiter._ThreadWaiter) for waiter in list(limiter._queue))


def _held_first_call(
    limiter: deployai.RateLimiter, remaining: int
) -> tuple[deployai.DeployAI, list[str], threading.Event]:
    """A blocking client whose call "first" is answered only once the gate is set; each answer leaves `remaining`.

    Returns the client, the texts of the requests it sent, in order, and the gate.
    """
    gate = threading.Event()
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(text_of(request))
        if seen[-1] == "first":
            gate.wait(10)
        return httpx.Response(200, json=completion_json(), headers=window(remaining=remaining))

    client = deployai.DeployAI(
        api_key=API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler)), rate_limiter=limiter
    )
    return client, seen, gate


def test_callers_are_let_through_in_the_order_they_came_threads() -> None:
    limiter = frozen(deployai.RateLimiter())
    # One left each time: exactly one more caller may go per answer, so the sends show the order.
    client, seen, gate = _held_first_call(limiter, remaining=1)
    threads = [threading.Thread(target=client.chat.completions.create, kwargs={"model": MODEL, "messages": user(t)})
               for t in ["first", "1", "2", "3", "4", "5"]]  # fmt: skip
    threads[0].start()
    wait_until(lambda: seen == ["first"], "the first request is in flight")
    for n, thread in enumerate(threads[1:], start=1):
        thread.start()
        wait_until(lambda n=n: limiter.waiting == n, f"{n} callers wait")  # type: ignore[misc]
    gate.set()
    for thread in threads:
        thread.join(10)
    assert seen == ["first", "1", "2", "3", "4", "5"]
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs SIGALRM")
def test_a_thread_interrupted_by_ctrl_c_while_it_waits_its_turn_leaves_the_queue_at_once() -> None:
    limiter = frozen(deployai.RateLimiter())
    client, seen, gate = _held_first_call(limiter, remaining=5)
    first = threading.Thread(target=client.chat.completions.create, kwargs={"model": MODEL, "messages": user("first")})
    first.start()
    wait_until(lambda: seen == ["first"], "the first request is in flight")

    def ctrl_c_once_queued(signum: int, frame: types.FrameType | None) -> None:
        if limiter.waiting and frame is not None and frame.f_code.co_name == "wait":  # blocked in its wait
            raise KeyboardInterrupt
        signal.setitimer(signal.ITIMER_REAL, 0.01)  # not there yet: look again

    before = signal.signal(signal.SIGALRM, ctrl_c_once_queued)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.01)
        # Until the first answer comes, the limiter holds this call for good: only Ctrl+C ends its wait.
        with pytest.raises(KeyboardInterrupt) as interrupted:
            client.chat.completions.create(model=MODEL, messages=user("interrupted"))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    # Its traceback still holds the frames it waited in: leaving the queue must not wait for them to go.
    assert interrupted.value.__traceback__ is not None
    assert limiter.waiting == 0
    gate.set()
    first.join(10)
    client.chat.completions.create(model=MODEL, messages=user("next"))
    assert seen == ["first", "next"]
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


async def _queue_behind_a_held_first_call(
    limiter: deployai.RateLimiter, texts: list[str]
) -> tuple[list[str], asyncio.Event, list[asyncio.Task[Any]], deployai.AsyncDeployAI]:
    gate = asyncio.Event()
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(text_of(request))
        if seen[-1] == "first":
            await gate.wait()
        return httpx.Response(200, json=completion_json(), headers=window(remaining=1))

    client = deployai.AsyncDeployAI(
        api_key=API_KEY, http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), rate_limiter=limiter
    )
    tasks = [asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=user("first")))]
    while seen != ["first"]:
        await asyncio.sleep(0)
    for n, text in enumerate(texts, start=1):
        tasks.append(asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=user(text))))
        while limiter.waiting < n:
            await asyncio.sleep(0)
    return seen, gate, tasks, client


def test_callers_are_let_through_in_the_order_they_came_tasks() -> None:
    limiter = frozen(deployai.RateLimiter())

    async def main() -> list[str]:
        seen, gate, tasks, _ = await _queue_behind_a_held_first_call(limiter, ["1", "2", "3", "4", "5"])
        gate.set()
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(main()) == ["first", "1", "2", "3", "4", "5"]
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


def test_cancelled_waiters_leave_the_queue_and_the_others_keep_their_order() -> None:
    limiter = frozen(deployai.RateLimiter())

    async def main() -> list[str]:
        seen, gate, tasks, _ = await _queue_behind_a_held_first_call(limiter, ["1", "2", "3", "4", "5"])
        tasks[1].cancel()  # the head of the queue
        tasks[3].cancel()  # one in the middle
        await asyncio.gather(tasks[1], tasks[3], return_exceptions=True)
        assert limiter.waiting == 3
        gate.set()
        await asyncio.gather(*[t for i, t in enumerate(tasks) if i not in (1, 3)])
        return seen

    assert asyncio.run(main()) == ["first", "2", "4", "5"]
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


def test_a_call_cancelled_in_flight_gives_its_slot_back() -> None:
    limiter = frozen(deployai.RateLimiter())

    async def main() -> None:
        _, _, tasks, _ = await _queue_behind_a_held_first_call(limiter, [])
        assert limiter.in_flight == 1
        tasks[0].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    assert limiter.in_flight == 0


def handler_with(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers with `responses` in turn (the last one again after that), recording requests."""
    sent: list[httpx.Request] = []
    queue = collections.deque(responses)

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return httpx.MockTransport(handle), sent


def ok(headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json=completion_json(), headers=headers)


@pytest.mark.parametrize(
    ("options", "allowed"),
    [({}, 60.0), ({"max_retry_wait": 90.0, "total_timeout": 5.0}, 5.0)],
    ids=["max_retry_wait", "total_timeout"],
)
def test_a_wait_longer_than_the_caller_may_wait_raises_at_once_and_sends_nothing(
    make_client: ClientFactory, options: dict[str, Any], allowed: float
) -> None:
    limiter = frozen(deployai.RateLimiter())
    transport, sent = handler_with(ok(window(remaining=0, reset_in=80)))
    client = make_client(transport=transport, rate_limiter=limiter, **options)
    client.chat.completions.create(model=MODEL, messages=user())
    started = time.monotonic()
    with pytest.raises(deployai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user())
    assert time.monotonic() - started < 1.0  # at once, not after waiting
    assert len(sent) == 1
    error = caught.value
    assert error.retry_after == pytest.approx(80.0, abs=1.0)
    assert error.rate_limit.remaining == 0
    assert error.rate_limit.reset_at is not None
    assert f"{allowed:.1f} s" in str(error)
    assert "Nothing was sent" in str(error)
    assert error.elapsed is None  # no attempt: unlike an answer's error, it took no time to come
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


def test_anthropics_headers_pace_the_limiter(make_client: ClientFactory) -> None:
    # Pointed at Anthropic's OpenAI-compatible endpoint, a spent window went unseen: every call was sent.
    reset = datetime.datetime.fromtimestamp(round(time.time() + 80), tz=datetime.timezone.utc)
    spent = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
    }
    limiter = frozen(deployai.RateLimiter())
    transport, sent = handler_with(ok(spent))
    client = make_client(transport=transport, rate_limiter=limiter)
    client.chat.completions.create(model=MODEL, messages=user())
    with pytest.raises(deployai.RateLimitError, match="Nothing was sent") as caught:
        client.chat.completions.create(model=MODEL, messages=user())
    assert len(sent) == 1
    assert caught.value.retry_after == pytest.approx(80.0, abs=1.0)
    assert caught.value.rate_limit.limit == 50


def _ctrl_c(*args: object) -> Any:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    ("module", "name"),
    [(_http, "_turn_taken"), (_http, "_stream_turn"), (_http, "_attempt_deadline"), (_limiter, "read_window")],
    ids=["as-its-turn-is-given", "after-its-turn", "before-its-send", "reading-its-answer"],
)
def test_a_ctrl_c_between_a_calls_turn_and_its_settling_leaves_nothing_in_flight(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch, module: Any, name: str
) -> None:
    # A turn kept in flight for good lowers every later window's budget by one, for the limiter's life.
    limiter = deployai.RateLimiter()
    transport, _ = handler_with(ok(window(remaining=10)))
    client = make_client(transport=transport, rate_limiter=limiter)
    with monkeypatch.context() as patched:
        patched.setattr(module, name, _ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            client.chat.completions.create(model=MODEL, messages=user())
    assert (limiter.waiting, limiter.in_flight) == (0, 0)
    assert client.chat.completions.create(model=MODEL, messages=user()).choices
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


def spent_on_a_server_behind_by(ours_ahead_by: float) -> dict[str, str]:
    """A spent window of 20 that resets 30 s from the server's now, with its `Date`; our clock `ours_ahead_by` ahead."""
    server_now = time.time() - ours_ahead_by
    return {
        "date": email.utils.formatdate(server_now, usegmt=True),
        "x-ratelimit-limit": "20",
        "x-ratelimit-remaining": "0",
        "x-ratelimit-reset": str(round(server_now + 30)),
    }


@pytest.mark.parametrize("ours_ahead_by", [120.0, -120.0], ids=["our-clock-ahead", "our-clock-behind"])
def test_a_reset_is_read_on_the_servers_clock_when_its_date_shows_ours_differs(
    make_client: ClientFactory, ours_ahead_by: float
) -> None:
    # The window resets 30 s from the server's now. Read on our clock, it would have reset 90 s ago
    # (ours ahead: the next call goes, into a 429) or reset in 150 s (ours behind: a long wait).
    spent = spent_on_a_server_behind_by(ours_ahead_by)
    limiter = frozen(deployai.RateLimiter())
    transport, sent = handler_with(ok(spent))
    client = make_client(transport=transport, rate_limiter=limiter, max_retry_wait=10.0)
    client.chat.completions.create(model=MODEL, messages=user())
    with pytest.raises(deployai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user())
    assert len(sent) == 1
    assert caught.value.retry_after == pytest.approx(30.0, abs=1.5)


@pytest.mark.parametrize("ours_ahead_by", [120.0, -120.0], ids=["our-clock-ahead", "our-clock-behind"])
def test_a_results_and_an_errors_rate_limit_reset_on_our_clock_when_the_date_shows_ours_differs(
    make_client: ClientFactory, ours_ahead_by: float
) -> None:
    # Read against our clock as it is, the window resetting 30 s from the server's now had reset
    # 90 s ago (ours ahead: `seconds_until_reset()` 0) or reset in 150 s (ours behind).
    headers = {
        **spent_on_a_server_behind_by(ours_ahead_by),
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "10s",  # a duration counts from the answer, on either clock
    }
    transport, _ = handler_with(ok(headers), httpx.Response(429, headers=headers))
    client = make_client(transport=transport, max_retries=0)
    completion = client.chat.completions.create(model=MODEL, messages=user())
    with pytest.raises(deployai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user())
    for window in (completion.rate_limit, caught.value.rate_limit):
        assert window.seconds_until_reset() == pytest.approx(30.0, abs=1.5)
        assert window.reset_at is not None
        assert (window.reset_at - datetime.datetime.now(datetime.timezone.utc)).total_seconds() == pytest.approx(
            30.0, abs=1.5
        )
        assert window.seconds_until_tokens_reset() == pytest.approx(10.0, abs=1.5)


def test_a_429_asking_until_a_date_is_read_on_the_servers_clock(make_client: ClientFactory) -> None:
    server_now = time.time() - 120.0  # our clock runs two minutes ahead: the date would have passed
    date, later = (email.utils.formatdate(t, usegmt=True) for t in (server_now, server_now + 5))
    transport, _ = handler_with(httpx.Response(429, headers={"date": date, "retry-after": later}))
    client = make_client(transport=transport, max_retries=0)
    with pytest.raises(deployai.RateLimitError) as caught:
        client.chat.completions.create(model=MODEL, messages=user())
    assert caught.value.retry_after == pytest.approx(5.0, abs=1.0)


@pytest.mark.parametrize(
    "headers", [{}, {"retry-after": "0"}, {"retry-after-ms": "0"}], ids=["no-headers", "retry-after-0", "ms-0"]
)
def test_a_429_with_no_usable_hint_holds_every_caller_back_and_slows_the_pace(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    # A `retry-after` of 0 was believed: 50 callers with `max_retries=8` sent 450 requests in a
    # second to a gateway that kept refusing, and all failed.
    limiter = deployai.RateLimiter()
    transport, sent = handler_with(httpx.Response(429, json={"error": {"message": "slow down"}}, headers=headers), ok())
    client = make_client(transport=transport, rate_limiter=limiter, max_retries=3)
    started = time.monotonic()
    client.chat.completions.create(model=MODEL, messages=user())
    assert time.monotonic() - started >= 0.5  # the limiter's first backoff step held the retry back
    assert len(sent) == 2
    assert limiter._pacing.spacing > 0  # and the pace slowed down (its recovery: tests/test_pacing.py)


def test_a_429_asking_for_a_wait_again_after_that_wait_also_backs_off(make_client: ClientFactory) -> None:
    # Held to alone, "retry in 1 ms" sent the retry back at once each time, whatever the gateway did.
    limiter = deployai.RateLimiter()
    refused = httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after-ms": "1"})
    transport, sent = handler_with(refused, refused, ok())
    client = make_client(transport=transport, rate_limiter=limiter, max_retries=3)
    started = time.monotonic()
    client.chat.completions.create(model=MODEL, messages=user())
    assert time.monotonic() - started >= 0.5  # the second 429 added the first backoff step to its 1 ms
    assert len(sent) == 3
    assert limiter._pacing.spacing > 0


def test_a_429_reported_in_a_200_teaches_the_limiter_as_a_429_does(
    make_client: ClientFactory, sleeps: list[float]
) -> None:
    # A gateway that answers a refusal with a 200 and the error in the body: the pace slows as for a
    # 429 status; counted as a success, each one would undo the backoff of a real 429.
    limiter = deployai.RateLimiter()
    refused = httpx.Response(200, json={"error": {"message": "slow down", "code": 429}})
    transport, sent = handler_with(refused, ok())
    client = make_client(transport=transport, rate_limiter=limiter, max_retries=3)
    client.chat.completions.create(model=MODEL, messages=user())
    assert len(sent) == 2
    assert limiter._pacing.spacing > 0


@pytest.mark.parametrize(
    ("error", "slowed"),
    [({"code": 429, "message": "slow down"}, True), ({"code": 503, "message": "busy"}, False)],
    ids=["429", "503"],
)
def test_a_429_first_in_a_stream_teaches_the_limiter_as_a_429_does(
    make_client: ClientFactory, sleeps: list[float], error: dict[str, object], slowed: bool
) -> None:
    # The limiter settles a stream at its headers, a 200; the refusal comes after them, as the first
    # event. Counted as a success alone, it would undo the backoff of a real 429.
    limiter = deployai.RateLimiter()
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}  # fmt: skip
    sse = {"content-type": "text/event-stream"}
    refused = httpx.Response(200, content=f"data: {json.dumps({'error': error})}\n\n".encode(), headers=sse)
    answer = httpx.Response(200, content=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode(), headers=sse)
    transport, sent = handler_with(refused, answer)
    client = make_client(transport=transport, rate_limiter=limiter, max_retries=3)
    with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
        assert [c.choices[0].delta.content for c in stream] == ["hi"]
    assert len(sent) == 2
    assert (limiter._pacing.spacing > 0) is slowed
    assert limiter.in_flight == 0


def test_a_429_first_in_a_stream_holds_every_caller_for_the_wait_its_headers_ask(
    make_client: ClientFactory, sleeps: list[float]
) -> None:
    # Its `retry-after` went unread: the limiter took the refusal for one with no usable hint, slowed
    # the pace and held callers for its own backoff (0.5 s) instead of the 2 s asked for.
    limiter = deployai.RateLimiter(clock=VirtualClock())
    sse = {"content-type": "text/event-stream", "retry-after": "2"}
    refused = httpx.Response(200, content=b'data: {"error": {"code": 429, "message": "slow down"}}\n\n', headers=sse)
    transport, _ = handler_with(refused)
    client = make_client(transport=transport, rate_limiter=limiter, max_retries=0)
    with pytest.raises(deployai.RateLimitError):  # noqa: SIM117 - the stream may raise as it is made
        with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
            list(stream)
    pacing = limiter._pacing
    assert (pacing.strikes, pacing.spacing) == (0, 0.0)
    assert pacing.delay(pacing.last_sent) == pytest.approx(2.0, abs=0.1)


def test_429s_first_in_streams_grow_the_backoff_as_429_statuses_do(
    make_client: ClientFactory, sleeps: list[float]
) -> None:
    # Each stream's headers (a 200) count as a success, which clears the strikes before its refusal
    # is read: without undoing that, the backoff would never grow past its first step.
    def strikes_after(refusal: httpx.Response) -> tuple[int, float]:
        limiter = deployai.RateLimiter(clock=VirtualClock())
        transport, sent = handler_with(refusal)
        client = make_client(transport=transport, rate_limiter=limiter, max_retries=3)
        with pytest.raises(deployai.RateLimitError):  # noqa: SIM117 - the stream may raise as it is made
            with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
                list(stream)
        assert len(sent) == 4
        return limiter._pacing.strikes, limiter._pacing.spacing

    event = b'data: {"error": {"code": 429, "message": "slow down"}}\n\n'
    streamed = strikes_after(httpx.Response(200, content=event, headers={"content-type": "text/event-stream"}))
    status = strikes_after(httpx.Response(429, json={"error": {"message": "slow down"}}))
    assert streamed == status
    assert status[0] == 4


def test_a_stream_gives_its_slot_back_at_its_headers(make_client: ClientFactory) -> None:
    limiter = deployai.RateLimiter()
    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
             "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}  # fmt: skip
    body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    transport, _ = handler_with(httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))
    client = make_client(transport=transport, rate_limiter=limiter)
    with client.chat.completions.create(model=MODEL, messages=user(), stream=True) as stream:
        assert limiter.in_flight == 0
        assert [c.choices[0].delta.content for c in stream] == ["hi"]


def test_a_request_that_got_no_answer_is_counted_as_spent(make_client: ClientFactory) -> None:
    limiter = frozen(deployai.RateLimiter())
    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 2:
            raise httpx.ConnectError("refused")
        return ok(window(remaining=5))

    client = make_client(transport=httpx.MockTransport(handle), rate_limiter=limiter, max_retries=0)
    client.chat.completions.create(model=MODEL, messages=user())
    with pytest.raises(deployai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=user())
    assert (limiter._pacing.remaining, limiter.in_flight) == (4, 0)


def test_with_options_copies_share_or_replace_the_limiter(make_client: ClientFactory) -> None:
    limiter, other = deployai.RateLimiter(), deployai.RateLimiter()
    client = make_client(rate_limiter=limiter)
    assert client.rate_limiter is limiter
    assert client.with_options(timeout=3).rate_limiter is limiter
    assert client.with_options(rate_limiter=other).rate_limiter is other
    assert client.with_options(rate_limiter=None).rate_limiter is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "60"])
def test_requests_per_minute_must_be_a_whole_number_of_at_least_one(bad: Any) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="requests_per_minute"):
        deployai.RateLimiter(requests_per_minute=bad)


def test_rate_limiter_must_be_a_rate_limiter(make_client: ClientFactory) -> None:
    with pytest.raises(deployai.InvalidParameterError, match="rate_limiter"):
        make_client(rate_limiter=60)


def test_a_limiter_pickles_with_its_settings_and_starts_afresh_elsewhere() -> None:
    limiter = frozen(deployai.RateLimiter(requests_per_minute=90))
    limiter._pacing.admit(T)
    blob = pickle.dumps(limiter)
    assert pickle.loads(blob) is limiter  # in its own process, a copy is the limiter itself
    del limiter
    gc.collect()  # as in another process, where it does not exist yet
    copy = pickle.loads(blob)
    assert copy.requests_per_minute == 90
    assert copy.in_flight == 0
    assert repr(copy) == "RateLimiter(requests_per_minute=90, limit=None, remaining=None, in_flight=0, waiting=0)"


def test_copies_unpickled_in_one_process_pace_as_one_limiter() -> None:
    # A client sent to a process pool with each task used to bring a limiter of its own each time:
    # tasks run by the threads of one worker then paced separately, and together overran the key.
    first, second = deployai.RateLimiter(), deployai.RateLimiter()
    tasks = [pickle.dumps(deployai.DeployAI(api_key=API_KEY, rate_limiter=first)) for _ in range(3)]
    other = pickle.dumps(deployai.DeployAI(api_key=API_KEY, rate_limiter=second))
    del first, second
    gc.collect()  # as in the worker, where neither exists yet
    limiters = [pickle.loads(task).rate_limiter for task in tasks]
    assert limiters[0] is limiters[1] is limiters[2]
    assert pickle.loads(other).rate_limiter is not limiters[0]  # another limiter (another key) stays another


def test_a_limiter_unpickled_in_a_worker_outlives_the_tasks_that_brought_it_within_a_bound() -> None:
    # Each task of a process pool brings a copy and drops it when it ends: the next task's copy was
    # a new limiter once the collector had run, its sends and all it learned forgotten.
    limiter = deployai.RateLimiter(requests_per_minute=2)
    task = pickle.dumps(deployai.DeployAI(api_key=API_KEY, rate_limiter=limiter))
    del limiter
    gc.collect()  # as in the worker, where it does not exist yet
    pickle.loads(task).rate_limiter._pacing.admit(T)  # the first task's send
    gc.collect()  # between tasks
    assert pickle.loads(task).rate_limiter.in_flight == 1  # the next task's copy is that limiter
    others = [pickle.dumps(deployai.RateLimiter()) for _ in range(_limiter._KEPT_COPIES)]
    gc.collect()  # as in the worker: the others are made there from their pickles
    for other in others:
        pickle.loads(other)
    gc.collect()
    assert pickle.loads(task).rate_limiter.in_flight == 0  # kept no longer: a worker holds a bounded number


def test_a_limiter_a_task_held_while_others_were_kept_in_its_place_is_kept_again_when_it_comes_back() -> None:
    limiter = deployai.RateLimiter()
    task = pickle.dumps(limiter)
    del limiter
    gc.collect()  # as in the worker
    held = pickle.loads(task)  # a long task's copy
    held._pacing.admit(T)
    others = [pickle.dumps(deployai.RateLimiter()) for _ in range(_limiter._KEPT_COPIES)]
    gc.collect()
    for other in others:
        pickle.loads(other)  # the kept ones, without it
    assert pickle.loads(task) is held  # the next task's copy, while the long one still holds it
    del held
    gc.collect()  # both tasks ended
    assert pickle.loads(task).in_flight == 1  # it was kept again when the second copy came


# --- the proofs: real sockets, the real clock, a small window, 429s counted at the server -------------


class CountingEmulator(Emulator):
    """The emulator, counting the statuses it answered with."""

    @property
    def status_counts(self) -> collections.Counter[int]:
        """How many exchanges ended with each status."""
        return collections.Counter(self.statuses)


@pytest.fixture
def small_window() -> Iterator[Callable[[], EmulatorServer]]:
    """Emulator servers with a window of 20 requests per second; each one made is stopped after the test."""
    servers: list[EmulatorServer] = []

    def make() -> EmulatorServer:
        server = EmulatorServer(CountingEmulator(rate_limit=20, window_seconds=1)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def statuses(server: EmulatorServer) -> collections.Counter[int]:
    emulator = server.emulator
    assert isinstance(emulator, CountingEmulator)
    return emulator.status_counts


async def from_tasks(server: EmulatorServer, calls: int, tasks: int, **options: Any) -> list[Any]:
    """`calls` chat calls from `tasks` concurrent tasks on one AsyncDeployAI; the results or errors."""
    pending = iter(range(calls))
    results: list[Any] = []
    async with server.async_client(**options) as client:

        async def worker() -> None:
            for n in pending:
                try:
                    results.append(await client.chat.completions.create(model=MODEL, messages=user(str(n))))
                except deployai.DeployAIError as error:
                    results.append(error)

        await asyncio.gather(*[worker() for _ in range(tasks)])
    return results


def from_threads(server: EmulatorServer, calls: int, threads: int, **options: Any) -> list[Any]:
    """`calls` chat calls from `threads` threads on one DeployAI (through create_many); the results or errors."""
    with server.client(**options) as client:
        batch = [{"model": MODEL, "messages": user(str(n))} for n in range(calls)]
        return client.chat.completions.create_many(batch, concurrency=threads)


def test_proof_300_calls_from_50_tasks_and_300_from_16_threads_meet_no_429() -> None:
    # Both runs at once, each with its own server and limiter, learning the window from headers alone.
    # A window of 40 a second: 300 calls span at least 7 windows, each one of them exhausted.
    with (
        EmulatorServer(CountingEmulator(rate_limit=40, window_seconds=1)) as for_tasks,
        EmulatorServer(CountingEmulator(rate_limit=40, window_seconds=1)) as for_threads,
    ):
        task_results: list[Any] = []
        runner = threading.Thread(
            target=lambda: task_results.extend(
                asyncio.run(from_tasks(for_tasks, 300, 50, rate_limiter=deployai.RateLimiter(), max_retries=0))
            )
        )
        runner.start()
        thread_results = from_threads(for_threads, 300, 16, rate_limiter=deployai.RateLimiter(), max_retries=0)
        runner.join()
        for server, results in ((for_tasks, task_results), (for_threads, thread_results)):
            assert len(results) == 300
            assert all(isinstance(r, deployai.types.ChatCompletion) for r in results), collections.Counter(
                type(r).__name__ for r in results
            )
            assert statuses(server) == {200: 300}


def test_without_a_limiter_the_same_load_meets_429s(small_window: Callable[[], EmulatorServer]) -> None:
    for_tasks, for_threads = small_window(), small_window()
    task_results = asyncio.run(from_tasks(for_tasks, 60, 50, max_retries=0))
    thread_results = from_threads(for_threads, 60, 16, max_retries=0)
    for server, results in ((for_tasks, task_results), (for_threads, thread_results)):
        assert statuses(server)[429] > 0
        assert any(isinstance(r, deployai.RateLimitError) for r in results)


def test_one_limiter_paces_a_sync_and_an_async_client_together(small_window: Callable[[], EmulatorServer]) -> None:
    server = small_window()
    limiter = deployai.RateLimiter()
    task_results: list[Any] = []
    runner = threading.Thread(
        target=lambda: task_results.extend(asyncio.run(from_tasks(server, 50, 25, rate_limiter=limiter, max_retries=0)))
    )
    runner.start()
    thread_results = from_threads(server, 50, 8, rate_limiter=limiter, max_retries=0)
    runner.join()
    assert all(isinstance(r, deployai.types.ChatCompletion) for r in [*task_results, *thread_results])
    assert statuses(server) == {200: 100}
    assert (limiter.waiting, limiter.in_flight) == (0, 0)


def test_a_task_waiting_on_a_closed_event_loop_does_not_hold_the_others_back() -> None:
    from deployai._limiter import _TaskWaiter

    limiter = deployai.RateLimiter()
    transport, sent = handler_with(ok(window(remaining=10)))
    client = deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport), rate_limiter=limiter)
    client.chat.completions.create(model=MODEL, messages=user())
    gone = asyncio.new_event_loop()
    gone.close()
    limiter._queue.append(_TaskWaiter(gone))  # a task whose loop was closed while it waited its turn
    client.chat.completions.create(model=MODEL, messages=user())
    assert len(sent) == 2
    assert limiter.waiting == 0


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (429, {"retry-after": "99999999999"}),
        (503, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "253402300000"}),
        (429, {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "999999h"}),
    ],
    ids=["retry-after", "reset", "token-reset"],
)
def test_a_wait_or_reset_further_ahead_than_a_day_is_not_learnt(status: int, headers: dict[str, str]) -> None:
    # One glitched or hostile answer used to make the limiter refuse every later call for years,
    # with nothing ever sent again to correct it. The caller of that answer still gets its error.
    emulator = Emulator(rate_limit=None)
    client = emulator.client(rate_limiter=deployai.RateLimiter(), max_retries=0)
    assert client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices
    emulator.fail_next(status, headers=headers)
    with pytest.raises(deployai.APIStatusError):
        client.chat.completions.create(model="openai/gpt-4o", messages=user())
    assert client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices
    assert emulator.statuses == [200, status, 200]


@pytest.mark.parametrize("kind", ["sync", "async", "threads at once", "tasks at once"])
def test_on_the_emulators_virtual_clock_a_held_call_moves_the_clock_instead_of_waiting(kind: str) -> None:
    # Five calls against a window of two: the limiter holds the third and the fifth for the window to
    # reset, on the test's clock, and the emulator never refuses one. Made at once, the calls queued
    # behind the first held one moved the clock to their own deadlines while they waited for their
    # turn, and were refused as held too long.
    clock = VirtualClock()
    emulator = Emulator(clock=clock, rate_limit=2, window_seconds=60.0)
    limiter = deployai.RateLimiter(clock=clock)
    if kind.startswith(("sync", "threads")):
        with emulator.client(rate_limiter=limiter, max_retry_wait=130) as client:
            call = functools.partial(client.chat.completions.create, model="openai/gpt-4o", messages=user())
            if kind == "sync":
                for _ in range(5):
                    call()
            else:
                with ThreadPoolExecutor(5) as pool:
                    assert all(answer.choices for answer in pool.map(lambda _: call(), range(5)))
    else:

        async def main() -> None:
            async with emulator.async_client(rate_limiter=limiter, max_retry_wait=130) as client:
                call = functools.partial(client.chat.completions.create, model="openai/gpt-4o", messages=user())
                if kind == "async":
                    for _ in range(5):
                        await call()
                else:
                    await asyncio.gather(*(call() for _ in range(5)))

        asyncio.run(main())
    assert emulator.statuses == [200] * 5
    assert 120.0 <= clock.waited < 125.0  # two windows' resets, and no more


def test_on_the_emulators_virtual_clock_tasks_started_at_once_are_held_and_refused_as_in_real_time() -> None:
    # Five calls at once against a window of two, each allowed to wait one window: the fifth would
    # wait two, and is refused. The first one held moved the clock before the others had reached the
    # limiter: they started a window late, and all five went through, waiting twice in all.
    clock = VirtualClock()
    emulator = Emulator(clock=clock, rate_limit=2, window_seconds=60.0)

    async def main() -> list[str]:
        async with emulator.async_client(rate_limiter=deployai.RateLimiter(clock=clock), max_retry_wait=60) as client:
            calls = (client.chat.completions.create(model="openai/gpt-4o", messages=user()) for _ in range(5))
            results = await asyncio.gather(*calls, return_exceptions=True)
            return [type(result).__name__ for result in results]

    assert sorted(asyncio.run(main())) == ["ChatCompletion"] * 4 + ["RateLimitError"]
    assert emulator.statuses == [200] * 4  # the limiter's refusal sent nothing
    assert clock.waited == 60.0


def test_on_the_emulators_virtual_clock_a_window_that_starts_off_a_whole_second_holds_no_call_too_long() -> None:
    # Its reset, sent in whole seconds, was rounded up past the window's end: the limiter's hold was
    # then a window and a fraction, longer than `max_retry_wait`, and the third call was refused.
    clock = VirtualClock()
    clock.advance(0.5)  # a retry's jitter, a token latency
    emulator = Emulator(clock=clock, rate_limit=2, window_seconds=60.0)
    with emulator.client(rate_limiter=deployai.RateLimiter(clock=clock), max_retry_wait=60) as client:
        for _ in range(5):
            client.chat.completions.create(model="openai/gpt-4o", messages=user())
    assert emulator.statuses == [200] * 5
    assert clock.waited == 119.5  # to the first window's end, then a whole window


def test_on_a_virtual_clock_a_caller_behind_a_task_of_a_closed_loop_is_not_held_forever() -> None:
    # Callers behind the head wait for their turn without moving the test's clock. A head whose event
    # loop was closed under it never takes its turn, nor leaves: it is dropped when a caller looks.
    clock = VirtualClock()
    emulator = Emulator(clock=clock, rate_limit=1, window_seconds=60.0)
    limiter = deployai.RateLimiter(clock=clock)
    loop = asyncio.new_event_loop()
    async_client = emulator.async_client(rate_limiter=limiter)
    loop.run_until_complete(async_client.chat.completions.create(model="openai/gpt-4o", messages=user()))
    head = loop.create_task(async_client.chat.completions.create(model="openai/gpt-4o", messages=user()))
    while limiter.waiting < 1:  # one step of the loop at a time, until the task waits for the window
        loop.call_soon(loop.stop)
        loop.run_forever()
    answers: list[str | None] = []
    with emulator.client(rate_limiter=limiter) as client:
        behind = threading.Thread(
            target=lambda: answers.append(
                client.chat.completions.create(model="openai/gpt-4o", messages=user()).choices[0].finish_reason
            ),
            daemon=True,
        )
        behind.start()
        # The task's loop stands still: the thread queues at the head, or behind it until it looks.
        wait_until(lambda: bool(answers) or a_thread_waits(limiter), "the thread queues")
        head._log_destroy_pending = False  # type: ignore[attr-defined]  # left pending on purpose
        loop.close()
        behind.join(10)
    assert not behind.is_alive()
    assert answers == ["stop"]
    assert limiter.waiting == 0


def test_on_a_virtual_clock_a_caller_waiting_for_an_answer_in_flight_does_not_move_the_clock() -> None:
    # The window is spent with one request in flight and no reset known: the next caller waits for
    # that answer. It moved the test's clock to its own deadline instead, and was refused.
    clock = VirtualClock()
    limiter = deployai.RateLimiter(clock=clock)
    request = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions")
    no_reset = {"x-ratelimit-limit": "10", "x-ratelimit-remaining": "1"}
    limiter._settle(limiter._acquire_sync(request, 5), httpx.Response(200, headers=no_reset), 0.0)
    in_flight = limiter._acquire_sync(request, 5)  # the last request of the window
    tickets: list[int] = []
    waiting = threading.Thread(target=lambda: tickets.append(limiter._acquire_sync(request, 30)), daemon=True)
    waiting.start()
    wait_until(lambda: limiter.waiting == 1, "the next caller waits for the answer")
    assert clock.waited == 0
    limiter._settle(in_flight, httpx.Response(200, headers={**no_reset, "x-ratelimit-remaining": "5"}), 0.0)
    waiting.join(10)
    assert len(tickets) == 1
    assert clock.waited == 0


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_retry_the_limiter_would_hold_too_long_raises_the_failure_it_was_to_retry(kind: str) -> None:
    # The 503 the server answered was lost: the call raised the limiter's refusal, a 429 that said
    # nothing was sent, with no retries counted, though a request had gone and failed.
    clock = VirtualClock()
    emulator = Emulator(clock=clock, rate_limit=2, window_seconds=30.0)
    request: dict[str, Any] = {"model": "openai/gpt-4o", "messages": user()}
    options: dict[str, Any] = {"rate_limiter": deployai.RateLimiter(clock=clock), "max_retry_wait": 5}
    with pytest.raises(deployai.ServiceUnavailableError) as info:
        if kind == "sync":
            with emulator.client(**options) as client:
                client.chat.completions.create(**request)  # the window's first
                emulator.fail(503, headers={"retry-after": "0"})
                client.chat.completions.create(**request)  # its second: a retry would wait for the next
        else:

            async def main() -> None:
                async with emulator.async_client(**options) as client:
                    await client.chat.completions.create(**request)
                    emulator.fail(503, headers={"retry-after": "0"})
                    await client.chat.completions.create(**request)

            asyncio.run(main())
    assert info.value.retries == 0
    assert isinstance(info.value.__cause__, deployai.RateLimitError)  # why it was not retried
    assert "would hold this call for" in str(info.value.__cause__)
    # with retries left: its own message says why it was not retried, as for a server's long wait
    assert re.search(
        r"\(not retried: the rate limiter would hold the retry for [\d.]+ s, longer than it may wait", str(info.value)
    )
    assert emulator.statuses == [200, 503]


def test_a_held_retry_of_a_connection_failure_keeps_httpxs_error_as_its_cause() -> None:
    # docs/errors.md: a transport's failure is raised with httpx's error as its `__cause__`.
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client = deployai.DeployAI(
        api_key=API_KEY,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        rate_limiter=deployai.RateLimiter(requests_per_minute=1),  # its retry would wait a minute
        max_retry_wait=5,
    )
    with pytest.raises(deployai.APITimeoutError) as info:
        client.models.list()
    assert info.value.retries == 0
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert isinstance(info.value.__context__, deployai.RateLimitError)  # why it was not retried


def test_a_limiters_clock_must_be_a_virtual_clock() -> None:
    with pytest.raises(deployai.InvalidParameterError, match=r"clock must be a deployai\.testing\.VirtualClock"):
        deployai.RateLimiter(clock=time.time)  # type: ignore[arg-type]


def test_a_limiters_virtual_clock_must_keep_unix_time_after_1973() -> None:
    # Resets are read against it: on a clock at 1,000 s, the emulator's reset at 1,060 read as
    # 1,060 s from now, and the limiter refused a call it would have held for 1,060 s.
    with pytest.raises(deployai.InvalidParameterError, match="a clock of unix time after 1973"):
        deployai.RateLimiter(clock=VirtualClock(start=1_000.0))
    assert deployai.RateLimiter(clock=VirtualClock()).requests_per_minute is None  # the default start is fine


# --- a gateway that limits tokens --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["threads", "tasks"])
def test_a_token_budget_counts_the_requests_in_flight_and_meets_no_429(kind: str) -> None:
    # 60 calls asking for up to 100 tokens each, against a bucket of 1,000 tokens refilled over a
    # minute. Counting only the tokens the answers reported, the limiter let every waiting caller
    # out after the first answer and the gateway refused most of them.
    clock = VirtualClock()
    limiter = deployai.RateLimiter(clock=clock)
    gateway = TokenGateway(clock, limit=1000, watch=lambda: limiter.tokens_in_flight)
    options: dict[str, Any] = {"api_key": API_KEY, "rate_limiter": limiter, "max_retries": 0, "max_retry_wait": 600}
    call = {"model": MODEL, "messages": user("Tell me a story."), "max_tokens": 100}
    if kind == "threads":
        http = httpx.Client(transport=httpx.MockTransport(gateway.answer))
        with deployai.DeployAI(http_client=http, **options) as client, http:
            results = client.chat.completions.create_many([call] * 60, concurrency=20)
    else:

        async def main() -> list[Any]:
            async with (
                httpx.AsyncClient(transport=httpx.MockTransport(gateway.answer_async)) as http,
                deployai.AsyncDeployAI(http_client=http, **options) as client,
            ):
                return await client.chat.completions.create_many([call] * 60, concurrency=20)

        results = asyncio.run(main())
    assert collections.Counter(type(r).__name__ for r in results) == {"ChatCompletion": 60}
    assert gateway.statuses == [200] * 60
    # Paced, not stalled: 60 calls of 104 tokens need 314 s (all but the first 1,000 refilled).
    assert 314 <= clock.waited <= 340
    # What a metric of it shows: never more out than the budget, and nothing once every call is answered.
    assert 0 < max(gateway.watched) <= 1000
    assert limiter.tokens_in_flight == 0
    assert "token_limit=1000, tokens_remaining=" in repr(limiter)


def test_without_a_token_budget_a_limiter_counts_no_tokens_and_shows_none(make_client: ClientFactory) -> None:
    limiter = deployai.RateLimiter()
    transport, _ = handler_with(ok(window(remaining=5)), ok(window(remaining=4)))
    client = make_client(transport=transport, rate_limiter=limiter)
    for _ in range(2):
        assert client.chat.completions.create(model=MODEL, messages=user(), max_tokens=100).choices
    assert limiter.tokens_in_flight == 0
    assert "token" not in repr(limiter)


def test_a_calls_token_estimate_is_a_quarter_of_its_body_plus_its_cap_for_each_choice() -> None:
    transport, sent = handler_with(ok())
    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport)) as client:
        client.chat.completions.create(model=MODEL, messages=user("x" * 400), max_tokens=100, n=3)
        client.chat.completions.create(model=MODEL, messages=user(), extra_body={"max_completion_tokens": 50})
        client.chat.completions.create(model=MODEL, messages=user("max_tokens: 9"))
    quarters = [len(request.content) // 4 + 1 for request in sent]
    assert quarters[0] > 100  # the 400 characters count
    assert [_limiter.token_cost(request) for request in sent] == [quarters[0] + 300, quarters[1] + 50, quarters[2]]


def test_text_in_other_scripts_counts_at_least_a_token_a_character() -> None:
    # A quarter of its UTF-8 bytes counted 1,000 Chinese characters as 750 tokens; gateways' counts
    # are about 1,000 to 1,500 for them.
    chinese = "你" * 1_000
    transport, sent = handler_with(ok(), ok())
    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport)) as client:
        client.chat.completions.create(model=MODEL, messages=user(chinese))
        client.chat.completions.create(model=MODEL, messages=user("x" * 3_000))
    cjk, latin = (_limiter.token_cost(request) for request in sent)
    assert cjk >= 1_000 + latin - 3_000 // 4  # the JSON around it counted as for the Latin text
    assert latin == len(sent[1].content) // 4 + 1  # ASCII as before


def test_a_file_sent_inline_counts_for_what_a_gateway_charges_for_one_not_for_its_base64() -> None:
    # A 150 KB photo's base64 counted as 50,000 tokens: under a budget of 30,000 such calls went one
    # at a time (or were refused), where the gateway charged a few hundred for each.
    photo, sound = "A" * 200_000, "B" * 40
    parts: list[Any] = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + photo}},
        {"type": "input_audio", "input_audio": {"data": sound, "format": "wav"}},
    ]
    transport, sent = handler_with(ok())
    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport)) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": parts}])
    (request,) = sent
    text = len(request.content) - len(photo) - len(sound)
    assert _limiter.token_cost(request) == text // 4 + 1 + _limiter.INLINE_FILE_TOKENS + len(sound) // 4


def test_text_that_merely_holds_a_files_marker_counts_in_full() -> None:
    # A message quoting a data URL's head (";base64,") followed by prose: the prose up to the next
    # quote counted as an inline file, at most 1,000 tokens, where it takes about 10,000.
    prose = "We send images as data:image/png;base64, then the bytes. " + "Plain words follow here. " * 1_600
    transport, sent = handler_with(ok())
    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport)) as client:
        client.chat.completions.create(model=MODEL, messages=user(prose))
        extra_key: Any = {"role": "user", "content": "x", "data": "words " * 8_000}
        client.chat.completions.create(model=MODEL, messages=[extra_key])
    for request in sent:
        assert _limiter.token_cost(request) == len(request.content) // 4 + 1
    # A file in URL-safe base64 still counts as a file.
    audio: Any = {"type": "input_audio", "input_audio": {"data": "-_Ab" * 20_000, "format": "wav"}}
    with deployai.DeployAI(api_key=API_KEY, http_client=httpx.Client(transport=transport)) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": [audio]}])
    assert _limiter.token_cost(sent[-1]) == (len(sent[-1].content) - 80_000) // 4 + 1 + _limiter.INLINE_FILE_TOKENS


def test_a_call_refused_behind_a_caller_that_never_takes_its_turn_says_what_held_it(
    make_client: ClientFactory,
) -> None:
    # A task left pending on an event loop that stopped (not closed) keeps its place at the head.
    # The calls behind it were refused "until answers still on their way tell it the budget", with
    # nothing in flight and the budget full.
    limiter = deployai.RateLimiter()
    transport, sent = handler_with(ok({"x-ratelimit-limit": "60", "x-ratelimit-remaining": "59"}))
    client = make_client(transport=transport, rate_limiter=limiter, max_retry_wait=0.2)
    client.chat.completions.create(model=MODEL, messages=user())
    limiter._queue.append(_limiter._ThreadWaiter())  # its turn came; nothing will ever take it
    with pytest.raises(deployai.RateLimitError, match=r"hold this call behind 1 earlier call\(s\) still waiting"):
        client.chat.completions.create(model=MODEL, messages=user())
    assert len(sent) == 1


def test_a_task_whose_event_loop_stopped_gives_up_its_place_and_queues_again_when_the_loop_runs() -> None:
    # A task left pending on an event loop that stopped (not closed: `run_until_complete` returned)
    # kept the head of the queue: the calls behind it waited out their `max_retry_wait`, then were
    # refused, with the budget full and nothing in flight.
    limiter = deployai.RateLimiter()  # the real clock: on the code before, the call behind was refused after 3 s
    client, seen, gate = _held_first_call(limiter, remaining=5)
    first = threading.Thread(target=client.chat.completions.create, kwargs={"model": MODEL, "messages": user("first")})
    first.start()
    wait_until(lambda: seen == ["first"], "the first request is in flight")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(text_of(request))
        return httpx.Response(200, json=completion_json(), headers=window(remaining=5))

    loop = asyncio.new_event_loop()
    try:
        async_client = deployai.AsyncDeployAI(
            api_key=API_KEY,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            rate_limiter=limiter,
        )
        stalled = loop.create_task(async_client.chat.completions.create(model=MODEL, messages=user("stalled")))
        while not limiter.waiting:  # run the loop until the task waits its turn, then leave it stopped
            loop.run_until_complete(asyncio.sleep(0))
        behind = deployai.DeployAI(
            api_key=API_KEY,
            http_client=httpx.Client(transport=httpx.MockTransport(handler)),
            rate_limiter=limiter,
            max_retry_wait=3,
        )
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(behind.chat.completions.create, model=MODEL, messages=user("behind"))
            wait_until(lambda: a_thread_waits(limiter), "the call behind waits for the answer")
            gate.set()  # the answer: a budget of 5; the call behind goes at once, without the stopped task
            assert later.result(10).choices
        first.join(10)
        assert seen == ["first", "behind"]
        completion = loop.run_until_complete(stalled)  # its loop runs again: it queues again and goes
        assert completion.choices
        assert seen == ["first", "behind", "stalled"]
        assert (limiter.waiting, limiter.in_flight) == (0, 0)
        loop.run_until_complete(async_client.close())
        behind.close()
        client.close()
    finally:
        loop.close()


def _a_task_at_the_head() -> tuple[
    deployai.RateLimiter, httpx.Request, asyncio.AbstractEventLoop, threading.Thread, concurrent.futures.Future[int]
]:
    """A limiter with one request in flight, unanswered, and a task of a loop run by a thread at the head.

    The task's turn is the probe's, a second after the request in flight went. Returned with the
    request, the loop, its thread and the task's future ticket.
    """
    limiter = deployai.RateLimiter()
    request = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions", content=b"{}")
    limiter._acquire_sync(request, 30)
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    stalled = asyncio.run_coroutine_threadsafe(limiter._acquire_async(request, 30), loop)
    wait_until(lambda: limiter.waiting == 1, "the task waits at the head")
    return limiter, request, loop, runner, stalled


def test_the_caller_behind_a_dropped_task_is_woken_to_wait_its_own_turn() -> None:
    # A caller behind the head sleeps until its deadline, to be woken at its turn. When a new caller
    # dropped a head whose loop had stopped, the one behind it became the head unwoken: it went only
    # at its deadline (8 s here), though its turn came after the probe's second.
    limiter, request, loop, runner, stalled = _a_task_at_the_head()
    started = time.monotonic()
    admitted: dict[str, float] = {}

    def call(name: str) -> None:
        limiter._acquire_sync(request, 8)
        admitted[name] = time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        behind = pool.submit(call, "behind")
        wait_until(lambda: limiter.waiting == 2, "a thread waits behind the task")
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        pool.submit(call, "new").result(10)  # it drops the stopped task
        behind.result(10)
    assert admitted["behind"] < 4.0 < 8.0  # its deadline: where it went before
    assert (limiter.waiting, limiter.in_flight) == (0, 3)
    stalled.cancel()
    loop.run_until_complete(asyncio.gather(*asyncio.all_tasks(loop), return_exceptions=True))
    loop.close()


def test_a_task_of_the_same_loop_never_takes_the_place_of_a_head_its_loop_is_late_for() -> None:
    # To a task of the head's own loop, a late head is a busy loop that will get to it: dropping it
    # there (as a thread or another loop's task does) could drop every head of a loop always late.
    limiter = deployai.RateLimiter()
    request = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions", content=b"{}")
    limiter._acquire_sync(request, 30)  # in flight, unanswered: the next may go a second later

    async def main() -> tuple[int, int]:
        head = asyncio.create_task(limiter._acquire_async(request, 30))
        while not limiter.waiting:
            await asyncio.sleep(0)
        time.sleep(1.0 + 2 * _limiter._STUCK_SECONDS)  # the loop is late for the head's turn
        later = asyncio.create_task(limiter._acquire_async(request, 30))
        return await head, await later

    assert asyncio.run(main()) == (2, 3)


def test_a_blocking_call_in_a_loops_thread_goes_at_its_turn_behind_a_task_of_that_loop() -> None:
    # A blocking call made from async code (or a notebook cell, whose kernel runs a loop) is what
    # stalls the task ahead of it: it must drop that task, not wait out its deadline behind it.
    limiter = deployai.RateLimiter()
    request = httpx.Request("POST", "https://api.deployai.dev/v1/chat/completions", content=b"{}")
    limiter._acquire_sync(request, 30)  # in flight, unanswered: the next may go a second later

    async def main() -> tuple[float, int, int]:
        head = asyncio.create_task(limiter._acquire_async(request, 30))
        while not limiter.waiting:
            await asyncio.sleep(0)
        started = time.monotonic()
        ticket = limiter._acquire_sync(request, 8)
        return time.monotonic() - started, ticket, await head

    took, ticket, head_ticket = asyncio.run(main())
    assert took < 4.0 < 8.0  # refused at 8 s before
    assert (ticket, head_ticket) == (2, 3)


@pytest.mark.parametrize("stall", ["stopped", "blocked"])
def test_callers_behind_a_task_whose_loop_stalls_go_at_their_turn_with_no_other_caller_to_look(stall: str) -> None:
    # The head of the queue is a task; its event loop stops, or runs blocking code, before the task's
    # turn comes (here the probe's second). Only a caller of another loop or thread can then see it:
    # the thread behind it slept until its deadline (8 s) and was refused there, unsent.
    limiter, request, loop, runner, stalled = _a_task_at_the_head()
    release = threading.Event()
    started = time.monotonic()

    def call() -> float:
        limiter._acquire_sync(request, 8)
        return time.monotonic() - started

    with ThreadPoolExecutor(1) as pool:
        behind = pool.submit(call)
        wait_until(lambda: limiter.waiting == 2, "a thread waits behind the task")
        if stall == "stopped":
            loop.call_soon_threadsafe(loop.stop)
        else:  # another task of the loop blocks it, past the head's turn
            loop.call_soon_threadsafe(release.wait, 30)
        assert behind.result(10) < 4.0 < 8.0
        release.set()
    if stall == "stopped":
        runner.join(10)
        runner = threading.Thread(target=loop.run_forever)
        runner.start()
    # Its loop runs again: the task queues again and goes, after the pace.
    assert stalled.result(10) == 3
    assert (limiter.waiting, limiter.in_flight) == (0, 3)
    loop.call_soon_threadsafe(loop.stop)
    runner.join(10)
    loop.close()

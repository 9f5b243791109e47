"""create_many: many completions with bounded concurrency, in input order, one failure never losing the others."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import deployai
from deployai.testing import Emulator
from tests.conftest import ClientFactory, completion_json, fork_and_report, user
from tests.raw_server import HoldingServer

MODEL = "openai/gpt-4o"


def requests_for(*texts: str, model: str = MODEL) -> list[dict[str, Any]]:
    return [{"model": model, "messages": user(text)} for text in texts]


def answers(results: list[Any]) -> list[Any]:
    return [r.choices[0].message.content if isinstance(r, deployai.types.ChatCompletion) else type(r) for r in results]


def test_results_come_back_in_input_order_with_errors_in_place(kind: str) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    batch = [*requests_for("one", "two"), *requests_for("three", model="openai/no-such-model"), *requests_for("four")]
    batch.append({"model": MODEL, "messages": user("five"), "temperature": 9})  # refused before sending
    done: list[tuple[int, int]] = []
    if kind == "sync":
        with emulator.client() as client:
            results = client.chat.completions.create_many(
                batch, concurrency=3, on_progress=lambda d, t: done.append((d, t))
            )
    else:

        async def main() -> list[Any]:
            async with emulator.async_client() as client:
                return await client.chat.completions.create_many(
                    batch, concurrency=3, on_progress=lambda d, t: done.append((d, t))
                )

        results = asyncio.run(main())
    assert answers(results) == [
        "You said: one",
        "You said: two",
        deployai.NotFoundError,
        "You said: four",
        deployai.InvalidParameterError,
    ]
    assert done == [(n, 5) for n in range(1, 6)]
    assert len(emulator.requests) == 4  # the refused one never left the machine


def test_a_malformed_request_is_refused_in_its_place_and_loses_no_other(kind: str) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    secret = "Bearer sk-not-to-be-shown"
    batch: list[Any] = [
        *requests_for("one"),
        {"model": MODEL, "messages": user("typo"), "max_token": 5, "extra_headers": {"Authorization": secret}},
        None,
        {"messages": user("no model")},
        [("extra_headers", {"Authorization": secret})],  # pairs, not a dict
        {"model": MODEL, "messages": user(), 10**5000: "a key too long to write out"},
        *requests_for("five"),
    ]
    if kind == "sync":
        with emulator.client() as client:
            results = client.chat.completions.create_many(batch, concurrency=2)
    else:

        async def main() -> list[Any]:
            async with emulator.async_client() as client:
                return await client.chat.completions.create_many(batch, concurrency=2)

        results = asyncio.run(main())
    refused = deployai.InvalidParameterError
    assert answers(results) == ["You said: one", *[refused] * 5, "You said: five"]
    typo, nothing, no_model, pairs, odd_key = results[1:6]
    assert "'max_token' (did you mean 'max_tokens'?)" in str(typo)
    assert "<int>" in str(odd_key)
    assert secret not in str(typo) + str(pairs)
    assert str(nothing).startswith("request must be a dict of create() arguments")
    assert isinstance(no_model, refused)
    assert no_model.param == "model"
    assert len(emulator.requests) == 2  # the refused ones never left the machine


_KEY = "sk-fanout"  # what marks this module's requests at a HoldingServer (see `sent_with`)


def _two_in_flight(server: HoldingServer) -> None:
    with server.arrived:
        assert server.arrived.wait_for(lambda: server.sent_with(_KEY.encode()) == 2, 15)  # its lock is an RLock


def _nothing_more_was_sent(server: HoldingServer, client: deployai.DeployAI) -> None:
    server.release.set()  # the two calls in flight end unanswered: each would be retried
    for thread in threading.enumerate():
        if thread.name.startswith(("deployai create_many", "ThreadPoolExecutor")):
            assert thread.daemon  # a call still waiting would not hold the interpreter's exit
            thread.join(15)
    sent = server.sent_with(_KEY.encode())
    strays = [head.split(b"\r\n", 1)[0] for head in server.heads if _KEY.encode() not in head]
    assert sent == 2, strays  # no retry, and neither of the two items not yet started
    client.close()
    server.listener.close()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs a signal sent to the main thread")
def test_ctrl_c_during_a_blocking_create_many_sends_nothing_more() -> None:
    server = HoldingServer()
    client = deployai.DeployAI(api_key=_KEY, base_url=server.base_url, max_retries=1)
    main = threading.main_thread().ident
    assert main is not None

    def press_ctrl_c_once_two_are_in_flight() -> None:
        _two_in_flight(server)
        signal.pthread_kill(main, signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_once_two_are_in_flight)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        client.chat.completions.create_many(requests_for("a", "b", "c", "d"), concurrency=2)
    presser.join()
    _nothing_more_was_sent(server, client)


def test_ctrl_c_while_create_many_is_still_starting_its_threads_sends_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C lands wherever the main thread is; here, in starting the last worker, whose call went out already
    server = HoldingServer()
    client = deployai.DeployAI(api_key=_KEY, base_url=server.base_url, max_retries=1)
    started = 0

    class InterruptedOnceAllStarted(threading.Thread):
        def start(self) -> None:
            nonlocal started
            super().start()
            if self.name.startswith("deployai create_many"):
                started += 1
                if started == 2:
                    _two_in_flight(server)
                    raise KeyboardInterrupt

    monkeypatch.setattr(threading, "Thread", InterruptedOnceAllStarted)
    with pytest.raises(KeyboardInterrupt):
        client.chat.completions.create_many(requests_for("a", "b", "c", "d"), concurrency=2)
    monkeypatch.undo()
    _nothing_more_was_sent(server, client)


def counting_transport(kind: str, width: int) -> tuple[Any, dict[str, int]]:
    """A transport that holds each call until `width` are in flight together, and counts the most seen."""
    seen = {"now": 0, "most": 0}
    lock = threading.Lock()
    barrier = threading.Barrier(width, timeout=10)  # broken (an error) if fewer can ever be in flight

    def enter() -> None:
        with lock:
            seen["now"] += 1
            seen["most"] = max(seen["most"], seen["now"])

    def leave() -> None:
        with lock:
            seen["now"] -= 1

    def handler(request: httpx.Request) -> httpx.Response:
        enter()
        barrier.wait()
        leave()
        return httpx.Response(200, json=completion_json())

    async def async_handler(request: httpx.Request) -> httpx.Response:
        enter()
        for _ in range(10_000):  # a bounded wait for the others to arrive
            if seen["now"] >= width or seen["most"] > width:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)
        leave()
        return httpx.Response(200, json=completion_json())

    return httpx.MockTransport(handler if kind == "sync" else async_handler), seen


def test_exactly_concurrency_calls_are_in_flight_at_most(kind: str, make_client: ClientFactory) -> None:
    transport, seen = counting_transport(kind, 4)
    client = make_client(transport=transport)
    results = client.chat.completions.create_many(requests_for(*[str(i) for i in range(20)]), concurrency=4)
    assert all(isinstance(r, deployai.types.ChatCompletion) for r in results)
    assert seen["most"] == 4


def test_streaming_requests_and_bad_concurrency_are_refused(make_client: ClientFactory) -> None:
    client = make_client()
    (result,) = client.chat.completions.create_many([{"model": MODEL, "messages": user(), "stream": True}])
    assert isinstance(result, deployai.InvalidParameterError)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(deployai.InvalidParameterError, match="concurrency"):
            client.chat.completions.create_many(requests_for("x"), concurrency=bad)
    assert client.chat.completions.create_many([]) == []


def test_progress_true_draws_a_tqdm_bar(make_client: ClientFactory, capsys: pytest.CaptureFixture[str]) -> None:
    client = make_client(transport=httpx.MockTransport(lambda request: httpx.Response(200, json=completion_json())))
    client.chat.completions.create_many(requests_for("a", "b", "c"), progress=True)
    assert "3/3" in capsys.readouterr().err


def test_progress_true_without_tqdm_names_the_package(
    make_client: ClientFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with pytest.raises(ModuleNotFoundError, match="pip install tqdm"):
        make_client().chat.completions.create_many(requests_for("a"), progress=True)


def test_cancelling_create_many_cancels_everything_in_flight() -> None:
    started = 0

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal started
        started += 1
        await asyncio.sleep(30)
        return httpx.Response(200, json=completion_json())

    async def main() -> None:
        async with deployai.AsyncDeployAI(
            api_key="sk-many", http_client=httpx.AsyncClient(transport=httpx.MockTransport(slow))
        ) as client:
            batch = asyncio.ensure_future(client.chat.completions.create_many(requests_for(*"abcdefgh"), concurrency=3))
            while started < 3:
                await asyncio.sleep(0)
            batch.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(batch, 5)  # returns at once, not after the 30 s calls

    asyncio.run(main())
    assert started == 3  # nothing beyond the first three was started


def _text_of(request: httpx.Request) -> str:
    return str(json.loads(request.content)["messages"][0]["content"])


def test_as_completed_hands_each_result_over_as_it_finishes_with_its_place() -> None:
    # Each call is held until the test lets it answer, in an order other than the input's: a result
    # must come out as soon as its call is answered, not after the calls before it in the input.
    release = {text: threading.Event() for text in "abc"}

    def handler(request: httpx.Request) -> httpx.Response:
        text = _text_of(request)
        assert release[text].wait(10)
        return httpx.Response(200, json=completion_json(f"answer {text}"))

    client = deployai.DeployAI(api_key="sk-many", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    batch: list[Any] = [*requests_for("a", "b", "c"), None, {"model": MODEL}]
    finishing = client.chat.completions.as_completed(batch, concurrency=5)
    refused = [next(finishing), next(finishing)]  # the two malformed ones, refused before sending
    assert sorted(index for index, _ in refused) == [3, 4]
    assert all(isinstance(result, deployai.InvalidParameterError) for _, result in refused)
    got = []
    for text in "cab":
        release[text].set()
        index, result = next(finishing)
        assert isinstance(result, deployai.types.ChatCompletion)
        got.append((index, result.choices[0].message.content))
    assert got == [(2, "answer c"), (0, "answer a"), (1, "answer b")]
    with pytest.raises(StopIteration):
        next(finishing)
    client.close()


def test_leaving_as_completed_early_sends_nothing_more_and_keeps_what_came() -> None:
    sent: list[str] = []
    held = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        text = _text_of(request)
        sent.append(text)
        if text != "a":
            assert held.wait(10)  # in flight as the loop is left
        return httpx.Response(200, json=completion_json(f"answer {text}"))

    client = deployai.DeployAI(
        api_key="sk-many", max_retries=2, http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    kept = []
    for index, result in client.chat.completions.as_completed(requests_for("a", "b", "c", "d"), concurrency=1):
        assert isinstance(result, deployai.types.ChatCompletion)
        kept.append((index, result.choices[0].message.content))
        break  # as a Ctrl-C in the loop's body would
    held.set()
    for thread in threading.enumerate():
        if thread.name.startswith("deployai create_many"):
            thread.join(10)
    assert kept == [(0, "answer a")]
    # "b" may have been taken as "a" was handed over, and sent; "c" and "d" never are.
    assert sent in (["a"], ["a", "b"])
    client.close()


def test_as_completed_refuses_a_bad_concurrency_at_the_call(kind: str) -> None:
    client: Any = deployai.DeployAI(api_key="sk-many") if kind == "sync" else deployai.AsyncDeployAI(api_key="sk-many")
    for bad in (0, 2.5, True):
        with pytest.raises(deployai.InvalidParameterError, match="concurrency"):
            client.chat.completions.as_completed(requests_for("x"), concurrency=bad)


def test_an_async_or_uncallable_on_progress_is_refused_at_the_call_not_left_unawaited(kind: str) -> None:
    # A notebook full of `await` makes an `async def` hook natural; called, it would only make a
    # coroutine that nothing awaits, and the progress it reports would never show.
    client: Any = deployai.DeployAI(api_key="sk-many") if kind == "sync" else deployai.AsyncDeployAI(api_key="sk-many")
    seen: list[tuple[int, int]] = []

    async def on_progress(done: int, total: int) -> None:
        seen.append((done, total))

    class Hook:
        async def __call__(self, done: int, total: int) -> None:
            seen.append((done, total))

    class Counter:  # a class whose instances' `__call__` is async: calling the class makes an instance
        async def __call__(self) -> None: ...

    client.chat.completions.as_completed(requests_for("x"), on_progress=Counter)  # taken: not refused

    class Made(type):  # a class whose metaclass makes a coroutine when the class is called
        async def __call__(cls, *args: object) -> None: ...

    class MadeHook(metaclass=Made): ...

    for bad in (on_progress, Hook(), MadeHook, "print"):
        with pytest.raises(deployai.InvalidParameterError, match="on_progress must be a plain"):
            client.chat.completions.as_completed(requests_for("x"), on_progress=bad)
        with pytest.raises(deployai.InvalidParameterError, match="on_progress must be a plain"):
            if kind == "sync":
                client.chat.completions.create_many(requests_for("x"), on_progress=bad)
            else:
                asyncio.run(client.chat.completions.create_many(requests_for("x"), on_progress=bad))
    assert seen == []


def test_async_as_completed_hands_results_over_as_they_finish_and_cancels_the_rest_when_closed() -> None:
    cancelled: list[str] = []

    async def main() -> list[tuple[int, str | None]]:
        release = {text: asyncio.Event() for text in "abc"}

        async def handler(request: httpx.Request) -> httpx.Response:
            text = _text_of(request)
            try:
                await release[text].wait()
            except asyncio.CancelledError:
                cancelled.append(text)
                raise
            return httpx.Response(200, json=completion_json(f"answer {text}"))

        async with deployai.AsyncDeployAI(
            api_key="sk-many", http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
        ) as client:
            got = []
            finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=3)
            async with contextlib.aclosing(finishing):
                release["b"].set()
                async for index, result in finishing:
                    assert isinstance(result, deployai.types.ChatCompletion)
                    got.append((index, result.choices[0].message.content))
                    if len(got) == 2:
                        break
                    release["c"].set()
            assert sorted(cancelled) == ["a"]  # closed: the call still in flight was cancelled at once
            return got

    assert asyncio.run(asyncio.wait_for(main(), 10)) == [(1, "answer b"), (2, "answer c")]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_batch_wider_than_a_window_is_paced_through_it_not_refused(kind: str) -> None:
    # Its calls queued behind the batch's own were refused for their place in the line ("would hold
    # this call for 1.0 s, longer than it may wait"): most of a batch failed, the server unasked.
    # Quotas are small, so that it takes about two windows.
    emulator = Emulator(rate_limit=4, window_seconds=1.0)
    requests = [{"model": "openai/gpt-4o", "messages": user(f"q{i}")} for i in range(12)]
    options: dict[str, Any] = {"rate_limiter": deployai.RateLimiter(), "max_retry_wait": 1.0}
    if kind == "sync":
        with emulator.client(**options) as client:
            results = client.chat.completions.create_many(requests, concurrency=12)
    else:

        async def main() -> list[Any]:
            async with emulator.async_client(**options) as client:
                return await client.chat.completions.create_many(requests, concurrency=12)

        results = asyncio.run(main())
    assert [type(result).__name__ for result in results] == ["ChatCompletion"] * 12
    assert emulator.statuses.count(429) == 0


def test_a_batch_call_held_past_its_total_timeout_fails_rather_than_queue_again() -> None:
    # Queued again, its `total_timeout` would begin anew: an item would take longer than it may.
    # A window alone fits in the 2 s an item may take; twelve items of two a window do not.
    emulator = Emulator(rate_limit=2, window_seconds=1.5)
    requests = [{"model": "openai/gpt-4o", "messages": user(f"q{i}")} for i in range(12)]
    with emulator.client(rate_limiter=deployai.RateLimiter(), total_timeout=2.0) as client:
        results = client.chat.completions.create_many(requests, concurrency=12)
    kinds = [type(result).__name__ for result in results]
    assert set(kinds) == {"ChatCompletion", "RateLimitError"}
    assert kinds.count("ChatCompletion") == len(emulator.requests) <= 6  # at most three windows' worth


def test_a_batch_whose_window_is_beyond_its_wait_still_fails_each_call_at_once() -> None:
    # A quota spent for longer than a call may wait (a day's) is no place in a line: each call fails.
    emulator = Emulator(rate_limit=1, window_seconds=3600.0)
    requests = [{"model": "openai/gpt-4o", "messages": user(f"q{i}")} for i in range(6)]
    with emulator.client(rate_limiter=deployai.RateLimiter(), max_retry_wait=1.0) as client:
        client.chat.completions.create(model="openai/gpt-4o", messages=user("spend it"))
        results = client.chat.completions.create_many(requests, concurrency=3)
    assert [type(result).__name__ for result in results] == ["RateLimitError"] * 6
    assert len(emulator.requests) == 1


def test_a_batch_left_early_frees_its_places_at_the_rate_limiter_at_once() -> None:
    # Two calls went and two waited at the limiter for the next minute. Left early, the batch's two
    # threads kept their places until a minute later, ahead of every other caller: the next call
    # was refused, told to wait 120 s instead of 60.
    emulator = Emulator(rate_limit=None)
    limiter = deployai.RateLimiter(requests_per_minute=2)
    before = set(threading.enumerate())
    with emulator.client(rate_limiter=limiter) as client:
        for seen, _ in enumerate(client.chat.completions.as_completed(requests_for("a", "b", "c", "d"), concurrency=4)):
            if seen == 1:
                break
        workers = [t for t in threading.enumerate() if t not in before and t.name == "deployai create_many"]
        for worker in workers:
            worker.join(timeout=10)  # woken at the break, they end at once; else in about a minute
        assert not [t for t in workers if t.is_alive()]
        assert limiter.waiting == 0
        with pytest.raises(deployai.RateLimitError) as caught:
            client.with_options(max_retry_wait=1.0).chat.completions.create(model=MODEL, messages=user("e"))
    assert caught.value.retry_after == pytest.approx(60.0, abs=2.0)
    assert len(emulator.requests) == 2


def test_a_batch_closed_in_a_thread_holding_its_rate_limiters_lock_still_frees_its_places() -> None:
    # As when the garbage collector closes a batch dropped in a reference cycle, in whichever thread
    # it runs: waking the batch's calls there, under the lock the wake takes, never returned.
    emulator = Emulator(rate_limit=None)
    limiter = deployai.RateLimiter(requests_per_minute=2)
    before = set(threading.enumerate())
    with emulator.client(rate_limiter=limiter) as client:
        finishing = client.chat.completions.as_completed(requests_for("a", "b", "c", "d"), concurrency=4)
        next(finishing), next(finishing)
        with limiter._lock:
            finishing.close()
        workers = [t for t in threading.enumerate() if t not in before and t.name.startswith("deployai create_many")]
        for worker in workers:
            worker.join(timeout=10)
        assert not [t for t in workers if t.is_alive()]
    assert limiter.waiting == 0


def test_async_as_completed_read_on_after_its_event_loop_ended_says_its_results_are_lost() -> None:
    # Two `asyncio.run` calls, as in a script that reads a batch in steps: the first loop's end
    # cancelled the calls and closed the batch, which then read as ended with 2 of 3 results unseen.
    emulator = Emulator(rate_limit=1_000_000)
    client = emulator.async_client()
    finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=1)

    async def first() -> int:
        index, _ = await anext(finishing)
        return index

    async def rest() -> list[int]:
        return [index async for index, _ in finishing]

    assert asyncio.run(first()) == 0
    with pytest.raises(deployai.DeployAIError, match="after 1 of its 3 results were handed over"):
        asyncio.run(rest())


def test_async_as_completed_read_from_another_loop_is_refused_and_its_own_loop_still_gets_every_result() -> None:
    # The step from the other loop failed inside the batch ("attached to a different loop"), which
    # ended it: its own loop's reader then saw it end quietly, its other results lost.
    emulator = Emulator(rate_limit=1_000_000)
    client = emulator.async_client()
    finishing = client.chat.completions.as_completed(requests_for("a", "b", "c", "d"), concurrency=1)

    async def first() -> int:
        index, _ = await anext(finishing)
        return index

    async def rest() -> list[int]:
        return [index async for index, _ in finishing]

    own = asyncio.new_event_loop()
    try:
        assert own.run_until_complete(first()) == 0
        with pytest.raises(deployai.DeployAIError, match=r"another event loop|other than the one that first read it"):
            asyncio.run(rest())
        assert own.run_until_complete(rest()) == [1, 2, 3]
        own.run_until_complete(client.close())
    finally:
        own.close()


def test_async_as_completed_has_one_reader_and_a_second_one_takes_nothing_from_it() -> None:
    emulator = Emulator(rate_limit=1_000_000)

    async def main() -> tuple[list[int], BaseException | None]:
        async with emulator.async_client() as client:
            finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=1)
            reader = asyncio.ensure_future(collect(finishing))
            await asyncio.sleep(0)  # the reader waits inside the batch for its first result
            try:
                await anext(finishing)
            except deployai.DeployAIError as refused:
                second: BaseException | None = refused
            else:
                second = None
            return await reader, second

    async def collect(finishing: Any) -> list[int]:
        return [index async for index, _ in finishing]

    indexes, second = asyncio.run(main())
    assert indexes == [0, 1, 2]
    assert "one reader at a time" in str(second)  # not "None": the second read was refused


def test_async_as_completed_closed_by_another_task_while_one_reads_it_says_how_to_stop_it() -> None:
    emulator = Emulator(rate_limit=1_000_000)

    async def main() -> tuple[list[int], str]:
        async with emulator.async_client() as client:
            finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=1)
            reader = asyncio.ensure_future(collect(finishing))
            await asyncio.sleep(0)  # the reader waits inside the batch
            with pytest.raises(deployai.DeployAIError, match="cancel that task"):
                await finishing.athrow(ValueError("stop"))
            with pytest.raises(deployai.DeployAIError, match="cancel that task") as refused:
                await finishing.aclose()
            return await reader, str(refused.value)

    async def collect(finishing: Any) -> list[int]:
        return [index async for index, _ in finishing]

    indexes, _ = asyncio.run(main())
    assert indexes == [0, 1, 2]  # the refused close took nothing from the reader


def test_async_as_completed_closed_or_cancelled_by_its_reader_reads_as_ended() -> None:
    emulator = Emulator(rate_limit=1_000_000)

    async def main() -> tuple[list[int], list[int]]:
        async with emulator.async_client() as client:
            closed = client.chat.completions.as_completed(requests_for("a", "b"), concurrency=1)
            await anext(closed)
            await closed.aclose()
            cancelled = client.chat.completions.as_completed(requests_for("a", "b"), concurrency=1)
            reading = asyncio.ensure_future(anext(cancelled))
            await asyncio.sleep(0)  # it started, and waits for the first answer
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            return [i async for i, _ in closed], [i async for i, _ in cancelled]

    assert asyncio.run(main()) == ([], [])


def test_as_completed_kept_in_a_variable_reads_on_after_an_interrupt_in_the_loop_body() -> None:
    # A notebook cell interrupted while it writes a result out: the next cell reads the rest.
    emulator = Emulator(rate_limit=1_000_000)
    with emulator.client() as client:
        finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=2)
        seen = []
        with pytest.raises(KeyboardInterrupt):
            for index, _ in finishing:
                seen.append(index)
                raise KeyboardInterrupt
        seen += [index for index, _ in finishing]
    assert sorted(seen) == [0, 1, 2]
    assert len(emulator.requests) == 3


def test_an_error_that_is_not_the_sdks_stops_the_batch_sending_nothing_more(kind: str) -> None:
    # A bug in an `on_retry` hook: raised in the caller, and no other item is sent, not even by the
    # worker that met it (it went on to the next item while the caller had yet to see the error).
    emulator = Emulator(rate_limit=1_000_000)
    emulator.fail_next(503, headers={"retry-after": "0"}, times=1)

    def hook(*_: object) -> None:
        raise ValueError("a bug in on_retry")

    batch = requests_for(*"abcde")
    with pytest.raises(ValueError, match="a bug in on_retry"):
        if kind == "sync":
            with emulator.client(on_retry=hook) as client:
                client.chat.completions.create_many(batch, concurrency=1)
        else:

            async def main() -> None:
                async with emulator.async_client(on_retry=hook) as client:
                    await client.chat.completions.create_many(batch, concurrency=1)

            asyncio.run(main())
    for thread in threading.enumerate():
        if thread.name.startswith("deployai create_many"):
            thread.join(10)
    assert len(emulator.requests) == 1  # the one that failed; its retry and the other four never sent


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_batch_read_on_in_a_forked_child_raises_instead_of_waiting_for_the_parents_threads() -> None:
    emulator = Emulator(rate_limit=1_000_000)
    with emulator.client() as client:
        finishing = client.chat.completions.as_completed(requests_for("a", "b", "c"), concurrency=1)
        first = [next(finishing)[0]]

        def in_the_child() -> str:
            signal.alarm(10)  # a child that waits for good ends, unheard: the test fails, not hangs
            next(finishing)
            return "read on"

        said = fork_and_report(in_the_child)
        rest = [index for index, _ in finishing]  # the parent reads on
    assert said.startswith("error: DeployAIError: This batch was started before this process was forked")
    assert sorted(first + rest) == [0, 1, 2]


@pytest.mark.parametrize("leaving", ["end", "error"])
def test_a_program_that_keeps_a_partly_read_batch_exits(leaving: str) -> None:
    # Closed as the interpreter ended, the batch started a thread: on 3.10 and 3.11 that waits for
    # good, so the program hung after its last line, Ctrl-C or not.
    program = (
        "from deployai.testing import Emulator\n"
        "client = Emulator().client()\n"
        "requests = [{'model': 'openai/gpt-4o', 'messages': [{'role': 'user', 'content': 'q'}]}] * 20\n"
        "results = client.chat.completions.as_completed(requests, concurrency=2)\n"
        "next(results)\n"
        "client.close()\n" + ("raise KeyError('in the loop body')\n" if leaving == "error" else "print('done')\n")
    )
    ended = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=False)
    assert ended.returncode == (1 if leaving == "error" else 0), ended.stderr


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_one_request_given_where_many_go_is_refused_before_anything_is_sent(kind: str) -> None:
    # Iterated, a dict gave its keys: two "request must be a dict" errors, one per key.
    emulator = Emulator()
    one: dict[str, Any] = {"model": "openai/gpt-4o", "messages": user("hi")}
    with pytest.raises(deployai.InvalidParameterError, match=r"^requests must be an iterable of requests"):
        if kind == "sync":
            emulator.client().chat.completions.create_many(one)  # type: ignore[arg-type]
        else:
            asyncio.run(emulator.async_client().chat.completions.create_many(one))  # type: ignore[arg-type]
    assert emulator.requests == []


def _endless(read_in: list[int], seen: list[int]) -> Iterator[dict[str, Any]]:
    """A source without end, as a queue's consumer is, noting the thread that reads each request."""
    number = 0
    while True:
        number += 1
        seen.append(number)
        read_in.append(threading.get_ident())
        yield {"model": MODEL, "messages": user(f"item {number}")}


def test_an_endless_source_is_read_as_the_batch_goes_in_the_readers_thread(kind: str) -> None:
    # A generator was read whole before the first call: an endless one (a queue's consumer) never
    # began, and a source tied to its thread (a database cursor) was read in it only by chance.
    emulator = Emulator(rate_limit=1_000_000)
    read_in: list[int] = []
    seen: list[int] = []
    progress: list[tuple[int, int]] = []
    got: list[tuple[int, str | None]] = []
    if kind == "sync":
        with emulator.client() as client:
            finishing = client.chat.completions.as_completed(
                _endless(read_in, seen), concurrency=4, on_progress=lambda d, t: progress.append((d, t))
            )
            for index, result in finishing:
                assert isinstance(result, deployai.types.ChatCompletion)
                got.append((index, result.choices[0].message.content))
                if len(got) == 20:
                    break
    else:

        async def main() -> None:
            async with emulator.async_client() as client:
                finishing = client.chat.completions.as_completed(
                    _endless(read_in, seen), concurrency=4, on_progress=lambda d, t: progress.append((d, t))
                )
                async for index, result in finishing:
                    assert isinstance(result, deployai.types.ChatCompletion)
                    got.append((index, result.choices[0].message.content))
                    if len(got) == 20:
                        break

        asyncio.run(main())
    # Each result with its own place (the first 20 to finish, not always the first 20 read).
    assert len({index for index, _ in got}) == 20
    assert all(text == f"You said: item {index + 1}" for index, text in got)
    assert set(read_in) == {threading.get_ident()}
    assert 20 <= len(seen) <= 24  # never more than `concurrency` ahead of the results handed over
    assert 20 <= len(emulator.requests) <= len(seen)  # leaving early, those read and not yet sent are not
    assert [done for done, _ in progress] == list(range(1, 21))
    assert all(done <= total <= done + 4 for done, total in progress)  # the requests read so far


def test_a_sources_own_error_comes_after_the_results_before_it_and_ends_the_batch(kind: str) -> None:
    emulator = Emulator(rate_limit=1_000_000)

    def failing() -> Iterator[dict[str, Any]]:
        yield from requests_for("one", "two", "three")
        raise ValueError("the source broke")  # read with the first ones: they were dropped unsent

    got: list[int] = []
    with pytest.raises(ValueError, match="the source broke"):
        if kind == "sync":
            with emulator.client() as client:
                for index, _ in client.chat.completions.as_completed(failing(), concurrency=4):
                    got.append(index)
        else:

            async def main() -> None:
                async with emulator.async_client() as client:
                    async for index, _ in client.chat.completions.as_completed(failing(), concurrency=4):
                        got.append(index)

            asyncio.run(main())
    # The requests read before it were sent, and their results handed over first.
    assert sorted(got) == [0, 1, 2]
    assert len(emulator.requests) == 3


def test_create_many_reads_a_generator_as_it_goes_and_returns_every_result_in_order(kind: str) -> None:
    emulator = Emulator(rate_limit=1_000_000)
    texts = [f"n{n}" for n in range(30)]
    batch = ({"model": MODEL, "messages": user(text)} for text in texts)
    if kind == "sync":
        results = emulator.client().chat.completions.create_many(batch, concurrency=5)
    else:
        results = asyncio.run(emulator.async_client().chat.completions.create_many(batch, concurrency=5))
    assert answers(results) == [f"You said: {text}" for text in texts]
    empty = iter(())
    assert emulator.client().chat.completions.create_many(empty) == []
    with pytest.raises(deployai.InvalidParameterError, match=r"^requests must be an iterable of requests"):
        emulator.client().chat.completions.create_many(5)  # type: ignore[arg-type]


def test_a_queues_consumer_whose_producer_waits_for_results_gets_them(kind: str) -> None:
    # A work queue whose producer puts the next request once it sees a result: the reader, blocked
    # reading the queue for more before handing the first result over, waited for good.
    emulator = Emulator(rate_limit=1_000_000)
    work: queue.Queue[dict[str, Any] | None] = queue.Queue()
    work.put({"model": MODEL, "messages": user("first")})
    got: list[str | None] = []

    def seen(result: object) -> None:
        assert isinstance(result, deployai.types.ChatCompletion)
        got.append(result.choices[0].message.content)
        work.put({"model": MODEL, "messages": user(f"after {len(got)}")} if len(got) < 3 else None)

    if kind == "sync":
        with emulator.client() as client:
            for _, result in client.chat.completions.as_completed(iter(work.get, None), concurrency=1):
                seen(result)
    else:

        async def main() -> None:
            async with emulator.async_client() as client:
                async for _, result in client.chat.completions.as_completed(iter(work.get, None), concurrency=1):
                    seen(result)

        asyncio.run(main())
    assert got == ["You said: first", "You said: after 1", "You said: after 2"]


def test_a_lazy_batch_whose_thread_cannot_start_raises_rather_than_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # Counted as the source's own error, the failure left the reader waiting for a result from no thread.
    def refused(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    batch = iter(requests_for("one", "two"))
    with pytest.raises(RuntimeError, match="can't start new thread"):
        Emulator().client().chat.completions.create_many(batch, concurrency=2)


async def _work_queue(work: asyncio.Queue[dict[str, Any] | None]) -> AsyncIterator[dict[str, Any]]:
    """An async source that waits for its work: a queue's consumer, which ends at None."""
    while (request := await work.get()) is not None:
        yield request


def test_an_async_batch_reads_an_async_source_and_hands_results_over_while_it_waits() -> None:
    # An async generator was refused as no iterable; a producer that puts more work once it sees
    # results (an asyncio.Queue's consumer) needs the results handed over while the source waits.
    emulator = Emulator(rate_limit=1_000_000)
    progress: list[tuple[int, int]] = []

    async def main() -> list[str | None]:
        work: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        work.put_nowait({"model": MODEL, "messages": user("first")})
        got: list[str | None] = []
        async with emulator.async_client() as client:
            finishing = client.chat.completions.as_completed(
                _work_queue(work), concurrency=2, on_progress=lambda d, t: progress.append((d, t))
            )
            async for index, result in finishing:
                assert isinstance(result, deployai.types.ChatCompletion)
                assert index == len(got)
                got.append(result.choices[0].message.content)
                work.put_nowait({"model": MODEL, "messages": user(f"after {len(got)}")} if len(got) < 3 else None)
        return got

    assert asyncio.run(main()) == ["You said: first", "You said: after 1", "You said: after 2"]
    assert progress == [(1, 1), (2, 2), (3, 3)]  # the requests read so far as the total


def test_an_endless_async_source_is_read_no_further_ahead_than_the_concurrency() -> None:
    emulator = Emulator(rate_limit=1_000_000)
    seen: list[int] = []
    ends: list[str] = []

    async def endless() -> AsyncGenerator[dict[str, Any], None]:
        try:
            while True:
                seen.append(len(seen))
                yield {"model": MODEL, "messages": user(f"item {len(seen)}")}
        finally:
            ends.append("closed")

    async def main() -> list[tuple[int, str | None]]:
        got: list[tuple[int, str | None]] = []
        source = endless()
        async with emulator.async_client() as client:
            finishing = client.chat.completions.as_completed(source, concurrency=4)
            async with contextlib.aclosing(finishing):
                async for index, result in finishing:
                    assert isinstance(result, deployai.types.ChatCompletion)
                    got.append((index, result.choices[0].message.content))
                    if len(got) == 20:
                        break
        await source.aclose()
        return got

    got = asyncio.run(main())
    assert len({index for index, _ in got}) == 20
    assert all(text == f"You said: item {index + 1}" for index, text in got)
    assert 20 <= len(seen) <= 24  # never more than `concurrency` ahead of the results handed over
    assert 20 <= len(emulator.requests) <= len(seen)
    assert ends == ["closed"]


def test_leaving_an_async_batch_early_cancels_the_read_its_source_waits_in() -> None:
    emulator = Emulator(rate_limit=1_000_000)
    ends: list[str] = []

    async def stalls() -> AsyncIterator[dict[str, Any]]:
        for request in requests_for("one", "two"):
            yield request
        try:
            await asyncio.Event().wait()  # no more work, and no end either
        except asyncio.CancelledError:
            ends.append("cancelled")
            raise
        yield {}  # never reached

    async def main() -> list[int]:
        got: list[int] = []
        async with emulator.async_client() as client:
            finishing = client.chat.completions.as_completed(stalls(), concurrency=4)
            async with contextlib.aclosing(finishing):
                async for index, _ in finishing:
                    got.append(index)
                    if len(got) == 2:  # both results came while the source waited
                        break
        return got

    assert sorted(asyncio.run(main())) == [0, 1]
    assert ends == ["cancelled"]


@pytest.mark.parametrize("failure", [ValueError("the source broke"), asyncio.CancelledError()])
def test_an_async_sources_own_error_comes_after_the_results_before_it(failure: BaseException) -> None:
    # A cancel raised from within the source ended its task: the reader, waiting for it, waited for good.
    emulator = Emulator(rate_limit=1_000_000)

    async def failing() -> AsyncIterator[dict[str, Any]]:
        for request in requests_for("one", "two", "three"):
            yield request
        raise failure

    got: list[int] = []

    async def main() -> None:
        async with emulator.async_client() as client:
            async for index, _ in client.chat.completions.as_completed(failing(), concurrency=4):
                got.append(index)

    with pytest.raises(type(failure)):
        asyncio.run(asyncio.wait_for(main(), 30))
    assert sorted(got) == [0, 1, 2]
    assert len(emulator.requests) == 3


def test_create_many_of_an_async_client_takes_an_async_generator_and_keeps_the_order() -> None:
    emulator = Emulator(rate_limit=1_000_000)
    texts = [f"n{n}" for n in range(30)]

    async def batch() -> AsyncIterator[dict[str, Any]]:
        for text in texts:
            await asyncio.sleep(0)
            yield {"model": MODEL, "messages": user(text)}

    async def main() -> list[Any]:
        async with emulator.async_client() as client:
            return await client.chat.completions.create_many(batch(), concurrency=5)

    assert answers(asyncio.run(main())) == [f"You said: {text}" for text in texts]


def test_the_async_create_manys_help_says_it_takes_an_async_iterable() -> None:
    # Its text is the blocking one's with a sentence put in: a change there would drop it silently.
    from deployai.resources.chat import AsyncCompletions, Completions

    assert AsyncCompletions.create_many.__doc__ != Completions.create_many.__doc__
    assert "An async iterable (an async generator) is read" in (AsyncCompletions.create_many.__doc__ or "")


def test_an_async_source_given_to_the_sync_client_is_refused_by_name_before_anything_is_sent() -> None:
    emulator = Emulator()

    async def batch() -> AsyncGenerator[dict[str, Any], None]:
        yield {"model": MODEL, "messages": user("hi")}

    source = batch()
    with pytest.raises(deployai.InvalidParameterError, match=r"an async iterable goes to AsyncDeployAI's batches"):
        emulator.client().chat.completions.create_many(source)  # type: ignore[arg-type]
    asyncio.run(source.aclose())
    assert emulator.requests == []


def test_progress_true_without_tqdm_names_the_package_for_an_async_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # The bar was made as the first request was read, in the reading task: its error ended that task
    # and the batch waited for good for a request that would never come.
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # as if tqdm were not installed
    monkeypatch.setitem(sys.modules, "tqdm", None)
    emulator = Emulator()

    async def batch() -> AsyncIterator[dict[str, Any]]:
        yield {"model": MODEL, "messages": user("hi")}

    async def main() -> None:
        async with emulator.async_client() as client:
            await asyncio.wait_for(client.chat.completions.create_many(batch(), progress=True), 30)

    with pytest.raises(ModuleNotFoundError, match="pip install tqdm"):
        asyncio.run(main())
    assert emulator.requests == []


def test_an_async_batch_whose_source_waits_as_its_loop_ends_says_so_when_read_on() -> None:
    # The loop's end cancelled the task reading the source, which was taken for the source's end:
    # read on from the next loop, the batch read as finished, its unsent work lost unnoticed.
    emulator = Emulator(rate_limit=1_000_000)
    client = emulator.async_client()

    async def waits_for_more() -> AsyncIterator[dict[str, Any]]:
        for request in requests_for("one", "two", "three"):
            yield request
        await asyncio.Event().wait()  # a work queue with no work yet
        yield {}  # never reached

    finishing = client.chat.completions.as_completed(waits_for_more(), concurrency=4)

    async def first() -> list[int]:
        return [index for index, _ in [await finishing.__anext__() for _ in range(3)]]

    assert sorted(asyncio.run(first())) == [0, 1, 2]

    async def read_on() -> list[int]:
        return [index async for index, _ in finishing]

    with pytest.raises(deployai.DeployAIError, match=r"after 3 of the results of the 3 requests read so far"):
        asyncio.run(read_on())


class _QuerySet:
    """A source with a length that may be read either way, but refuses the blocking way in async code (an ORM's)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def __len__(self) -> int:
        return len(self.texts)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        raise RuntimeError("You cannot call this from an async context - use an async iteration.")

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        for text in self.texts:
            yield {"model": MODEL, "messages": user(text)}


def test_an_async_batch_reads_a_source_that_has_both_ways_asynchronously() -> None:
    emulator = Emulator(rate_limit=1_000_000)

    async def main() -> list[Any]:
        async with emulator.async_client() as client:
            return await client.chat.completions.create_many(_QuerySet(["a", "b", "c"]), concurrency=2)

    assert answers(asyncio.run(main())) == ["You said: a", "You said: b", "You said: c"]

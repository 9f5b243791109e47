"""The only place that sends, sleeps and closes: two thin shells that carry out one pure plan.

`call_plan` decides everything about one call (retries through `request_flow`, reading an error
body, checking that a stream is an event stream, timings) and yields what to do: `Send`, `Sleep`,
`ReadBody`, or an `Opened` result. `SyncHTTP` and `AsyncHTTP` only do it, blocking or awaiting.

A streaming request is returned as soon as its headers arrive with the plan left open: if the
stream then fails before its first event, the stream hands the failure back (`Opened.retry`) and
the plan decides, as for any request, whether to sleep and send again. Once an event has been read
the plan is dropped, so a later failure is raised and the start of an answer never comes twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar, Union

import httpx

from ._config import ClientOptions
from ._exceptions import DeployAIError
from ._request import PreparedRequest
from ._retry import Sleep, request_flow
from ._streaming import _abandoned, check_event_stream, close_abandoned, needs_body

_Retry = TypeVar("_Retry")


@dataclass(slots=True)
class Opened(Generic[_Retry]):
    """A response worth returning, with timings, and for a stream the way to retry before its first event.

    Attributes:
        response: the response (for a stream: headers read, body not yet).
        started_at: `perf_counter()` when the call began (its first attempt).
        elapsed: seconds the last attempt took: until the whole body (or, for a stream, the headers).
        retry: for a stream, `retry(failure)` continues the plan after a failure before the first
            event: it sleeps, sends again and returns the new `Opened`, or raises the typed error.
    """

    response: httpx.Response
    started_at: float
    elapsed: float
    retry: _Retry | None = None


@dataclass(frozen=True, slots=True)
class Send:
    """Send this request (streaming the body when `stream`); answer with the response."""

    request: httpx.Request
    stream: bool


@dataclass(frozen=True, slots=True)
class ReadBody:
    """Read this streamed response's body whole, then close it."""

    response: httpx.Response


Op: TypeAlias = Union[Send, Sleep, ReadBody, "Opened[Any]"]
Plan: TypeAlias = Generator[Op, Any, "Opened[Any]"]
SyncRetry = Callable[[httpx.HTTPError], "Opened[Any]"]
AsyncRetry = Callable[[httpx.HTTPError], Awaitable["Opened[Any]"]]

# Module-level names so that tests can replace the waiting, and only the waiting, with a recorder.
_sleep = time.sleep
_async_sleep = asyncio.sleep


def call_plan(prepared: PreparedRequest, options: ClientOptions) -> Plan:
    """Everything one call decides, as a generator of I/O to do. Failed I/O is thrown back in.

    It returns the final `Opened`; for a stream it yields an `Opened` at the headers instead, and
    may later be resumed with a failure from before the first event.
    """
    flow = request_flow(
        prepared.request,
        max_retries=options.max_retries,
        max_retry_wait=options.max_retry_wait,
        clock=time.time,
        random=random.random,
    )
    send = Send(prepared.request, prepared.stream)
    started_at = time.perf_counter()
    action = next(flow)
    while True:
        outcome: Any = None
        if isinstance(action, Sleep):
            yield action
        else:
            sent_at = time.perf_counter()
            try:
                response = yield send
                if prepared.stream and needs_body(response):
                    yield ReadBody(response)
                    check_event_stream(response)
            except httpx.HTTPError as exc:
                outcome = exc
            else:
                opened: Opened[Any] = Opened(response, started_at, time.perf_counter() - sent_at)
                if prepared.stream and response.status_code < 400:
                    outcome = yield opened  # resumed only with a failure before the first event
                else:
                    outcome = response
        try:
            action = flow.send(outcome)
        except StopIteration:
            return opened


def _closed_error() -> DeployAIError:
    return DeployAIError("This client has been closed: create a new client (or use it inside `with`).")


class SyncHTTP:
    """Carries out call plans with a blocking `httpx.Client`."""

    __slots__ = ("client", "owned")

    def __init__(self, client: httpx.Client, *, owned: bool) -> None:
        self.client = client
        self.owned = owned

    def send(self, prepared: PreparedRequest, options: ClientOptions) -> Opened[SyncRetry]:
        """Send with retries; return the successful response or raise the typed error."""
        if self.client.is_closed:
            raise _closed_error()
        if _abandoned:  # streams dropped unclosed: release them here, where no pool lock is held
            close_abandoned()
        return self._run(call_plan(prepared, options), None)

    def _run(self, plan: Plan, answer: Any) -> Opened[SyncRetry]:
        failure: httpx.HTTPError | None = None
        while True:
            try:
                op = plan.send(answer) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer = failure = None
            if isinstance(op, Opened):
                op.retry = lambda error: self._run(plan, error)
                return op
            try:
                if isinstance(op, Send):
                    answer = self.client.send(op.request, stream=op.stream)
                elif isinstance(op, Sleep):
                    _sleep(op.seconds)
                else:
                    try:
                        op.response.read()
                    finally:
                        op.response.close()
            except httpx.HTTPError as exc:
                failure = exc

    def close(self) -> None:
        """Close the pool if it is ours; a borrowed client is left open."""
        close_abandoned()
        if self.owned:
            self.client.close()


class AsyncHTTP:
    """Carries out call plans with an `httpx.AsyncClient`."""

    __slots__ = ("client", "owned")

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self.client = client
        self.owned = owned

    async def send(self, prepared: PreparedRequest, options: ClientOptions) -> Opened[AsyncRetry]:
        """Send with retries; return the successful response or raise the typed error."""
        if self.client.is_closed:
            raise _closed_error()
        # No abandoned-stream queue here: a dropped `AsyncStream` hands its close to its event loop.
        return await self._run(call_plan(prepared, options), None)

    async def _run(self, plan: Plan, answer: Any) -> Opened[AsyncRetry]:
        failure: httpx.HTTPError | None = None
        while True:
            try:
                op = plan.send(answer) if failure is None else plan.throw(failure)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            answer = failure = None
            if isinstance(op, Opened):
                op.retry = lambda error: self._run(plan, error)
                return op
            try:
                if isinstance(op, Send):
                    answer = await self.client.send(op.request, stream=op.stream)
                elif isinstance(op, Sleep):
                    await _async_sleep(op.seconds)
                else:
                    try:
                        await op.response.aread()
                    finally:
                        await op.response.aclose()
            except httpx.HTTPError as exc:
                failure = exc

    async def close(self) -> None:
        """Close the pool if it is ours; a borrowed client is left open."""
        if self.owned:
            await self.client.aclose()

"""The only place that sends, sleeps and closes. Both drivers run the same pure plan (`request_flow`).

A streaming request is returned as soon as its headers arrive, with the plan left open: if the
stream then fails before its first event, the stream hands the failure back (`Opened.retry`) and
the plan decides, as for any request, whether to sleep and send again. Once an event has been read,
the plan is dropped, so a failure is raised and the start of an answer is never received twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httpx

from ._config import ClientOptions
from ._exceptions import DeployAIError
from ._request import PreparedRequest
from ._retry import SEND, Flow, Outcome, request_flow
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


SyncRetry = Callable[[httpx.HTTPError], "Opened[Any]"]
AsyncRetry = Callable[[httpx.HTTPError], Awaitable["Opened[Any]"]]

# Module-level names so that tests can replace the waiting, and only the waiting, with a recorder.
_sleep = time.sleep
_async_sleep = asyncio.sleep


def _plan(prepared: PreparedRequest, options: ClientOptions) -> Flow:
    return request_flow(
        prepared.request,
        max_retries=options.max_retries,
        max_retry_wait=options.max_retry_wait,
        clock=time.time,
        random=random.random,
    )


def _closed_error() -> DeployAIError:
    return DeployAIError("This client has been closed: create a new client (or use it inside `with`).")


class SyncHTTP:
    """Drives request plans with a blocking `httpx.Client`."""

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
        flow = _plan(prepared, options)
        return self._drive(flow, next(flow), prepared, time.perf_counter())

    def _drive(self, flow: Flow, action: Any, prepared: PreparedRequest, started_at: float) -> Opened[SyncRetry]:
        try:
            while True:
                outcome: Outcome = None
                if action is SEND:
                    sent_at = time.perf_counter()
                    try:
                        response = outcome = self.client.send(prepared.request, stream=prepared.stream)
                        if prepared.stream and needs_body(response):
                            try:
                                response.read()
                            finally:
                                response.close()
                            check_event_stream(response)
                    except httpx.HTTPError as exc:
                        outcome = exc
                    else:
                        opened: Opened[SyncRetry] = Opened(response, started_at, time.perf_counter() - sent_at)
                        if prepared.stream and response.status_code < 400:
                            opened.retry = lambda failure: self._drive(flow, flow.send(failure), prepared, started_at)
                            return opened
                else:
                    _sleep(action.seconds)
                action = flow.send(outcome)
        except StopIteration:
            return opened

    def close(self) -> None:
        """Close the pool if it is ours; a borrowed client is left open."""
        close_abandoned()
        if self.owned:
            self.client.close()


class AsyncHTTP:
    """Drives request plans with an `httpx.AsyncClient`."""

    __slots__ = ("client", "owned")

    def __init__(self, client: httpx.AsyncClient, *, owned: bool) -> None:
        self.client = client
        self.owned = owned

    async def send(self, prepared: PreparedRequest, options: ClientOptions) -> Opened[AsyncRetry]:
        """Send with retries; return the successful response or raise the typed error."""
        if self.client.is_closed:
            raise _closed_error()
        # No abandoned-stream queue here: a dropped `AsyncStream` hands its close to its event loop.
        flow = _plan(prepared, options)
        return await self._drive(flow, next(flow), prepared, time.perf_counter())

    async def _drive(self, flow: Flow, action: Any, prepared: PreparedRequest, started_at: float) -> Opened[AsyncRetry]:
        try:
            while True:
                outcome: Outcome = None
                if action is SEND:
                    sent_at = time.perf_counter()
                    try:
                        response = outcome = await self.client.send(prepared.request, stream=prepared.stream)
                        if prepared.stream and needs_body(response):
                            try:
                                await response.aread()
                            finally:
                                await response.aclose()
                            check_event_stream(response)
                    except httpx.HTTPError as exc:
                        outcome = exc
                    else:
                        opened: Opened[AsyncRetry] = Opened(response, started_at, time.perf_counter() - sent_at)
                        if prepared.stream and response.status_code < 400:
                            opened.retry = lambda failure: self._drive(flow, flow.send(failure), prepared, started_at)
                            return opened
                else:
                    await _async_sleep(action.seconds)
                action = flow.send(outcome)
        except StopIteration:
            return opened

    async def close(self) -> None:
        """Close the pool if it is ours; a borrowed client is left open."""
        if self.owned:
            await self.client.aclose()

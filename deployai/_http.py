"""The only place that sends, sleeps and closes. Both drivers run the same pure plan (`request_flow`).

For a streaming request, "sending" also reads up to the first server-sent event, so that a failure
before anything could reach the user is retried like any other, and a failure after it never is.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
from httpx_sse import EventSource, ServerSentEvent, SSEError

from ._config import ClientOptions
from ._exceptions import DeployAIError, make_validation_error
from ._request import PreparedRequest
from ._retry import SEND, Flow, Outcome, request_flow
from ._streaming import _abandoned, close_abandoned

_Events = TypeVar("_Events", Iterator[ServerSentEvent], AsyncIterator[ServerSentEvent])


@dataclass(slots=True)
class Opened(Generic[_Events]):
    """A successful response, and for a stream its events with the first one already read."""

    response: httpx.Response
    started_at: float
    events: _Events | None = None
    first: ServerSentEvent | None = None


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

    def _exchange(self, prepared: PreparedRequest) -> Opened[Iterator[ServerSentEvent]]:
        started = time.perf_counter()
        response = self.client.send(prepared.request, stream=prepared.stream)
        opened: Opened[Iterator[ServerSentEvent]] = Opened(response, started)
        if not prepared.stream:
            return opened
        try:
            if response.status_code >= 400:
                response.read()
                response.close()
                return opened
            events = EventSource(response).iter_sse()
            opened.events = events
            opened.first = next(events, None)
        except SSEError:
            response.read()
            response.close()
            raise make_validation_error(response, "event stream (text/event-stream)") from None
        except BaseException:
            response.close()
            raise
        return opened

    def send(self, prepared: PreparedRequest, options: ClientOptions) -> Opened[Iterator[ServerSentEvent]]:
        """Send with retries; return the successful response or raise the typed error."""
        if self.client.is_closed:
            raise _closed_error()
        if _abandoned:
            close_abandoned()
        flow = _plan(prepared, options)
        action = next(flow)
        try:
            while True:
                outcome: Outcome = None
                if action is SEND:
                    try:
                        opened = self._exchange(prepared)
                        outcome = opened.response
                    except httpx.HTTPError as exc:
                        outcome = exc
                else:
                    _sleep(action.seconds)  # type: ignore[union-attr]
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

    async def _exchange(self, prepared: PreparedRequest) -> Opened[AsyncIterator[ServerSentEvent]]:
        started = time.perf_counter()
        response = await self.client.send(prepared.request, stream=prepared.stream)
        opened: Opened[AsyncIterator[ServerSentEvent]] = Opened(response, started)
        if not prepared.stream:
            return opened
        try:
            if response.status_code >= 400:
                await response.aread()
                await response.aclose()
                return opened
            events = EventSource(response).aiter_sse()
            opened.events = events
            opened.first = await anext(events, None)
        except SSEError:
            await response.aread()
            await response.aclose()
            raise make_validation_error(response, "event stream (text/event-stream)") from None
        except BaseException:
            await response.aclose()
            raise
        return opened

    async def send(self, prepared: PreparedRequest, options: ClientOptions) -> Opened[AsyncIterator[ServerSentEvent]]:
        """Send with retries; return the successful response or raise the typed error."""
        if self.client.is_closed:
            raise _closed_error()
        flow = _plan(prepared, options)
        action = next(flow)
        try:
            while True:
                outcome: Outcome = None
                if action is SEND:
                    try:
                        opened = await self._exchange(prepared)
                        outcome = opened.response
                    except httpx.HTTPError as exc:
                        outcome = exc
                else:
                    await _async_sleep(action.seconds)  # type: ignore[union-attr]
                action = flow.send(outcome)
        except StopIteration:
            return opened

    async def close(self) -> None:
        """Close the pool if it is ours; a borrowed client is left open."""
        if self.owned:
            await self.client.aclose()

"""`client.models`: the models you can use, all at once or one by id."""

from __future__ import annotations

import sys
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from functools import cached_property
from typing import Any, Final, cast

from typing_extensions import Unpack

from .._endpoint import AsyncCaller, Endpoint, SyncCaller
from .._exceptions import DeployAIError
from .._request import build_get_request
from .._response import RawResponse
from ..types.models import Model, ModelList
from ..types.request_options import RequestOptions

__all__ = ["AsyncModelListing", "AsyncModels", "Models"]

LIST: Final = Endpoint(name="list", method="GET", path="/models", result=ModelList, build=build_get_request)
"""`GET /models`: every model your key may use."""

RETRIEVE: Final = Endpoint(
    name="retrieve",
    method="GET",
    path="/models/{model}",
    result=Model,
    build=build_get_request,
    path_params=("model",),
)
"""`GET /models/{model}`: one model by id (`NotFoundError` for an unknown id)."""


def _own(options: RequestOptions, **more: str) -> dict[str, Any]:
    """A call's own keyword dict (`**options`), with `more`, as the arguments the SDK reads.

    The dict itself, not a copy: the SDK hides a per-call key in it (`hide_call_keys`), and this
    frame shows it as `options` in a traceback printed with its locals.
    """
    params = cast("dict[str, Any]", options)
    params.update(more)
    return params


class Models:
    """The models endpoints for `DeployAI`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models available to your key; iterate over the result or read `.data`."""
        result: ModelList = self._client._call(LIST, _own(options), raw=False)
        return result

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model by id, such as `"openai/gpt-4o"`; raises `NotFoundError` for an id the API does not know."""
        result: Model = self._client._call(RETRIEVE, _own(options, model=model), raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> ModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return ModelsWithRawResponse(self._client)


class ModelsWithRawResponse:
    """`client.models.with_raw_response`: each method returns a `RawResponse`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = self._client._call(LIST, _own(options), raw=True)
        return result

    def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> RawResponse[Model]:
        """Retrieve one model and return the raw response; `.parse()` gives the `Model`."""
        result: RawResponse[Model] = self._client._call(RETRIEVE, _own(options, model=model), raw=True)
        return result


class AsyncModelListing(Coroutine[Any, Any, ModelList]):
    """What `AsyncDeployAI.models.list()` returns: `await` it for the `ModelList`, or `async for` over its models.

    It is a coroutine (for `asyncio.create_task`, `gather` and the like), and the request is sent
    when it is first awaited or iterated. Used again (awaited, iterated, or given to a task), it
    gives the same `ModelList` without sending, as a sync `ModelList` can be iterated again; one
    that failed or was cancelled before its answer sends the request again. Like any coroutine, it
    is awaited by one task at a time: a second task that awaits it while its request is in flight
    gets `DeployAIError` (await the first task instead).
    """

    __slots__ = ("_call", "_closed", "_kept_list", "_running")

    def __init__(self, call: Callable[[], Coroutine[Any, Any, ModelList]]) -> None:
        self._call = call
        self._running: Coroutine[Any, Any, ModelList] | None = None  # made at the first use
        self._kept_list: ModelList | None = None
        self._closed = False

    def __del__(self) -> None:
        # As Python warns of a coroutine never awaited: `client.models.list()` without `await`
        # passes type checkers (this is no coroutine type they know) and sends nothing.
        if self._running is None and not self._closed and not sys.is_finalizing():  # at exit, warnings may be gone
            warnings.warn(
                "AsyncDeployAI.models.list() was never awaited nor iterated: nothing was sent "
                "(await it, or `async for` over it)",
                RuntimeWarning,
                stacklevel=2,
            )

    def _coroutine(self) -> Coroutine[Any, Any, ModelList]:
        running = self._running
        if running is None or getattr(running, "cr_frame", True) is None:  # first use, or the last one ended
            self._running = running = self._send() if self._kept_list is None else self._again()
        return running

    async def _send(self) -> ModelList:
        self._kept_list = result = await self._call()
        return result

    async def _again(self) -> ModelList:
        result = self._kept_list
        assert result is not None
        return result

    def __await__(self) -> Generator[Any, None, ModelList]:
        """Send the request (unless an answer came already); the result is the `ModelList`."""
        running = self._coroutine()
        # A coroutine refuses a second awaiter itself, but not one reached through `__await__`:
        # the second task would step the first one's request, which then fails in both.
        if getattr(running, "cr_await", None) is not None or getattr(running, "cr_running", False):
            raise DeployAIError(
                "This models listing is being awaited by another task: a listing is awaited by one task at a "
                "time. Await that task instead, or call models.list() again for a request of its own."
            )
        return running.__await__()

    def send(self, value: Any) -> Any:
        """Step the request on (what an event loop does with a coroutine)."""
        return self._coroutine().send(value)

    def throw(self, *error: Any) -> Any:
        """Raise an exception at the point the request waits (what an event loop does on cancellation)."""
        return self._coroutine().throw(*error)

    def close(self) -> None:
        """Stop the request where it waits, if it was started."""
        self._closed = True
        if self._running is not None:
            self._running.close()

    async def __aiter__(self) -> AsyncIterator[Model]:
        """Send the request (unless an answer came already), then give its models one by one.

        As `async for` over the openai SDK's list does.
        """
        for model in await self:
            yield model


class AsyncModels:
    """The models endpoints for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    def list(self, **options: Unpack[RequestOptions]) -> AsyncModelListing:
        """List the models available to your key: `await` it for the `ModelList`, or `async for` over its models."""
        return AsyncModelListing(lambda: self._list(options))

    async def _list(self, options: RequestOptions) -> ModelList:
        result: ModelList = await self._client._call(LIST, _own(options), raw=False)
        return result

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """One model by id, such as `"openai/gpt-4o"`; raises `NotFoundError` for an id the API does not know."""
        result: Model = await self._client._call(RETRIEVE, _own(options, model=model), raw=False)
        return result

    @cached_property
    def with_raw_response(self) -> AsyncModelsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return AsyncModelsWithRawResponse(self._client)


class AsyncModelsWithRawResponse:
    """`client.models.with_raw_response` for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    async def list(self, **options: Unpack[RequestOptions]) -> RawResponse[ModelList]:
        """List the models and return the raw response; `.parse()` gives the `ModelList`."""
        result: RawResponse[ModelList] = await self._client._call(LIST, _own(options), raw=True)
        return result

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> RawResponse[Model]:
        """Retrieve one model and return the raw response; `.parse()` gives the `Model`."""
        result: RawResponse[Model] = await self._client._call(RETRIEVE, _own(options, model=model), raw=True)
        return result

"""`client.chat.completions`: create chat completions, whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Callable, Generator, Iterable, Mapping
from functools import cached_property
from typing import Any, Final, overload

from typing_extensions import Unpack

from .. import _streaming
from .._endpoint import AsyncCaller, Endpoint, SyncCaller
from .._exceptions import DeployAIError, InvalidParameterError
from .._fanout import Progress, in_order, run_many, run_many_async
from .._request import CHAT_ARGUMENTS, build_chat_request, unknown_params
from .._response import RawResponse
from .._streaming import AsyncStream, Stream
from ..types.chat import ChatCompletion, ChatCompletionChunk
from ..types.chat_params import (
    CompletionCreateParams,
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from ..types.chat_request import ChatCompletionRequest

__all__ = ["AsyncChat", "AsyncCompletions", "Chat", "Completions"]

CREATE: Final = Endpoint(
    name="create",
    method="POST",
    path="/chat/completions",
    result=ChatCompletion,
    build=build_chat_request,
    chunk=ChatCompletionChunk,
)
"""`POST /chat/completions`: a `ChatCompletion`, or with `stream=True` a stream of `ChatCompletionChunk`."""

# `Stream.get_final_completion` is annotated with these names, which `_streaming` cannot import when it
# loads (the models load here, at a client's first `.chat`): handed to it now, so that
# `typing.get_type_hints` resolves them.
vars(_streaming).update(ChatCompletion=ChatCompletion, ChatCompletionChunk=ChatCompletionChunk)


def _whole(params: Mapping[str, Any] | ChatCompletionRequest) -> dict[str, Any]:
    """One `create_many` request as `create`'s arguments; a malformed one raises `InvalidParameterError`.

    `create` itself raises `TypeError` for a missing or unknown argument, as a Python call does. In a
    batch that is one item's failure, returned in its place, so that it never loses the others.
    """
    if isinstance(params, ChatCompletionRequest):
        params = params.model_dump(exclude_unset=True)
    # Only the type of an item, or the names of unknown arguments, are shown: an item's values may
    # hold secrets (`extra_headers`).
    elif not isinstance(params, Mapping):
        raise InvalidParameterError("request", type(params), "a dict of create() arguments or a ChatCompletionRequest")
    if not params.keys() <= CHAT_ARGUMENTS:
        unknown = sorted(k if type(k) is str else f"<{type(k).__name__}>" for k in params.keys() - CHAT_ARGUMENTS)
        hint = str(unknown_params("create", unknown, CHAT_ARGUMENTS)).partition(": ")[2]
        raise InvalidParameterError("request", unknown, f"create() arguments only, not {hint}")
    for name in ("model", "messages"):
        if name not in params:
            raise InvalidParameterError(name, None, "given in every request")
    if params.get("stream") is True:
        raise InvalidParameterError("stream", True, "left out of create_many requests: it returns whole completions")
    return dict(params)


class Completions:
    """Chat completions for `DeployAI`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    @overload
    def create(self, **params: Unpack[CompletionCreateParamsNonStreaming]) -> ChatCompletion: ...
    @overload
    def create(self, **params: Unpack[CompletionCreateParamsStreaming]) -> Stream[ChatCompletionChunk]: ...
    @overload
    def create(self, **params: Unpack[CompletionCreateParams]) -> ChatCompletion | Stream[ChatCompletionChunk]: ...
    def create(self, **params: Any) -> Any:  # noqa: D417 - `**params` is documented name by name
        """Create a chat completion: the model's answer to `messages`.

        Keyword Args:
            model (str): the model id in `provider/model` form, for example `"openai/gpt-4o"`.
            messages (list): the conversation so far: dicts such as `{"role": "user", "content": "Hello!"}`
                or message models (`deployai.types.UserMessage`, ...). Roles: system, developer, user,
                assistant, tool.
            stream (bool): `True` to receive the answer chunk by chunk as a `Stream` (default `False`).
            temperature (float): sampling temperature from 0 to 2 (server default 1).
            max_tokens (int): the most tokens to generate, at least 1.
            max_completion_tokens (int): the same cap under the name reasoning models (such as
                `openai/o3-mini`) take, at least 1.
            top_p (float): nucleus sampling from 0 to 1 (server default 1).
            timeout (float | httpx.Timeout): this call's timeout in seconds, instead of the client's.

        Also `stop`, `n`, `seed`, `presence_penalty`, `frequency_penalty`, `user`, `response_format`,
        `tools`, `tool_choice`, `parallel_tool_calls`, `stream_options`, `logprobs`, `top_logprobs`,
        `logit_bias`, `reasoning_effort`, `metadata`, `store` and `service_tier`, passed on to the
        provider as the OpenAI API defines them; and `extra_headers`, `extra_query`, `extra_body`: more
        headers, query parameters or JSON fields for this call (any other parameter goes in
        `extra_body`). Every parameter is keyword-only and typed in
        `deployai.types.chat_params.CompletionCreateParams`.

        A parameter that is not given is not sent. Bad values raise `InvalidParameterError` before any byte
        is sent; API failures raise the `APIStatusError` subclass for their status, after retries.
        """
        return self._client._call(CREATE, params, raw=False)

    def create_many(
        self,
        requests: Iterable[Mapping[str, Any] | ChatCompletionRequest],
        *,
        concurrency: int = 8,
        on_progress: Progress | None = None,
        progress: bool = False,
    ) -> list[ChatCompletion | DeployAIError]:
        """Create many chat completions with bounded concurrency; results in input order.

        Args:
            requests: keyword dicts for `create`, or `ChatCompletionRequest`s (without `stream=True`), one
                per completion. A list or tuple is taken as it is; any other iterable (a generator, a
                queue's consumer) is read as the batch goes, in the caller's thread, at most
                `concurrency` requests ahead of the results handed over.
            concurrency: how many calls may be in flight at once (default 8); each goes through the client's
                retries as `create` does.
            on_progress: called as `on_progress(done, total)` each time an item finishes; a plain
                function (an `async def` one is refused with `InvalidParameterError`).
            progress: draw a progress bar with tqdm (`tqdm.auto`, so notebooks get theirs); tqdm must be
                installed.

        Returns:
            One item per request, in order: its `ChatCompletion`, or the `DeployAIError` that ended it (one
            failure never loses the others). Interrupting (Ctrl-C) or cancelling the call stops everything not
            yet finished at once, and the results that had come are lost with it: `as_completed` hands each
            result over as it finishes, so that an interrupted batch keeps those.
        """
        return in_order(
            self.as_completed(requests, concurrency=concurrency, on_progress=on_progress, progress=progress)
        )

    def as_completed(
        self,
        requests: Iterable[Mapping[str, Any] | ChatCompletionRequest],
        *,
        concurrency: int = 8,
        on_progress: Progress | None = None,
        progress: bool = False,
    ) -> Generator[tuple[int, ChatCompletion | DeployAIError], None, None]:
        """Create many chat completions as `create_many` does, handing each result over as soon as it finishes.

        `for index, result in client.chat.completions.as_completed(requests):` gets each call's place
        in `requests` and its result, in the order the calls finish, so that a long batch can write
        its results out as they come: one interrupted (Ctrl-C) keeps every result already handed over.
        Closing the iterator stops everything not yet finished: no other request and no retry is
        sent. A Ctrl-C while it waits for the next result closes it; so does leaving a loop early
        (`break`, an exception) once the iterator is dropped, which for a `for` over this call is at
        once. One kept in a variable can be iterated on after an interrupt, or closed with `close()`.

        Args:
            requests: as for `create_many`.
            concurrency: as for `create_many`.
            on_progress: as for `create_many`.
            progress: as for `create_many`.

        Returns:
            A generator of `(index, result)`: `result` is the `ChatCompletion`, or the `DeployAIError`
            that ended that request. Each request comes once.

        Raises:
            InvalidParameterError: `concurrency` is not a whole number >= 1 (raised here, before anything
                is sent).
        """

        def one(params: Mapping[str, Any] | ChatCompletionRequest, stopped: Callable[[], bool]) -> ChatCompletion:
            result: ChatCompletion = self._client._call(CREATE, _whole(params), raw=False, stopped=stopped)
            return result

        return run_many(
            one,
            requests,
            concurrency=concurrency,
            on_progress=on_progress,
            progress=progress,
            on_stop=self._client._wake_stopped,
        )

    @cached_property
    def with_raw_response(self) -> CompletionsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return CompletionsWithRawResponse(self._client)


class CompletionsWithRawResponse:
    """`client.chat.completions.with_raw_response`: `create` returns a `RawResponse`."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    @overload
    def create(self, **params: Unpack[CompletionCreateParamsNonStreaming]) -> RawResponse[ChatCompletion]: ...
    @overload
    def create(self, **params: Unpack[CompletionCreateParamsStreaming]) -> RawResponse[Stream[ChatCompletionChunk]]: ...
    @overload
    def create(
        self, **params: Unpack[CompletionCreateParams]
    ) -> RawResponse[ChatCompletion] | RawResponse[Stream[ChatCompletionChunk]]: ...
    def create(self, **params: Any) -> Any:
        """Create a chat completion and return the raw response; `.parse()` gives the typed result."""
        return self._client._call(CREATE, params, raw=True)


class AsyncCompletions:
    """Chat completions for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    @overload
    async def create(self, **params: Unpack[CompletionCreateParamsNonStreaming]) -> ChatCompletion: ...
    @overload
    async def create(self, **params: Unpack[CompletionCreateParamsStreaming]) -> AsyncStream[ChatCompletionChunk]: ...
    @overload
    async def create(
        self, **params: Unpack[CompletionCreateParams]
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]: ...
    async def create(self, **params: Any) -> Any:
        """Create a chat completion (awaited): the parameters, result and errors of `Completions.create`."""
        return await self._client._call(CREATE, params, raw=False)

    create.__doc__ = Completions.create.__doc__  # the whole text for help(), written once

    async def create_many(
        self,
        requests: Iterable[Mapping[str, Any] | ChatCompletionRequest]
        | AsyncIterable[Mapping[str, Any] | ChatCompletionRequest],
        *,
        concurrency: int = 8,
        on_progress: Progress | None = None,
        progress: bool = False,
    ) -> list[ChatCompletion | DeployAIError]:
        """Create many chat completions (awaited): the parameters and results of `Completions.create_many`."""
        finishing = self.as_completed(requests, concurrency=concurrency, on_progress=on_progress, progress=progress)
        return in_order([finished async for finished in finishing])

    create_many.__doc__ = (Completions.create_many.__doc__ or "").replace(
        "requests ahead of the results handed over.",
        "requests ahead of the results handed over. An async iterable (an async generator) is read\n"
        "                likewise, by a task of the batch's own (see `as_completed`).",
    )

    def as_completed(
        self,
        requests: Iterable[Mapping[str, Any] | ChatCompletionRequest]
        | AsyncIterable[Mapping[str, Any] | ChatCompletionRequest],
        *,
        concurrency: int = 8,
        on_progress: Progress | None = None,
        progress: bool = False,
    ) -> AsyncGenerator[tuple[int, ChatCompletion | DeployAIError], None]:
        """Create many chat completions, each handed over as it finishes: `Completions.as_completed`, with `async for`.

        Closing it (`aclose()`, or `async with contextlib.aclosing(...)` around the loop) cancels every
        call in flight, as cancelling the task that reads it does; one left early and dropped is
        closed by its event loop soon after. Its calls run on the event loop that first reads it:
        read on after that loop ended (a second `asyncio.run`), it raises `DeployAIError`.

        `requests` may also be an async iterable (an async generator, a channel's receiving end):
        it is read as the batch goes, by a task of the batch's own, at most `concurrency` requests
        ahead of the results handed over, and results are handed over while it waits for more.
        Leaving the batch early cancels a read in progress.
        """

        async def one(params: Mapping[str, Any] | ChatCompletionRequest) -> ChatCompletion:
            result: ChatCompletion = await self._client._call(CREATE, _whole(params), raw=False)
            return result

        return run_many_async(one, requests, concurrency=concurrency, on_progress=on_progress, progress=progress)

    @cached_property
    def with_raw_response(self) -> AsyncCompletionsWithRawResponse:
        """The same methods, returning a `RawResponse` with status, headers and rate limit."""
        return AsyncCompletionsWithRawResponse(self._client)


class AsyncCompletionsWithRawResponse:
    """`client.chat.completions.with_raw_response` for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    @overload
    async def create(self, **params: Unpack[CompletionCreateParamsNonStreaming]) -> RawResponse[ChatCompletion]: ...
    @overload
    async def create(
        self, **params: Unpack[CompletionCreateParamsStreaming]
    ) -> RawResponse[AsyncStream[ChatCompletionChunk]]: ...
    @overload
    async def create(
        self, **params: Unpack[CompletionCreateParams]
    ) -> RawResponse[ChatCompletion] | RawResponse[AsyncStream[ChatCompletionChunk]]: ...
    async def create(self, **params: Any) -> Any:
        """Create a chat completion and return the raw response; `.parse()` gives the typed result."""
        return await self._client._call(CREATE, params, raw=True)


class Chat:
    """`client.chat`: the chat endpoints."""

    def __init__(self, client: SyncCaller) -> None:
        self._client = client

    @cached_property
    def completions(self) -> Completions:
        """Create chat completions."""
        return Completions(self._client)


class AsyncChat:
    """`client.chat` for `AsyncDeployAI`."""

    def __init__(self, client: AsyncCaller) -> None:
        self._client = client

    @cached_property
    def completions(self) -> AsyncCompletions:
        """Create chat completions."""
        return AsyncCompletions(self._client)

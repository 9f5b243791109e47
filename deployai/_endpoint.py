"""Endpoints as data: what a resource declares, and what a client needs in order to carry one out.

An `Endpoint` says everything about one API method in one place: its HTTP method and path, how its
arguments become a request, what a whole answer is, and what a streamed answer is made of. Both
clients carry out any endpoint the same way (`_call`), so a new endpoint is a declaration in its
resource and its types, nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import httpx

    from ._config import ClientOptions
    from .types._base import APIResult
    from .types.chat import ChatCompletionChunk

__all__ = ["AsyncCaller", "Endpoint", "PreparedRequest", "SyncCaller"]

_R = TypeVar("_R", bound="APIResult")


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request ready to send, whether its answer is a stream, and the call's deadline in seconds."""

    request: httpx.Request
    stream: bool
    total_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[_R]):
    """One API method, declared by its resource.

    Attributes:
        name: the method's name in messages, for example `create` or `retrieve`.
        method: the HTTP method.
        path: the path under the base URL; `{name}` parts are filled from the arguments named in
            `path_params`, for example `/models/{model}`.
        result: the type of a whole answer.
        build: turns the client's options, this endpoint and the call's keyword arguments into a
            `PreparedRequest`, refusing bad arguments before any byte is sent.
        chunk: the type of one chunk when the answer is streamed; None if it never is.
        path_params: the arguments that go into the path.
    """

    name: str
    method: str
    path: str
    result: type[_R]
    build: Callable[[ClientOptions, Endpoint[Any], Mapping[str, Any]], PreparedRequest] = field(repr=False)
    chunk: type[ChatCompletionChunk] | None = None
    path_params: tuple[str, ...] = ()


class SyncCaller(Protocol):
    """What a resource needs from `DeployAI`: a way to carry out an endpoint."""

    def _call(
        self, endpoint: Endpoint[Any], params: dict[str, Any], *, raw: bool, stopped: Callable[[], bool] | None = None
    ) -> Any: ...

    def _wake_stopped(self) -> None:
        """Wake this client's calls waiting at a rate limiter, for those whose `stopped()` is true to end."""
        ...


class AsyncCaller(Protocol):
    """What a resource needs from `AsyncDeployAI`: a way to carry out an endpoint."""

    async def _call(self, endpoint: Endpoint[Any], params: dict[str, Any], *, raw: bool) -> Any: ...

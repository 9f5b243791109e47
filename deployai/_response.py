"""Turning a successful response into what the caller asked for, and the `with_raw_response` wrapper."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from ._exceptions import make_validation_error
from ._ratelimit import RateLimit
from .types._base import APIResult
from .types.chat import ChatCompletionChunk

if TYPE_CHECKING:
    from ._http import Opened
    from ._request import PreparedRequest

__all__ = ["RawResponse", "finish", "parse_result"]

_T = TypeVar("_T")
_R = TypeVar("_R", bound=APIResult)


def parse_result(response: httpx.Response, cast_to: type[_R]) -> _R:
    """Validate a JSON body straight into `cast_to` (no `json.loads` and Python walk on the hot path)."""
    try:
        result: _R = cast_to.__pydantic_validator__.validate_json(response.content)
    except ValidationError:
        raise make_validation_error(response, cast_to.__name__) from None
    result.__pydantic_private__["_headers"] = response.headers  # type: ignore[index]
    return result


class RawResponse(Generic[_T]):
    """A response with its HTTP details, from `with_raw_response`. Call `parse()` for the typed result.

    Attributes:
        http_response: the underlying `httpx.Response`.
    """

    def __init__(self, http_response: httpx.Response, parse: Callable[[], _T], elapsed: float) -> None:
        self.http_response = http_response
        self._parse = parse
        self._elapsed = elapsed

    @property
    def status_code(self) -> int:
        """The HTTP status code."""
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        """The response headers (case-insensitive)."""
        return self.http_response.headers

    @cached_property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with this response."""
        return RateLimit.from_headers(self.http_response.headers)

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id`, if it sent one."""
        request_id: str | None = self.http_response.headers.get("x-request-id")
        return request_id

    @property
    def elapsed(self) -> datetime.timedelta:
        """Time from sending the request until the whole body was read (for a stream: until its headers)."""
        return datetime.timedelta(seconds=self._elapsed)

    @cached_property
    def _parsed(self) -> _T:
        return self._parse()

    def parse(self) -> _T:
        """The typed result (`ChatCompletion`, `Stream`, `ModelList`, ...); parsed once, then cached."""
        return self._parsed

    def __repr__(self) -> str:
        return (
            f"<RawResponse [{self.status_code}] {self.http_response.request.method} {self.http_response.request.url}>"
        )


def finish(prepared: PreparedRequest, opened: Opened[Any], cast_to: type[Any], stream_cls: type[Any], raw: bool) -> Any:
    """Turn a successful exchange into the result: a parsed model, a stream, or a `RawResponse` of either."""
    response = opened.response
    if prepared.stream:
        stream = stream_cls(opened, ChatCompletionChunk)
        return RawResponse(response, lambda: stream, opened.elapsed) if raw else stream
    if raw:
        return RawResponse(response, lambda: parse_result(response, cast_to), opened.elapsed)
    return parse_result(response, cast_to)

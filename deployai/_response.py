"""Parsing a successful answer's body into its typed result, and the `with_raw_response` wrapper."""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx
from pydantic import ValidationError
from typing_extensions import Self

from ._exceptions import APIError, _ResponseError, make_stream_error, make_validation_error, reported_in
from ._logging import shown_url
from ._meta import ResponseInfo, ResponseMeta
from ._sse import mended

if TYPE_CHECKING:
    from .types._base import APIResult

__all__ = ["RawResponse", "parse_body", "parse_result"]

_T_co = TypeVar("_T_co", covariant=True)  # a raw response of a chat completion is one of an object
_R = TypeVar("_R", bound="APIResult")

_BOM = b"\xef\xbb\xbf"


def parse_result(response: httpx.Response, cast_to: type[_R], meta: ResponseMeta) -> _R:
    """The typed result of a success's body, with what came with it (`meta`): see `parse_body`."""
    try:
        result = parse_body(response, cast_to)
    except APIError as error:  # as the call's own errors: the retries the call made, the time its answer took
        error.retries = meta.retries
        if isinstance(error, _ResponseError) and meta.elapsed is not None:
            error._took(meta.elapsed)
        raise
    result.__pydantic_private__["_meta"] = meta  # type: ignore[index]
    return result


def parse_body(response: httpx.Response, cast_to: type[_R]) -> _R:
    """Validate a success's JSON body straight into `cast_to` (no `json.loads` and Python walk on the hot path).

    Raises:
        APIStatusError: the body reports an error (`{"error": {...}}`), typed by the status it names.
        APIResponseValidationError: the body is no `cast_to`, or lacks what makes one an answer
            (a chat completion without a choice).
    """
    # The body is no local of this frame, nor of `_second_look`'s when it raises: a traceback shown
    # with its locals (`pytest -l`) would show what the server sent, which may echo the key.
    try:
        result: _R = cast_to.__pydantic_validator__.validate_json(_content(response))
    except ValidationError:
        result = _second_look(response, cast_to)
    lacking = result._lacking()
    if lacking is None:
        return result
    del result  # see above: the result holds what the server sent
    # An error the body reports beside its empty answer is that error (a 429 is retried as one).
    payload = _loaded(response)
    reported = (
        make_stream_error(response, payload, streamed=False)
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict)
        else None
    )
    payload = None  # see above
    raise reported or make_validation_error(response, lacking)


def _loaded(response: httpx.Response) -> object:
    try:
        return json.loads(_content(response))
    except (ValueError, RecursionError):
        return None


def _content(response: httpx.Response) -> bytes:
    content = response.content
    # JSON forbids a byte order mark, but some servers send one: it carries no meaning.
    return content[3:] if content[:3] == _BOM else content


def _second_look(response: httpx.Response, cast_to: type[_R]) -> _R:
    """The result of a body pydantic's JSON parser refused, read again by `json.loads`.

    Valid JSON it does not take (an escaped lone surrogate: text a server cut in the middle of an
    emoji) is still the answer, and so is one `mended` can repair (`usage` without `total_tokens`, a
    fractional `created`). An error the body reports is raised as that error (see `reported_error`);
    anything else is a validation error.
    """
    payload = None
    problems: tuple[Any, ...] = ()
    try:
        payload = json.loads(_content(response))
        result: _R = cast_to.__pydantic_validator__.validate_python(mended(payload))
    except ValidationError as problem:  # what is wrong, without the values (the key may be among them)
        problems = tuple(problem.errors(include_url=False, include_input=False))
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to read
        pass
    else:
        return result
    reported = reported_in(response, payload)
    payload = None  # see `parse_body`
    raise reported or make_validation_error(response, cast_to.__name__, problems) from None


class RawResponse(ResponseInfo, Generic[_T_co]):
    """A response with its HTTP details, from `with_raw_response`. Call `parse()` for the typed result."""

    def __init__(
        self,
        http_response: httpx.Response,
        parse: Callable[[], _T_co],
        elapsed: float,
        retries: int = 0,
        *,
        meta_of: Callable[[], ResponseMeta] | None = None,
        response_of: Callable[[], httpx.Response] | None = None,
    ) -> None:
        self._http_response = http_response
        self._parse = parse
        self._meta = ResponseMeta(http_response.headers, elapsed, retries=retries)
        # A stream's response and meta may still change: a retry before its first event happens as
        # it is read, and then the answer is the retry's.
        self._meta_of = meta_of
        self._response_of = response_of

    def _response_meta(self) -> ResponseMeta:
        return self._meta if self._meta_of is None else self._meta_of()

    @property
    def http_response(self) -> httpx.Response:
        """The underlying `httpx.Response` (for a stream retried before its first event, the retry's)."""
        return self._http_response if self._response_of is None else self._response_of()

    @property
    def status_code(self) -> int:
        """The HTTP status code."""
        return self.http_response.status_code

    @property
    def headers(self) -> httpx.Headers:
        """The response headers (case-insensitive)."""
        return self.http_response.headers

    @property
    def elapsed(self) -> datetime.timedelta:
        """Time from sending the answered attempt until its whole body was read (for a stream: until its headers).

        Earlier attempts and the waits between retries are not counted: `retries` says how many there were.
        """
        return datetime.timedelta(seconds=self._response_meta().elapsed or 0.0)

    @cached_property
    def _parsed(self) -> _T_co:
        return self._parse()

    def parse(self) -> _T_co:
        """The typed result (`ChatCompletion`, `Stream`, `ModelList`, ...); parsed once, then cached."""
        return self._parsed

    def __reduce__(self) -> tuple[Any, ...]:
        # It holds the request, whose headers carry the API key: cloudpickle (Dask's fallback, where
        # pickle refuses the parser) sent the key along.
        raise TypeError(
            "A RawResponse does not pickle: its httpx.Response holds the request, API key included. "
            "Send its parse() instead (the typed result, which pickles with its headers; of a stream, read it "
            "and send its get_final_completion())."
        )

    # `copy` would fall back to `__reduce__`: copies stay in this process, and are made as before it.
    def __copy__(self) -> Self:
        copied = object.__new__(type(self))
        copied.__dict__.update(self.__dict__)
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        copied = object.__new__(type(self))
        memo[id(self)] = copied
        copied.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return copied

    def __repr__(self) -> str:
        request = self.http_response.request
        return f"<RawResponse [{self.status_code}] {request.method} {shown_url(request.url)}>"

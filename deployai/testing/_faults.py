"""Scripted faults: what each does to a response, and which responses it can change.

`fail` and `stall` apply to any request; the others change a successful response, and the stream
faults (`cut_stream_after`, `error_event_after`) only apply to successful streams.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypeAlias

from .._exceptions import InvalidParameterError
from ._routing import RouteName
from ._wire import Draft, Piece, dumps, error_body

__all__ = [
    "Cut",
    "ErrorEvent",
    "Fail",
    "Fault",
    "Malformed",
    "Slow",
    "Stall",
    "apply_fault",
    "check_json",
    "fault_applies",
    "fault_name",
]

_DEFAULT_STREAM_ERROR: dict[str, Any] = {
    "message": "The upstream provider failed in the middle of the stream.",
    "type": "server_error",
    "param": None,
    "code": "provider_error",
}


# RFC 9110: a header name is a token; a value has no line breaks (nor other control characters but tab).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def check_json(name: str, value: object) -> None:
    """A typed error unless `value` can be sent as JSON (no NaN, no objects JSON does not know)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidParameterError(name, value, f"values JSON can carry ({exc})") from None


def check_count(name: str, value: int, low: int) -> int:
    """`value` as a whole number >= `low`, or a typed error."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(name, value, f"a whole number >= {low}")
    return value


@dataclass(frozen=True, slots=True)
class Fail:
    """Answer with this status, body and headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @classmethod
    def build(
        cls,
        status: int,
        body: Mapping[str, Any] | list[Any] | str | bytes | None,
        headers: Mapping[str, str] | None,
    ) -> Fail:
        """Check the arguments of a `fail` and encode its body."""
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidParameterError("status", status, "an HTTP error status from 400 to 599")
        if headers is not None and (
            not isinstance(headers, Mapping)
            or not all(isinstance(k, str) and _TOKEN.fullmatch(k) for k in headers)
            or not all(isinstance(v, str) and _VALUE.fullmatch(v) for v in headers.values())
        ):
            raise InvalidParameterError("headers", headers, "a dict of header names to str values, no line breaks")
        if body is not None and not isinstance(body, (Mapping, list, str, bytes)):
            raise InvalidParameterError("body", body, "a dict, a list, a str, bytes or None")
        content_type = "application/json"
        if body is None:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            data = dumps(error_body(status, f"Emulated failure: {status} {phrase}."))
        elif isinstance(body, bytes):
            data, content_type = body, "application/octet-stream"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        else:
            check_json("body", body)
            data = dumps(body if isinstance(body, list) else dict(body))
        extra = {"content-type": content_type, **{k.lower(): v for k, v in (headers or {}).items()}}
        return cls(status, data, tuple(extra.items()))


@dataclass(frozen=True, slots=True)
class Stall:
    """Wait this long before the status and headers."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Slow:
    """Wait this long before the body, and between chunks of a stream."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Cut:
    """Drop the connection of a stream after this many events."""

    after_chunks: int


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Send this error event in a stream after this many events, then end it."""

    after_chunks: int
    payload: bytes

    @classmethod
    def build(cls, n_chunks: int, error: Mapping[str, Any] | None, *, as_event: bool) -> ErrorEvent:
        """Check the arguments of an `error_event_after` and encode its event."""
        if error is not None and not isinstance(error, Mapping):
            raise InvalidParameterError("error", error, "the error object (a dict) or None")
        if not isinstance(as_event, bool):
            raise InvalidParameterError("as_event", as_event, "True or False")
        check_json("error", error)
        payload = dumps({"error": dict(error) if error is not None else _DEFAULT_STREAM_ERROR})
        event = (b"event: error\n" if as_event else b"") + b"data: " + payload + b"\n\n"
        return cls(check_count("n_chunks", n_chunks, 0), event)


@dataclass(frozen=True, slots=True)
class Malformed:
    """Break the JSON of a body, or of event number `at_chunk` of a stream."""

    at_chunk: int


Fault: TypeAlias = Fail | Stall | Slow | Cut | ErrorEvent | Malformed
"""A scripted fault."""


def fault_applies(fault: Fault, route: RouteName, *, ok: bool, stream: bool) -> bool:
    """Whether `fault` can change this response (the stream faults wait for a successful stream)."""
    if isinstance(fault, (Cut, ErrorEvent)):
        return ok and stream and route == "chat"
    if isinstance(fault, Malformed):
        return ok
    return True


def apply_fault(fault: Fault, draft: Draft, base: list[tuple[str, str]]) -> Draft:
    """`draft` changed by `fault`; `base` holds the emulator's own headers (request id, rate limits)."""
    if isinstance(fault, Fail):
        failed = Draft(fault.status, [], fault.body, delay=draft.delay)
        replaced = {name for name, _ in fault.headers}
        failed.headers = [(k, v) for k, v in base if k not in replaced]
        failed.headers += [*fault.headers]
        if "content-length" not in replaced:
            failed.headers.append(("content-length", str(len(fault.body))))
        return failed
    if isinstance(fault, Stall):
        draft.delay = fault.seconds
    elif isinstance(fault, Slow):
        draft.slow = fault.seconds
    elif draft.events is None:
        assert isinstance(fault, Malformed)  # the stream faults only apply to streams
        draft.body = draft.body[: len(draft.body) // 2]
        draft.headers = [(k, str(len(draft.body)) if k == "content-length" else v) for k, v in draft.headers]
    elif isinstance(fault, Malformed):
        # The last event is [DONE]: a later `at_chunk` breaks the last chunk before it.
        index = min(fault.at_chunk, len(draft.events) - 2)
        delay, data = draft.events[index]
        json_text = data.removeprefix(b"data: ").rstrip(b"\n")
        draft.events[index] = (delay, b"data: " + json_text[: len(json_text) // 2] + b"\n\n")
    else:
        kept: list[Piece] = draft.events[: min(fault.after_chunks, len(draft.events) - 1)]
        if isinstance(fault, Cut):
            draft.events, draft.abort = kept, True
        else:
            draft.events = [*kept, (0.0, fault.payload)]
    return draft


_NAMES: dict[type, str] = {
    Fail: "fail",
    Stall: "stall",
    Slow: "slow",
    Cut: "cut_stream_after",
    ErrorEvent: "error_event_after",
    Malformed: "malformed_json",
}


def fault_name(fault: Fault) -> str:
    """The name of the method that scripts `fault` (`fail`, `cut_stream_after`, ...)."""
    return _NAMES[type(fault)]

"""What the emulator sends, as data: a status, headers and body pieces with their delays; the API's error form.

The adapters (in-process transports, the ASGI app) only carry out an `EmulatorResponse`: wait `delay`,
send the status and headers, send each `(delay_seconds, data)` piece after its delay, and drop the
connection at the end if `abort` is set.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from .._error_codes import error_kind

__all__ = ["Draft", "EmulatorResponse", "Piece", "dumps", "error_body", "error_draft", "json_draft"]

Piece: TypeAlias = tuple[float, bytes]
"""One piece of a response body: wait this many seconds, then send these bytes."""


def dumps(payload: object) -> bytes:
    """Compact UTF-8 JSON, as the API sends it.

    A lone surrogate (possible in a request's JSON, and so in an echo or a record) has no UTF-8 form:
    the backslash replacement writes it as the JSON escape it came as, keeping the JSON valid.
    """
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "backslashreplace")


def error_body(status: int, message: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """The API's error body for `status`: its `type` from the shared vocabulary, `code` if more precise."""
    kind, default_code = error_kind(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


@dataclass(frozen=True, slots=True)
class EmulatorResponse:
    """One response of the emulator, for an adapter to send.

    Attributes:
        status: the HTTP status.
        headers: the header pairs, names in lowercase.
        body: the whole body as bytes, or an iterator of `(delay_seconds, data)` pieces (a stream, or a
            slowed body): wait, then send the data.
        delay: seconds to wait before sending the status and headers (a stall).
        abort: drop the connection after the last piece, without ending the body properly.
    """

    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterator[Piece] = b""
    delay: float = 0.0
    abort: bool = False

    def pieces(self) -> Iterator[Piece]:
        """The body as pieces, whichever form it has."""
        if isinstance(self.body, bytes):
            return iter([(0.0, self.body)] if self.body else [])
        return self.body

    def header(self, name: str) -> str | None:
        """The value of header `name` (case-insensitive), or None."""
        name = name.lower()
        return next((value for key, value in self.headers if key == name), None)


@dataclass(slots=True)
class Draft:
    """A response being built: JSON (`body`) or a stream (`events`), before faults are applied."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    events: list[Piece] | None = None
    delay: float = 0.0
    abort: bool = False
    slow: float | None = None

    @property
    def duration(self) -> float:
        """Seconds the response is scheduled to take, from the request to the last byte."""
        if self.events is None:
            return self.delay + (self.slow or 0.0)
        if self.slow is not None:
            return self.delay + self.slow * max(len(self.events) - 1, 0)
        return self.delay + sum(delay for delay, _ in self.events)

    def finish(self) -> EmulatorResponse:
        """The response to send."""
        if self.events is None:
            body: bytes | Iterator[Piece] = self.body if self.slow is None else iter([(self.slow, self.body)])
            return EmulatorResponse(self.status, self.headers, body, self.delay)
        events = self.events
        if self.slow is not None:
            events = [(0.0 if i == 0 else self.slow, data) for i, (_, data) in enumerate(events)]
        return EmulatorResponse(self.status, self.headers, iter(events), self.delay, self.abort)


def json_draft(status: int, payload: object, headers: list[tuple[str, str]]) -> Draft:
    """A JSON response with `headers` (a copy is made) and the content headers."""
    body = dumps(payload)
    return Draft(status, [*headers, ("content-type", "application/json"), ("content-length", str(len(body)))], body)


def error_draft(
    status: int, message: str, headers: list[tuple[str, str]], *, code: str | None = None, param: str | None = None
) -> Draft:
    """A response in the API's error form."""
    return json_draft(status, error_body(status, message, code=code, param=param), headers)

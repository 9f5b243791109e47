"""The emulator's core: one `handle()` that turns a request into a response, with no I/O and no sleeping.

Every adapter (the in-process httpx transports, the ASGI app behind the loopback server) calls
`Emulator.handle` and only does what the returned `EmulatorResponse` says: wait `delay` seconds, send
the status and headers, then send each `(delay_seconds, data)` piece after its delay, and drop the
connection at the end if `abort` is set. Keeping the waits in the adapters lets the sync adapter use
`time.sleep`, the async ones `anyio.sleep`, and tests replace either.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .._exceptions import InvalidParameterError
from .._request import check_chat_params
from ._text import MODELS, count_tokens, message_text, reply_to, split_tokens

if TYPE_CHECKING:
    from .. import AsyncDeployAI, DeployAI
    from ._asgi import EmulatorASGIApp
    from ._transport import AsyncEmulatorTransport, EmulatorTransport

__all__ = ["MODEL_IDS", "Emulator", "EmulatorResponse", "Piece", "RecordedRequest"]

Piece: TypeAlias = tuple[float, bytes]
"""One piece of a response body: wait this many seconds, then send these bytes."""

MODEL_IDS: Final[tuple[str, ...]] = tuple(model.id for model in MODELS)
"""The ids of the models the emulator serves, in the order `GET /v1/models` lists them."""

IN_PROCESS_BASE_URL: Final = "https://emulator.invalid/v1"
DEFAULT_TEST_API_KEY: Final = "sk-emulator-test"

_MODELS_BY_ID: Final = {model.id: model for model in MODELS}
_ROUTES: Final[dict[str, tuple[str, str]]] = {
    "/v1/models": ("GET", "models"),
    "/v1/chat/completions": ("POST", "chat"),
}
_MODEL_PREFIX: Final = "/v1/models/"
# The `type` and `code` of the default error body for a status given to `fail_next` without a body.
_ERROR_KINDS: Final[dict[int, tuple[str, str]]] = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "permission_denied"),
    404: ("not_found_error", "not_found"),
    408: ("timeout_error", "timeout"),
    409: ("conflict_error", "conflict"),
    422: ("invalid_request_error", "unprocessable_entity"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("overloaded_error", "service_unavailable"),
    504: ("server_error", "timeout"),
}
_DEFAULT_STREAM_ERROR: Final[dict[str, Any]] = {
    "message": "The upstream provider failed in the middle of the stream.",
    "type": "server_error",
    "param": None,
    "code": "provider_error",
}


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request the emulator received, kept in `Emulator.requests` for assertions.

    Attributes:
        method: the HTTP method, for example `POST`.
        path: the path without the query string, for example `/v1/chat/completions`.
        query: the query string, without the `?` (empty when there was none).
        headers: the request headers, names in lowercase (left out of the repr: they hold the API key).
        body: the raw body.
        json: the body parsed as JSON, or None when it is empty or not JSON.
        request_id: the `x-request-id` the emulator answered with.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    json: Any
    request_id: str


@dataclass(slots=True)
class _Window:
    started_at: float
    used: int = 0


# Faults. `fail` and `stall` apply to any chat or models request; the others change a successful
# response, and the stream faults only apply to successful streams (other requests leave them queued).


@dataclass(frozen=True, slots=True)
class _Fail:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Stall:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Slow:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Cut:
    after_chunks: int


@dataclass(frozen=True, slots=True)
class _ErrorEvent:
    after_chunks: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class _Malformed:
    at_chunk: int


_Fault: TypeAlias = _Fail | _Stall | _Slow | _Cut | _ErrorEvent | _Malformed


@dataclass(slots=True)
class _Draft:
    """A response being built: JSON (`body`) or a stream (`events`), before faults are applied."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    events: list[Piece] | None = None
    delay: float = 0.0
    abort: bool = False
    slow: float | None = None

    def finish(self) -> EmulatorResponse:
        if self.events is None:
            body: bytes | Iterator[Piece] = self.body if self.slow is None else iter([(self.slow, self.body)])
            return EmulatorResponse(self.status, self.headers, body, self.delay)
        events = self.events
        if self.slow is not None:
            events = [(0.0 if i == 0 else self.slow, data) for i, (_, data) in enumerate(events)]
        return EmulatorResponse(self.status, self.headers, iter(events), self.delay, self.abort)


def _json_draft(status: int, payload: object, headers: list[tuple[str, str]]) -> _Draft:
    body = _dumps(payload)
    return _Draft(status, [*headers, ("content-type", "application/json"), ("content-length", str(len(body)))], body)


def _check_seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise InvalidParameterError(name, value, "a number of seconds >= 0")
    return float(value)


def _check_count(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidParameterError(name, value, f"a whole number >= {low}")
    return value


class Emulator:
    """A faithful local DeployAI API: models, chat completions (whole or streamed), auth, rate limits, faults.

    It answers like the real API: the seven documented models; chat completions that repeat the last
    user message (`"You said: ..."`) with honest token counts; the SDK's own parameter rules (400 with
    `param`); 401, 404, 405 and 429 in the API's error form; `x-ratelimit-*` and `x-request-id` headers
    on every response. Tests can script faults (`fail_next`, `stall_next`, `slow_next`,
    `cut_stream_after`, `error_event_after`, `malformed_json_next`) and read `requests`.

    It is thread-safe. Reach it in-process with `client()`, `async_client()`, `transport()` or
    `async_transport()`, or over loopback HTTP with `deployai.testing.EmulatorServer`.

    Args:
        rate_limit: requests allowed per API key per window.
        window_seconds: the length of a rate-limit window; a key's window starts with its first request.
        token_latency: seconds between the token chunks of a stream.
        api_keys: the keys accepted; by default any key that starts with `sk-`.
        max_recorded_requests: how many requests `requests` keeps (the most recent), so that a
            long-running server does not grow without bound.
        clock: the unix-time clock for rate-limit windows and `created` (inject one to test windows
            without sleeping).
    """

    def __init__(
        self,
        *,
        rate_limit: int = 60,
        window_seconds: float = 60.0,
        token_latency: float = 0.0,
        api_keys: Iterable[str] | None = None,
        max_recorded_requests: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rate_limit = _check_count("rate_limit", rate_limit, 1)
        if _check_seconds("window_seconds", window_seconds) == 0:
            raise InvalidParameterError("window_seconds", window_seconds, "a number of seconds > 0")
        self._window_seconds = float(window_seconds)
        self._token_latency = _check_seconds("token_latency", token_latency)
        self._api_keys = None if api_keys is None else frozenset([api_keys] if isinstance(api_keys, str) else api_keys)
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._faults: deque[_Fault] = deque()
        self._requests: deque[RecordedRequest] = deque(
            maxlen=_check_count("max_recorded_requests", max_recorded_requests, 0)
        )
        self._request_count = 0

    @property
    def rate_limit(self) -> int:
        """Requests allowed per API key per window."""
        return self._rate_limit

    @property
    def window_seconds(self) -> float:
        """The length of a rate-limit window, in seconds."""
        return self._window_seconds

    @property
    def token_latency(self) -> float:
        """Seconds between the token chunks of a stream."""
        return self._token_latency

    def __repr__(self) -> str:
        return (
            f"Emulator(rate_limit={self._rate_limit}, window_seconds={self._window_seconds:g}, "
            f"token_latency={self._token_latency:g})"
        )

    # State for tests

    @property
    def requests(self) -> list[RecordedRequest]:
        """The requests received so far (at most `max_recorded_requests`, the most recent), oldest first; a copy."""
        with self._lock:
            return list(self._requests)

    @property
    def pending_faults(self) -> int:
        """How many scripted faults are still waiting for a request."""
        with self._lock:
            return len(self._faults)

    def reset(self) -> None:
        """Forget recorded requests, queued faults, rate-limit windows and the request counter."""
        with self._lock:
            self._windows.clear()
            self._faults.clear()
            self._requests.clear()
            self._request_count = 0

    # Scripted faults, each consumed by one request, in the order they were queued.

    def _queue(self, fault: _Fault, times: int) -> None:
        _check_count("times", times, 1)
        with self._lock:
            self._faults.extend([fault] * times)

    def fail_next(
        self,
        status: int,
        body: Mapping[str, Any] | list[Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next chat or models request(s) with `status` and `body`, whatever they ask.

        Args:
            status: any status from 400 to 599.
            body: a dict or list (sent as JSON), a str (sent as given: `text/html` when it starts with
                `<`, else `text/plain`), bytes, or None for the API's error form for that status.
            headers: extra response headers; they replace the emulator's headers of the same name (so
                `{"retry-after": "0"}` makes the SDK retry at once).
            times: how many requests fail this way.
        """
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise InvalidParameterError("status", status, "an HTTP error status from 400 to 599")
        content_type = "application/json"
        if body is None:
            kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "invalid_request_error", ""))
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = "Error"
            data = _dumps(_error_body(f"Emulated failure: {status} {phrase}.", kind, code or None))
        elif isinstance(body, bytes):
            data, content_type = body, "application/octet-stream"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = "text/html; charset=utf-8" if body.lstrip().startswith("<") else "text/plain; charset=utf-8"
        else:
            data = _dumps(body if isinstance(body, list) else dict(body))
        extra = {"content-type": content_type, **{k.lower(): v for k, v in (headers or {}).items()}}
        self._queue(_Fail(status, data, tuple(extra.items())), times)

    def stall_next(self, seconds: float, *, times: int = 1) -> None:
        """Wait `seconds` before sending the status and headers of the next chat or models request(s).

        Use it to test read timeouts: the connection is accepted, then nothing arrives until the stall
        ends (so a connect timeout does not fire).
        """
        self._queue(_Stall(_check_seconds("seconds", seconds)), times)

    def slow_next(self, seconds: float, *, times: int = 1) -> None:
        """Send the headers of the next chat or models request(s) at once, then wait `seconds` before the body.

        For a stream, `seconds` separates every chunk (instead of `token_latency`).
        """
        self._queue(_Slow(_check_seconds("seconds", seconds)), times)

    def cut_stream_after(self, n_chunks: int, *, times: int = 1) -> None:
        """Drop the connection of the next successful stream(s) after `n_chunks` events, before `[DONE]`.

        The first event is the one with `role`. In-process, reading further raises
        `httpx.RemoteProtocolError`; over HTTP the server closes the connection in the middle of the
        chunked body, which httpx reports the same way. The SDK raises `APIConnectionError`.
        Requests that are not successful streams leave this fault queued.
        """
        self._queue(_Cut(_check_count("n_chunks", n_chunks, 0)), times)

    def error_event_after(
        self,
        n_chunks: int,
        error: Mapping[str, Any] | None = None,
        *,
        as_event: bool = False,
        times: int = 1,
    ) -> None:
        """Send an error in the middle of the next successful stream(s), after `n_chunks` events; then end it.

        Args:
            n_chunks: events sent before the error (the first is the one with `role`).
            error: the error object, for example `{"message": "...", "type": "rate_limit_error"}`;
                by default a `server_error`. It is sent as `data: {"error": {...}}`.
            as_event: send it as an SSE `event: error` instead of a plain data event.
            times: how many streams get the error.
        """
        payload = _dumps({"error": dict(error) if error is not None else _DEFAULT_STREAM_ERROR})
        event = (b"event: error\n" if as_event else b"") + b"data: " + payload + b"\n\n"
        self._queue(_ErrorEvent(_check_count("n_chunks", n_chunks, 0), event), times)

    def malformed_json_next(self, *, at_chunk: int = 1, times: int = 1) -> None:
        """Answer the next successful chat or models request(s) with broken JSON, status 200.

        A JSON body is cut in half. In a stream, event number `at_chunk` (0 is the `role` event) carries
        half of its JSON instead, and the stream goes on to `[DONE]`.
        """
        self._queue(_Malformed(_check_count("at_chunk", at_chunk, 0)), times)

    def _take_fault(self, endpoint: str, *, ok: bool, stream: bool) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if isinstance(fault, (_Cut, _ErrorEvent)):
                applies = ok and stream and endpoint == "chat"
            elif isinstance(fault, _Malformed):
                applies = ok
            else:
                applies = True
            if applies:
                del self._faults[index]
                return fault
        return None

    # The core

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> EmulatorResponse:
        """Answer one request. Pure apart from the emulator's state: it never sleeps and does no I/O.

        Args:
            method: the HTTP method.
            path: the request path, optionally with `?query`, for example `/v1/chat/completions`.
            headers: the request headers (any case).
            body: the raw request body.

        Returns:
            What to send, and when (see `EmulatorResponse`).
        """
        method = method.upper()
        lowered = {name.lower(): value for name, value in headers.items()}
        path, _, query = path.partition("?")
        parsed: Any = None
        parse_error: str | None = None
        try:
            parsed = json.loads(body) if body else None
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            parse_error = str(exc) or type(exc).__name__
        with self._lock:
            self._request_count += 1
            request_id = f"req_{self._request_count}"
            self._requests.append(RecordedRequest(method, path, query, lowered, body, parsed, request_id))
            return self._respond(method, path, lowered, parsed, parse_error, request_id).finish()

    def _respond(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        parsed: Any,
        parse_error: str | None,
        request_id: str,
    ) -> _Draft:
        base = [("x-request-id", request_id)]
        key, problem = self._authenticate(headers.get("authorization"))
        if key is None:
            draft = _json_draft(401, _error_body(problem, "authentication_error", "invalid_api_key"), base)
            draft.headers.append(("www-authenticate", "Bearer"))
            return draft
        now = self._clock()
        limited = self._spend(key, now, base)
        if limited is not None:
            return limited
        route = _ROUTES.get(path.rstrip("/"))
        model_id = None
        if route is None and path.startswith(_MODEL_PREFIX) and len(path) > len(_MODEL_PREFIX):
            route, model_id = ("GET", "models"), path[len(_MODEL_PREFIX) :]
        if route is None:
            message = f"Unknown endpoint: {method} {path}."
            return _json_draft(404, _error_body(message, "not_found_error", "unknown_url"), base)
        allowed, endpoint = route
        if method != allowed:
            message = f"Method {method} is not allowed on {path}; use {allowed}."
            draft = _json_draft(405, _error_body(message, "invalid_request_error", "method_not_allowed"), base)
            draft.headers.append(("allow", allowed))
            return draft
        if model_id is not None:
            model = _MODELS_BY_ID.get(model_id)
            if model is None:
                message = f"The model '{model_id}' does not exist or you do not have access to it."
                draft = _json_draft(404, _error_body(message, "not_found_error", "model_not_found", "model"), base)
            else:
                draft = _json_draft(200, model.to_json(), base)
        elif endpoint == "models":
            draft = _json_draft(200, {"object": "list", "data": [m.to_json() for m in MODELS]}, base)
        else:
            draft = self._chat(parsed, parse_error, now, request_id, base)
        fault = self._take_fault(endpoint, ok=draft.status == 200, stream=draft.events is not None)
        if fault is not None:
            draft = self._apply(fault, draft, base)
        return draft

    def _authenticate(self, authorization: str | None) -> tuple[str | None, str]:
        # The messages never repeat the key: they end up in logs and exception messages.
        if not authorization:
            return None, "Missing API key: send it in the header 'Authorization: Bearer sk-...'."
        scheme, _, key = authorization.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None, "Malformed Authorization header: expected 'Bearer sk-...'."
        if not key.startswith("sk-"):
            return None, "Invalid API key: DeployAI API keys start with 'sk-'."
        if self._api_keys is not None and key not in self._api_keys:
            return None, "Incorrect API key provided."
        return key, ""

    def _spend(self, key: str, now: float, base: list[tuple[str, str]]) -> _Draft | None:
        """Count one request against the key's window; add the rate-limit headers to `base`; a 429 when spent."""
        window = self._windows.get(key)
        if window is None or now >= window.started_at + self._window_seconds:
            window = self._windows[key] = _Window(now)
        resets_at = window.started_at + self._window_seconds
        exhausted = window.used >= self._rate_limit
        if not exhausted:
            window.used += 1
        base += [
            ("x-ratelimit-limit", str(self._rate_limit)),
            ("x-ratelimit-remaining", str(self._rate_limit - window.used)),
            ("x-ratelimit-reset", str(math.ceil(resets_at))),
        ]
        if not exhausted:
            return None
        retry_after = max(1, math.ceil(resets_at - now))
        message = f"Rate limit of {self._rate_limit} requests per {self._window_seconds:g} s reached."
        message += f" Try again in {retry_after} s."
        return _json_draft(
            429,
            _error_body(message, "rate_limit_error", "rate_limit_exceeded"),
            [*base, ("retry-after", str(retry_after))],
        )

    def _chat(
        self, body: Any, parse_error: str | None, now: float, request_id: str, base: list[tuple[str, str]]
    ) -> _Draft:
        if parse_error is not None or not isinstance(body, dict):
            detail = parse_error or "the body must be a JSON object"
            message = f"The request body is not a valid JSON object: {detail}."
            return _json_draft(400, _error_body(message, "invalid_request_error", "invalid_json"), base)
        try:
            check_chat_params(body)
        except InvalidParameterError as exc:
            error = _error_body(str(exc), "invalid_request_error", "invalid_parameter", exc.param)
            return _json_draft(400, error, base)
        model: str = body["model"]
        if model not in _MODELS_BY_ID:
            message = f"The model '{model}' does not exist or you do not have access to it."
            return _json_draft(404, _error_body(message, "not_found_error", "model_not_found", "model"), base)

        messages: list[dict[str, Any]] = body["messages"]
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        reply = reply_to(messages)
        finish_reason = "stop"
        stop = body.get("stop")
        for sequence in [stop] if isinstance(stop, str) else (stop or []):
            if sequence and sequence in reply:
                reply = reply[: reply.index(sequence)]
        pieces = split_tokens(reply)
        # Reasoning models take max_completion_tokens; the others max_tokens. Either caps the reply.
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and len(pieces) > max_tokens:
            pieces, finish_reason = pieces[:max_tokens], "length"
        n: int = body.get("n") or 1
        completion_tokens = len(pieces) * n
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        head = {"id": "chatcmpl-emu" + request_id.removeprefix("req_"), "created": int(now), "model": model}
        if body.get("stream") is not True:
            completion = {
                "id": head["id"],
                "object": "chat.completion",
                "created": head["created"],
                "model": model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": "".join(pieces)},
                        "finish_reason": finish_reason,
                    }
                    for i in range(n)
                ],
                "usage": usage,
            }
            return _json_draft(200, completion, base)
        stream_options = body.get("stream_options") or {}
        include_usage = stream_options.get("include_usage") is True
        return _Draft(
            200,
            [*base, ("content-type", "text/event-stream"), ("cache-control", "no-cache")],
            events=self._events(head, pieces, n, finish_reason, usage if include_usage else None),
        )

    def _events(
        self, head: dict[str, Any], pieces: list[str], n: int, finish_reason: str, usage: dict[str, int] | None
    ) -> list[Piece]:
        chunk_head = {"id": head["id"], "object": "chat.completion.chunk", "created": head["created"]}
        chunk_head["model"] = head["model"]

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {**chunk_head, "choices": choices, **extra}
            if usage is not None and "usage" not in extra:
                chunk["usage"] = None
            return b"data: " + _dumps(chunk) + b"\n\n"

        events: list[Piece] = [
            (0.0, event([{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]))
            for i in range(n)
        ]
        for piece in pieces:
            for i in range(n):
                delta = {"index": i, "delta": {"content": piece}, "finish_reason": None}
                events.append((self._token_latency if i == 0 else 0.0, event([delta])))
        events += [(0.0, event([{"index": i, "delta": {}, "finish_reason": finish_reason}])) for i in range(n)]
        if usage is not None:
            events.append((0.0, event([], usage=usage)))
        events.append((0.0, b"data: [DONE]\n\n"))
        return events

    def _apply(self, fault: _Fault, draft: _Draft, base: list[tuple[str, str]]) -> _Draft:
        if isinstance(fault, _Fail):
            failed = _Draft(fault.status, [], fault.body, delay=draft.delay)
            replaced = {name for name, _ in fault.headers}
            failed.headers = [(k, v) for k, v in base if k not in replaced]
            failed.headers += [*fault.headers]
            if "content-length" not in replaced:
                failed.headers.append(("content-length", str(len(fault.body))))
            return failed
        if isinstance(fault, _Stall):
            draft.delay = fault.seconds
        elif isinstance(fault, _Slow):
            draft.slow = fault.seconds
        elif draft.events is None:
            assert isinstance(fault, _Malformed)  # the stream faults only apply to streams
            draft.body = draft.body[: len(draft.body) // 2]
            draft.headers = [(k, str(len(draft.body)) if k == "content-length" else v) for k, v in draft.headers]
        elif isinstance(fault, _Malformed):
            # The last event is [DONE]: a later `at_chunk` breaks the last chunk before it.
            index = min(fault.at_chunk, len(draft.events) - 2)
            delay, data = draft.events[index]
            json_text = data.removeprefix(b"data: ").rstrip(b"\n")
            draft.events[index] = (delay, b"data: " + json_text[: len(json_text) // 2] + b"\n\n")
        else:
            kept = draft.events[: min(fault.after_chunks, len(draft.events) - 1)]
            if isinstance(fault, _Cut):
                draft.events, draft.abort = kept, True
            else:
                draft.events = [*kept, (0.0, fault.payload)]
        return draft

    # Adapters

    def transport(self, *, sleep: Callable[[float], None] = time.sleep) -> EmulatorTransport:
        """An `httpx.BaseTransport` that answers in-process (no sockets), streaming bodies piece by piece.

        Args:
            sleep: how to wait for stalls, slow bodies and token latency (replace it to test without waiting).
        """
        from ._transport import EmulatorTransport

        return EmulatorTransport(self, sleep=sleep)

    def async_transport(self, *, sleep: Callable[[float], Awaitable[Any]] | None = None) -> AsyncEmulatorTransport:
        """An `httpx.AsyncBaseTransport` that answers in-process (no sockets), streaming bodies piece by piece.

        Args:
            sleep: an async function that waits that many seconds (default `anyio.sleep`).
        """
        from ._transport import AsyncEmulatorTransport

        return AsyncEmulatorTransport(self, sleep=sleep)

    def asgi_app(self) -> EmulatorASGIApp:
        """A plain ASGI application serving this emulator (what `EmulatorServer` runs under uvicorn)."""
        from ._asgi import EmulatorASGIApp

        return EmulatorASGIApp(self)

    def client(self, **kwargs: Any) -> DeployAI:
        """A `DeployAI` client wired to this emulator in-process; close it (or use `with`) when done.

        Args:
            **kwargs: arguments of `DeployAI` (`api_key` defaults to `"sk-emulator-test"`, `base_url`
                to `https://emulator.invalid/v1`, a name that never resolves). Not `http_client`.
        """
        import httpx

        from .. import DeployAI

        _refuse_http_client(kwargs)
        client = DeployAI(**_client_defaults(kwargs), http_client=httpx.Client(transport=self.transport()))
        client._http.close_borrowed_client()  # closed with the client, as if it had made it itself
        return client

    def async_client(self, **kwargs: Any) -> AsyncDeployAI:
        """An `AsyncDeployAI` client wired to this emulator in-process; `await client.aclose()` when done.

        Args:
            **kwargs: arguments of `AsyncDeployAI`, with the defaults of `client()`.
        """
        import httpx

        from .. import AsyncDeployAI

        _refuse_http_client(kwargs)
        transport = self.async_transport()
        client = AsyncDeployAI(**_client_defaults(kwargs), http_client=httpx.AsyncClient(transport=transport))
        client._http.close_borrowed_client()
        return client


def _refuse_http_client(kwargs: Mapping[str, Any]) -> None:
    if "http_client" in kwargs:
        raise TypeError("client() makes its own http_client wired to the emulator; use transport() for your own.")


def _client_defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {"api_key": DEFAULT_TEST_API_KEY, "base_url": IN_PROCESS_BASE_URL, **kwargs}

"""`RecordedRequest`: one exchange with the emulator, request and response, kept for a test to read back."""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._routing import RouteName

__all__ = ["RecordedRequest", "RequestLog", "redact_headers"]

_REDACTED = "[redacted]"
# Authorization schemes a record names, so that a test sees which one was sent (`Basic [redacted]`);
# a first word not among them may be a key itself, and is redacted with the rest.
_SCHEMES = frozenset({"bearer", "basic", "digest", "token", "key", "apikey", "api-key", "negotiate", "hoba", "mutual"})


def _fingerprint(authorization: str | None) -> str | None:
    """A hash of a bearer key, to compare: None for any other scheme, which the emulator does not take."""
    if not authorization:
        return None
    scheme, _, key = authorization.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        return None
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _redacted_authorization(authorization: str) -> str:
    scheme, space, _ = authorization.strip().partition(" ")
    return f"{scheme} {_REDACTED}" if space and scheme.lower() in _SCHEMES else _REDACTED


# Where OpenAI-compatible clients put a key: `Authorization: Bearer`, and the two names Azure-style
# clients use (and a proxy's credentials). All are kept out of records; only the first is what the
# emulator authenticates.
_KEY_HEADERS = ("api-key", "x-api-key")


def redact_headers(headers: Mapping[str, str]) -> tuple[dict[str, str], str | None]:
    """The headers with any API key replaced, and a fingerprint of the bearer key (to compare, never to show)."""
    kept = dict(headers)
    for name in _KEY_HEADERS:
        if name in kept:
            kept[name] = _REDACTED
    proxy = kept.get("proxy-authorization")
    if proxy is not None:
        kept["proxy-authorization"] = _redacted_authorization(proxy)
    authorization = kept.get("authorization")
    if authorization is None:
        return kept, None
    kept["authorization"] = _redacted_authorization(authorization)
    return kept, _fingerprint(authorization)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One exchange with the emulator, as `Emulator.requests` keeps it.

    Attributes:
        method: the HTTP method, for example `POST`.
        path: the path without the query string, for example `/v1/chat/completions`.
        query: the query string, without the `?` (empty when there was none).
        headers: the request headers, names in lowercase, with the API key replaced by `[redacted]`
            after its scheme (`Bearer [redacted]`, `Basic [redacted]`; use `sent_key()` to check
            which key was sent).
        body: the raw request body.
        json: the body parsed as JSON, or None when it is empty or not JSON.
        request_id: the `x-request-id` the emulator answered with.
        route: `chat`, `models` or `model`; None for a request that reached no endpoint (404, 405, 401).
        status: the status of the answer.
        response_headers: the headers of the answer, names in lowercase.
        streamed: whether the answer was an event stream.
        received_at: when the request came in, on the emulator's clock (unix seconds).
        duration: the seconds the answer was scheduled to take, from the request to its last byte
            (stalls, slow bodies and token latency; on a `VirtualClock` no real time passes).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    json: Any
    request_id: str
    route: str | None = None
    status: int = 0
    response_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    streamed: bool = False
    received_at: float = 0.0
    duration: float = 0.0
    _key_sha256: str | None = field(default=None, repr=False, compare=False)

    @property
    def model(self) -> str | None:
        """The `model` of the request's JSON body, if it has one."""
        model = self.json.get("model") if isinstance(self.json, dict) else None
        return model if isinstance(model, str) else None

    def sent_key(self, api_key: str) -> bool:
        """Whether the request was sent with `api_key` as its bearer token (the key itself is not kept)."""
        return self._key_sha256 is not None and self._key_sha256 == _fingerprint(f"Bearer {api_key}")

    def to_json(self) -> dict[str, Any]:
        """The exchange as JSON (the raw body left out: `json` holds it parsed), as `/_emulator/requests` gives it."""
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": dict(self.headers),
            "json": self.json,
            "request_id": self.request_id,
            "route": self.route,
            "model": self.model,
            "status": self.status,
            "response_headers": dict(self.response_headers),
            "streamed": self.streamed,
            "received_at": self.received_at,
            "duration": self.duration,
        }


class RequestLog:
    """The reading half of `Emulator`: every exchange, and the checks tests make most."""

    _lock: threading.RLock
    _requests: deque[RecordedRequest]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every exchange so far (at most `max_recorded_requests`, the most recent), oldest first; a copy."""
        with self._lock:
            return list(self._requests)

    @property
    def statuses(self) -> list[int]:
        """The status of every recorded exchange, oldest first: `assert emulator.statuses == [429, 200]`."""
        return [r.status for r in self.requests]

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent exchange (`AssertionError` when there was none)."""
        requests = self.requests
        if not requests:
            raise AssertionError("The emulator has received no request.")
        return requests[-1]

    def calls(
        self, *, model: str | None = None, route: RouteName | None = None, status: int | None = None
    ) -> list[RecordedRequest]:
        """The recorded exchanges with this model, route and status (each criterion optional)."""
        return [
            r
            for r in self.requests
            if (model is None or r.model == model)
            and (route is None or r.route == route)
            and (status is None or r.status == status)
        ]

"""The exceptions of the SDK. Every one of them subclasses `DeployAIError`.

```
DeployAIError
├── InvalidParameterError (also a ValueError): refused before anything was sent
└── APIError: something went wrong talking to the API
    ├── APIConnectionError: no usable answer arrived (refused, reset, dropped mid-stream)
    │   └── APITimeoutError
    ├── APIResponseValidationError: a success status whose body is not what the API documents
    └── APIStatusError: the API answered with an error status (or an error event mid-stream)
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── PermissionDeniedError      403
        ├── NotFoundError              404
        ├── ConflictError              409
        ├── UnprocessableEntityError   422
        ├── RateLimitError             429
        └── InternalServerError        500 and every other 5xx
            └── ServiceUnavailableError  503
```
"""

from __future__ import annotations

import html
import json
import re
from functools import cached_property
from typing import TYPE_CHECKING

from ._constants import MAX_BODY_IN_MESSAGE_CHARS
from ._ratelimit import RateLimit

if TYPE_CHECKING:
    import httpx

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "DeployAIError",
    "InternalServerError",
    "InvalidParameterError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
]


class DeployAIError(Exception):
    """The base of every exception this SDK raises: catch it to catch them all."""


class InvalidParameterError(DeployAIError, ValueError):
    """A request parameter was refused before any byte left the machine.

    Attributes:
        param: the parameter's name, for example `temperature` or `messages[2].role`.
        value: the value that was given.
        allowed: what the parameter accepts, in words.
    """

    def __init__(self, param: str, value: object, allowed: str) -> None:
        self.param = param
        self.value = value
        self.allowed = allowed
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{param} must be {allowed}; got {shown}")


class APIError(DeployAIError):
    """Something went wrong while talking to the API.

    Attributes:
        message: a readable description.
        request: the request that failed, when there was one.
    """

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request


class APIConnectionError(APIError):
    """No usable answer arrived: the connection was refused, reset, or dropped mid-response."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """The request took longer than its timeout (connecting, writing, or waiting for the next bytes)."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class _ResponseError(APIError):
    """Shared parts of errors that carry an HTTP response."""

    def __init__(self, message: str, *, response: httpx.Response, body: object) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = body

    @cached_property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for this response: quote it when you ask for support."""
        request_id: str | None = self.response.headers.get("x-request-id")
        return request_id

    @cached_property
    def rate_limit(self) -> RateLimit:
        """The rate-limit window reported with this response."""
        return RateLimit.from_headers(self.response.headers)


class APIResponseValidationError(_ResponseError):
    """The API answered with a success status, but the body is not what the API documents.

    Attributes:
        status_code: the HTTP status.
        body: the body text, trimmed.
        response: the `httpx.Response`.
    """


class APIStatusError(_ResponseError):
    """The API answered with an error status, or sent an error event in the middle of a stream.

    Attributes:
        status_code: the HTTP status (for an error event mid-stream, the status its type maps to).
        message: the server's `error.message` when it sent one, else a readable summary of the body.
        body: the parsed JSON body, or its (trimmed) text when it is not JSON.
        request_id: the `x-request-id` header, or None.
        rate_limit: the `RateLimit` reported with the response.
        retry_after: seconds the server asked us to wait before trying again, or None.
        response: the `httpx.Response`.
    """

    def __init__(
        self,
        message: str,
        *,
        response: httpx.Response,
        body: object,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, response=response, body=body)
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after

    def __str__(self) -> str:
        request_id = self.request_id
        suffix = f" (request id {request_id})" if request_id else ""
        return f"Error code: {self.status_code} - {self.message}{suffix}"


class BadRequestError(APIStatusError):
    """400: the API refused the request's parameters."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, malformed or revoked."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not use this model or endpoint."""


class NotFoundError(APIStatusError):
    """404: the model or endpoint does not exist."""


class ConflictError(APIStatusError):
    """409: the request conflicts with another one; it is retried."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but could not be processed."""


class RateLimitError(APIStatusError):
    """429: the rate limit is exhausted. See `retry_after` and `rate_limit` for when to try again."""


class InternalServerError(APIStatusError):
    """500 or any other 5xx: something went wrong on the server's side (500, 502, 503 and 504 are retried)."""


class ServiceUnavailableError(InternalServerError):
    """503: the provider behind the model is temporarily unavailable; it is retried."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}

# Error events inside a stream carry no status of their own: their `type` or `code` names one.
_ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "bad_request": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "permission_denied": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "conflict": 409,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "rate_limited": 429,
    "server_error": 500,
    "internal_error": 500,
    "api_error": 500,
    "overloaded_error": 503,
    "service_unavailable": 503,
    "timeout": 504,
}


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP status."""
    cls = _STATUS_ERRORS.get(status_code)
    if cls is not None:
        return cls
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_SCRIPT_OR_STYLE = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)


def trim_text(text: str, limit: int = MAX_BODY_IN_MESSAGE_CHARS) -> str:
    """Shorten a body for a message: HTML pages become their title or text, long text is cut."""
    stripped = text.strip()
    if stripped[:1] == "<" and ("<html" in stripped[:500].lower() or "<!doctype" in stripped[:50].lower()):
        title = _TITLE.search(stripped)
        if title and title.group(1).strip():
            stripped = title.group(1)
        else:
            stripped = _TAG.sub(" ", _SCRIPT_OR_STYLE.sub(" ", stripped))
        stripped = html.unescape(_SPACE.sub(" ", stripped)).strip()
    if len(stripped) > limit:
        stripped = stripped[: limit - 3].rstrip() + "..."
    return stripped


def _message_from_json(body: object) -> str | None:
    if not isinstance(body, dict):
        return None
    error = body.get("error", body)
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str) and message:
            return message
    message = body.get("message") or body.get("detail")
    return message if isinstance(message, str) and message else None


def read_error_body(response: httpx.Response) -> tuple[object, str]:
    """Decode an error response into (body, message) for any content: JSON, text, HTML or nothing."""
    try:
        text = response.text
    except Exception:
        text = response.content.decode("utf-8", "replace")
    if not text.strip():
        phrase = response.reason_phrase or "no body"
        return None, f"{response.status_code} {phrase} (empty body)"
    try:
        body: object = json.loads(text)
    except ValueError:
        trimmed = trim_text(text)
        return trimmed, trimmed
    message = _message_from_json(body)
    return body, trim_text(message if message is not None else text)


def make_status_error(response: httpx.Response, *, retry_after: float | None = None) -> APIStatusError:
    """Build the typed error for an error response whose body has been read."""
    body, message = read_error_body(response)
    cls = error_class_for_status(response.status_code)
    return cls(message, response=response, body=body, retry_after=retry_after)


def make_stream_error(response: httpx.Response, payload: object) -> APIStatusError:
    """Build the typed error for an error sent as an event in the middle of a stream."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    status = 500
    if isinstance(error, dict):
        code, kind = error.get("code"), error.get("type")
        if isinstance(code, int) or (isinstance(code, str) and code.isdigit()):
            status = int(code)
        elif isinstance(code, str) and code in _ERROR_TYPE_STATUS:
            status = _ERROR_TYPE_STATUS[code]
        elif isinstance(kind, str) and kind in _ERROR_TYPE_STATUS:
            status = _ERROR_TYPE_STATUS[kind]
    message = trim_text(_message_from_json(payload) or "The server sent an error event in the stream.")
    cls = error_class_for_status(status)
    return cls(message, response=response, body=payload, status_code=status)


def make_validation_error(response: httpx.Response, what: str) -> APIResponseValidationError:
    """Build the error for a success response whose body does not parse as `what`."""
    try:
        text = response.text
    except Exception:
        text = response.content.decode("utf-8", "replace")
    trimmed = trim_text(text) if text.strip() else "(empty body)"
    message = f"The API answered {response.status_code} with a body that is not a valid {what}: {trimmed}"
    return APIResponseValidationError(message, response=response, body=trimmed)

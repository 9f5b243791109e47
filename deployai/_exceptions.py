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

import copy
import dataclasses
import html
import json
import pickle
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import httpx  # at run time too, so that `typing.get_type_hints` resolves the errors' signatures
from typing_extensions import Self

from ._constants import MAX_BODY_EXAMINED_CHARS, MAX_BODY_IN_MESSAGE_CHARS
from ._error_codes import ERROR_NAME_STATUS
from ._logging import MIN_KEY_LENGTH, SECRET_NAME, longest_key, mentions, redact, shown_url
from ._meta import ResponseInfo, ResponseMeta

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
    "is_retryable",
    "retry_after",
]


class DeployAIError(Exception):
    """The base of every exception this SDK raises: catch it to catch them all."""


class InvalidParameterError(DeployAIError, ValueError):
    """A request parameter was refused before any byte left the machine.

    Attributes:
        param: the parameter's name, for example `temperature` or `messages[2].role`.
        value: the value that was given.
        allowed: what the parameter accepts, in words.

    An API key in the value (an `sk-...`, or a live client's key: settings given to the wrong
    parameter) is `[redacted]` in the message, and the value does not travel in a pickle.
    """

    def __init__(self, param: str, value: object, allowed: str) -> None:
        self.param = param
        self.value = value
        self.allowed = allowed
        try:
            whole = repr(value)
        except Exception:  # an int too long to write out, or a value whose own `__repr__` fails
            whole = f"<{type(value).__name__} object>"
        head = whole[: 200 + longest_key()]  # what the message can show, and a key that begins in it whole
        shown = redact(head)
        self._redacted = shown != head
        if len(shown) > 80:
            shown = shown[:77] + "..."
        elif len(whole) > len(head):
            shown += "..."
        super().__init__(f"{param} must be {allowed}; got {shown}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The value travels when it pickles and holds no key; otherwise its shortened repr (as in the
        # message) stands in.
        value = self.value
        if getattr(self, "_redacted", False) or not _pickles(value):
            value = str(self).rpartition("; got ")[2]
        state = {"param": self.param, "value": value, "allowed": self.allowed}
        return (_rebuild, (type(self), str(self), state))


def _pickles(value: object) -> bool:
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _rebuild(cls: type[DeployAIError], message: str, state: dict[str, Any]) -> DeployAIError:
    """Unpickle an error: its message and plain attributes, without calling `__init__`."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class APIError(DeployAIError):
    """Something went wrong while talking to the API.

    Errors pickle (to cross process pools) without their live request and response: `request` is
    then None, and a `response` is a stand-in holding only the status and headers.

    Attributes:
        message: a readable description.
        request: the request that failed, when there was one.
        retries: how many retries the call made before it raised this error.
        body: what the server answered (None for an error with no answer, such as a connection error).
        code, type, param: the fields of the server's error object, or None (as the openai SDK has them
            on every `APIError`): None for an error with no answer.
    """

    retries = 0  # set on the error a call finally raises: how many retries it made before giving up
    # Why the call raised a failure it could have retried, with retries left (a wait too long).
    _given_up: str | None = None
    body: object = None  # what the server answered: set by the errors that carry a response
    # Met once the answer had begun (after a stream's first chunk, or in the body of a whole 2xx
    # answer): the server had taken the request, and it is not tried again.
    _begun = False

    def __init__(self, message: str, *, request: httpx.Request | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request

    def _go_on(self, sentence: str) -> None:
        """Add `sentence` to the message, after a full stop if the message ends without one."""
        said = self.message.rstrip()
        self.message = f"{said}{'' if said.endswith(('.', '!', '?')) else '.'} {sentence}"
        self.args = (self.message,)

    def _not_retried(self) -> str:
        """What `__str__` adds when the call raised this error with retries left: why, or nothing."""
        return f" (not retried: {self._given_up})" if self._given_up else ""

    def _after(self, retries: int) -> Self:
        """The error itself, as raised by a call that made `retries` retries.

        Made and raised in one expression, an error is no local of the frame its traceback keeps.
        """
        self.retries = retries
        return self

    @property
    def code(self) -> str | None:
        """The error's `code` as the server gave it (`"rate_limit_exceeded"`), or None."""
        return _error_field(self.body, "code")

    @property
    def type(self) -> str | None:
        """The error's `type` as the server gave it (`"invalid_request_error"`), or None."""
        return _error_field(self.body, "type")

    @property
    def param(self) -> str | None:
        """The request parameter the server's error names, or None."""
        return _error_field(self.body, "param")

    def __reduce__(self) -> tuple[Any, ...]:
        # The request holds the API key in its headers: it never goes into a pickle.
        state = {**self.__dict__, "request": None}
        return (_rebuild, (type(self), self.message, state))

    def __copy__(self) -> Self:
        # A copy stays in this process: it keeps the live request and response a pickle leaves out.
        return cast(Self, _rebuild(type(self), self.message, dict(self.__dict__)))

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        live = ("request", "response")  # shared: a response tied to a connection cannot be copied
        state = {name: value if name in live else copy.deepcopy(value, memo) for name, value in self.__dict__.items()}
        return cast(Self, _rebuild(type(self), self.message, state))


class APIConnectionError(APIError):
    """No usable answer arrived: the connection was refused, reset, or dropped mid-response."""

    _sent = True  # False for a request this machine could not send at all: see `is_retryable`

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)

    def __str__(self) -> str:
        return super().__str__() + self._not_retried()


class APITimeoutError(APIConnectionError):
    """The request took longer than its timeout (connecting, writing, or waiting for the next bytes)."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class _ResponseError(APIError, ResponseInfo):  # APIError first: its settable `retries` wins
    """Shared parts of errors that carry an HTTP response: `rate_limit`, `request_id` and `elapsed` come from it."""

    def __init__(self, message: str, *, response: httpx.Response, body: object) -> None:
        super().__init__(message, request=response.request)
        self.response = response
        self.status_code = response.status_code
        self.body = body
        self._meta = ResponseMeta(response.headers)

    def _response_meta(self) -> ResponseMeta:
        return self._meta

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id` for the response (without the API key, should the server echo it)."""
        request_id = super().request_id
        # A server may echo the request's key anywhere, its request id included.
        return None if request_id is None else redact(request_id, _sent_key(self.response))

    def _took(self, elapsed: float) -> None:
        """Record how long the attempt that met this error took (its `elapsed`), unless recorded already."""
        if self._meta.elapsed is None:
            self._meta = dataclasses.replace(self._meta, elapsed=elapsed)

    def __reduce__(self) -> tuple[Any, ...]:
        import httpx  # only here: a pickled error needs a stand-in response, and httpx is loaded by then

        meta = self._meta.portable(_sent_key(self.response) if self.request is not None else ())
        stand_in = httpx.Response(self.status_code, headers=meta.headers)
        state = {**self.__dict__, "request": None, "response": stand_in, "_meta": meta}
        return (_rebuild, (type(self), self.message, state))


class APIResponseValidationError(_ResponseError):
    """The API answered with a success status, but the body is not what the API documents.

    Its message names what is wrong (the first few fields, without their values) before the start of
    the body.

    Attributes:
        status_code: the HTTP status.
        body: the body text, trimmed.
        request_id: the `x-request-id` header, or None (shown after the message, as a status error's).
        response: the `httpx.Response`.
    """

    def __str__(self) -> str:
        request_id = self.request_id
        return f"{self.message} (request id {request_id})" if request_id else self.message


class APIStatusError(_ResponseError):
    """The API answered with an error status, or sent an error event in the middle of a stream.

    Attributes:
        status_code: the HTTP status (for an error event mid-stream, the status its type maps to).
        message: the server's `error.message` when it sent one, else a readable summary of the body.
        body: the parsed JSON body (the whole `{"error": {...}}`), or its (trimmed) text when it is not JSON.
        code, type, param: the fields of the server's error object, or None (as the openai SDK has them).
        request_id: the `x-request-id` header, or None.
        rate_limit: the `RateLimit` reported with the response.
        retry_after: seconds the server asked us to wait before trying again, or None.
        response: the `httpx.Response`.
    """

    # False for an error reported in a success whose code and type name no status: its class is
    # a guess (500), and sending again on a guess is no retry rule (see `is_retryable`).
    _status_named = True

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
        return f"Error code: {self.status_code} - {self.message}{suffix}{self._not_retried()}"


def _error_field(body: object, name: str) -> str | None:
    """A field of the error object in `body` (`{"error": {...}}`, or the object itself), as text."""
    error = body.get("error", body) if isinstance(body, dict) else None
    value = error.get(name) if isinstance(error, dict) else None
    return None if value is None or isinstance(value, (dict, list)) else str(value)


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

    # Refused unsent by a rate limiter over the calls queued before it, where the window itself
    # had room within the call's wait: a batch's call then queues again (see `_fanout`).
    _queued = False
    # For a rate limiter's refusal: how long it would have held the call, and how long the call may wait.
    _hold: str | None = None


class InternalServerError(APIStatusError):
    """500 or any other 5xx: the server failed (500, 502 to 504, 520 to 524 and 529 are retried)."""


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


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP status."""
    cls = _STATUS_ERRORS.get(status_code)
    if cls is not None:
        return cls
    if status_code >= 500:
        return InternalServerError
    return APIStatusError


# An error page comes from whoever answered (the API, a proxy, a captive portal) and may be hostile.
# Pages are read in single left-to-right passes: each pattern below is a fixed word, searched from a
# position that only moves forward, and the matching ">" or closing tag is found with `str.find` or
# `search` from there on, so nothing is scanned twice and the cost is linear in the examined text.
# (Patterns such as `<title[^>]*>(.*?)</title>` instead retry the whole rest of the page from every
# opening that has no end, which is quadratic: tens of seconds for a 400 KB page.) ASCII-only case
# folding keeps U+017F (long s) and U+212A (Kelvin sign) from matching "s" and "k".
_SPACE = re.compile(r"\s+")
_TITLE_OPEN = re.compile(r"<title\b", re.IGNORECASE | re.ASCII)
_TITLE_CLOSE = re.compile(r"</title\b", re.IGNORECASE | re.ASCII)
_SCRIPT_OR_STYLE_OPEN = re.compile(r"<(script|style)\b", re.IGNORECASE | re.ASCII)
_SCRIPT_OR_STYLE_CLOSE = {
    "script": re.compile(r"</script\b", re.IGNORECASE | re.ASCII),
    "style": re.compile(r"</style\b", re.IGNORECASE | re.ASCII),
}
_TAG_START = re.compile(r"<[A-Za-z/!?]")
# A decimal character reference of 8 digits or more names no character (the largest is 1114111), and
# `html.unescape` would hand all its digits to `int`, which raises ValueError beyond 4300 of them.
_LONG_DECIMAL_CHARREF = re.compile(r"&#[0-9]{8,};?")


def _html_title(page: str) -> str:
    """The text between the first `<title ...>` and the `</title` after it, or "" when there is none."""
    opening = _TITLE_OPEN.search(page)
    if opening is None:
        return ""
    start = page.find(">", opening.end())
    closing = None if start < 0 else _TITLE_CLOSE.search(page, start + 1)
    return "" if closing is None else page[start + 1 : closing.start()]


def _without_scripts_and_styles(page: str) -> str:
    """The page with each `<script>` and `<style>` element replaced by a space; an unclosed one runs to the end."""
    parts: list[str] = []
    position = 0
    while (opening := _SCRIPT_OR_STYLE_OPEN.search(page, position)) is not None:
        parts.append(page[position : opening.start()])
        parts.append(" ")
        start = page.find(">", opening.end())
        closing = None if start < 0 else _SCRIPT_OR_STYLE_CLOSE[opening.group(1).lower()].search(page, start + 1)
        end = -1 if closing is None else page.find(">", closing.end())
        if end < 0:
            return "".join(parts)
        position = end + 1
    parts.append(page[position:])
    return "".join(parts)


def _without_tags(page: str) -> str:
    """The page with each tag (a `<`, at least one character, then the next `>`) replaced by a space.

    After the last `>`, a tag that never ends (cut off by `MAX_BODY_EXAMINED_CHARS`, or by the
    server) is dropped with everything after it, as a browser does; a lone "<" stays text.
    """
    parts: list[str] = []
    position = 0
    start = page.find("<")
    while start >= 0:
        end = page.find(">", start + 1)
        if end < 0:
            unfinished = _TAG_START.search(page, start)
            parts.append(page[position : len(page) if unfinished is None else unfinished.start()])
            return "".join(parts)
        if end > start + 1:  # "<>" is text
            parts.append(page[position:start])
            parts.append(" ")
            position = end + 1
        start = page.find("<", end + 1)
    parts.append(page[position:])
    return "".join(parts)


def trim_text(text: str, limit: int = MAX_BODY_IN_MESSAGE_CHARS) -> str:
    """Shorten a body for a message: HTML pages become their title or text, long text is cut.

    Only the first `MAX_BODY_EXAMINED_CHARS` characters are looked at (the result is the same for
    any text that starts with them), and each step is linear in them: a hostile page costs no more
    than an ordinary one. `limit` is at most that many characters.
    """
    stripped = text[:MAX_BODY_EXAMINED_CHARS].strip()
    if stripped[:1] == "<" and ("<html" in stripped[:500].lower() or "<!doctype" in stripped[:50].lower()):
        title = _html_title(stripped)
        stripped = title if title.strip() else _without_tags(_without_scripts_and_styles(stripped))
        stripped = html.unescape(_LONG_DECIMAL_CHARREF.sub("\ufffd", _SPACE.sub(" ", stripped))).strip()
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


# Marks an answer whose body httpx closed unread because a borrowed client's event hook raised
# (`raise_for_status`): its status and headers are all that is left of it.
UNREAD_BY_HOOK: Final = "deployai.unread_by_hook"


def read_error_body(response: httpx.Response) -> tuple[object, str]:
    """Decode an error response into (body, message) for any content: JSON, text, HTML or nothing."""
    try:
        text = response.text
    except Exception:
        text = response.content.decode("utf-8", "replace")
    # `isspace` stops at the first visible character, where `strip` would copy a body of megabytes.
    if not text or text.isspace():
        phrase = response.reason_phrase or "error"
        if response.extensions.get(UNREAD_BY_HOOK):
            return None, f"{response.status_code} {phrase} (body not read: an event hook of the http_client raised)"
        return None, f"{response.status_code} {phrase} (empty body)"
    # Said instead of an empty message, for a page whose text is all script, style or markup.
    unreadable = f"{response.status_code} {response.reason_phrase or 'error'} (no readable text in the body)"
    try:
        # One linear pass at most, and it stops at once for most non-JSON bodies (an HTML page at its
        # "<"); a body nested deeper than the parser recurses raises RecursionError, not ValueError.
        body: object = json.loads(text)
    except (ValueError, RecursionError):
        body = _event_data(text)  # an error status answered as an event stream, to a stream
        if body is None:
            trimmed = trim_text(text)
            return trimmed, trimmed or unreadable
    message = _message_from_json(body)
    return body, trim_text(message if message is not None else text) or unreadable


def _event_data(text: str) -> object:
    """The JSON of the first `data:` line of an event stream's text; None when it has none."""
    if not text.startswith(("data:", "event:", ":")):
        return None
    for line in text.splitlines():
        if line.startswith("data:"):
            try:
                return json.loads(line[5:])
            except (ValueError, RecursionError):
                return None
    return None


_MAX_SCRUB_DEPTH = 32


def _sent_key(response: httpx.Response) -> tuple[str, ...]:
    """The keys the request carried, to be taken out of anything the server echoes back."""
    try:
        request = response.request
    except RuntimeError:  # a response built without its request
        return ()
    return _key_of(request)


# Where a request carries a key: `Authorization` (its credential after the scheme), a proxy's, and
# the headers Azure-style gateways read (the whole value).
_KEY_HEADERS: Final = (("authorization", True), ("proxy-authorization", True), ("api-key", False), ("x-api-key", False))


def _key_of(request: httpx.Request | None) -> tuple[str, ...]:
    """The keys `request` carries (see `_sent_key`), leaving out any too short to look for.

    A value of its query whose name speaks of a secret (`api-key`, `token`, `sig`) is one too, as
    sent and as decoded: a gateway may take its key there, and echo it in a redirect's `Location`.
    """
    if request is None:
        return ()
    headers = request.headers
    keys = []
    for name, schemed in _KEY_HEADERS:
        for value in headers.get_list(name):
            if schemed:
                scheme, _, value = value.partition(" ")
                if not value.strip():  # no scheme: the whole value is the credential
                    value = scheme
            value = value.strip()
            if len(value) >= MIN_KEY_LENGTH:
                keys.append(value)
    query = request.url.query
    if query:
        for part in query.decode("ascii", "replace").split("&"):
            name, _, value = part.partition("=")
            if len(value) >= MIN_KEY_LENGTH and SECRET_NAME.search(urllib.parse.unquote_plus(name)):
                keys.extend(dict.fromkeys((value, urllib.parse.unquote_plus(value))))
    return tuple(keys)


def _scrub(value: object, key: tuple[str, ...], depth: int = 0) -> object:
    """`value` with every string redacted (a server that echoes the request may echo the key)."""
    if isinstance(value, str):
        return redact(value, key)
    if depth >= _MAX_SCRUB_DEPTH:
        return "[redacted: nested too deeply to check]"
    if isinstance(value, dict):
        return {redact(str(k), key): _scrub(v, key, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, key, depth + 1) for v in value]
    return value


_KEY_PIECE_CHARS: Final = 4  # the shortest start of a key a cut message is looked at for


def _scrubbed(response: httpx.Response, message: str, body: object, *sources: str) -> tuple[str, object]:
    """The message and body of an error, without any secret the server sent back in them (in `sources`)."""
    keys = _sent_key(response)
    # The usual case: nothing that looks like a key ("sk-...", "Bearer ...", or a key this call sent,
    # which is what a server echoes), found by plain substring searches; `redact`'s
    # case-insensitive regex over a 10 MB body takes 0.4 s.
    for raw in sources:
        lowered = raw.lower()
        if "sk-" in lowered or "bearer" in lowered or any(mentions(raw, key) for key in keys):
            message, body = redact(message, keys), _scrub(body, keys)
            for key in keys:  # a body that is text was cut as the message was
                message = _cut_key_dropped(message, key)
                body = _cut_key_dropped(body, key) if isinstance(body, str) else body
            return message, body
    return message, body


def _cut_key_dropped(message: str, key: str) -> str:
    """`message` without the start of `key` that a cut left at its end (before `trim_text`'s "...").

    The whole key was redacted before; a long one (a JWT) echoed near the end of what is kept was
    cut with the message, and its first part was left.
    """
    if not message.endswith("..."):
        return message
    kept = message[:-3]
    for size in range(min(len(key), len(kept)), _KEY_PIECE_CHARS - 1, -1):
        if kept.endswith(key[:size]):
            return kept[:-size] + "[redacted]..."
    return message


def make_status_error(response: httpx.Response, *, retry_after: float | None = None) -> APIStatusError:
    """Build the typed error for an error response whose body has been read."""
    body, message = read_error_body(response)
    try:
        raw = response.text  # decoded once already by `read_error_body`, and cached by httpx
    except Exception:
        raw = response.content.decode("utf-8", "replace")
    if "\\" in raw:  # JSON escapes (`\u0073k-...`) hide a key the decoded message and body show
        raw += repr(body)
    # The message may be the status line's reason phrase, which a server can make of anything.
    message, body = _scrubbed(response, message, body, raw, message)
    cls = error_class_for_status(response.status_code)
    return cls(message, response=response, body=body, retry_after=retry_after)


def make_stream_error(response: httpx.Response, payload: object, *, streamed: bool = True) -> APIStatusError:
    """Build the typed error for an error the server sent in a success: an event of a stream, or a 200's body."""
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    status = 0
    if isinstance(error, dict):
        code, kind = error.get("code"), error.get("type")
        if isinstance(code, str) and len(code) == 3 and code.isascii() and code.isdigit():
            code = int(code)
        if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
            status = code  # an HTTP status; other numbers are a provider's own codes
        elif isinstance(code, str) and code in ERROR_NAME_STATUS:
            status = ERROR_NAME_STATUS[code]
        elif isinstance(kind, str) and kind in ERROR_NAME_STATUS:
            status = ERROR_NAME_STATUS[kind]
    default = "The server sent an error event in the stream." if streamed else "The server answered with an error."
    message = trim_text(_message_from_json(payload) or default)
    message, payload = _scrubbed(response, message, payload, message + repr(payload))
    cls = error_class_for_status(status or 500)
    reported = cls(message, response=response, body=payload, status_code=status or 500)
    if not status:
        reported._status_named = False
    return reported


def reported_error(response: httpx.Response) -> APIStatusError | None:
    """The error a success's whole body reports (`{"error": {...}}` and no result), typed; None for any other body.

    Some gateways answer a provider's failure with a 200 whose body is the error. The body is read
    only when it holds the key `"error"` (a JSON string holds a quote only escaped, so no answer's
    text matches).
    """
    content = response.content
    if b'"error"' not in content:
        return None
    try:
        payload = json.loads(content.removeprefix(b"\xef\xbb\xbf"))  # a BOM means nothing (see `parse_body`)
    except (ValueError, RecursionError):
        return None
    return make_stream_error(response, payload, streamed=False) if _is_error_object(payload) else None


def reported_in(response: httpx.Response, payload: object) -> APIStatusError | None:
    """The typed error of a success's parsed body if it is an error object and no result (`reported_error`)."""
    return make_stream_error(response, payload, streamed=False) if _is_error_object(payload) else None


def _is_error_object(payload: object) -> bool:
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return False
    return payload.get("choices") is None and payload.get("data") is None  # no result beside it


def make_validation_error(
    response: httpx.Response, what: str, problems: Sequence[Mapping[str, Any]] = ()
) -> APIResponseValidationError:
    """Build the error for a success response whose body does not parse as `what`.

    `problems` are pydantic's errors (`ValidationError.errors(include_input=False)`): the first few
    are named before the body, which the message shows only the start of.
    """
    try:
        text = response.text
    except Exception:
        text = response.content.decode("utf-8", "replace")
    trimmed = (trim_text(text) or "(no readable text)") if text and not text.isspace() else "(empty body)"
    wrong = f" ({_described(problems)})" if problems else ""
    message = f"The API answered {response.status_code} with a body that is not a valid {what}{wrong}: {trimmed}"
    message, body = _scrubbed(response, message, trimmed, message)
    return APIResponseValidationError(message, response=response, body=body)


def _described(problems: Sequence[Mapping[str, Any]]) -> str:
    """`usage.prompt_tokens: Input should be a valid integer` for each of the first problems."""
    shown = [
        f"{'.'.join(map(str, problem.get('loc', ()))) or 'the body'}: {problem.get('msg', 'invalid')}"
        for problem in problems[:_PROBLEMS_SHOWN]
    ]
    more = len(problems) - _PROBLEMS_SHOWN
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


_PROBLEMS_SHOWN: Final = 3


def make_redirect_error(response: httpx.Response) -> APIStatusError:
    """Build the error for a 3xx answer: redirects are not followed, so the key never goes elsewhere."""
    location = response.headers.get("location")
    if response.status_code == 304:  # the answer to a conditional request, which the SDK never makes
        message = (
            "The API answered 304 Not Modified, which only answers a request for a cached copy; the SDK "
            "never asks for one: a proxy or cache between this client and the API sent it."
        )
    else:
        where = f" to {trim_text(shown_url(location), 200)}" if location else " without a location"
        phrase = response.reason_phrase or "Redirect"
        message = (
            f"The API answered {response.status_code} {phrase}, a redirect{where}. Redirects are not followed, "
            "so that your API key is never sent to another address: check base_url."
        )
    body, _ = read_error_body(response)
    # A server may put the request's key in the address it sends the client on to.
    message, body = _scrubbed(response, message, body, message + repr(body))
    return APIStatusError(message, response=response, body=body)


def safe_cause(exc: BaseException) -> BaseException | None:
    """The exception to chain as `__cause__`, or None when its message holds a secret (tracebacks print it)."""
    text = str(exc)
    return exc if redact(text, _key_of(_request_of(exc))) == text else None


def _request_of(exc: BaseException) -> httpx.Request | None:
    """The request an httpx failure is about, if it says."""
    try:
        return exc.request if isinstance(exc, httpx.RequestError) else None
    except RuntimeError:  # raised without one
        return None


def _said_by_cause(exc: BaseException) -> str:
    """What to say of a failure with no message (a TLS handshake cut short): its name, and its cause's."""
    cause = exc.__cause__ or exc.__context__
    for _ in range(3):  # what raised it, and what raised that: the first that says something
        if cause is None:
            break
        try:
            said = str(cause)
            if len(said) > MAX_BODY_IN_MESSAGE_CHARS:
                said = said[:MAX_BODY_IN_MESSAGE_CHARS] + "..."
        except Exception:  # a cause that cannot say what it is: its name is said instead
            said = ""
        if said:
            return f"{type(exc).__name__} ({type(cause).__name__}: {said})"
        cause = cause.__cause__ or cause.__context__
    first = exc.__cause__ or exc.__context__
    return type(exc).__name__ if first is None else f"{type(exc).__name__} ({type(first).__name__})"


# An attribute put on an httpx failure met while reading the body of a 2xx answer: its status.
ANSWERED: Final = "_deployai_answered"
# An attribute put on an httpx failure met sending through a proxy: the proxy's URL, without its user.
THROUGH: Final = "_deployai_through"


def _where(request: httpx.Request | None, proxy: object) -> str:
    """Whom a connection failure was met with: the server's host and port, and the proxy it went through.

    Without them, a refused connection reads the same whether the base URL, a proxy from the
    environment, or the network is wrong.
    """
    if request is None:
        return ""
    url = request.url
    host = url.host  # never the user and password a URL may carry before its host
    if ":" in host:
        host = f"[{host}]"
    where = f" to {host}" if url.port is None else f" to {host}:{url.port}"
    return where if proxy is None else f"{where} through the proxy {proxy}"


def transport_error(exc: BaseException, request: httpx.Request | None) -> APIConnectionError:
    """Wrap an httpx failure in the SDK's own error (the caller raises it `from safe_cause(exc)`)."""
    import httpx  # loaded by then: a transport failure came from it

    answered = getattr(exc, ANSWERED, None)
    where = _where(request, getattr(exc, THROUGH, None))
    if isinstance(exc, httpx.TimeoutException):
        error: APIConnectionError = APITimeoutError(
            f"Request{where} timed out ({type(exc).__name__}).", request=request
        )
    else:
        # httpx quotes header values in some messages (an illegal one, for instance): never the key.
        detail = redact(str(exc) or _said_by_cause(exc), _key_of(request))
        error = APIConnectionError(f"Connection error{where}: {detail}", request=request)
    if answered is not None:
        # The server had answered, so it had taken the request: sent again, it would be carried out
        # (and charged) again, and a cut that a proxy's body limit makes would come again too.
        error._begun = True
        error._go_on(
            f"The server had answered {answered} before this, in its body: the call was not sent again, since the "
            "server had taken it."
        )
    # A request this machine could not even send (a bad URL scheme, an illegal header) fails the same
    # way again; so does anything that is not a transport failure at all.
    error._sent = isinstance(exc, httpx.TransportError) and not isinstance(
        exc, (httpx.LocalProtocolError, httpx.UnsupportedProtocol)
    )
    return error


def is_retryable(exc: BaseException | None) -> bool:
    """Whether trying the same call again may succeed: the SDK's own retry rule, as a pure function.

    True for connection failures and timeouts (not for a request that could not be sent at all) and
    for the statuses 408, 409, 429, 500, 502, 503, 504, 520 to 524 and 529 (an error event in a
    stream, or the error body of a 200, counts with the status its code or type names; one that
    names none is not retried), unless the server answered `x-should-retry: false` (or with any
    status when it answered `x-should-retry: true`); False for everything else, other libraries'
    exceptions included. False as well for an error that ended a stream after its first chunk, or
    the body of a whole 2xx answer to a POST, as the SDK's own retries never try those again: the
    part of the answer already read would come twice, and the server had taken the request. Its shape is
    what `stamina.retry(on=...)` and tenacity's `retry_if_exception(...)` take as they are.
    """
    if isinstance(exc, APIError) and exc._begun:
        return False
    if isinstance(exc, APIStatusError):
        from ._retry import retryable_status  # here: `_retry` is no dependency of the errors themselves

        headers: Mapping[str, str] = exc.response.headers
        if not exc._status_named:
            return headers.get("x-should-retry") == "true"  # the server may know better than the guess
        return retryable_status(exc.status_code, headers)
    return isinstance(exc, APIConnectionError) and exc._sent


def retry_after(exc: BaseException | None) -> float | None:
    """Seconds the server asked to wait before trying again, read from the error; None if it did not say.

    The wait comes from `retry-after-ms`, `retry-after`, or the reset of a spent rate-limit window,
    counted from when the answer arrived. Usable as a custom wait in tenacity or stamina.
    """
    return exc.retry_after if isinstance(exc, APIStatusError) else None

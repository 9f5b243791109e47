"""Client options: resolved once from arguments and the environment, then only read."""

from __future__ import annotations

import inspect
import ipaddress
import math
import numbers
import os
import re
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, TypeVar, cast

import httpx

from ._constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_BASE_URL,
    DEFAULT_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
)
from ._exceptions import DeployAIError, InvalidParameterError
from ._limiter import RateLimiter
from ._logging import remember_key
from ._types import NOT_GIVEN, NotGiven, OnRetry, Timeout
from ._version import __version__

_T = TypeVar("_T")

DEFAULT_TIMEOUT = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, connect=DEFAULT_CONNECT_TIMEOUT_SECONDS)
USER_AGENT = f"deployai-python/{__version__}"


# About 24.8 days: a socket's wait goes to poll() as a 32-bit count of milliseconds. Past it a
# connect failed as a connection error, and a read's wait wrapped round (4,294,967.4 s timed out
# after 0.1 s) or never ended.
LONGEST_TIMEOUT_SECONDS: Final = (2**31 - 1) / 1000


def to_httpx_timeout(value: Timeout, param: str = "timeout") -> httpx.Timeout:
    """Turn a user's timeout into an `httpx.Timeout`, refusing negative or non-numeric values (in each phase too)."""
    if isinstance(value, httpx.Timeout):
        for phase, limit in value.as_dict().items():
            if limit is None:
                continue
            seconds = _seconds(limit)
            if phase == "pool" and seconds == 0:  # httpx's meaning: fail at once when no connection is free
                continue
            # httpx takes any of them, and fails only once sending: a negative one as a connection error.
            if not 0 < seconds <= LONGEST_TIMEOUT_SECONDS:
                allowed = (
                    "a positive number of seconds up to 2147483 (about 24.8 days; for the pool, 0: no wait), or None"
                )
                raise InvalidParameterError(f"{param}.{phase}", limit, allowed)
        return value
    if value is None:
        return httpx.Timeout(None)
    seconds = _seconds(value)
    if not 0 < seconds <= LONGEST_TIMEOUT_SECONDS:
        allowed = "a positive number of seconds up to 2147483 (about 24.8 days), an httpx.Timeout, or None for no limit"
        raise InvalidParameterError(param, value, allowed)
    return httpx.Timeout(seconds)


def _seconds(value: object) -> float:
    """`value` as a float of seconds; NaN when it is no real number (a bool is none)."""
    try:
        return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an int too large for a float
        return math.inf


class Secret(str):
    """A string whose repr never shows it: the API key, and the header that carries it.

    Tracebacks with their frames' locals (`pytest -l`, `capture_locals=True`, debuggers) show each
    local through its repr, and the key passes through locals on every call, in dicts of headers.
    """

    __slots__ = ("__weakref__",)  # for the log's redaction, which looks for a live client's key

    def __repr__(self) -> str:
        return "'<redacted>'"

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # What every pickle protocol can write (0 and 1 refuse a class with slots of its own).
        return (Secret, (str(self),))


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything a client was configured with. Derived values are computed once, here.

    `timeout` is None when a borrowed `http_client` decides its own timeouts.
    """

    api_key: str = field(repr=False)
    base_url: str
    timeout: httpx.Timeout | None
    max_retries: int
    max_retry_wait: float
    default_headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    on_retry: OnRetry | None = field(default=None, repr=False, compare=False)
    total_timeout: float | None = None
    rate_limiter: RateLimiter | None = field(default=None, repr=False, compare=False)

    json_headers: dict[str, str] = field(init=False, repr=False, compare=False)
    stream_headers: dict[str, str] = field(init=False, repr=False, compare=False)
    timeout_extension: dict[str, Any] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        base = {
            "Authorization": Secret(f"Bearer {self.api_key}"),
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        base = merge_headers(base, self.default_headers)
        set_ = object.__setattr__
        set_(self, "json_headers", base)
        set_(self, "stream_headers", merge_headers(base, {"Accept": "text/event-stream", "Cache-Control": "no-store"}))
        set_(self, "timeout_extension", None if self.timeout is None else self.timeout.as_dict())

    def with_changes(self, **changes: Any) -> ClientOptions:
        """A copy with some options changed (used by `with_options`)."""
        return replace(self, **changes)


_PRINTABLE_TOKEN = re.compile(r"[\x21-\x7e]+")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# HTTP's field values: no space or tab at either end, which h11 refuses when sending (quoting the value).
_HEADER_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?")
# Framing and connection headers belong to the HTTP layer: one of ours would contradict the body it
# sends (a wrong length fails half-way, after bytes were sent) or the pool's handling of connections.
_TRANSPORT_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "host", "te", "upgrade", "trailer", "keep-alive", "expect"}
)


def check_headers(param: str, headers: Mapping[str, str]) -> dict[str, str]:
    """Refuse header names and values that HTTP cannot carry, before anything is sent.

    Values are not quoted in the error: a header may hold a secret.
    """
    if not isinstance(headers, Mapping):
        raise InvalidParameterError(param, type(headers).__name__, "a mapping of header names to str values")
    seen: set[str] = set()
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidParameterError(param, name, "header names made of letters, digits and -")
        if name.lower() in seen:  # HTTP names are case-insensitive: which of the two values was meant?
            raise InvalidParameterError(param, name, "each header name once (names differing only in case are one)")
        seen.add(name.lower())
        if name.lower() in _TRANSPORT_HEADERS:
            raise InvalidParameterError(
                param, name, "headers other than those HTTP itself sets (" + ", ".join(sorted(_TRANSPORT_HEADERS)) + ")"
            )
        if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
            raise InvalidParameterError(
                f"{param}[{name!r}]",
                "str" if isinstance(value, str) else kind_of(value),  # a redacted key's type is a str too
                "a str of printable ASCII without line breaks, nor a space or tab at either end",
            )
    return conceal_headers(dict(headers))


# Where a key goes: `Authorization`, a proxy's, and the names Azure-style gateways read.
_KEY_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})


def hide_call_keys(params: dict[str, Any]) -> None:
    """Put in a call's own arguments a copy of their `extra_headers` whose key headers are `Secret`s.

    A per-call key (`extra_headers={"Authorization": ...}`) is the caller's string: a traceback
    printed with its frames' locals would show it in `params` of the SDK's frames, which hold this
    very dict. The caller's headers mapping itself is left as it is.
    """
    extra = params.get("extra_headers")
    if extra is not None:
        params["extra_headers"] = conceal_headers(extra)
    if "api_key" in params:  # given per call as other SDKs take it: refused, but first hidden
        params["api_key"] = conceal(params["api_key"])


def conceal_headers(headers: _T) -> _T:
    """A copy of `headers` whose key headers are `Secret`s, if it has one; anything else as it is.

    For headers a caller gives (`default_headers`, `extra_headers`): the caller's own mapping is
    left as it is, and a frame's locals show the copy.
    """
    # An `httpx.Headers` too: its repr hides only `Authorization`s, not an `api-key`. Its repeats are
    # joined, as `check_headers` reads them.
    if isinstance(headers, Mapping) and any(_is_key_header(name, value) for name, value in headers.items()):
        return cast(
            "_T", {name: _hidden(value) if _is_key_header(name, value) else value for name, value in headers.items()}
        )
    if isinstance(headers, (list, tuple)):  # pairs, as httpx takes them: refused, but first hidden
        return cast("_T", type(headers)(_concealed_pair(pair) for pair in headers))
    return headers


def _concealed_pair(pair: object) -> object:
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and _is_key_header(pair[0], pair[1]):
        return (pair[0], _hidden(pair[1]))
    return pair


def _is_key_header(name: object, value: object) -> bool:
    if type(name) is bytes:  # as httpx takes them: refused, but first hidden
        name = name.decode("latin-1")
    return type(name) is str and type(value) in (str, bytes, bytearray) and name.lower() in _KEY_HEADERS


def _hidden(value: str | bytes | bytearray) -> object:
    """A key header's value as a frame's locals may show it: a `Secret`, or a stand-in for bytes (refused)."""
    return Secret(value) if type(value) is str else NotAKey(value)


def merge_headers(base: Mapping[str, str], over: Mapping[str, str]) -> dict[str, str]:
    """`base` with the headers of `over` in place of any of its own of the same name, in whatever case.

    A plain dict merge would keep `Authorization` beside an `authorization` given to replace it, and
    send both.
    """
    replaced = {name.lower() for name in over}
    merged = {name: value for name, value in base.items() if name.lower() not in replaced}
    merged.update(over)
    return merged


def _check_retries(max_retries: int) -> int:
    if isinstance(max_retries, bool) or not isinstance(max_retries, numbers.Integral) or max_retries < 0:
        raise InvalidParameterError("max_retries", max_retries, "a whole number >= 0")
    return int(max_retries)


def _check_retry_wait(max_retry_wait: float) -> float:
    if isinstance(max_retry_wait, bool) or not isinstance(max_retry_wait, numbers.Real) or not max_retry_wait >= 0:
        raise InvalidParameterError("max_retry_wait", max_retry_wait, "a number of seconds >= 0")
    return float(max_retry_wait)


def check_total_timeout(total_timeout: object) -> float | None:
    """A deadline in seconds for a whole call, retries included; None for none."""
    if total_timeout is None:
        return None
    try:
        seconds = float(total_timeout) if isinstance(total_timeout, numbers.Real) else math.nan
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if isinstance(total_timeout, bool) or not 0 < seconds < math.inf:
        raise InvalidParameterError("total_timeout", total_timeout, "a positive number of seconds, or None")
    return seconds


def is_async_function(function: object) -> bool:
    """Whether calling `function` makes a coroutine: an `async def` function, or an object whose `__call__` is one."""
    if isinstance(function, type):  # a class: calling it makes what its metaclass's `__call__` makes
        return inspect.iscoroutinefunction(type(function).__call__)
    method = getattr(function, "__call__", None)  # noqa: B004 - the method itself is looked at, not callability
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(method)


def _check_on_retry(on_retry: OnRetry | None) -> OnRetry | None:
    # An async function would only be called to make a coroutine that nothing awaits.
    if on_retry is not None and (not callable(on_retry) or is_async_function(on_retry)):
        raise InvalidParameterError(
            "on_retry", on_retry, "a plain (not async) function called as on_retry(retry, wait_seconds, error)"
        )
    return on_retry


def _check_rate_limiter(rate_limiter: object) -> RateLimiter | None:
    if rate_limiter is not None and not isinstance(rate_limiter, RateLimiter):
        raise InvalidParameterError("rate_limiter", type(rate_limiter).__name__, "a deployai.RateLimiter, or None")
    return rate_limiter


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine: `localhost`, 127.0.0.0/8 (in any form the OS takes) or ::1 (or ::ffff:127.x.x.x).

    Not a name under `localhost` (`api.localhost`), nor one written with the root's trailing dot
    (`localhost.`, `127.0.0.1.`): many resolvers (glibc's, without systemd's) send those to DNS,
    which may answer with another machine.
    """
    host = host.lower().strip("[]")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return _legacy_ipv4_loopback(host)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def _legacy_ipv4_loopback(host: str) -> bool:
    """Whether `host` is in 127.0.0.0/8, written as the OS takes it and `ipaddress` does not (`127.1`, `2130706433`)."""
    if not host or not all(part.isdigit() or part.startswith("0x") for part in host.split(".")):
        return False
    try:
        return socket.inet_aton(host)[0] == 127
    except (OSError, ValueError):
        return False


def _without_userinfo(url: str) -> str:
    """`url` as an error may quote it: from after its `//` (or its start) to its last `@` hidden, and any query.

    A password may hold `/`, `?` or `#` unencoded, and then no parser finds it; without `//`, what
    looks like a scheme may be a user name.
    """
    at = url.rfind("@")
    if at >= 0:
        start = url.find("//")
        start = start + 2 if 0 <= start < at else 0
        url = url[:start] + "***" + url[at:]
    # A query or fragment may carry a key too (`?api-key=...`, as some gateways' URLs do): never quoted.
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    return url if cut < 0 or cut == len(url) - 1 else url[:cut] + url[cut] + "***"


def _unseen(base_url: str) -> bool:
    """Whether `base_url` holds a character no one sees: a space of any kind, a mark, a control.

    Pasted with a URL from a web page (a no-break or zero-width space, a direction mark at its end),
    it is encoded into every path, and every call is a 404. The host may hold the zero-width
    joiners IDNA allows in some names (Persian's); httpx has checked it.
    """
    try:
        authority = urllib.parse.urlsplit(base_url).netloc  # as written: httpx's host may be half decoded
    except ValueError:
        authority = ""
    return " " in base_url or not base_url.replace(authority, "", 1).isprintable()


def _check_base_url(base_url: str, *, allow_insecure_http: bool) -> str:
    if not isinstance(base_url, str):
        # Never the value: a URL object's (pydantic's `HttpUrl`) repr shows its password and query.
        raise InvalidParameterError(
            "base_url",
            type(base_url).__name__,
            "a str such as 'https://api.deployai.dev/v1' (str(url) of a URL object)",
        )
    shown = _without_userinfo(base_url)
    if "@" in base_url:
        # A user name and password: httpx would send them as Basic auth in place of the key, and they
        # would show in every log line, repr and error that names the URL. An `@` later in the URL
        # may be one too, its password holding a `/` (`user:2024/pass@host` is host `user`).
        raise InvalidParameterError(
            "base_url", shown, "a URL without a user name or password, and no '@' (the API key is the credential)"
        )
    try:
        url = httpx.URL(base_url)
        host = url.host  # decoded from IDNA (`xn--...`) here: the `idna` package's error for a bad one
    except (httpx.InvalidURL, UnicodeError):
        url, host = None, ""
    if url is None or url.scheme not in ("http", "https") or not host or _unseen(base_url):
        raise InvalidParameterError("base_url", shown, "an absolute http:// or https:// URL")
    if url.port is not None and not 0 < url.port < 65536:
        # httpx takes any number: the socket layer then wraps it (65536 + 443 is port 443) or fails.
        raise InvalidParameterError("base_url", shown, "a URL whose port is from 1 to 65535")
    if url.query or url.fragment or "?" in base_url or "#" in base_url:
        # Paths are appended to the base URL: a query or fragment in it would swallow them.
        raise InvalidParameterError(
            "base_url", shown, "a URL without a query string or fragment (pass extra_query=... per call)"
        )
    if url.scheme == "http" and not allow_insecure_http and not is_loopback(host):
        raise DeployAIError(
            f"base_url uses plain http:// to {url.host}, which would send your API key unencrypted over the "
            "network: use https://, or pass allow_insecure_http=True to the client if you really mean it "
            "(loopback addresses such as localhost and 127.0.0.1 are always allowed)."
        )
    return base_url.rstrip("/")


def resolve_options(
    *,
    api_key: str | None,
    base_url: str | None,
    timeout: Timeout | NotGiven,
    max_retries: int,
    max_retry_wait: float,
    default_headers: Mapping[str, str] | None,
    borrowed_client: bool,
    environ: Mapping[str, str] | None = None,
    allow_insecure_http: bool = False,
    on_retry: OnRetry | None = None,
    total_timeout: float | None = None,
    rate_limiter: RateLimiter | None = None,
) -> ClientOptions:
    """Resolve the options of a new client: an explicit argument wins, then the environment, then the default.

    An empty or blank string counts as unset; `environ` is `os.environ` unless given. Raises `DeployAIError`
    when no API key can be found, so that no request is ever sent without one.
    """
    if api_key is not None and not isinstance(api_key, str):  # bytes read from a secret file, say
        given = api_key if isinstance(api_key, NotAKey) else NotAKey(api_key)
        api_key = None  # a traceback may show this frame's locals
        raise DeployAIError(f"The API key must be a str, not {given.kind}{given.hint}.")
    # The key is a `Secret` before anything here can raise: a traceback may show this frame's locals.
    key = Secret(_stripped(api_key) or _stripped(_setting(environ, API_KEY_ENV)))  # blank counts as unset
    api_key = key
    if not key:
        raise DeployAIError(
            "No API key: pass api_key=... to the client, or set the DEPLOYAI_API_KEY environment variable."
        )
    if not _PRINTABLE_TOKEN.fullmatch(key):
        # Never quote the key: this message may end up in logs. A pasted key often carries a stray
        # quote, space or line break, which would otherwise fail (or leak) on every request.
        raise DeployAIError(
            "The API key contains spaces, line breaks or non-ASCII characters: check api_key or DEPLOYAI_API_KEY."
        )
    if key[0] in _QUOTES or key[-1] in _QUOTES:
        # As `docker --env-file` and some .env loaders keep them: every call a 401, with no hint why.
        raise DeployAIError(
            "The API key starts or ends with a quote, as some .env files keep them: check api_key or DEPLOYAI_API_KEY."
        )
    if not isinstance(allow_insecure_http, bool):
        # `allow_insecure_http=os.getenv(...)`: the string "false" is true, and would send the key in clear.
        raise InvalidParameterError("allow_insecure_http", allow_insecure_http, "True or False")
    remember_key(key)
    given_url = base_url.strip() if isinstance(base_url, str) else base_url  # anything else is refused as it is
    url = _check_base_url(
        given_url or _stripped(_setting(environ, BASE_URL_ENV)) or DEFAULT_BASE_URL,
        allow_insecure_http=allow_insecure_http,
    )
    if isinstance(timeout, NotGiven):
        resolved_timeout = None if borrowed_client else DEFAULT_TIMEOUT
    else:
        resolved_timeout = to_httpx_timeout(timeout)
    headers = check_headers("default_headers", default_headers or {})
    return ClientOptions(
        api_key=key,
        base_url=url,
        timeout=resolved_timeout,
        max_retries=_check_retries(max_retries),
        max_retry_wait=_check_retry_wait(max_retry_wait),
        default_headers=headers,
        on_retry=_check_on_retry(on_retry),
        total_timeout=check_total_timeout(total_timeout),
        rate_limiter=_check_rate_limiter(rate_limiter),
    )


_QUOTES: Final = "\"'"


def _setting(environ: Mapping[str, str] | None, name: str) -> str | None:
    # Never a local of `resolve_options`: the environment's repr shows every variable in it.
    return (os.environ if environ is None else environ).get(name)


def _stripped(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def conceal(value: _T) -> _T:
    """`value` as a `Secret` when it is a string: a caller's first step with an API key it was given.

    Anything else but None (bytes read from a secret file) is to be refused: a stand-in naming its
    type takes its place, so that the frames' locals a traceback shows never hold it.
    """
    if isinstance(value, str):
        return cast("_T", Secret(value))
    return value if value is None else cast("_T", NotAKey(value))


class NotAKey:
    """A secret (a key, a Redis URL) given as something other than a str, as frames' locals show it: its type only."""

    __slots__ = ("hint", "kind")

    def __init__(self, value: object) -> None:
        self.kind = type(value).__name__
        if isinstance(value, (bytes, bytearray)):
            self.hint = ": decode it first (key.decode())"
        elif callable(getattr(value, "get_secret_value", None)):  # pydantic's `SecretStr`
            self.hint = ": pass key.get_secret_value()"
        else:
            self.hint = ""

    def __repr__(self) -> str:
        return f"<{self.kind}, not shown>"


def kind_of(value: object) -> str:
    """The name of `value`'s type, for a refusal that must not quote it (a `NotAKey`: the hidden value's)."""
    return value.kind if isinstance(value, NotAKey) else type(value).__name__


def changed_options(
    options: ClientOptions,
    *,
    timeout: Timeout | NotGiven,
    max_retries: int | NotGiven,
    max_retry_wait: float | NotGiven,
    default_headers: Mapping[str, str] | NotGiven,
    on_retry: OnRetry | NotGiven | None = NOT_GIVEN,
    total_timeout: float | NotGiven | None = NOT_GIVEN,
    rate_limiter: RateLimiter | NotGiven | None = NOT_GIVEN,
) -> ClientOptions:
    """The options of a `with_options` copy: given values replace the client's, others are kept."""
    changes: dict[str, Any] = {}
    if not isinstance(timeout, NotGiven):
        changes["timeout"] = to_httpx_timeout(timeout)
    if not isinstance(max_retries, NotGiven):
        changes["max_retries"] = _check_retries(max_retries)
    if not isinstance(max_retry_wait, NotGiven):
        changes["max_retry_wait"] = _check_retry_wait(max_retry_wait)
    if not isinstance(total_timeout, NotGiven):
        changes["total_timeout"] = check_total_timeout(total_timeout)
    if not isinstance(on_retry, NotGiven):
        changes["on_retry"] = _check_on_retry(on_retry)
    if not isinstance(rate_limiter, NotGiven):
        changes["rate_limiter"] = _check_rate_limiter(rate_limiter)
    if not isinstance(default_headers, NotGiven):
        given = check_headers("default_headers", default_headers)
        changes["default_headers"] = merge_headers(options.default_headers, given)
    return options.with_changes(**changes) if changes else options


__all__ = [
    "ClientOptions",
    "changed_options",
    "check_headers",
    "check_total_timeout",
    "is_loopback",
    "merge_headers",
    "resolve_options",
    "to_httpx_timeout",
]

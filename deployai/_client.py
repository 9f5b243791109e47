"""`DeployAI` and `AsyncDeployAI`: options and resources on top of the shared core; only I/O differs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import httpx
from typing_extensions import Self

from ._config import ClientOptions, changed_options, conceal, conceal_headers, hide_call_keys, resolve_options
from ._constants import DEFAULT_MAX_RETRIES, DEFAULT_MAX_RETRY_WAIT_SECONDS
from ._endpoint import Endpoint, PreparedRequest
from ._exceptions import InvalidParameterError
from ._http import AsyncHTTP, Exchange, SyncHTTP
from ._limiter import RateLimiter
from ._logging import remember_key
from ._meta import ResponseMeta
from ._response import RawResponse, parse_result
from ._streaming import AsyncStream, Stream
from ._types import NOT_GIVEN, NotGiven, OnRetry, Timeout

if TYPE_CHECKING:
    from .resources.chat import AsyncChat, Chat
    from .resources.models import AsyncModels, Models

__all__ = ["AsyncDeployAI", "DeployAI"]

_HTTP = TypeVar("_HTTP", SyncHTTP, AsyncHTTP)
_Httpx = TypeVar("_Httpx", httpx.Client, httpx.AsyncClient)
_Client = TypeVar("_Client", bound="_BaseClient[Any, Any]")


def finish(endpoint: Endpoint[Any], exchange: Exchange, raw: bool) -> Any:
    """Turn a whole successful exchange into the endpoint's result, or a `RawResponse` of it."""
    response = exchange.response
    meta = ResponseMeta(response.headers, exchange.elapsed, retries=exchange.retries)
    result = exchange.result  # parsed by the call plan, so that an error the body reports can be retried
    if result is not None:
        result.__pydantic_private__["_meta"] = meta
    if not raw:
        return result
    # A raw body the plan could not parse is handed over all the same: its `parse()` says what is wrong.
    parse = (lambda: result) if result is not None else (lambda: parse_result(response, endpoint.result, meta))
    return RawResponse(response, parse, exchange.elapsed, exchange.retries)


class _BaseClient(Generic[_HTTP, _Httpx]):
    """Everything the two clients share: construction, options, `with_options`, and `repr`."""

    _options: ClientOptions
    _http: _HTTP
    _owns_http: bool

    _http_type: ClassVar[type[Any]]
    _httpx_type: ClassVar[type[Any]]

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT_SECONDS,
        default_headers: Mapping[str, str] | None = None,
        http_client: _Httpx | None = None,
        allow_insecure_http: bool = False,
        on_retry: OnRetry | None = None,
        total_timeout: float | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        api_key = conceal(api_key)  # before anything can raise: a traceback may show this frame's locals
        default_headers = conceal_headers(default_headers)  # a key in them too
        client_type = self._httpx_type
        if http_client is not None and not isinstance(http_client, client_type):
            raise InvalidParameterError(
                "http_client", type(http_client).__name__, f"an {client_type.__module__}.{client_type.__name__}"
            )
        self._options = resolve_options(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            default_headers=default_headers,
            borrowed_client=http_client is not None,
            allow_insecure_http=allow_insecure_http,
            on_retry=on_retry,
            total_timeout=total_timeout,
            rate_limiter=rate_limiter,
        )
        self._http = self._http_type(http_client)
        # `with_options` copies share `_http` but never close it.
        self._owns_http = True

    @property
    def base_url(self) -> str:
        """The API's base URL, for example `https://api.deployai.dev/v1`."""
        return self._options.base_url

    @property
    def max_retries(self) -> int:
        """How many times a failed request may be retried (the failures `deployai.is_retryable` names)."""
        return self._options.max_retries

    @property
    def max_retry_wait(self) -> float:
        """The longest server-requested wait, in seconds, that is slept before a retry."""
        return self._options.max_retry_wait

    @property
    def rate_limiter(self) -> RateLimiter | None:
        """The `RateLimiter` that paces this client's calls, or None."""
        return self._options.rate_limiter

    @property
    def timeout(self) -> httpx.Timeout | None:
        """The default timeout of each request (None: the borrowed `http_client` decides)."""
        return self._options.timeout

    def with_options(
        self,
        *,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        max_retry_wait: float | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
        on_retry: OnRetry | NotGiven | None = NOT_GIVEN,
        total_timeout: float | NotGiven | None = NOT_GIVEN,
        rate_limiter: RateLimiter | NotGiven | None = NOT_GIVEN,
    ) -> Self:
        """A copy of this client with some options changed, sharing its connection pool.

        Copies are cheap: make one per call if you like. Closing a copy leaves the pool open; closing
        the client it came from closes the pool for every copy.
        """
        default_headers = conceal_headers(default_headers)  # as in `__init__`
        copy = object.__new__(type(self))
        copy._options = changed_options(
            self._options,
            timeout=timeout,
            max_retries=max_retries,
            max_retry_wait=max_retry_wait,
            default_headers=default_headers,
            on_retry=on_retry,
            total_timeout=total_timeout,
            rate_limiter=rate_limiter,
        )
        copy._http = self._http
        copy._owns_http = False
        return copy

    def _prepare(self, endpoint: Endpoint[Any], params: dict[str, Any]) -> PreparedRequest:
        """Build and check the request; on a borrowed `http_client`, with its headers, params and cookies."""
        if "extra_headers" in params or "api_key" in params:
            hide_call_keys(params)
        prepared = endpoint.build(self._options, endpoint, params)
        borrowed = self._http.borrowed_client
        # Not for the in-process emulator's own client: it records what the SDK sends over HTTP.
        if borrowed is not None and not self._http.in_process:
            _with_defaults_of(borrowed, prepared.request)
        return prepared

    def __repr__(self) -> str:
        options: ClientOptions | None = getattr(self, "_options", None)
        if options is None:  # half-built: `__init__` or `with_options` raised (a traceback shows it so)
            return f"{type(self).__name__}(<not built>)"
        return f"{type(self).__name__}(base_url={options.base_url!r}, max_retries={options.max_retries})"

    def __reduce__(self) -> tuple[Any, ...]:
        # A client travels as its options (the API key among them) and opens its own connection pool
        # where it lands: connections belong to the process that opened them.
        if self._http.in_process:
            raise TypeError(
                f"This {type(self).__name__} wired to an in-process Emulator does not pickle: the emulator cannot "
                "travel with it. To test code that sends clients to other processes, serve the emulator over "
                "loopback (deployai.testing.EmulatorServer) and use its client()."
            )
        if self._http.borrowed:
            raise TypeError(
                f"This {type(self).__name__} built on your own http_client does not pickle: its transport (proxies, "
                "certificates, mounts) cannot travel. Build the client where it is used, or pickle one without it."
            )
        return (_unpickle_client, (type(self), self._options))


def _with_defaults_of(client: httpx.Client | httpx.AsyncClient, request: httpx.Request) -> None:
    """Give `request` what a borrowed `http_client` gives the requests it builds: its headers, params and cookies.

    As `client.build_request` merges them, under what the SDK set: a header or query parameter the
    request has (the SDK's own, `default_headers`, `extra_headers`, `extra_query`) wins over the
    client's, and a `Cookie` header in `extra_headers` over its cookies. Its `base_url` is not used.
    Its `Host` wins over the one the URL gives (a virtual host, a gateway reached by its address).
    """
    own = request.headers
    triples, theirs = getattr(own, "_list", None), getattr(client.headers, "_list", None)
    if isinstance(triples, list) and isinstance(theirs, list):
        # httpx keeps (name, lowercase name, value) triples: extended in place, a call's few
        # microseconds are not spent building the request's headers again (nor looking `Host` up).
        names = {triple[1] for triple in triples}
        for triple in theirs:
            if triple[1] not in names:
                triples.append(triple)
            elif triple[1] == b"host":
                triples[:] = [triple if own_triple[1] == b"host" else own_triple for own_triple in triples]
    else:
        host = client.headers.get("host")
        if host is not None:
            own["host"] = host
        names = {name.lower() for name, _ in own.raw}
        added = [(name, value) for name, value in client.headers.raw if name.lower() not in names]
        request.headers = httpx.Headers([*own.raw, *added], encoding=own.encoding)
    if client.params:
        request.url = request.url.copy_with(params=client.params.merge(request.url.params))
    if client.cookies and b"cookie" not in names:
        client.cookies.set_cookie_header(request)


def _unpickle_client(cls: type[_Client], options: ClientOptions) -> _Client:
    client = object.__new__(cls)
    client._options = options
    remember_key(options.api_key)  # its logs are redacted in this process too
    client._http = cls._http_type(None)
    client._owns_http = True
    return client


class DeployAI(_BaseClient[SyncHTTP, httpx.Client]):
    """The DeployAI client. Make one and reuse it: it holds a connection pool.

    Args:
        api_key: your key (`sk-...`); defaults to the `DEPLOYAI_API_KEY` environment variable.
        base_url: defaults to `DEPLOYAI_BASE_URL`, then `https://api.deployai.dev/v1`.
        timeout: seconds for each phase of an attempt (connect, write, pool, each read), or an
            `httpx.Timeout`; default 600 s with a 5 s connect timeout. `total_timeout` bounds a whole call.
        max_retries: retries after connection errors, timeouts, 408, 409, 429, 500, 502, 503, 504, 520
            to 524 and 529, or as the server's `x-should-retry` says (default 2).
        max_retry_wait: a server-requested wait longer than this many seconds (default 60) is not
            slept: the error is raised at once with `retry_after` set.
        default_headers: headers sent with every request.
        http_client: an `httpx.Client` of your own (proxies, certificates, transports); it is used as
            given and never closed by this client.
        allow_insecure_http: allow a plain `http://` base_url to a host other than this machine. Off by
            default, because the API key would cross the network unencrypted.
        on_retry: called as `on_retry(retry, wait_seconds, error)` before each retry's wait (for
            metrics): `retry` counts from 1, `error` is the typed error of the attempt that failed.
        total_timeout: a deadline in seconds for each whole call, retries and their waits included
            (for a stream: until its first event); None (the default) for none.
        rate_limiter: a `deployai.RateLimiter` that paces this client's calls (and those of every
            other client given the same one) to stay under the API key's rate limit; None (the
            default) sends at once and relies on retries.

    Raises:
        DeployAIError: no API key was given or found in the environment.
    """

    _http_type = SyncHTTP
    _httpx_type = httpx.Client

    @cached_property
    def chat(self) -> Chat:
        """Chat completions: `client.chat.completions.create(...)`."""
        from .resources.chat import Chat  # with the models: loaded at first use (see __init__)

        return Chat(self)

    @cached_property
    def models(self) -> Models:
        """The models you can use: `client.models.list()`."""
        from .resources.models import Models  # with the models: loaded at first use (see __init__)

        return Models(self)

    def _call(
        self, endpoint: Endpoint[Any], params: dict[str, Any], *, raw: bool, stopped: Callable[[], bool] | None = None
    ) -> Any:
        """Carry out any endpoint: build and check the request, send it, and shape the answer.

        `stopped` (for `create_many`) is asked before each attempt: once it is true, nothing more is sent.
        """
        options = self._options
        prepared = self._prepare(endpoint, params)
        if prepared.stream and endpoint.chunk is not None:
            lease = self._http.stream(prepared.request, options, prepared.total_timeout)
            try:
                stream = Stream(lease, endpoint.chunk)
            except BaseException:  # Ctrl+C before the stream could own it: released before the next request
                lease.abandon()
                raise
            if not raw:
                return stream
            return RawResponse(
                stream.response, lambda: stream, 0.0, meta_of=stream._response_meta, response_of=lambda: stream.response
            )
        exchange = self._http.send(prepared.request, options, prepared.total_timeout, stopped, endpoint.result, raw)
        return finish(endpoint, exchange, raw)

    def _wake_stopped(self) -> None:
        """Wake this client's calls waiting at a rate limiter, for those of a stopped batch to end."""
        self._http.wake_waiting()

    def close(self) -> None:
        """Close the connection pool (unless it is a borrowed `http_client`, or this is a `with_options` copy)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDeployAI(_BaseClient[AsyncHTTP, httpx.AsyncClient]):
    """The asyncio DeployAI client: the same options and methods as `DeployAI`, awaited.

    Args are those of `DeployAI`, with `http_client` an `httpx.AsyncClient`. Close it with
    `await client.aclose()` or `async with`.

    Raises:
        DeployAIError: no API key was given or found in the environment.
    """

    _http_type = AsyncHTTP
    _httpx_type = httpx.AsyncClient

    @cached_property
    def chat(self) -> AsyncChat:
        """Chat completions: `await client.chat.completions.create(...)`."""
        from .resources.chat import AsyncChat  # with the models: loaded at first use (see __init__)

        return AsyncChat(self)

    @cached_property
    def models(self) -> AsyncModels:
        """The models you can use: `await client.models.list()`, or `async for model in client.models.list()`."""
        from .resources.models import AsyncModels  # with the models: loaded at first use (see __init__)

        return AsyncModels(self)

    async def _call(self, endpoint: Endpoint[Any], params: dict[str, Any], *, raw: bool) -> Any:
        """Carry out any endpoint: build and check the request, send it, and shape the answer."""
        options = self._options
        prepared = self._prepare(endpoint, params)
        if prepared.stream and endpoint.chunk is not None:
            lease = await self._http.stream(prepared.request, options, prepared.total_timeout)
            try:
                stream = AsyncStream(lease, endpoint.chunk)
            except BaseException:  # as in `DeployAI._call`
                lease.abandon()
                raise
            if not raw:
                return stream
            return RawResponse(
                stream.response, lambda: stream, 0.0, meta_of=stream._response_meta, response_of=lambda: stream.response
            )
        exchange = await self._http.send(prepared.request, options, prepared.total_timeout, endpoint.result, raw)
        return finish(endpoint, exchange, raw)

    async def aclose(self) -> None:
        """Close the connection pool (unless it is a borrowed `http_client`, or this is a `with_options` copy)."""
        if self._owns_http:
            await self._http.close()

    async def close(self) -> None:
        """The same as `aclose()`."""
        await self.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

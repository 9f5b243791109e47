"""`EmulatorServer`: the emulator over real HTTP on loopback, served by uvicorn in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Final

from typing_extensions import Self

from .._config import is_loopback
from ._adapters import follow_clock
from ._asgi import EmulatorASGIApp, hide_expected_server_errors
from ._emulator import Emulator

if TYPE_CHECKING:
    import uvicorn

    from .. import AsyncDeployAI, DeployAI

__all__ = [
    "EmulatorServer",
    "base_url_for",
    "bind_socket",
    "check_host",
    "import_uvicorn",
    "uvicorn_config",
    "uvicorn_server",
]

_INSTALL_HINT: Final = 'The emulator\'s HTTP server needs uvicorn: pip install "deployai[emulator]"'
# How long uvicorn waits for the requests in progress before it cancels them. Their responses finish
# at once on shutdown (see `uvicorn_server`); a request whose body is still arriving, or a client slow
# to read its answer, can take this long.
_GRACEFUL_SHUTDOWN_SECONDS: Final = 2.0


def import_uvicorn() -> ModuleType:
    """Import uvicorn, or explain which extra installs it."""
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        if exc.name != "uvicorn":
            raise
        raise ModuleNotFoundError(_INSTALL_HINT, name="uvicorn") from exc
    return uvicorn


def check_host(host: str, *, allow_non_loopback: bool) -> None:
    """Refuse a non-loopback `host` unless it is explicitly allowed."""
    if not is_loopback(host) and not allow_non_loopback:
        raise ValueError(
            f"Refusing to serve the emulator on {host!r}: it is not a loopback address. It accepts any sk- key,"
            " so expose it on purpose only (allow_non_loopback=True, or --allow-non-loopback)."
        )


def bind_socket(host: str, port: int, *, allow_non_loopback: bool = False) -> socket.socket:
    """A listening TCP socket on `host:port` (port 0: any free port), refusing non-loopback hosts by default."""
    check_host(host, allow_non_loopback=allow_non_loopback)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be a whole number from 0 to 65535; got {port!r}")
    infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:  # the OS names neither the host nor the port: "Address already in use"
            raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def base_url_for(sock: socket.socket) -> str:
    """The API base URL (`http://host:port/v1`) of a bound socket."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def uvicorn_config(emulator: Emulator, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration that serves `emulator` (h11, asyncio, no websockets)."""
    uvicorn_module = import_uvicorn()
    hide_expected_server_errors()
    options: dict[str, Any] = {
        "http": "h11",
        "loop": "asyncio",
        "ws": "none",
        "lifespan": "on",
        "timeout_graceful_shutdown": _GRACEFUL_SHUTDOWN_SECONDS,
        "server_header": False,
        "date_header": False,  # the emulator sends its own, on its clock (which may be a `VirtualClock`)
        **overrides,
    }
    config: uvicorn.Config = uvicorn_module.Config(emulator.asgi_app(), **options)
    return config


def uvicorn_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server for a `uvicorn_config`, which lets the answers in progress finish at once when it shuts down.

    See `EmulatorASGIApp.finish_now`: without it, uvicorn would wait out its graceful shutdown, then
    cancel them.
    """
    uvicorn_module = import_uvicorn()

    class _Server(uvicorn_module.Server):  # type: ignore[name-defined,misc]
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            app = config.app
            if isinstance(app, EmulatorASGIApp):
                app.finish_now()
            await super().shutdown(sockets)

    server: uvicorn.Server = _Server(config)
    return server


class EmulatorServer:
    """The emulator on a real loopback HTTP server, for clients that cannot take an httpx transport.

    ```python
    with EmulatorServer() as server:
        client = DeployAI(api_key="sk-test", base_url=server.base_url)
    ```

    uvicorn runs in a daemon thread; `start()` returns once it accepts connections, `stop()` waits for
    it to finish (the responses in progress finish at once, without their waits). Needs
    `pip install "deployai[emulator]"`. It does not configure logging: uvicorn's records propagate to
    the root logger.

    Args:
        emulator: the emulator to serve (a new default one when None); reachable as `.emulator`.
        host: a loopback address; anything else is refused unless `allow_non_loopback` is True.
        port: the port, 0 for any free one (read `.port` or `.base_url`).
        allow_non_loopback: serve on a non-loopback host anyway.
        startup_timeout: seconds to wait for the server to start before giving up.
    """

    def __init__(
        self,
        emulator: Emulator | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        check_host(host, allow_non_loopback=allow_non_loopback)
        self.emulator = emulator if emulator is not None else Emulator()
        self.host = host
        self._requested_port = port
        self._allow_non_loopback = allow_non_loopback
        self._startup_timeout = startup_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if self._socket is None:
            raise RuntimeError("The emulator server is not running: call start() or use it in `with`.")
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """The API base URL to give a client, for example `http://127.0.0.1:54321/v1`."""
        if self._socket is None:
            raise RuntimeError("The emulator server is not running: call start() or use it in `with`.")
        return base_url_for(self._socket)

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Self:
        """Start serving and wait until the server accepts connections.

        Raises:
            ModuleNotFoundError: uvicorn is not installed.
            RuntimeError: the server is already running, or failed to start.
            TimeoutError: it did not start within `startup_timeout` seconds.
        """
        if self._thread is not None:
            raise RuntimeError("The emulator server is already running.")
        config = uvicorn_config(self.emulator, log_config=None)
        sock = bind_socket(self.host, self._requested_port, allow_non_loopback=self._allow_non_loopback)
        server = uvicorn_server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="deployai-emulator-server", daemon=True
        )
        self._socket, self._server, self._thread = sock, server, thread
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive():
                self._cleanup()
                raise RuntimeError("The emulator server failed to start; see the log of the 'uvicorn.error' logger.")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"The emulator server did not start within {self._startup_timeout:g} s.")
            # Waits on the thread, so a crash is seen at once; the short bound keeps `started` polled.
            thread.join(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and wait (at most `timeout` seconds) for its thread. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                # A hung shutdown: force uvicorn past its graceful wait, then give it a moment more.
                if server is not None:
                    server.force_exit = True
                thread.join(timeout)
        self._cleanup()

    def _cleanup(self) -> None:
        if self._socket is not None:
            self._socket.close()
        self._socket = self._server = self._thread = None

    def client(self, **kwargs: Any) -> DeployAI:
        """A `DeployAI` client of this server over HTTP; close it. `api_key` defaults as for `Emulator.client()`.

        When the emulator runs on a `VirtualClock`, the client waits between retries on it too.
        """
        from .. import DeployAI

        client = DeployAI(**{"api_key": self.emulator._client_key, "base_url": self.base_url, **kwargs})
        return follow_clock(client, self.emulator.clock)

    def async_client(self, **kwargs: Any) -> AsyncDeployAI:
        """An `AsyncDeployAI` client of this server over HTTP; `await client.aclose()` when done."""
        from .. import AsyncDeployAI

        client = AsyncDeployAI(**{"api_key": self.emulator._client_key, "base_url": self.base_url, **kwargs})
        return follow_clock(client, self.emulator.clock)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._socket is not None else "not running"
        return f"EmulatorServer({where}, {self.emulator!r})"

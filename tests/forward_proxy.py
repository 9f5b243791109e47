"""A forward HTTP proxy on loopback that forwards only to loopback, and records what went through it.

Enough of a proxy for plain `http://` targets, as httpx talks to one: each request comes in absolute
form (`POST http://127.0.0.1:8000/v1/chat/completions HTTP/1.1`), is sent on in origin form with
`Connection: close`, and the answer is copied back as it arrives (streams too), then both connections
close. A target that is not this machine gets a 403 and nothing is sent anywhere; CONNECT (https) gets
a 501. Every request is recorded, those refused too.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from types import TracebackType
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from typing_extensions import Self

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# A name only the proxy knows, for 127.0.0.1 (a real proxy looks names up itself): a client sends
# this machine's own addresses direct, so a test of what goes through the proxy names the server so.
SERVER_NAME = "emulator.test"
# Hop-by-hop headers belong to the client's connection to the proxy, not to the one onwards.
_HOP_BY_HOP = frozenset({"connection", "proxy-connection", "keep-alive", "proxy-authorization"})


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    seen: list[str]


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        method, target, _ = self.rfile.readline(65_536).decode("latin-1").split()
        headers: list[bytes] = []
        length = 0
        while (line := self.rfile.readline(65_536)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
            if name.strip().lower() not in _HOP_BY_HOP:
                headers.append(line)
        body = self.rfile.read(length)
        url = urlsplit(target)
        if method == "CONNECT":
            self.server.seen.append(f"CONNECT {target}")
            self.wfile.write(b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.seen.append(f"{method} {url.path}")
        host = "127.0.0.1" if url.hostname == SERVER_NAME else url.hostname
        if url.scheme != "http" or host not in _LOOPBACK:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        path = url.path + (f"?{url.query}" if url.query else "")
        with socket.create_connection((host, url.port or 80)) as upstream:
            head = f"{method} {path} HTTP/1.1\r\n".encode("latin-1") + b"".join(headers) + b"Connection: close\r\n\r\n"
            upstream.sendall(head + body)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client left mid-answer
                while chunk := upstream.recv(65_536):
                    self.wfile.write(chunk)


_S = TypeVar("_S", bound=socketserver.BaseServer)


class InThread(Generic[_S]):
    """A socket server served from a thread of its own while in `with`, then shut down and closed."""

    def __init__(self, server: _S) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ForwardProxy(InThread[_Server]):
    """`with ForwardProxy() as proxy:` serves on 127.0.0.1 at `proxy.url`; `proxy.seen` lists "METHOD /path"."""

    def __init__(self) -> None:
        super().__init__(_Server(("127.0.0.1", 0), _Handler))
        self._server.seen = []

    @property
    def url(self) -> str:
        """The proxy's URL, for `httpx.Client(proxy=...)` or `PROXY_URL`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[str]:
        """The requests forwarded so far, oldest first."""
        return self._server.seen

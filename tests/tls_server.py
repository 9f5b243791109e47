"""A loopback HTTPS server with the test certificate: keeps its connections alive, and closes one on demand.

`certs/localhost.pem` (with its key, `certs/localhost.key`) is a self-signed certificate for
`localhost`, `127.0.0.1` and `::1`, made for these tests alone (valid until 2126); a client trusts it
through `SSL_CERT_FILE`. Every request is answered `200` with an empty model list.
"""

from __future__ import annotations

import socketserver
import ssl
import threading
from pathlib import Path

from tests.forward_proxy import InThread

CERT_FILE = str(Path(__file__).parent / "certs" / "localhost.pem")
_KEY_FILE = str(Path(__file__).parent / "certs" / "localhost.key")
_BODY = b'{"object": "list", "data": []}'
_ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(_BODY), _BODY)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    context: ssl.SSLContext
    accepted: int
    close_next: threading.Event
    closed: threading.Event
    lock: threading.Lock


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        with self.server.context.wrap_socket(self.request, server_side=True) as connection:
            with self.server.lock:
                self.server.accepted += 1
            reader = connection.makefile("rb")
            while True:
                length = 0
                while (line := reader.readline(65_536)) not in (b"\r\n", b"\n"):
                    if not line:  # the client closed the connection
                        return
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                reader.read(length)
                # Decided before answering: once the client has its answer it may ask for the next
                # close, and that one must not close the connection this answer went out on.
                if closing := self.server.close_next.is_set():
                    self.server.close_next.clear()
                connection.sendall(_ANSWER)
                if closing:
                    reader.close()
                    connection.close()
                    self.server.closed.set()
                    return


class TLSServer(InThread[_Server]):
    """`with TLSServer() as server:` serves HTTPS on 127.0.0.1 at `server.base_url`."""

    def __init__(self) -> None:
        super().__init__(_Server(("127.0.0.1", 0), _Handler))
        self._server.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server.context.load_cert_chain(CERT_FILE, _KEY_FILE)
        self._server.accepted = 0
        self._server.close_next = threading.Event()
        self._server.closed = threading.Event()
        self._server.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        """The API's base URL on this server, by the name the certificate is for."""
        return f"https://localhost:{self._server.server_address[1]}/v1"

    @property
    def accepted(self) -> int:
        """How many connections the server accepted so far."""
        return self._server.accepted

    def close_after_next_answer(self) -> threading.Event:
        """Close the connection that carries the next answer, right after it; the event is set once it is closed."""
        self._server.closed.clear()
        self._server.close_next.set()
        return self._server.closed

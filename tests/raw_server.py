"""A loopback HTTP/1.1 server that misbehaves on cue, at the byte level, for stream lifecycle tests.

Every request is answered with a chunked `text/event-stream` body made of the given events; what
happens next is `after`: "end" (the final chunk, then the connection is kept for the next request),
"stall" (nothing until `release` is set), "reset" (a TCP reset), or "close" (the connection is
closed without the final chunk). With `stall_after=n` the server also stalls after the n-th event,
until `release` is set (with 0, before the first, once the headers are sent).
With `first`, the first request alone is answered with those events, ended properly. With `pace`,
the server waits that long before each event but the first (the events can also be the pieces of a
JSON body: the client does not check the content type of a whole answer).

`HoldingServer` answers nothing (or only the start of an answer, `head`): it holds each request until
told, then drops it.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from typing import BinaryIO, Literal

from typing_extensions import Self

After = Literal["end", "stall", "reset", "close"]
# A stalled connection gives up after this long, so that a broken test cannot hang the suite.
_STALL_LIMIT_SECONDS = 30.0


class RawSSEServer:
    """Serves `events` to every request over real sockets; see the module docstring."""

    def __init__(
        self,
        events: list[bytes],
        *,
        after: After = "end",
        stall_after: int | None = None,
        first: list[bytes] | None = None,
        pace: float = 0.0,
    ) -> None:
        self.events = events
        self.first = first
        self.pace = pace
        self.after = after
        self.stall_after = stall_after
        self.release = threading.Event()
        self.requests = 0
        self.stalled = threading.Event()  # set when a response starts stalling
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._threads: list[threading.Thread] = []
        self._connections: list[socket.socket] = []
        self._closing = False

    @property
    def base_url(self) -> str:
        """The URL to give the client as its `base_url`."""
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def __enter__(self) -> Self:
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing = True
        self.release.set()
        # Shut down before closing: only that wakes a thread blocked in accept() or recv() on Linux.
        for sock in [self._listener, *self._connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._closing:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            worker = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb")
        try:
            while self._read_request(reader):
                self.requests += 1
                if not self._answer(connection):
                    return
        except OSError:
            return
        finally:
            reader.close()
            connection.close()

    @staticmethod
    def _read_request(reader: BinaryIO) -> bool:
        length = 0
        while True:
            line = reader.readline()
            if not line:
                return False
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length:
            reader.read(length)
        return True

    def _answer(self, connection: socket.socket) -> bool:
        """Send one response; whether the connection may serve another."""
        connection.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
            b"x-request-id: req_raw\r\n\r\n"
        )
        if self.first is not None and self.requests == 1:
            for data in self.first:
                connection.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            connection.sendall(b"0\r\n\r\n")
            return True
        if self.stall_after == 0:
            self._stall()
        for number, data in enumerate(self.events, start=1):
            if self.pace and number > 1:
                self.release.wait(self.pace)
            connection.sendall(b"%x\r\n%s\r\n" % (len(data), data))
            if number == self.stall_after:
                self._stall()  # then carries on, once `release` is set
        if self.after == "end":
            connection.sendall(b"0\r\n\r\n")
            return True
        if self.after == "stall":
            self._stall()
        elif self.after == "reset":
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return False

    def _stall(self) -> None:
        self.stalled.set()
        self.release.wait(_STALL_LIMIT_SECONDS)


class HoldingServer:
    """Holds every request it reads until `release` is set, then closes its connection unanswered.

    `requests` counts them, and `heads` keeps what each sent first; `sent_with(marker)` counts those
    that carry `marker` (a test's own API key): a client another test left retrying against a
    server whose port this one was given later is not counted there.

    With `head`, those bytes are sent first: the status line and headers, say, and part of the body.
    """

    def __init__(self, head: bytes = b"") -> None:
        self.head = head
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.requests = 0
        self.heads: list[bytes] = []  # what each request sent first (its request line and headers)
        self.arrived = threading.Condition()
        self.release = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def sent_with(self, marker: bytes) -> int:
        """How many of the requests read so far carry `marker`."""
        with self.arrived:
            return sum(marker in head for head in self.heads)

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed
            while True:
                connection, _ = self.listener.accept()
                threading.Thread(target=self._hold, args=(connection,), daemon=True).start()

    def _hold(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            first = connection.recv(65536)
            if first:  # a small request arrives whole
                connection.sendall(self.head)
                with self.arrived:
                    self.requests += 1
                    self.heads.append(first)
                    self.arrived.notify_all()
                self.release.wait(30)

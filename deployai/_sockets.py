"""What the SDK asks of a connection's socket directly, in blocking and async pools alike."""

from __future__ import annotations

import select
from typing import Any

__all__ = ["readable"]

_poll = getattr(select, "poll", None)


def readable(sock: Any) -> bool:
    """Whether a read of `sock` would not wait (data, or the server's close); True once it is closed, as in httpcore."""
    descriptor = -1 if sock is None else sock.fileno()
    if descriptor < 0:
        return True
    if _poll is None:  # pragma: no cover - Windows
        return bool(select.select([descriptor], [], [], 0)[0])
    poll = _poll()
    poll.register(descriptor, select.POLLIN)
    return bool(poll.poll(0))

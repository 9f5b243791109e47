"""The id of the running process, read without a system call: checked on every call to notice a fork.

`os.getpid()` is a system call (0.25 us on the development machine, a container), and the clients
and rate limiters ask on every call whether they run in a forked child, whose sockets, locks and
queues are the parent's. The id is kept here instead, and set again in every child that
`os.fork()` makes (also `multiprocessing`'s fork start method).
"""

from __future__ import annotations

import os

__all__ = ["pid"]

_pid = os.getpid()


def pid() -> int:
    """The id of the running process, as `os.getpid()` gives it."""
    return _pid


def _forked() -> None:
    global _pid
    _pid = os.getpid()


if hasattr(os, "register_at_fork"):  # Windows has no fork
    os.register_at_fork(after_in_child=_forked)

"""Ports for tests: a free one to start a server on, and whether one is free again after a stop."""
from __future__ import annotations

import socket

from mlserve.runtimes.process import free_port  # noqa: F401 - the one free-port helper


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a new server could bind `port` now. SO_REUSEADDR, as servers set it: the TIME_WAIT
    leftovers of closed client connections do not count, a listening socket does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True

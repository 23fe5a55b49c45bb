"""Ports for tests: a free one to start a server on, whether one is free again after a stop, and
whether a process is gone."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

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


def port_free(port: int) -> bool:
    """Whether `port` is free on every interface (as the runtimes bind it)."""
    return port_is_free(port, "0.0.0.0")


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process `pid` exits (or is a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if state == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False

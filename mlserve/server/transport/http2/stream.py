"""A stream's state (what an application on the HTTP/2 transport implements, `H2App`, is in
`connection.py` beside the connection it is handed)."""
from __future__ import annotations

import time
from typing import Any, Callable

Headers = list[tuple[bytes, bytes]]


class Stream:
    """One request/response exchange. `closed` once reset, ended both ways, or the connection
    is gone; `on_cancel` (set by the app) runs when the peer resets it or leaves."""

    __slots__ = ("id", "headers", "body", "window", "out", "trailer", "remote_done", "local_done",
                 "closed", "started", "unacked", "discard", "on_cancel", "app",
                 "blocked_since")

    def __init__(self, stream_id: int, headers: dict[bytes, bytes], window: int) -> None:
        self.id, self.headers, self.body, self.window = stream_id, headers, bytearray(), window
        self.out = bytearray()  # DATA waiting for window
        self.trailer: bytes | None = None  # a header block to end the stream with once `out` is sent
        self.remote_done = self.local_done = self.closed = self.discard = False
        self.started = time.monotonic()
        self.unacked = 0  # DATA bytes received since our last WINDOW_UPDATE for this stream
        self.on_cancel: Callable[[], None] | None = None
        self.app: Any = None
        # when the answer first waited on the client's flow-control window (None: it does not)
        self.blocked_since: float | None = None

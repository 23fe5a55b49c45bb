"""`HttpServer`: listens, keeps the connection set, sweeps idle ones, carries answers from other
threads back onto the loop, and stops gracefully. Knows nothing of what requests mean."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any, Callable, Protocol

from mlserve.server.http.config import HttpConfig
from mlserve.server.http.connection import Connection, HeadCache, Request

log = logging.getLogger("mlserve.server.http")


class HttpApp(Protocol):
    """What an `HttpServer` serves."""

    def handle(self, conn: Connection, req: Request) -> None:
        """Answer `req` (on the loop): now or later, through `conn.respond`."""

    def error_body(self, message: str) -> bytes:
        """The body of a 400/413 the connection itself answers (unparsable HTTP, too large)."""


class HttpServer:
    """HTTP/1.1 for `app`; `start`/`stop` inside a running event loop."""

    def __init__(self, app: HttpApp, config: HttpConfig) -> None:
        self.app = app
        self.config = config
        self.heads = HeadCache()
        self.connections: set[Connection] = set()
        self.stopping = False
        self.port = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._outbox: deque[tuple[Callable[..., None], tuple]] = deque()
        self._flush_scheduled = False

    async def start(self) -> None:
        """Bind `config.host:config.port` (0: a free port, see `.port`) and serve."""
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: Connection(self), self.config.host,
                                                     self.config.port, reuse_address=True,
                                                     backlog=self.config.backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let answers in progress finish (up to `grace` s), close every connection."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        deadline = time.monotonic() + grace
        while any(c.busy for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def _sweep(self) -> None:
        """Once a second: refresh the Date header; close idle and stalled connections."""
        self.heads.refresh()
        now = time.monotonic()
        for conn in list(self.connections):
            idle = now - conn.last_active
            if not conn.busy and not conn.pending and (
                    idle > self.config.idle_timeout or (conn.in_message and idle > self.config.stall_timeout)):
                if conn.transport is not None:
                    conn.transport.close()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the loop; callable from any thread.

        Answers from worker and batch threads queue here and one loop wake-up runs all that
        queued meanwhile: a batch of 30 answers costs one wake-up, not 30.
        """
        self._outbox.append((fn, args))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush_outbox)
            except RuntimeError:  # the loop is closed: the server is gone, nobody to answer
                pass

    def _flush_outbox(self) -> None:
        self._flush_scheduled = False  # before draining: what is posted from now on schedules anew
        outbox = self._outbox
        while outbox:
            fn, args = outbox.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one broken answer must not strand the others
                log.exception("HTTP answer failed")

"""`HttpServer`: listens, keeps the connection set, sweeps idle ones, carries answers from other
threads back onto the loop, and stops gracefully. Knows nothing of what requests mean."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

from mlserve.server.transport.budget import InflightBudget
from mlserve.server.transport.outbox import Outbox
from mlserve.server.transport.http1.config import HttpConfig
from mlserve.server.transport.http1.connection import Connection, HeadCache, Request

log = logging.getLogger("mlserve.server.http")


class HttpApp(Protocol):
    """What an `HttpServer` serves."""

    def handle(self, conn: Connection, req: Request) -> None:
        """Answer `req` (on the loop): now or later, through `conn.respond`."""

    def error_body(self, message: str) -> bytes:
        """The body of a 400/413 the connection itself answers (unparsable HTTP, too large)."""


class HttpServer:
    """HTTP/1.1 for `app`; `start`/`stop` inside a running event loop."""

    def __init__(self, app: HttpApp, config: HttpConfig, budget: InflightBudget | None = None) -> None:
        self.app = app
        self.config = config
        self.heads = HeadCache()
        self.connections: set[Connection] = set()
        self.stopping = False
        # what requests hold from their headers to their answer: shared with other front-ends
        self.budget = budget or InflightBudget(config.max_inflight_bytes)
        self.refused = 0  # connections closed at accept, past `max_connections`
        self.evicted = 0  # idle connections closed to make room for new ones at `max_connections`
        # connections that have not begun a request yet, oldest first (a dict keeps the order)
        self.unused: dict[Connection, None] = {}
        self.max_connections = config.max_connections  # lowered at start if descriptors are short
        self.port = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._outbox = Outbox(log, "HTTP answer")
        self.post = self._outbox.post  # run a call on the loop, from any thread (one wake-up for many)

    async def start(self) -> None:
        """Bind `config.host:config.port` (0: a free port, see `.port`) and serve."""
        self.loop = self._outbox.loop = asyncio.get_running_loop()
        self.max_connections = _ensure_descriptors(self.config.max_connections)
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

    def evict_idle(self) -> bool:
        """At the connection cap, make room for a new connection: close the oldest connection
        that never began a request, else the one idle longest with no request in flight (an
        idle flood cannot lock new clients out). False when every connection has a request in
        flight (the new one is then refused)."""
        victim = next(iter(self.unused), None)
        if victim is None:
            idle = [c for c in self.connections if c.idle]
            if not idle:
                return False
            victim = min(idle, key=lambda c: c.last_active)
        self.unused.pop(victim, None)
        self.connections.discard(victim)
        victim.closed = True
        if victim.transport is not None:
            victim.transport.abort()
        self.evicted += 1
        return True

    def _sweep(self) -> None:
        """Once a second: refresh the Date header; answer 408 to a request whose head is late,
        close a connection whose body is late or that sat idle past the keep-alive timeout."""
        self.heads.refresh()
        now = time.monotonic()
        config = self.config
        for conn in list(self.connections):
            if conn.transport is None:
                continue
            if conn.write_paused:  # a client that takes no answers for a whole idle timeout
                if now - conn.last_active > config.idle_timeout:
                    conn.transport.abort()
                continue
            if conn.busy or conn.pending or conn.discard >= 0:
                continue
            if conn.in_head:
                if now - conn.head_started > config.header_timeout:
                    conn._fail(408, f"Request headers did not arrive within {config.header_timeout:g} s")
            elif conn.in_message:
                if now - conn.head_started > config.stall_timeout:
                    conn._fail(408, f"Request body did not arrive within {config.stall_timeout:g} s")
            elif now - conn.last_active > config.idle_timeout:
                if conn.transport.get_write_buffer_size():
                    conn.transport.abort()  # close() would wait for a client that does not read
                else:
                    conn.transport.close()
        self._sweeper = self.loop.call_later(1.0, self._sweep)


def _ensure_descriptors(connections: int, spare: int = 256) -> int:
    """Raise this process's soft open-file limit (up to the hard one) so that `connections`
    sockets plus `spare` (model files, gRPC, logs) fit: past `max_connections` connections are
    refused at accept, before the process can run out of descriptors. Returns how many
    connections fit (lower than asked when the hard limit is)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - no rlimits (Windows)
        return connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + spare
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            new = soft
        if new < want:
            log.warning("open-file limit %d is below --max_connections + %d: serving at most %d "
                        "connections (raise it with ulimit -n)", new, spare, max(1, new - spare))
            return max(1, new - spare)
    return connections

"""`H2Server`: listens, keeps the connection set, sweeps late and idle connections, carries
answers from other threads back onto the loop, and stops gracefully (GOAWAY, drain). Knows
nothing of what streams mean."""
from __future__ import annotations

import asyncio
import logging
import time

from mlserve.server.transport.budget import InflightBudget
from mlserve.server.transport.outbox import Outbox
from mlserve.server.transport.http2 import frames as f
from mlserve.server.transport.http2.config import H2Config
from mlserve.server.transport.http2.connection import H2App, H2Connection

log = logging.getLogger("mlserve.server.h2")


class H2Server:
    """HTTP/2 for `app`; `start`/`stop` inside a running event loop."""

    def __init__(self, app: H2App, config: H2Config, budget: InflightBudget | None = None) -> None:
        self.app, self.config = app, config
        self.connections: set[H2Connection] = set()
        self.stopping = False
        self.evicted = 0  # idle connections closed to make room at max_connections
        # request bytes received and not yet answered: shared with other front-ends
        self.budget = budget or InflightBudget(config.max_inflight_bytes)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._outbox = Outbox(log, "HTTP/2 answer")
        self.post = self._outbox.post  # run a call on the loop, from any thread (one wake-up for many)

    async def start(self) -> None:
        """Bind `config.host:config.port` (0: a free port, see `.port`) and serve."""
        self.loop = self._outbox.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: H2Connection(self), self.config.host,
                                                     self.config.port, reuse_address=True,
                                                     backlog=self.config.backlog)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, GOAWAY every connection, let open streams finish (up to `grace` s),
        then close what is left."""
        self.stopping = True
        if self._server is not None:
            self._server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.shutdown()
        deadline = time.monotonic() + grace
        while any(c.streams for c in self.connections) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()

    def make_room(self) -> bool:
        """At `max_connections`: close one connection with no stream open, so that a flood of
        idle connections cannot lock new clients out. A connection that never opened a stream
        goes first, then the one idle longest. False when every connection has work in flight."""
        victim = None
        for conn in self.connections:
            if conn.streams or conn.transport is None:
                continue
            if victim is None or (conn.last_id == 0, -conn.last_active) > (victim.last_id == 0, -victim.last_active):
                victim = conn
        if victim is None:
            return False
        self.evicted += 1
        self.connections.discard(victim)
        victim.shutdown()  # GOAWAY NO_ERROR naming the last stream it used: it may retry
        if victim.transport is not None:
            victim.transport.close()
        return True

    def _sweep(self) -> None:
        """Once a second: close a connection whose preface is late or that sat idle (no open
        stream) past the idle timeout, or whose client took no answer bytes for that long;
        reset a stream whose request body is late, or whose answer waited on the client's
        flow-control window past `send_timeout`."""
        now, config = time.monotonic(), self.config
        for conn in list(self.connections):
            if conn.transport is None:
                continue
            if not conn.preface_done:
                if now - conn.opened > config.preface_timeout:
                    conn.transport.abort()
                continue
            if conn.write_paused:
                if now - conn.last_active > config.idle_timeout > 0:
                    conn.transport.abort()
                continue
            if not conn.streams:
                if config.idle_timeout and now - conn.last_active > config.idle_timeout:
                    conn.shutdown()
                continue
            for stream in list(conn.streams.values()):
                late_body = not stream.remote_done and now - stream.started > config.stall_timeout
                # an answer the client's window has held back too long: the reset releases the
                # request's budget charge (a zero-window client would otherwise hold it for ever)
                held = (stream.blocked_since is not None and config.send_timeout
                        and now - stream.blocked_since > config.send_timeout)
                if late_body or held:
                    conn.reset(stream, f.CANCEL)
                    if stream.on_cancel is not None:
                        stream.on_cancel()
        self._sweeper = self.loop.call_later(1.0, self._sweep)

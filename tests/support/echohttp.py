"""A tiny application on mlserve's HTTP/1.1 layer, for the transport tests: the layer knows nothing
of models, so no TensorFlow is needed."""
from __future__ import annotations

import hashlib

from mlserve.server.transport.http1 import Connection, HttpConfig, HttpServer, Request


class EchoApp:
    """Answers every request at once: 200 with `size` bytes for GET /big/<size>, else the path."""

    def __init__(self) -> None:
        self.http: HttpServer | None = None
        self.handled = 0

    def handle(self, conn: Connection, req: Request) -> None:
        self.handled += 1
        path = req.path
        if path == "/sha":  # the body as the application received it
            body = hashlib.sha256(req.body).hexdigest().encode()
        else:
            body = b"x" * int(path[5:]) if path.startswith("/big/") else path.encode()
        conn.respond(req, 200, body, b"text/plain")

    def error_body(self, message: str) -> bytes:
        return ('{"error": "%s"}' % message).encode()


class EchoServer:
    """An HttpServer serving `app`, as LoopThread runs it."""

    def __init__(self, app: EchoApp, config: HttpConfig) -> None:
        self.http = HttpServer(app, config)
        app.http = self.http

    @property
    def port(self) -> int:
        return self.http.port

    async def start(self) -> None:
        await self.http.start()

    async def stop(self, grace: float = 5.0) -> None:
        await self.http.stop(grace)

"""HTTP/1.1 on asyncio + httptools, knowing nothing of models or TF Serving:

- `config`: `HttpConfig`, the limits;
- `connection`: one client connection (parser callbacks, keep-alive, pipelining in order,
  flow control, 413/400 answers) and the response-head cache;
- `server`: `HttpServer`, listening, the connection set, idle sweeping, the outbox that other
  threads answer through, and graceful stop.

An application is any object with `handle(conn, request)`, called on the event loop; it
answers with `conn.respond(request, status, body, ...)` on the loop, or from another thread
through `server.post(fn, *args)`.
"""
from __future__ import annotations

from mlserve.server.transport.http1.config import HttpConfig
from mlserve.server.transport.http1.connection import Connection, Request
from mlserve.server.transport.http1.server import HttpApp, HttpServer

__all__ = ["Connection", "HttpApp", "HttpConfig", "HttpServer", "Request"]

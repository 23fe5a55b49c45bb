"""The HTTP/1.1 layer's settings: every limit named, typed and in one place (as uvicorn's
`config.py`). `HttpConfig` is built from the server's flags by the front-end that serves."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HttpConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port, read back from the server's `.port`
    max_request_bytes: int = 64 * 1024 * 1024  # a larger body is answered 413 and the connection closed
    max_pipeline: int = 32  # requests queued on one connection before it stops reading
    idle_timeout: float = 300.0  # seconds a keep-alive connection may sit idle
    stall_timeout: float = 60.0  # seconds a started request may take to arrive completely
    backlog: int = 1024  # the listening socket's accept queue
    cors: bool = False  # add Access-Control-Allow-* to responses that ask for it

"""Fixtures for the transport tests: a real HttpServer on an ephemeral port serving a tiny
application (support/echohttp.py)."""
from __future__ import annotations

from typing import Iterator

import pytest

from mlserve.server.transport.http1 import HttpConfig
from mlserve.server.transport.loopthread import LoopThread
from support.echohttp import EchoApp, EchoServer


@pytest.fixture
def serve() -> Iterator:
    started: list[LoopThread] = []

    def start(**limits: object) -> tuple[EchoApp, LoopThread]:
        app = EchoApp()
        thread = LoopThread.start(EchoServer(app, HttpConfig(**limits)), name="test-http")  # type: ignore[arg-type]
        started.append(thread)
        return app, thread

    yield start
    for thread in started:
        thread.stop(1.0)

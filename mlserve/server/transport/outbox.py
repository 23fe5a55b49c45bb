"""Calls from worker and batch threads that must run on an event loop: what queues meanwhile runs
in one loop wake-up, so a batch of 30 answers costs one wake-up, not 30. Shared by the HTTP/1.1
(`http1/`) and HTTP/2 (`http2/`) transports."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable


class Outbox:
    """`post(fn, *args)` from any thread runs `fn(*args)` on `loop` (set once the loop runs)."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._log, self._what = log, what
        self._queue: deque[tuple[Callable[..., None], tuple]] = deque()
        self._scheduled = False

    def post(self, fn: Callable[..., None], *args: Any) -> None:
        self._queue.append((fn, args))
        if not self._scheduled:
            self._scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush)  # type: ignore[union-attr]
            except RuntimeError:  # the loop is closed: the server is gone, nobody to answer
                pass

    def _flush(self) -> None:
        self._scheduled = False  # before draining: what is posted from now on schedules anew
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            try:
                fn(*args)
            except Exception:  # noqa: BLE001 - one broken answer must not strand the others
                self._log.exception("%s failed", self._what)

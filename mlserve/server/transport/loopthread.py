"""`LoopThread`: an asyncio server hosted on its own event-loop thread (uvloop when installed),
for a process whose main thread waits for signals."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Protocol


class AsyncServer(Protocol):
    port: int

    async def start(self) -> None: ...

    async def stop(self, grace: float = 5.0) -> None: ...


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when installed (the fast path), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """`LoopThread.start(server, name)` runs `server.start()` on a new loop thread and returns
    once it is serving (raising what start raised); `stop(grace)` drains it and ends the thread."""

    def __init__(self, server: AsyncServer, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.server, self.loop, self.thread = server, loop, thread

    @classmethod
    def start(cls, server: AsyncServer, name: str, timeout: float = 60.0) -> "LoopThread":
        loop = new_event_loop()
        started: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.start())
            except BaseException as e:  # noqa: BLE001 - handed to the caller
                started.set_exception(e)
                loop.close()
                return
            started.set_result(None)
            try:
                loop.run_forever()
            finally:
                loop.close()

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        started.result(timeout)
        return cls(server, loop, thread)

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, grace: float = 5.0) -> None:
        """Drain and close the server, then end the loop thread."""
        if not self.thread.is_alive():
            return
        fut = asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)
        try:
            fut.result(grace + 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

"""The two kinds of load: one prebuilt request, sent over and over by concurrent workers.

REST: asyncio with one raw keep-alive HTTP/1.1 connection per worker (`wire`), responses read by
length, never parsed. gRPC: grpc.aio with a prebuilt serialized PredictRequest and raw response
bytes. Either way the generator itself costs little per request.
"""
from __future__ import annotations

import abc
import asyncio
import time
from typing import Any, Callable

from mlserve.bench import wire
from mlserve.bench.figures import LevelCounter
from mlserve.client.rest import error_message


class Load(abc.ABC):
    """One kind of load. The runner opens it, runs workers level by level, then closes it."""

    address: str = ""

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        """The event loop to run on (None: asyncio's own)."""
        return None

    async def open(self) -> None:
        """Set up what the workers share (a gRPC channel)."""

    async def close(self) -> None:
        """Release what `open` set up."""

    @abc.abstractmethod
    async def worker(self, level: LevelCounter) -> None:
        """Send requests one after the other while `level.take()` allows."""


class RestLoad(Load):
    """Raw HTTP/1.1 keep-alive requests of one prebuilt predict call."""

    def __init__(self, url: str, path: str, body: bytes, timeout: float, headers: dict[str, str] | None = None) -> None:
        self.host, self.port, _, _ = wire.http_address(url)
        self.address = url
        self.timeout = timeout
        self.request = wire.post_request(url, path, body, headers)

    def loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop] | None:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency; asyncio still works
            return None
        return uvloop.new_event_loop

    async def worker(self, level: LevelCounter) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            while level.take():
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    assert reader is not None
                    async with asyncio.timeout(self.timeout):
                        writer.write(self.request)
                        status, body, keep = await wire.read_response(reader)
                except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as e:
                    level.fail(self._describe(e))
                    writer = _close(writer)
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                if status == 200:
                    level.ok(time.perf_counter() - t0)
                else:
                    level.fail(f"HTTP {status}: {error_message(body)}")
                if not keep:
                    writer = _close(writer)
        finally:
            _close(writer)

    def _describe(self, e: BaseException) -> str:
        if isinstance(e, TimeoutError):
            return f"no answer within {self.timeout:g} s"
        if isinstance(e, asyncio.IncompleteReadError):
            return "the server closed the connection mid-response"
        return f"{type(e).__name__}: {e}"


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None


class GrpcLoad(Load):
    """grpc.aio Predict calls of one prebuilt serialized request; responses stay raw bytes."""

    def __init__(self, address: str, request: bytes, timeout: float,
                 method: str = "/tensorflow.serving.PredictionService/Predict") -> None:
        self.address = address
        self.request = request
        self.timeout = timeout
        self.method = method
        self.channel: Any = None
        self.call: Any = None

    async def open(self) -> None:
        import grpc

        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.aio.insecure_channel(self.address, options=options)
        # identity (de)serialisers: the request is serialised once, the response is not parsed
        self.call = self.channel.unary_unary(self.method)

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def worker(self, level: LevelCounter) -> None:
        import grpc

        while level.take():
            t0 = time.perf_counter()
            try:
                await self.call(self.request, timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                level.fail(f"{e.code().name}: {e.details()}")
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    await asyncio.sleep(0.01)
                continue
            level.ok(time.perf_counter() - t0)

"""The load generator behind `mlserve bench`: bounded, concurrent predict requests and their figures.

REST load is asyncio with one raw keep-alive HTTP/1.1 connection per concurrent client, a request
prebuilt once as bytes, and responses read by Content-Length without parsing the JSON; gRPC load is
grpc.aio with a prebuilt serialized PredictRequest and raw response bytes. So the generator itself
costs little per request; `self_test()` measures its ceiling against a canned-response server on
127.0.0.1 (`mlserve bench --self-test`).

Every run is bounded: a duration or a request count per level, both capped (MAX_DURATION_S,
MAX_REQUESTS), and every request has a timeout. Failed requests are counted and their first
messages kept; they never enter the latency or throughput figures.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable
from urllib.parse import urlsplit

import numpy as np

from mlserve.client import ModelTarget, connect
from mlserve.errors import ServerStartError, UsageError

MAX_DURATION_S = 600.0  # per level, also the time cap of a --requests run
MAX_REQUESTS = 1_000_000  # per level
MAX_CONCURRENCY = 1024
MAX_BATCH = 1024
MAX_ERROR_MESSAGES = 5  # distinct first messages kept per level

Progress = Callable[[str, float, int], None]  # (phase, fraction done, requests done)


@dataclass
class BenchLevel:
    """Figures of one concurrency level. Latencies are of successful requests only."""

    concurrency: int
    requests: int  # successful requests
    images: int
    errors: int
    error_messages: list[str]
    duration_s: float
    requests_per_s: float
    images_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    cost_per_million: float | None = None  # with a price per hour

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class BenchReport:
    transport: str
    address: str
    model: str
    batch_size: int
    warmup_s: float
    levels: list[BenchLevel] = field(default_factory=list)
    price_per_hour: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {"transport": self.transport, "address": self.address, "model": self.model,
                "batch_size": self.batch_size, "warmup_s": self.warmup_s,
                "price_per_hour": self.price_per_hour, "levels": [lv.as_dict() for lv in self.levels]}


def cost_per_million(price_per_hour: float, images_per_s: float) -> float | None:
    """What a million predictions cost on a machine billed `price_per_hour`, at `images_per_s`."""
    if images_per_s <= 0:
        return None
    return price_per_hour / (images_per_s * 3600.0) * 1_000_000


def parse_levels(text: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]."""
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"--concurrency takes comma-separated integers, got {text!r}",
                         hint="e.g. --concurrency 1,8,32") from None
    if not levels or any(not 1 <= c <= MAX_CONCURRENCY for c in levels):
        raise UsageError(f"concurrency levels must be between 1 and {MAX_CONCURRENCY}, got {text!r}")
    return levels


# -- the run ------------------------------------------------------------------------------------
class _Level:
    """Shared state of one level's workers."""

    def __init__(self, duration: float | None, requests: int | None) -> None:
        self.duration = min(duration, MAX_DURATION_S) if duration is not None else MAX_DURATION_S
        self.limit = min(requests, MAX_REQUESTS) if requests is not None else MAX_REQUESTS
        self.by_count = requests is not None
        self.issued = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.messages: list[str] = []
        self.start = time.perf_counter()
        self.deadline = self.start + self.duration
        self.last_done = self.start

    def take(self) -> bool:
        """May a worker send one more request?"""
        if self.issued >= self.limit or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)
        self.last_done = time.perf_counter()

    def fail(self, message: str) -> None:
        self.errors += 1
        self.last_done = time.perf_counter()
        message = " ".join(message.split())[:300]
        if len(self.messages) < MAX_ERROR_MESSAGES and message not in self.messages:
            self.messages.append(message)

    def fraction(self) -> float:
        if self.by_count:
            return min(1.0, (len(self.latencies) + self.errors) / max(self.limit, 1))
        return min(1.0, (time.perf_counter() - self.start) / self.duration)

    def result(self, concurrency: int, batch_size: int, price: float | None) -> BenchLevel:
        elapsed = max(self.last_done - self.start, 1e-9)
        n = len(self.latencies)
        if n:
            ms = np.asarray(self.latencies) * 1000.0
            p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
            mx, mean = float(ms.max()), float(ms.mean())
        else:
            p50 = p90 = p99 = mx = mean = None
        images_per_s = n * batch_size / elapsed
        return BenchLevel(concurrency, n, n * batch_size, self.errors, list(self.messages),
                          round(elapsed, 4), n / elapsed, images_per_s, p50, p90, p99, mx, mean,
                          cost_per_million(price, images_per_s) if price is not None else None)


class _RestLoad:
    """Raw HTTP/1.1 keep-alive requests of one prebuilt predict call."""

    def __init__(self, url: str, path: str, body: bytes, timeout: float) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme != "http":
            raise UsageError("bench drives plain http:// REST servers", hint="use --grpc, or an http:// URL")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        head = (f"POST {parts.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
        self.request = head.encode("latin-1") + body

    async def worker(self, level: _Level) -> None:
        reader = writer = None
        try:
            while level.take():
                t0 = time.perf_counter()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(self.host, self.port)
                    async with _deadline(self.timeout):
                        writer.write(self.request)
                        status, body, keep = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as e:
                    level.fail(_describe(e, self.timeout))
                    writer = _close(writer)
                    await asyncio.sleep(0.01)  # a refused connection must not spin
                    continue
                if status == 200:
                    level.ok(time.perf_counter() - t0)
                else:
                    level.fail(f"HTTP {status}: {_error_text(body)}")
                if not keep:
                    writer = _close(writer)
        finally:
            _close(writer)


def _deadline(seconds: float):
    if hasattr(asyncio, "timeout"):  # Python 3.11+: no extra task per request
        return asyncio.timeout(seconds)
    return _WaitFor(seconds)  # pragma: no cover


class _WaitFor:  # pragma: no cover - Python 3.10 only
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def __aenter__(self) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        self.handle = loop.call_later(self.seconds, task.cancel)

    async def __aexit__(self, kind, value, tb) -> bool:
        self.handle.cancel()
        if kind is asyncio.CancelledError:
            raise asyncio.TimeoutError()
        return False


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """One HTTP/1.1 response: status, body, whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep = b"connection: close" not in lower and not head.startswith(b"HTTP/1.0")
    at = lower.find(b"content-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at)
        body = await reader.readexactly(int(lower[at + 15:end]))
    elif b"transfer-encoding: chunked" in lower:
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        body = b"".join(chunks)
    else:
        body, keep = await reader.read(), False
    return status, body, keep


def _close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None


def _error_text(body: bytes) -> str:
    from mlserve.client.rest import _error_message

    return _error_message(body)


def _describe(e: BaseException, timeout: float) -> str:
    if isinstance(e, asyncio.TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(e, asyncio.IncompleteReadError):
        return "the server closed the connection mid-response"
    return f"{type(e).__name__}: {e}"


class _GrpcLoad:
    """grpc.aio Predict calls of one prebuilt serialized request; responses stay raw bytes."""

    def __init__(self, address: str, request: bytes, timeout: float) -> None:
        self.address = address
        self.request = request
        self.timeout = timeout
        self.channel = None
        self.call = None

    async def open(self) -> None:
        import grpc

        options = [("grpc.max_receive_message_length", 64 << 20),
                   ("grpc.max_send_message_length", 64 << 20)]
        self.channel = grpc.aio.insecure_channel(self.address, options=options)
        # identity (de)serialisers: the request is serialised once, the response is not parsed
        self.call = self.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()

    async def worker(self, level: _Level) -> None:
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


async def _run_levels(load, levels: list[int], duration: float | None, requests: int | None,
                      warmup: float, batch_size: int, price: float | None,
                      progress: Progress | None) -> list[BenchLevel]:
    if isinstance(load, _GrpcLoad):
        await load.open()
    try:
        results = []
        for concurrency in levels:
            if warmup > 0:
                # fresh connections and a warm server path at this level; figures discarded
                await _one_level(load, concurrency, _Level(warmup, None), f"warm-up ×{concurrency}",
                                 progress)
            level = _Level(duration, requests)
            await _one_level(load, concurrency, level, f"concurrency {concurrency}", progress)
            results.append(level.result(concurrency, batch_size, price))
        return results
    finally:
        if isinstance(load, _GrpcLoad):
            await load.close()


async def _one_level(load, concurrency: int, level: _Level, phase: str,
                     progress: Progress | None) -> None:
    level.start = time.perf_counter()
    level.deadline = level.start + level.duration
    level.last_done = level.start
    workers = [asyncio.ensure_future(load.worker(level)) for _ in range(concurrency)]
    if progress is None:
        await asyncio.gather(*workers)
        return
    done = asyncio.ensure_future(asyncio.gather(*workers))
    while not done.done():
        progress(phase, level.fraction(), len(level.latencies) + level.errors)
        await asyncio.wait([done], timeout=0.1)
    progress(phase, 1.0, len(level.latencies) + level.errors)
    done.result()


def _event_loop_runner():
    try:
        import uvloop

        return lambda coro: uvloop.run(coro) if hasattr(uvloop, "run") else asyncio.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run


def run_bench(images: np.ndarray, target: ModelTarget, *, transport: str = "rest",
              url: str = "http://127.0.0.1:8501", grpc_server: str = "127.0.0.1:8500",
              concurrency: list[int] = (1,), duration: float | None = 5.0,
              requests: int | None = None, warmup: float = 1.0, timeout: float = 30.0,
              columnar: bool = False, price_per_hour: float | None = None,
              progress: Progress | None = None) -> BenchReport:
    """Send `images` (one request = the whole batch) at each concurrency level; return the figures.

    One predict goes first through the ordinary client, so an unreachable server, an unknown model
    or a wrong signature fails at once with the usual error instead of as a wall of failed requests.
    """
    if duration is None and requests is None:
        raise UsageError("give --duration or --requests")
    if duration is not None and not 0 < duration <= MAX_DURATION_S:
        raise UsageError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {duration:g}")
    if requests is not None and not 1 <= requests <= MAX_REQUESTS:
        raise UsageError(f"--requests must be between 1 and {MAX_REQUESTS}, got {requests}")
    if not 0 <= warmup <= 60:
        raise UsageError(f"--warmup must be between 0 and 60 seconds, got {warmup:g}")
    if not 1 <= len(images) <= MAX_BATCH:
        raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {len(images)}")
    for c in concurrency:
        if not 1 <= c <= MAX_CONCURRENCY:
            raise UsageError(f"concurrency levels must be between 1 and {MAX_CONCURRENCY}, got {c}")

    client = connect(target, transport=transport, url=url, grpc_server=grpc_server, timeout=timeout,
                     columnar=columnar)
    try:
        client.predict(images)  # preflight: the usual errors, before any load
    finally:
        client.close()

    if transport == "grpc":
        from mlserve.client.grpc import predict_request

        load = _GrpcLoad(client.address, predict_request(target, images, client.input_name)
                         .SerializeToString(), timeout)
        runner = asyncio.run
    else:
        from mlserve.client.rest import model_path, predict_body

        load = _RestLoad(url, model_path(target) + ":predict",
                         predict_body(images, target.signature, columnar), timeout)
        runner = _event_loop_runner()
    report = BenchReport(transport, client.address, target.describe(), len(images), warmup,
                         price_per_hour=price_per_hour)
    report.levels = runner(_run_levels(load, list(concurrency), duration, requests, warmup,
                                       len(images), price_per_hour, progress))
    return report


# -- the canned-response server and the self-test -----------------------------------------------
class _CannedProtocol(asyncio.Protocol):
    """Answers every HTTP/1.1 request with one prebuilt response; no JSON, no model."""

    def __init__(self, ok: bytes, error: bytes, error_every: int, counter: list[int]) -> None:
        self.ok, self.error, self.error_every, self.counter = ok, error, error_every, counter
        self.buffer = b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:head.find(b"\r\n", at) if head.find(b"\r\n", at) >= 0 else None]) \
                if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length:]
            self.counter[0] += 1
            failing = self.error_every and self.counter[0] % self.error_every == 0
            out.append(self.error if failing else self.ok)
        if out:
            self.transport.write(b"".join(out))


def _http_response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def serve_canned(batch_size: int = 1, error_every: int = 0) -> None:
    """Run the canned server on 127.0.0.1 (an ephemeral port, printed first) until stdin closes."""
    import json

    ok = _http_response("200 OK", json.dumps({"predictions": [[0.1] * 10] * batch_size}).encode())
    error = _http_response("500 Internal Server Error", b'{"error": "canned error for testing"}')
    counter = [0]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _CannedProtocol(ok, error, error_every, counter),
                                          "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
        stdin_closed = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: stdin_closed.done() or stdin_closed.set_result(None))
        await stdin_closed
        server.close()

    _event_loop_runner()(main())


class CannedServer:
    """The canned server in a child process (so it does not share the generator's core or GIL)."""

    def __init__(self, batch_size: int = 1, error_every: int = 0) -> None:
        code = f"from mlserve.bench import serve_canned; serve_canned({int(batch_size)}, {int(error_every)})"
        self.process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env={**os.environ})
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise ServerStartError("the canned bench server did not start")
        self.url = f"http://127.0.0.1:{int(line)}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()  # the server's signal to exit
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()

    def __enter__(self) -> "CannedServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def self_test(*, concurrency: list[int] = (1, 8, 32), duration: float = 2.0, batch_size: int = 1,
              warmup: float = 0.5, price_per_hour: float | None = None,
              progress: Progress | None = None) -> BenchReport:
    """The generator's own ceiling: the same REST load against a server that does no work."""
    images = np.zeros((batch_size, 28, 28, 1), dtype=np.float32)
    with CannedServer(batch_size) as server:
        return run_bench(images, ModelTarget("canned"), url=server.url, concurrency=list(concurrency),
                         duration=duration, warmup=warmup, price_per_hour=price_per_hour,
                         progress=progress)

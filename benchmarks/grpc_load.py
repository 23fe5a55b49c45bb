"""gRPC load for the serving benchmark: no off-the-shelf C generator (ghz) is packaged on
Debian/PyPI, so this is a grpc.aio closed-loop generator that sends one pre-serialised
PredictRequest (tensor_content) over several channels, each its own TCP connection.

Its own ceiling is measured by the harness against `canned` (a trivial servicer answering a
pre-serialised response); it also reports its CPU use, so a run where the generator itself is
saturated (cpu ~1.0 of its one core) can be told apart from a saturated server.

    python benchmarks/grpc_load.py load --target 127.0.0.1:PORT --request REQ.pb \
        --concurrency 32 --channels 4 --seconds 10          # prints one JSON line
    python benchmarks/grpc_load.py canned --port PORT --response RESP.pb
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import time
from pathlib import Path

import grpc

METHOD = "/tensorflow.serving.PredictionService/Predict"


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def load(target: str, request: bytes, concurrency: int, channels: int, seconds: float) -> dict:
    # A local subchannel pool per channel: otherwise channels with equal arguments share one
    # connection and "several channels" would be one TCP stream.
    options = [("grpc.use_local_subchannel_pool", 1),
               ("grpc.max_receive_message_length", 64 << 20),
               ("grpc.max_send_message_length", 64 << 20)]
    chans = [grpc.aio.insecure_channel(target, options=options) for _ in range(max(1, channels))]
    calls = [c.unary_unary(METHOD) for c in chans]  # no (de)serialisers: bytes in, bytes out
    for c in chans:
        await asyncio.wait_for(c.channel_ready(), timeout=10)
    latencies: list[int] = []
    errors: dict[str, int] = {}
    start = time.perf_counter()
    deadline = start + seconds

    async def worker(call) -> None:
        while True:
            t0 = time.perf_counter_ns()
            if t0 / 1e9 >= deadline:
                return
            try:
                await call(request, timeout=30)
            except grpc.aio.AioRpcError as e:
                errors[e.code().name] = errors.get(e.code().name, 0) + 1
                continue
            latencies.append((time.perf_counter_ns() - t0) // 1000)

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(worker(calls[i % len(calls)]) for i in range(concurrency)))
    elapsed = time.perf_counter() - start
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    for c in chans:
        await c.close()
    latencies.sort()
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "errors": errors,
        "loadgen_cpu": round(cpu / elapsed, 3),
        "latency_us": {
            "mean": round(sum(latencies) / len(latencies), 1) if latencies else 0,
            "max": latencies[-1] if latencies else 0,
            "p50": _percentile(latencies, 50),
            "p90": _percentile(latencies, 90),
            "p99": _percentile(latencies, 99),
        },
    }


async def canned(port: int, response: bytes) -> None:
    """A PredictionService that answers every Predict with the same bytes: the generator's ceiling."""

    async def predict(request: bytes, context) -> bytes:
        return response

    handler = grpc.method_handlers_generic_handler(
        "tensorflow.serving.PredictionService",
        {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
    )
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--target", required=True)
    p.add_argument("--request", type=Path, required=True)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10)
    c = sub.add_parser("canned")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--response", type=Path, required=True)
    args = parser.parse_args()
    if args.cmd == "load":
        result = asyncio.run(load(args.target, args.request.read_bytes(), args.concurrency,
                                  args.channels, args.seconds))
        print(json.dumps(result), flush=True)
    else:
        asyncio.run(canned(args.port, args.response.read_bytes()))


if __name__ == "__main__":
    main()

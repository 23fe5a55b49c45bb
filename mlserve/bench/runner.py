"""Running a bench: a preflight predict, then each concurrency level (warm-up, then measured).

Every run is bounded (a LoadPlan), and every request has a timeout. Failed requests are counted
and their first messages kept; they never enter the latency or throughput figures. Ctrl-C ends
the run cleanly: the report keeps the levels measured before it and says it was interrupted.
"""
from __future__ import annotations

import asyncio
from typing import Callable

import numpy as np

from mlserve.bench.canned import CannedServer
from mlserve.bench.figures import (BenchLevel, BenchReport, LevelCounter, LoadPlan, Progress)
from mlserve.bench.loads import GrpcLoad, Load, RestLoad
from mlserve.client import ModelTarget, connect

LevelDone = Callable[[BenchLevel], None]


async def _one_level(load: Load, concurrency: int, level: LevelCounter, phase: str,
                     progress: Progress | None) -> None:
    level.begin()
    workers = [asyncio.ensure_future(load.worker(level)) for _ in range(concurrency)]
    try:
        pending = set(workers)
        while pending:
            if progress is not None:
                progress(phase, level.fraction(), level.done)
            _, pending = await asyncio.wait(pending, timeout=0.1)
    finally:  # on Ctrl-C (cancellation): stop the workers and wait for them, nothing dangling
        for w in workers:
            w.cancel()
        await asyncio.wait(workers)
    if progress is not None:
        progress(phase, 1.0, level.done)
    for w in workers:
        w.result()  # a bug in a worker surfaces here


async def run_levels(load: Load, plan: LoadPlan, price: float | None,
                     progress: Progress | None = None,
                     on_level: LevelDone | None = None) -> tuple[list[BenchLevel], bool]:
    """Each level of the plan in turn; (the levels measured, whether Ctrl-C cut the run short)."""
    results: list[BenchLevel] = []
    await load.open()
    try:
        for concurrency in plan.levels:
            if plan.warmup > 0:
                # fresh connections and a warm server path at this level; figures discarded
                await _one_level(load, concurrency, LevelCounter(plan.warmup, None),
                                 f"warm-up ×{concurrency}", progress)
            level = LevelCounter(plan.duration, plan.requests)
            await _one_level(load, concurrency, level, f"concurrency {concurrency}", progress)
            results.append(level.result(concurrency, plan.batch_size, price))
            if on_level is not None:
                on_level(results[-1])
    except asyncio.CancelledError:  # asyncio.Runner turns the first Ctrl-C into this
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return results, True
    finally:
        await load.close()
    return results, False


def _run(load: Load, plan: LoadPlan, price: float | None, progress: Progress | None,
         on_level: LevelDone | None) -> tuple[list[BenchLevel], bool]:
    with asyncio.Runner(loop_factory=load.loop_factory()) as runner:
        return runner.run(run_levels(load, plan, price, progress, on_level))


def run_bench(images: np.ndarray, target: ModelTarget, *, transport: str = "rest",
              url: str = "http://127.0.0.1:8501", grpc_server: str = "127.0.0.1:8500",
              concurrency: list[int] | tuple[int, ...] = (1,), duration: float | None = 5.0,
              requests: int | None = None, warmup: float = 1.0, timeout: float = 30.0,
              columnar: bool = False, price_per_hour: float | None = None,
              progress: Progress | None = None, on_level: LevelDone | None = None,
              protocol: str = "v1", binary: bool = False) -> BenchReport:
    """Send `images` (one request = the whole batch) at each concurrency level; return the figures.

    One predict goes first through the ordinary client, so an unreachable server, an unknown model
    or a wrong signature fails at once with the usual error instead of as a wall of failed requests.
    """
    plan = LoadPlan(tuple(concurrency), duration, requests, warmup, len(images))
    client = connect(target, transport=transport, url=url, grpc_server=grpc_server, timeout=timeout,
                     columnar=columnar, protocol=protocol, binary=binary)
    try:
        client.predict(images)  # preflight: the usual errors, before any load
    finally:
        client.close()
    load: Load
    if protocol == "v2" and transport == "grpc":
        load = GrpcLoad(client.address, client.infer_request(images).SerializeToString(), timeout,
                        method=client.INFER_METHOD)
    elif protocol == "v2":
        from mlserve.client import v2

        body, headers = v2.infer_body({client.input_name: np.ascontiguousarray(images, dtype=np.float32)},
                                      binary=binary, outputs=[client.output_name])
        load = RestLoad(url, v2.model_path(target) + "/infer", body, timeout, headers)
    elif transport == "grpc":
        from mlserve.client.grpc import predict_request

        request = predict_request(target, images, client.input_name).SerializeToString()
        load = GrpcLoad(client.address, request, timeout)
    else:
        from mlserve.client.rest import model_path, predict_body

        load = RestLoad(url, model_path(target) + ":predict",
                        predict_body(images, target.signature, columnar), timeout)
    described = transport if protocol == "v1" else f"{transport} v2{' binary' if binary else ''}"
    report = BenchReport(described, client.address, target.describe(), len(images), warmup,
                         price_per_hour=price_per_hour)
    report.levels, report.interrupted = _run(load, plan, price_per_hour, progress, on_level)
    return report


def self_test(*, concurrency: list[int] | tuple[int, ...] = (1, 8, 32), duration: float = 2.0,
              batch_size: int = 1, warmup: float = 0.5, price_per_hour: float | None = None,
              progress: Progress | None = None, on_level: LevelDone | None = None) -> BenchReport:
    """The generator's own ceiling: the same REST load against a server that does no work."""
    LoadPlan(tuple(concurrency), duration, None, warmup, batch_size)  # bad bounds: before any work
    images = np.zeros((batch_size, 28, 28, 1), dtype=np.float32)
    with CannedServer(batch_size) as server:
        return run_bench(images, ModelTarget("canned"), url=server.url, concurrency=concurrency,
                         duration=duration, warmup=warmup, price_per_hour=price_per_hour,
                         progress=progress, on_level=on_level)

"""Feature lookup figures (#26): the store read alone, end-to-end latency with and without the
lookup, and req/s at 32 connections for the delivery-time example with the lookup.

    python benchmarks/feature_lookup.py [--reads 2000] [--requests 1000] [--seconds 10] [--rounds 3]

Everything on 127.0.0.1 and bounded. Cores (2 here): the model server on core 0; the load
generator (wrk, or this script's sequential client) and redis-server on core 1. The store-read
figures are taken in this process on core 0, with redis-server on core 1. It prints one JSON
line per measurement (wrk: the median of alternated rounds); docs/benchmarks.md#feature-lookup has a run's figures. The machine is
shared with other agents: figures are noisy.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(ROOT / "tests"), str(ROOT)]

import procs  # noqa: E402
from loadgen import run_wrk  # noqa: E402

MODEL = "delivery_time"
IDS = [f"r{i}" for i in range(100)]


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(pick(0.50) * 1000, 4), "p99_ms": round(pick(0.99) * 1000, 4), "n": len(values)}


def lookup_figures(sqlite_path: Path, redis_url: str, reads: int) -> None:
    from mlserve.server.features.config import StoreConfig
    from mlserve.server.features.stores.redis import RedisStore
    from mlserve.server.features.stores.sqlite import SqliteStore

    os.sched_setaffinity(0, {int(procs.SERVER_CORE)})
    features = ("orders_last_hour", "outstanding_per_minute")
    stores = {"sqlite": SqliteStore(StoreConfig("sqlite", str(sqlite_path), table="restaurant_features"),
                                    "restaurant_id"),
              "redis": RedisStore(StoreConfig("redis", redis_url, key_prefix="restaurant:"))}
    for name, store in stores.items():
        for batch in (1, 32):
            times = []
            for i in range(reads):
                keys = [IDS[(i + j) % len(IDS)] for j in range(batch)]
                start = time.perf_counter()
                rows = store.read(keys, features, 1.0)
                times.append(time.perf_counter() - start)
                assert all(r is not None for r in rows)
            print(json.dumps({"measure": "store_read", "store": name, "keys": batch, **percentiles(times)}))
        store.close()


def sequential(port: int, body: bytes, requests: int) -> dict[str, float]:
    os.sched_setaffinity(0, {int(procs.LOADGEN_CORE)})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times = []
    for _ in range(requests + 50):
        start = time.perf_counter()
        conn.request("POST", f"/v1/models/{MODEL}:predict", body, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        times.append(time.perf_counter() - start)
        assert answer.status == 200, data
    conn.close()
    return percentiles(times[50:])  # the first 50 warm the connection and the model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from support.feature_stores import example_module, start_redis

    work = Path(tempfile.mkdtemp(prefix="bench-features-"))
    base = work / "model"
    example_module("train").train_and_export(base, epochs=10)
    features = example_module("features")
    table = features.aggregate(features.generate_orders(len(IDS)))
    features.write_sqlite(str(work / "features.db"), table)
    redis = start_redis(work)
    os.sched_setaffinity(redis.proc.pid, {int(procs.LOADGEN_CORE)})
    features.write_redis(redis.url, table)
    servers = []
    try:
        lookup_figures(work / "features.db", redis.url, args.reads)
        inputs = {"restaurant_id": ["r3"], "distance_km": [[2.5]]}
        full = {"distance_km": [[2.5]], "orders_last_hour": [[table["r3"]["orders_last_hour"]]],
                "outstanding_per_minute": [[table["r3"]["outstanding_per_minute"]]]}
        configs = {"none": None,
                   "sqlite": {"sqlite": str(work / "features.db"), "table": "restaurant_features"},
                   "redis": {"redis": redis.url, "key_prefix": "restaurant:"}}
        ports = {}
        for name, store in configs.items():
            flags = [f"--model_name={MODEL}", f"--model_base_path={base}"]
            if store is not None:
                config = {"entity_key": "restaurant_id", "store": store,
                          "inputs": {"orders_last_hour": ["orders_last_hour"],
                                     "outstanding_per_minute": ["outstanding_per_minute"]}}
                (work / f"{name}.json").write_text(json.dumps(config))
                flags.append(f"--feature_lookup={work / f'{name}.json'}")
            port, grpc_port = procs.free_port(), procs.free_port()
            proc = procs.start([sys.executable, "-m", "mlserve.server", f"--port={grpc_port}",
                                f"--rest_api_port={port}", *flags], work / f"server-{name}.log",
                               env={"PYTHONPATH": str(ROOT)})
            servers.append(proc)
            body = json.dumps({"inputs": full if store is None else inputs}).encode()
            (work / f"body-{name}.json").write_bytes(body)
            deadline = time.monotonic() + 120
            while True:
                try:
                    sequential(port, body, 1)
                    break
                except (OSError, AssertionError):
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        procs.tail_lines(work / f"server-{name}.log", 20)
                    time.sleep(0.5)
            ports[name] = port
        label = {n: "without lookup" if s is None else f"with lookup ({n})" for n, s in configs.items()}
        for name, port in ports.items():  # idle servers cost the server core nothing
            body = (work / f"body-{name}.json").read_bytes()
            print(json.dumps({"measure": "end_to_end_sequential", "server": label[name],
                              **sequential(port, body, args.requests)}), flush=True)
        rounds: dict[str, list[dict]] = {name: [] for name in ports}
        for _ in range(args.rounds):  # alternated, so that a noisy minute hits every server
            for name, port in ports.items():
                figures = run_wrk(f"http://127.0.0.1:{port}/v1/models/{MODEL}:predict",
                                  work / f"body-{name}.json", 32, args.seconds)
                rounds[name].append(figures)
        for name, runs in rounds.items():
            runs.sort(key=lambda r: r["rps"])
            mid = runs[len(runs) // 2]
            print(json.dumps({"measure": "wrk_32_connections_median", "server": label[name],
                              "rounds_rps": [r["rps"] for r in runs],
                              **{k: mid[k] for k in ("rps", "p50_ms", "p99_ms", "ok", "errors")}}))
    finally:
        for proc in servers:
            procs.stop(proc)
        redis.stop()


if __name__ == "__main__":
    main()

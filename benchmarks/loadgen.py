"""The load generators, both written in C so that the client is never the limit: `wrk` for REST,
`h2load` (Debian's nghttp2-client) for gRPC. Each runs one closed-loop round on the load core and
returns the same figures: requests, ok, errors, seconds, rps, p50/p90/p99 ms, its CPU use.
Rounds are bounded by time (wrk -d, h2load -D), so both protocols' rounds last equally long and
alternate evenly; h2load can also be bounded by a request count (-n) for a one-off round.

h2load drives a gRPC unary call when it posts a length-prefixed PredictRequest (bodies.grpc_frame)
with `content-type: application/grpc` and `te: trailers`, one stream per connection (-m 1). It
cannot read the grpc-status trailer, so a failed call counts as HTTP 200: the harness makes one
real Predict with the official stubs (checks.check_grpc) before any load.
"""
from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import tempfile
from pathlib import Path

from bodies import GRPC_PREDICT_PATH
from procs import LOADGEN_CORE

HERE = Path(__file__).resolve().parent


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(url: str, body_file: Path, connections: int, seconds: float,
            headers: dict[str, str] | None = None) -> dict:
    """wrk on the load core, 1 thread, closed loop; figures from predict.lua's done() hook.
    `headers`: Content-Type and at most one other header (a v2 binary body's)."""
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    argv = ["taskset", "-c", LOADGEN_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
            "--timeout", "10s", "-s", str(HERE / "predict.lua"), url]
    cpu0 = _children_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                          env=dict(os.environ, BENCH_BODY=str(body_file), **_header_env(headers or {})))
    cpu = _children_cpu() - cpu0
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures (rc {done.returncode}): {done.stderr.strip()[-500:]}")
    raw = json.loads(line.split(" ", 1)[1])
    errors = raw["errors"]
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - errors["status"]
    return {
        "tool": "wrk", "requests": raw["requests"], "ok": ok, "errors": sum(errors.values()),
        "error_detail": errors, "seconds": round(seconds_run, 2),
        "rps": round(ok / seconds_run, 1),
        "p50_ms": raw["latency_us"]["p50"] / 1000, "p90_ms": raw["latency_us"]["p90"] / 1000,
        "p99_ms": raw["latency_us"]["p99"] / 1000,
        "loadgen_cpu": round(cpu / seconds_run, 2),
    }


def _header_env(headers: dict[str, str]) -> dict[str, str]:
    env = {}
    for name, value in headers.items():
        if name.lower() == "content-type":
            env["BENCH_CONTENT_TYPE"] = value
        elif "BENCH_HEADER" in env:
            raise ValueError("predict.lua takes one extra header")
        else:
            env["BENCH_HEADER"] = f"{name}: {value}"
    return env


def _percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))]


def parse_h2load(stdout: str, log_lines: list[str]) -> dict:
    """h2load's summary and its per-request log (start µs, status, µs to the end of the answer)."""
    rate = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", stdout)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout", stdout)
    if rate is None or counts is None:
        raise RuntimeError(f"h2load gave no figures: {stdout.strip()[-800:]}")
    seconds = float(rate.group(1)) / (1000 if rate.group(2) == "ms" else 1)
    latencies = sorted(int(f[2]) for f in (ln.split("\t") for ln in log_lines)
                       if len(f) == 3 and f[1] == "200")
    failed, errored, timeout = (int(counts.group(i)) for i in (4, 5, 6))
    ok = int(counts.group(3))
    return {
        "tool": "h2load", "requests": int(counts.group(2)), "ok": ok,
        "errors": failed + errored + timeout,
        "error_detail": {"failed": failed, "errored": errored, "timeout": timeout},
        "seconds": round(seconds, 2), "rps": round(ok / seconds, 1) if seconds else 0.0,
        "p50_ms": _percentile(latencies, 50) / 1000, "p90_ms": _percentile(latencies, 90) / 1000,
        "p99_ms": _percentile(latencies, 99) / 1000,
    }


def run_h2load(port: int, body_file: Path, connections: int, seconds: float,
               requests: int | None = None, path: str = GRPC_PREDICT_PATH) -> dict:
    """h2load on the load core, 1 thread, one gRPC Predict stream per connection, for `seconds`
    (or, given `requests`, for that many calls, at most 120 s)."""
    seconds = max(1, round(seconds))
    bound = ["-n", str(requests)] if requests else ["-D", str(seconds)]
    timeout = 120 if requests else seconds + 60
    with tempfile.NamedTemporaryFile("r", prefix="h2load-", suffix=".tsv") as log:
        argv = ["taskset", "-c", LOADGEN_CORE, "h2load", "-t", "1", "-c", str(connections),
                "-m", "1", *bound, "--log-file", log.name, "-d", str(body_file),
                "-H", "content-type: application/grpc", "-H", "te: trailers",
                f"http://127.0.0.1:{port}{path}"]
        cpu0 = _children_cpu()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        cpu = _children_cpu() - cpu0
        figures = parse_h2load(done.stdout + done.stderr, Path(log.name).read_text().splitlines())
    figures["loadgen_cpu"] = round(cpu / figures["seconds"], 2) if figures["seconds"] else 0.0
    return figures

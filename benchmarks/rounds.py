"""The run: every server started side by side, then each scenario as short rounds that alternate
between them (a slow spell of the shared machine lands on every server), figures summarised as
medians of the rounds, and a memory run.

Scenarios: REST 1 image at 32 connections, REST 1 image at 1 connection, REST 64 images at 8
connections; the same three over gRPC for the servers that speak it.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checks import check_grpc, check_predictions, http, tf_serving_available, wait_until
from loadgen import run_h2load, run_wrk
from procs import ServerCoreMeter, group_cpu_seconds, group_rss_kib, start, stop
from targets import Target, latest_version, prepare_mlflow


def log(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


SCENARIOS = [  # name, protocol, images per request, connections
    ("rest_1img_c32", "rest", 1, 32),
    ("rest_1img_c1", "rest", 1, 1),
    ("rest_64img_c8", "rest", 64, 8),
    ("grpc_1img_c32", "grpc", 1, 32),
    ("grpc_1img_c1", "grpc", 1, 1),
    ("grpc_64img_c8", "grpc", 64, 8),
]


@dataclass
class Live:
    """A started, checked and warmed-up server, with its figures so far."""

    target: Target
    proc: subprocess.Popen
    logfile: Path
    result: dict


def launch(t: Target, files: dict[str, Path], work: Path, args: argparse.Namespace) -> Live:
    """Start one server, check it answers correctly and warm it up; raises when it cannot."""
    result: dict[str, Any] = {"describe": t.describe, "command": t.argv, "scenarios": {}, "rounds": {}}
    logfile = work / f"{t.name}.log"
    log(f"[{t.name}] starting: {' '.join(t.argv[:4])} ...")
    started = time.monotonic()
    proc = start(t.argv, logfile, env=t.env, cwd=work)
    try:
        if t.ready == "ping":
            ready = lambda: http("GET", f"http://127.0.0.1:{t.rest_port}/ping", timeout=5)[0] == 200  # noqa: E731
        else:
            ready = lambda: tf_serving_available(t.rest_port)  # noqa: E731
        wait_until(proc, logfile, ready, timeout=args.start_timeout)
        result["start_seconds"] = round(time.monotonic() - started, 1)
        for n, key in ((1, "rest_1"), (64, "rest_64")):
            status, payload = http("POST", t.rest_url, files[key].read_bytes())
            if status != 200:
                raise RuntimeError(f"predict of {n} images answered HTTP {status}: {payload[:300]!r}")
            check_predictions(payload, n)
        if t.grpc_port:
            check_grpc(t.grpc_port, 1)
            check_grpc(t.grpc_port, 64)
        log(f"[{t.name}] ready in {result['start_seconds']}s, answers correctly; warming up")
        run_wrk(t.rest_url, files["rest_1"], 8, args.warmup)
        run_wrk(t.rest_url, files["rest_64"], 4, max(1.0, args.warmup / 2))
        if t.grpc_port:
            run_h2load(t.grpc_port, files["grpc_1"], 8, max(1.0, args.warmup / 2))
    except BaseException:
        stop(proc)
        raise
    return Live(t, proc, logfile, result)


def memory_run(live: Live, files: dict[str, Path], args: argparse.Namespace) -> None:
    """RSS after warm-up, then after a run at 32 connections."""
    t, proc = live.target, live.proc
    warm = group_rss_kib(proc.pid)
    log(f"[{t.name}] memory run: {args.memory_seconds:g}s at 32 connections")
    run = run_wrk(t.rest_url, files["rest_1"], 32, args.memory_seconds)
    after = group_rss_kib(proc.pid)
    live.result["memory"] = {"rss_after_warmup_mib": round(warm / 1024, 1),
                             "rss_after_run_mib": round(after / 1024, 1),
                             "run_seconds": args.memory_seconds, "run": run,
                             "growth_pct": round(100 * (after - warm) / warm, 1) if warm else None}


def one_round(live: Live, files: dict[str, Path], protocol: str, images: int, conns: int,
              seconds: float) -> dict:
    """One short load run of one scenario against one server, with its core figures."""
    t = live.target
    meter = ServerCoreMeter(live.proc.pid)
    try:
        if protocol == "rest":
            figures = run_wrk(t.rest_url, files[f"rest_{images}"], conns, seconds)
        else:
            figures = run_h2load(t.grpc_port, files[f"grpc_{images}"], conns, seconds)  # type: ignore[arg-type]
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        return {"failed": str(e)}
    figures["images_per_s"] = round(figures["rps"] * images, 1)
    figures.update(meter.read())
    return figures


def summarize(rounds: list[dict]) -> dict:
    """A scenario's figures over its rounds: medians of rates and percentiles, sums of counts,
    and the spread of req/s so a reader sees how steady the machine was."""
    ok = [r for r in rounds if "failed" not in r]
    if not ok:
        return {"failed": rounds[-1]["failed"] if rounds else "no rounds ran"}
    med = lambda key: statistics.median(r[key] for r in ok if key in r)  # noqa: E731
    out: dict[str, Any] = {
        "rounds": len(ok), "requests": sum(r["requests"] for r in ok), "ok": sum(r["ok"] for r in ok),
        "errors": sum(r["errors"] for r in ok), "seconds": round(sum(r["seconds"] for r in ok), 2),
        "rps": round(med("rps"), 1), "rps_min": min(r["rps"] for r in ok),
        "rps_max": max(r["rps"] for r in ok), "images_per_s": round(med("images_per_s"), 1),
        "p50_ms": med("p50_ms"), "p90_ms": med("p90_ms"), "p99_ms": med("p99_ms"),
        "loadgen_cpu": round(med("loadgen_cpu"), 2)}
    if all("server_cpu" in r for r in ok):
        for key in ("server_cpu", "core_others", "core_steal"):
            out[key] = round(med(key), 2)
        if out["server_cpu"]:  # throughput per second of server CPU: less noisy on a shared core
            out["rps_per_cpu_s"] = round(out["rps"] / out["server_cpu"], 1)
    if len(ok) < len(rounds):
        out["failed_rounds"] = [r["failed"] for r in rounds if "failed" in r]
    return out


def round_plan(args: argparse.Namespace, images: int) -> tuple[int, int]:
    """(rounds, whole seconds per round) for a scenario. A round of 64-image requests lasts at
    least 5 s (or the whole scenario when shorter): the slow servers take over a second per
    request at 8 connections, and a shorter round would end before most of them answer."""
    seconds = args.seconds / args.rounds
    if images > 1:
        seconds = max(seconds, min(5.0, args.seconds))
    seconds = max(1, round(seconds))  # wrk takes whole seconds
    return max(1, round(args.seconds / seconds)), seconds


def settle(server: Live, timeout: float = 30.0) -> None:
    """Wait until a server has worked off what the last round left queued (a slow server keeps
    answering requests the generator already gave up on), so that it does not eat into the
    next server's round on the same core."""
    deadline = time.monotonic() + timeout
    before = group_cpu_seconds(server.proc.pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = group_cpu_seconds(server.proc.pid)
        if now - before < 0.02:  # under 10% of the core: idle
            return
        before = now


def bench_all(targets: list[Target], files: dict[str, Path], work: Path, base: Path,
              args: argparse.Namespace) -> dict[str, dict]:
    """Start every server (each idles on the server core while another is measured), then run
    each scenario as `args.rounds` short rounds that alternate between the servers, so a slow
    spell of the shared machine lands on all of them instead of on whichever ran then."""
    results: dict[str, dict] = {}
    live: list[Live] = []
    try:
        for t in targets:
            if t.skipped:
                log(f"[{t.name}] skipped: {t.skipped}")
                results[t.name] = {"describe": t.describe, "skipped": t.skipped}
                continue
            try:
                if t.name == "mlflow":
                    prepare_mlflow(latest_version(base), work)
                server = launch(t, files, work, args)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                results[t.name] = {"describe": t.describe, "skipped": f"failed: {str(e).strip()[:1500]}"}
                log(f"[{t.name}] {results[t.name]['skipped']}")
                continue
            live.append(server)
            results[t.name] = server.result
        for server in live:
            if server.target.memory:
                memory_run(server, files, args)
        for name, protocol, images, conns in SCENARIOS:
            runners = [s for s in live if protocol == "rest" or s.target.grpc_port]
            rounds, seconds = round_plan(args, images)
            log(f"{name}: {rounds} rounds of {seconds}s across {len(runners)} servers")
            for r in range(rounds):
                for server in (runners if r % 2 == 0 else runners[::-1]):
                    if server.proc.poll() is not None:
                        continue
                    figures = one_round(server, files, protocol, images, conns, seconds)
                    server.result["rounds"].setdefault(name, []).append(figures)
                    settle(server)
            for server in runners:
                server.result["scenarios"][name] = summarize(server.result["rounds"].get(name, []))
        for server in live:
            server.result["rss_at_end_mib"] = round(group_rss_kib(server.proc.pid) / 1024, 1)
            if server.proc.poll() is not None:
                server.result["note"] = f"server exited during the run ({server.proc.returncode})"
    finally:
        for server in live:
            stop(server.proc)
    return results

"""Serving benchmark: mlserve's embedded server against what users run instead, in one run.

Every server under test is pinned to core 0 (`taskset -c 0`), every load generator to core 1
(`taskset -c 1`). Both load generators are written in C, so the client is never the limit:
`wrk` for REST, `h2load` (nghttp2-client) for gRPC; gRPC and REST are reported side by side.
All servers are up at once (idle while another is measured) and each scenario runs as short
rounds alternating between them, so a slow spell of the shared machine lands on every server;
figures are medians of the rounds. Prints a table and PASS/FAIL against the targets, and writes
everything to benchmarks/results/<date>.json.

Modules: targets (the servers), bodies (request bodies), checks (readiness, correct answers),
loadgen (wrk, h2load), procs (start/stop, CPU and memory), rounds (the run), report (table,
targets). Run it through benchmarks/run.sh (installs what it needs); `--help` for the options.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the harness's modules sit beside it (benchmarks/ is no package)
    sys.path.insert(0, str(HERE))

from bodies import write_bodies  # noqa: E402
from procs import stop_all  # noqa: E402
from report import grpc_vs_rest, loadavg, machine_state, render, targets_verdicts  # noqa: E402
from rounds import bench_all, log, round_plan  # noqa: E402
from targets import build_targets  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Serving benchmark: embedded server vs the alternatives.")
    p.add_argument("--long", action="store_true", help="30 s per scenario and a 60 s memory run")
    p.add_argument("--seconds", type=float, help="seconds per scenario (default 10, --long 30)")
    p.add_argument("--memory-seconds", type=float, help="memory run length (default = --seconds, --long 60)")
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds per scenario, alternating between the servers (default 5; each "
                        "round lasts --seconds / --rounds, at least 1 s)")
    p.add_argument("--only", help="comma-separated servers: embedded,embedded+batching,handwritten,"
                                  "handwritten-threads,canned-fastapi,mlflow")
    p.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    p.add_argument("--start-timeout", type=float, default=180.0)
    p.add_argument("--workdir", type=Path, default=HERE / ".work")
    p.add_argument("--results", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    args.seconds = args.seconds or (30.0 if args.long else 10.0)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    args.memory_seconds = args.memory_seconds or (60.0 if args.long else args.seconds)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status. Installs no signal handler (safe to call from
    a test): Ctrl-C arrives as KeyboardInterrupt, and every server started is stopped on the way
    out whatever happens (they also die with this process: PR_SET_PDEATHSIG)."""
    args = parse_args(argv)
    for tool, package in (("taskset", "util-linux"), ("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            log(f"error: `{tool}` not found; run benchmarks/run.sh or `apt-get install -y {package}`")
            return 2
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        stop_all()


def _run(args: argparse.Namespace, work: Path) -> int:
    import make_model

    base, how = make_model.make(work / "model")
    log(f"model: {base} ({how})")
    files = write_bodies(work)
    started = time.monotonic()
    results: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_state(),
        "seconds": args.seconds, "rounds": args.rounds, "memory_seconds": args.memory_seconds, "model": how,
        "load_generators": {"rest": "wrk", "grpc": "h2load"},
        "round_plan": "; ".join(f"{n} image{'s' if n > 1 else ''}: {r} x {sec}s"
                                for n in (1, 64) for r, sec in [round_plan(args, n)]),
        "body_bytes": {"rest_1img": files["rest_1"].stat().st_size,
                       "rest_64img": files["rest_64"].stat().st_size,
                       "grpc_1img": files["grpc_1"].stat().st_size,
                       "grpc_64img": files["grpc_64"].stat().st_size},
        "servers": {},
    }
    results["servers"] = bench_all(build_targets(base, work, args), files, work, base, args)
    results["loadavg_end"] = loadavg()
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    results["grpc_vs_rest"] = grpc_vs_rest(results)
    results["targets"] = targets_verdicts(results)
    print(render(results))
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"{dt.datetime.now():%Y-%m-%d-%H%M%S}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    log(f"results: {out} (wall {results['wall_seconds']}s)")
    return 0


def _terminate_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a script run like Ctrl-C: servers stopped on the way out


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)  # only when run as a script
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: every server started was stopped")
        sys.exit(130)

"""Batching set-ups of the embedded server under an open-loop sweep, and its prediction cache.

    python benchmarks/policies.py --model-base BASE [--out DIR] [-d 3] [--objective-ms 10]
        [--setup 'name=--flag --flag' ...] [--fractions 0.1,0.25,...] [--capacity R]
    python benchmarks/policies.py --cache --model-base BASE [--out DIR] [-d 3] [--repeats 0,0.5,0.95]

Sweep (default): each named set-up is a list of server flags (default: none = [], fixed =
[--enable_batching], adaptive = [--enable_batching --batching_policy=adaptive
--latency_objective_ms=10]). Each set-up's server is started in turn and its capacity measured
with a short closed loop (`mlserve bench -c 32`); the best capacity sets the rates, so every
set-up is offered the same ones: --fractions of it (10 % to 150 %). Then each server is started
again and swept open-loop (`mlserve bench --rate ... --save DIR/sweeps/NAME.json`). At the end:
DIR/policies.md (per rate and set-up: achieved, p50, p99, objective held) and DIR/p99.png
(`mlserve bench --plot DIR/sweeps/*.json --objective-ms 10`), printed on stdout too.

--cache: the capacity of the server without a cache first (repeat 0, the figure to beat), then the
server with --cache-flags (default --prediction_cache_bytes=64000000) swept at 50 %, 100 %, 150 %,
200 % of that capacity with each --repeats fraction of repeated inputs (`bench --repeat F`), and
the uncached server at repeat 0 beside them. Table: per fraction, the best achieved req/s and the
p99 at 100 % of the uncached capacity. DIR/cache.md and DIR/cache-p99.png.

A set-up whose server does not start (a flag this build lacks) is skipped with its log's last
line. Server on core 0, load generator on core 1 (procs); only 127.0.0.1; every level bounded by
-d seconds, every request by --timeout, every server start by --start-timeout.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the harness's modules sit beside it (benchmarks/ is no package)
    sys.path.insert(0, str(HERE))

from bodies import MODEL_NAME, ROOT  # noqa: E402
from checks import tf_serving_available, wait_until  # noqa: E402
from h2load_grpc import embedded_target  # noqa: E402
from procs import LOADGEN_CORE, start, stop, tail  # noqa: E402

SETUPS = {
    "none": [],
    "fixed": ["--enable_batching"],
    "adaptive": ["--enable_batching", "--batching_policy=adaptive", "--latency_objective_ms=10"],
}
FRACTIONS = (0.10, 0.25, 0.50, 0.75, 0.90, 1.00, 1.20, 1.50)
CACHE_FRACTIONS = (0.5, 1.0, 1.5, 2.0)
CACHE_FLAGS = "--prediction_cache_bytes=64000000"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class SetupStartError(Exception):
    """A set-up whose server did not start."""


class Server:
    """One embedded server with a set-up's flags, pinned to the server core, for a `with` block."""

    def __init__(self, name: str, flags: list[str], args: argparse.Namespace, work: Path) -> None:
        self.name, self.flags, self.args, self.work = name, flags, args, work

    def __enter__(self) -> Server:
        self.target = embedded_target(Path(self.args.model_base).resolve(), self.flags, self.args.pythonpath)
        logfile = self.work / f"{self.name}-{time.monotonic_ns()}.log"
        log(f"[{self.name}] starting python -m mlserve.server {' '.join(self.flags)}")
        self.proc = start(self.target.argv, logfile, env=self.target.env, cwd=self.work)
        try:
            wait_until(self.proc, logfile, lambda: tf_serving_available(self.target.rest_port),
                       timeout=self.args.start_timeout)
        except RuntimeError as e:
            stop(self.proc)
            lines = [line.strip() for line in tail(logfile, 8).splitlines() if line.strip()]
            why = [line for line in lines if line.lower().startswith(("error", "fatal"))] or lines or ["no log"]
            raise SetupStartError(f"its server did not start ({str(e).splitlines()[0].rstrip(':')}): "
                                  f"{why[-1]}") from e
        self.url = f"http://127.0.0.1:{self.target.rest_port}"
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.proc)


def bench(url: str, args: argparse.Namespace, *options: str, timeout: float) -> dict:
    """`mlserve bench --url URL --model digits_model OPTIONS --json` on the load-generator core."""
    env = dict(os.environ, PYTHONPATH=args.pythonpath, TF_CPP_MIN_LOG_LEVEL="2")
    argv = ["taskset", "-c", LOADGEN_CORE, sys.executable, "-m", "mlserve", "bench", "--url", url,
            "--model", MODEL_NAME, "--timeout", str(args.timeout), *options, "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"mlserve bench exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout)


def capacity(server: Server, args: argparse.Namespace) -> float:
    """Answers per second of a short closed loop at 32 in flight, after a warm-up."""
    report = bench(server.url, args, "-c", "32", "--duration", str(args.capacity_seconds),
                   "--warmup", str(args.capacity_warmup), timeout=args.capacity_seconds + args.capacity_warmup + 60)
    level = report["levels"][0]
    log(f"[{server.name}] capacity {level['requests_per_s']:.0f} req/s (closed loop, 32 in flight, "
        f"p99 {level['p99_ms']:.1f} ms, {level['errors']} errors)")
    return float(level["requests_per_s"])


def sweep(server: Server, rates: list[int], args: argparse.Namespace, save: Path, label: str,
          repeat: float = 1.0) -> dict:
    """One open-loop level per rate against `server`, saved under `label`."""
    log(f"[{label}] open loop at {','.join(map(str, rates))} req/s, {args.seconds:g} s each, "
        f"repeat {repeat:g}")
    return bench(server.url, args, "--rate", ",".join(map(str, rates)), "--duration", str(args.seconds),
                 "--connections", str(args.connections), "--max-inflight", str(args.max_inflight),
                 "--repeat", str(repeat), "--save", str(save), "--sweep-label", label,
                 timeout=len(rates) * (args.seconds + args.timeout + 5) + 60)


def overlay(saved: list[Path], out: Path, objective_ms: float | None, args: argparse.Namespace) -> dict:
    """`mlserve bench --plot SAVED... [--objective-ms MS] --plot-file OUT --json`."""
    env = dict(os.environ, PYTHONPATH=args.pythonpath)
    argv = [sys.executable, "-m", "mlserve", "bench", "--plot", *map(str, saved), "--plot-file", str(out),
            "--json", *(["--objective-ms", f"{objective_ms:g}"] if objective_ms else [])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"mlserve bench --plot exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout)


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def policies_table(report: dict, labels: list[str], objective_ms: float) -> str:
    """Markdown: one row per offered rate, per set-up its achieved rate, p50, p99 and objective."""
    by = {(row["label"], row["rate"]): row for row in report["levels"]}
    rates = sorted({row["rate"] for row in report["levels"]})
    head = ["offered req/s"] + [f"{name} {col}" for name in labels
                                for col in ("achieved", "p50 ms", "p99 ms", f"p99 <= {objective_ms:g} ms")]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for rate in rates:
        cells = [f"{rate:.0f}"]
        for name in labels:
            row = by.get((name, rate))
            if row is None:
                cells += ["-"] * 4
                continue
            lost = f" ({row['drops']} dropped)" if row["drops"] else ""
            cells += [f"{row['achieved_per_s'] or 0:.0f}{lost}", ms(row["p50_ms"]), ms(row["p99_ms"]),
                      "yes" if row["objective_held"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_policies(args: argparse.Namespace, out: Path, work: Path) -> int:
    setups = parse_setups(args.setup) if args.setup else SETUPS
    skipped: dict[str, str] = {}
    capacities: dict[str, float] = {}
    if args.capacity:
        capacities = {"given": args.capacity}
    else:
        for name, flags in setups.items():
            try:
                with Server(name, flags, args, work) as server:
                    capacities[name] = capacity(server, args)
            except SetupStartError as e:
                skipped[name] = str(e)
                log(f"[{name}] skipped: {e}")
    if not capacities:
        log("no set-up started: nothing to sweep")
        return 1
    best = max(capacities.values())
    rates = sorted({max(1, round(f * best)) for f in args.fractions})
    log(f"capacity {best:.0f} req/s (best of {', '.join(f'{k} {v:.0f}' for k, v in capacities.items())}); "
        f"rates {rates}")
    saved: list[Path] = []
    for name, flags in setups.items():
        if name in skipped:
            continue
        try:
            with Server(name, flags, args, work) as server:
                sweep(server, rates, args, out / "sweeps" / f"{name}.json", name)
                saved.append(out / "sweeps" / f"{name}.json")
        except SetupStartError as e:
            skipped[name] = str(e)
            log(f"[{name}] skipped: {e}")
    if not saved:
        return 1
    report = overlay(saved, out / "p99.png", args.objective_ms, args)
    labels = report["sweeps"]
    text = (f"Open-loop sweep of the embedded server ({MODEL_NAME}, batch 1, v1 REST), "
            f"{args.seconds:g} s per rate, {args.connections} connections, at most {args.max_inflight} "
            f"in flight; server on core {0}, generator on core {LOADGEN_CORE}. Capacity (closed loop, "
            f"32 in flight): {', '.join(f'{k} {v:.0f} req/s' for k, v in capacities.items())}; rates are "
            f"{', '.join(f'{f:.0%}' for f in args.fractions)} of {best:.0f}. p99 from each scheduled send; "
            f"\"held\" means p99 within {args.objective_ms:g} ms with nothing dropped or failed.\n\n"
            + policies_table(report, labels, args.objective_ms)
            + "".join(f"\nSkipped {name}: {why}\n" for name, why in skipped.items()))
    (out / "policies.md").write_text(text)
    print(text)
    print(f"Table: {out / 'policies.md'}")
    print(f"Plot: {report['plot']}")
    return 0


def run_cache(args: argparse.Namespace, out: Path, work: Path) -> int:
    base_flags = shlex.split(args.cache_base_flags)
    cache_flags = base_flags + shlex.split(args.cache_flags)
    saved: list[Path] = []
    try:
        with Server("no-cache", base_flags, args, work) as server:
            best = args.capacity or capacity(server, args)
            rates = sorted({max(1, round(f * best)) for f in CACHE_FRACTIONS})
            sweep(server, rates, args, out / "sweeps" / "no-cache.json", "no cache, repeat 0%", repeat=0.0)
            saved.append(out / "sweeps" / "no-cache.json")
    except SetupStartError as e:
        log(f"[no-cache] skipped: {e}")
        return 1
    skipped = ""
    try:
        with Server("cache", cache_flags, args, work) as server:
            for repeat in args.repeats:
                path = out / "sweeps" / f"cache-repeat-{round(repeat * 100)}.json"
                sweep(server, rates, args, path, f"cache, repeat {repeat:.0%}", repeat=repeat)
                saved.append(path)
    except SetupStartError as e:
        skipped = f"\nSkipped the cache ({args.cache_flags}): {e}\n"
        log(f"[cache] skipped: {e}")
    report = overlay(saved, out / "cache-p99.png", None, args)
    nearest = min(rates, key=lambda r: abs(r - best))
    lines = [f"| set-up | best achieved req/s | p99 ms at {nearest} req/s | drops at {nearest} req/s |",
             "| --- | --- | --- | --- |"]
    for label in report["sweeps"]:
        rows = [r for r in report["levels"] if r["label"] == label]
        at = min(rows, key=lambda r: abs(r["rate"] - best))
        top = max((r["achieved_per_s"] or 0 for r in rows), default=0)
        lines.append(f"| {label} | {top:.0f} | {ms(at['p99_ms'])} | {at['drops']} |")
    text = (f"The prediction cache ({args.cache_flags}) against the same server without it: open loop at "
            f"{', '.join(map(str, rates))} req/s ({', '.join(f'{f:.0%}' for f in CACHE_FRACTIONS)} of the "
            f"uncached capacity {best:.0f} req/s), {args.seconds:g} s each; repeat F = the fraction of "
            f"requests repeating an input already sent (`mlserve bench --repeat F`).\n\n"
            + "\n".join(lines) + "\n" + skipped)
    (out / "cache.md").write_text(text)
    print(text)
    print(f"Table: {out / 'cache.md'}")
    print(f"Plot: {report['plot']}")
    return 0


def parse_setups(items: list[str]) -> dict[str, list[str]]:
    """`--setup 'name=--flag --flag'` (repeatable) as {name: flags}."""
    setups = {}
    for item in items:
        name, sep, flags = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--setup takes NAME=FLAGS, got {item!r}")
        setups[name.strip()] = shlex.split(flags)
    return setups


def fractions(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or any(not 0 < v <= 10 for v in values):
        raise argparse.ArgumentTypeError(f"fractions of capacity in (0, 10], got {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-base", required=True, help="from `python benchmarks/make_model.py DIR`")
    parser.add_argument("--out", type=Path, default=None, help="where sweeps, tables and plots go "
                                                               "(default: a new temporary folder)")
    parser.add_argument("--setup", action="append", metavar="NAME=FLAGS",
                        help="a named set-up of server flags, repeatable (default: none, fixed, adaptive)")
    parser.add_argument("--fractions", type=fractions, default=list(FRACTIONS),
                        help="rates as fractions of the measured capacity (default 0.1,...,1.5)")
    parser.add_argument("--capacity", type=float, default=None, help="skip measuring: this many req/s")
    parser.add_argument("--objective-ms", type=float, default=10.0)
    parser.add_argument("-d", "--seconds", type=float, default=3.0, help="seconds per rate (default 3)")
    parser.add_argument("--capacity-seconds", type=float, default=3.0)
    parser.add_argument("--capacity-warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-inflight", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--start-timeout", type=float, default=180.0)
    parser.add_argument("--pythonpath", default=str(ROOT), help="the tree server and generator run from")
    parser.add_argument("--cache", action="store_true", help="measure the prediction cache instead")
    parser.add_argument("--cache-flags", default=CACHE_FLAGS, help=f"flags that turn the cache on ({CACHE_FLAGS})")
    parser.add_argument("--cache-base-flags", default="", help="flags of both cache runs' servers")
    parser.add_argument("--repeats", type=lambda t: [float(v) for v in t.split(",")], default=[0.0, 0.5, 0.95])
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= 60 or not 0 < args.capacity_seconds <= 60 or not 0 <= args.capacity_warmup <= 60:
        parser.error("-d, --capacity-seconds and --capacity-warmup are bounded to 60 seconds")
    if any(not 0 <= r <= 1 for r in args.repeats):
        parser.error("--repeats are fractions from 0 to 1")
    out = (args.out or Path(tempfile.mkdtemp(prefix="bench-policies-"))).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-policies-work-") as tmp:
        return (run_cache if args.cache else run_policies)(args, out, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())

"""`mlserve plan`: size a deployment from measured latency and throughput: replicas, headroom, cost."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from mlserve.cli import options, output


def plan(
    rps: float = typer.Option(..., "--rps", help="Target requests per second, all replicas together."),
    p99_ms: float = typer.Option(..., "--p99-ms", help="Latency SLO: p99 in milliseconds."),
    bench_json: Optional[Path] = typer.Option(
        None, "--bench-json", help="Figures from `mlserve bench --json` (default: run the bench now)."),
    price_per_hour: Optional[float] = typer.Option(
        None, "--price-per-hour", help="Price of one replica's machine per hour: adds the costs."),
    headroom: float = typer.Option(0.25, "--headroom", help="Share of each replica's measured capacity kept spare."),
    peak_factor: float = typer.Option(2.0, "--peak-factor", help="Autoscaler maximum: room for this x the target rate."),
    concurrency: str = typer.Option("1,4,8,16,32", "--concurrency", "-c",
                                    help="Levels to measure when the bench runs now."),
    rate: Optional[str] = typer.Option(
        None, "--rate", help="Measure these open-loop arrival rates now (`mlserve bench --rate`) and size "
                             "from the highest whose p99 meets the SLO with no drops or errors."),
    duration: float = typer.Option(5.0, "--duration", help="Seconds per level when the bench runs now."),
    url: options.Url = None,
    grpc: options.Grpc = False,
    model: options.Model = None,
    json_: options.Json = False,
) -> None:
    """Size a deployment for --rps with p99 under --p99-ms, from one machine's measured levels.

    Picks the level with the most requests/s whose p99 meets the SLO without errors, keeps
    --headroom of it spare, and answers replicas, per-replica concurrency, headroom and the cost
    per hour, month and million predictions, with the arithmetic in one table. `--json` output
    feeds `mlserve deploy ... --plan`. With --rate (or a --bench-json of `mlserve bench --rate`),
    one replica's capacity is the highest arrival rate that met the SLO, kept up, and dropped nothing.
    """
    from mlserve.errors import UsageError
    from mlserve.tools import plan as core

    if rate is not None and bench_json is not None:
        raise UsageError("--rate measures now, --bench-json reads a measurement: give one",
                         hint="save a sweep with `mlserve bench --rate 200,400,800 --json > sweep.json`, "
                              "then `mlserve plan --bench-json sweep.json ...`")
    if rate is not None and grpc:
        raise UsageError("--rate (open loop) drives REST only", hint="drop --grpc, or use --concurrency")
    if bench_json is not None:
        bench, source = core.read_bench(bench_json), bench_json.name
    elif rate is not None:
        from mlserve.bench.openloop import parse_rates

        parse_rates(rate)  # a bad list fails here, before the bench starts
        bench = _bench_now(None, duration, url, grpc, model, rate=rate)
        source = "mlserve bench --rate (run now)"
    else:
        bench, source = _bench_now(concurrency, duration, url, grpc, model), "mlserve bench (run now)"
    result = core.make_plan(bench, rps=rps, p99_ms=p99_ms, headroom=headroom, peak_factor=peak_factor,
                            price_per_hour=price_per_hour, source=source)
    if json_:
        output.print_json(result.as_dict())
        return
    from rich.table import Table

    output.out.print(f"Plan for {rps:g} req/s at p99 <= {p99_ms:g} ms from {source}"
                     + (f" ({result.model}, batch {result.batch_size})" if result.model else ""),
                     markup=False)
    table = Table("quantity", "arithmetic", "value")
    for row in core.explain(result):
        table.add_row(*row)
    output.out.print(table)
    capacity = (f"{result.level_rps:g} req/s per replica (open loop)" if result.basis == "rate"
                else f"at most {result.concurrency} requests in flight per replica")
    output.out.print(f"=> {result.replicas} replicas (autoscale {result.min_replicas}..{result.max_replicas}), "
                     f"{capacity}, headroom {result.headroom:.0%}"
                     + (f", {result.cost_per_hour:.2f}/hour" if result.cost_per_hour is not None else ""),
                     markup=False)


def _bench_now(concurrency: Optional[str], duration: float, url: Optional[str], grpc: bool,
               model: Optional[str], rate: Optional[str] = None) -> dict[str, Any]:
    """Run `mlserve bench --json` itself (its progress shows on stderr) and read its figures:
    closed-loop levels (`-c`), or an open-loop sweep with `rate`."""
    from mlserve.errors import DataError, MlserveError

    load = ["--rate", rate] if rate is not None else ["-c", str(concurrency)]
    argv = [sys.executable, "-m", "mlserve", "bench", "--json", *load, "--duration", str(duration)]
    argv += ["--url", url] if url else []
    argv += ["--grpc"] if grpc else []
    argv += ["--model", model] if model else []
    output.info("Measuring with: mlserve " + " ".join(argv[3:]))
    done = subprocess.run(argv, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        error = MlserveError("`mlserve bench` failed, so there is nothing to plan from",
                             hint="start a server (`mlserve serve`) or give --bench-json FILE")
        error.exit_code = done.returncode if 0 < done.returncode < 128 else error.exit_code
        raise error
    try:
        return json.loads(done.stdout)
    except ValueError as e:
        raise DataError(f"`mlserve bench --json` printed no JSON: {e}") from e


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)

"""`mlserve bench`: bounded load against a model server; latency percentiles, throughput and cost."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mlserve import settings
from mlserve.cli import options, output


def bench(
    sweeps: Optional[list[Path]] = typer.Argument(
        None, metavar="[SWEEP.json]...", show_default=False,
        help="With --plot: draw these saved sweeps (--rate --save) as p99 against arrival rate, "
             "one line each, instead of running a load."),
    concurrency: str = typer.Option("1,8,32", "--concurrency", "-c",
                                    help="Comma-separated levels of requests in flight."),
    duration: options.Duration = None,
    requests: options.Requests = None,
    batch_size: int = typer.Option(1, "--batch-size", "-b", help="Images per request."),
    warmup: float = typer.Option(1.0, "--warmup", help="Seconds of unmeasured load before each level."),
    url: options.Url = None,
    grpc: options.Grpc = False,
    grpc_server: options.GrpcServer = None,
    model: options.Model = None,
    version: options.Version = None,
    label: options.Label = None,
    signature: options.Signature = "serving_default",
    columnar: options.Columnar = False,
    protocol: options.Protocol = "v1",
    binary: options.Binary = False,
    timeout: options.Timeout = None,
    data: options.Data = None,
    price_per_hour: Optional[float] = typer.Option(
        None, "--price-per-hour", help="Machine price per hour: adds the cost of a million predictions."),
    json_: options.Json = False,
    plot: bool = typer.Option(False, "--plot", help="Save latency and throughput charts as PNG."),
    plot_file: Optional[Path] = typer.Option(
        None, "--plot-file", help="Where --plot writes (default: <home>/plots/bench-<time>.png)."),
    self_test: bool = typer.Option(False, "--self-test",
                                   help="Measure the load generator's own ceiling against a canned server."),
    rate: Optional[str] = typer.Option(
        None, "--rate", help="Open loop: comma-separated arrival rates (req/s), sent whether or not "
                             "answers come back; latency from each scheduled send time."),
    arrival: str = typer.Option("poisson", "--arrival", help="Open-loop arrivals: poisson or constant."),
    connections: int = typer.Option(16, "--connections", help="Open-loop keep-alive connections."),
    max_inflight: int = typer.Option(256, "--max-inflight",
                                     help="Open loop: requests in flight at most; one due beyond it is "
                                          "dropped (counted), never queued."),
    repeat: Optional[float] = typer.Option(
        None, "--repeat", metavar="F", show_default=False,
        help="Open loop: the fraction (0 to 1) of requests that repeat an input already sent; the "
             "rest carry fresh, distinct inputs. Default 1: one body every time."),
    save: Optional[Path] = typer.Option(
        None, "--save", metavar="FILE", help="Open loop: save the sweep (the --json document, labelled) "
                                             "for `mlserve bench --plot FILE...`."),
    sweep_label: Optional[str] = typer.Option(
        None, "--sweep-label", metavar="NAME", help="The label --save gives the sweep (default: the file's name)."),
    objective_ms: Optional[float] = typer.Option(
        None, "--objective-ms", metavar="MS", help="With saved sweeps: draw this latency objective "
                                                   "and say which levels held it."),
) -> None:
    """Load a model server with bounded, concurrent predict requests and report per level:
    requests/s, images/s, p50/p90/p99/max latency and errors (never folded into the figures).

    Runs a warm-up before each level and shows progress on stderr. --self-test runs the same load
    against a built-in server that does no work, to show the generator's own ceiling.
    """
    from mlserve import bench as core
    from mlserve.client import ModelTarget
    from mlserve.errors import UsageError

    if plot_file is not None:
        plot = True
    if sweeps:
        if not plot or rate is not None:
            raise UsageError("saved sweeps are drawn, not run: give them with --plot and no --rate",
                             hint="mlserve bench --plot sweeps/*.json --objective-ms 10")
        _plot_sweeps(sweeps, objective_ms, plot_file, json_)
        return
    if objective_ms is not None:
        raise UsageError("--objective-ms goes with saved sweeps to draw",
                         hint="mlserve bench --plot sweeps/*.json --objective-ms 10")
    if rate is None:
        for name, given in (("--repeat", repeat is not None), ("--save", save is not None),
                            ("--sweep-label", sweep_label is not None)):
            if given:
                raise UsageError(f"{name} is the open loop's (--rate)",
                                 hint="e.g. mlserve bench --rate 100,200 --repeat 0.5 --save sweep.json")
    elif sweep_label is not None and save is None:
        raise UsageError("--sweep-label names a saved sweep", hint="add --save FILE")
    if rate is not None:
        if grpc:
            from mlserve.errors import UsageError
            raise UsageError("--rate (open loop) drives REST only", hint="drop --grpc, or use --concurrency")
        if binary and protocol != "v2":
            from mlserve.errors import UsageError
            raise UsageError("--binary is the v2 protocol's binary tensor extension",
                             hint="add --protocol v2")
        _open_loop(rate, arrival, connections, duration or 3.0, batch_size, url, model, version,
                   label, signature, columnar, timeout, data, json_, self_test, max_inflight,
                   plot_file if plot else None, plot, protocol, binary,
                   1.0 if repeat is None else repeat, save, sweep_label)
        return
    if duration is None and requests is None:
        duration = 5.0
    if self_test:
        warmup = min(warmup, 0.5)
    # Every bound checked before any work (the data set, the server, the canned server).
    load = core.LoadPlan(tuple(core.parse_levels(concurrency)), duration, requests, warmup, batch_size)
    if price_per_hour is not None and price_per_hour < 0:
        raise UsageError("--price-per-hour cannot be negative")

    def measured(level: core.BenchLevel) -> None:
        output.err.print(f"Measured concurrency {level.concurrency}: {_rate(level.requests_per_s)} "
                         f"req/s, p50 {level.p50_ms or 0:.2f} ms, {level.errors} errors",
                         markup=False, highlight=False, soft_wrap=True)

    with _Progress() as progress:
        if self_test:
            report = core.self_test(concurrency=load.levels, duration=load.duration or 2.0,
                                    batch_size=batch_size, warmup=load.warmup,
                                    price_per_hour=price_per_hour, progress=progress,
                                    on_level=measured)
        else:
            from mlserve.model import inputs

            images = _images(inputs, batch_size, data)
            target = ModelTarget(settings.get("model_name", model), version=version, label=label,
                                 signature=signature)
            report = core.run_bench(
                images, target, transport="grpc" if grpc else "rest", url=settings.get("url", url),
                grpc_server=settings.get("grpc_server", grpc_server), concurrency=load.levels,
                duration=load.duration, requests=load.requests, warmup=load.warmup,
                timeout=settings.get("timeout", timeout), columnar=columnar,
                price_per_hour=price_per_hour, progress=progress, on_level=measured,
                protocol=protocol, binary=binary)

    if json_:
        output.print_json(report.as_dict() | {"self_test": self_test})
    else:
        _print_report(report, self_test)
    if report.interrupted:
        # Ctrl-C: the levels measured so far are above; no plot of a cut-short run.
        output.err.print(f"Interrupted: {len(report.levels)} of {len(load.levels)} levels measured.",
                         markup=False, highlight=False)
        raise typer.Exit(130)

    if plot:
        from mlserve.tools.plots import plot_bench
        from mlserve.workspace import Workspace

        path = plot_file or Workspace.current().plots_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.png"
        title = f"{report.model} via {report.transport} at {report.address}, batch {report.batch_size}"
        written = plot_bench([lv.as_dict() for lv in report.levels], path, title=title)
        (output.err if json_ else output.out).print(f"Plot: {written}", soft_wrap=True, markup=False)


def _open_loop(rate: str, arrival: str, connections: int, duration: float, batch_size: int,
               url, model, version, label, signature, columnar, timeout, data, json_: bool,
               self_test: bool, max_inflight: int = 256, plot_file: Optional[Path] = None,
               plot: bool = False, protocol: str = "v1", binary: bool = False, repeat: float = 1.0,
               save: Optional[Path] = None, sweep_label: Optional[str] = None) -> None:
    """`--rate`: one open-loop level per arrival rate, REST only."""
    from mlserve.bench import bodies, openloop
    from mlserve.bench.canned import CannedServer
    from mlserve.client import ModelTarget
    from mlserve.client.rest import model_path, predict_body

    rates = openloop.parse_rates(rate)
    bodies.parse_repeat(repeat)
    if arrival not in openloop.ARRIVALS:
        from mlserve.errors import UsageError
        raise UsageError(f"--arrival must be one of {', '.join(openloop.ARRIVALS)}, got {arrival!r}",
                         hint="use --arrival poisson or --arrival constant")
    if not 1 <= max_inflight <= 1_000_000:
        from mlserve.errors import UsageError
        raise UsageError(f"--max-inflight must be 1..1000000, got {max_inflight}",
                         hint="e.g. --max-inflight 256")

    def run(target_url: str, images, target) -> list:
        output.err.print(f"Open loop: {len(rates)} rates x {duration:g} s ({arrival}), "
                         f"repeat {repeat:.0%}", markup=False, highlight=False)
        path, headers = model_path(target) + ":predict", None

        def encode(im) -> bytes:
            return predict_body(im, target.signature, columnar)

        text = True
        if protocol == "v2" and not self_test:
            path, encode, headers = _v2_request(target_url, target, images, binary)
            text = not binary
        body = encode(images) if repeat >= 1.0 else bodies.BodyTemplate.build(encode, images, text=text)
        return openloop.run_open_loop(
            target_url, path, body, rates=rates, duration=duration, arrival=arrival,
            connections=connections, max_in_flight=max_inflight,
            timeout=settings.get("timeout", timeout) or 10.0, headers=headers, repeat=repeat)

    if self_test:
        import numpy as np

        target = ModelTarget("canned")
        with CannedServer(batch_size) as server:
            levels = run(server.url, np.zeros((batch_size, 28, 28, 1), dtype=np.float32), target)
            where = server.url
    else:
        from mlserve.model import inputs

        target = ModelTarget(settings.get("model_name", model), version=version, label=label,
                             signature=signature)
        where = settings.get("url", url)
        levels = run(where, _images(inputs, batch_size, data), target)
    document = {"open_loop": True, "self_test": self_test, "address": where,
                "model": target.describe(), "arrival": arrival, "connections": connections,
                "max_inflight": max_inflight, "repeat": repeat, "protocol": protocol,
                "binary": binary, "batch_size": batch_size, "duration_s": duration,
                "levels": [lv.as_dict() for lv in levels]}
    if json_:
        output.print_json(document)
    else:
        _print_open_loop(levels, arrival, target, where, connections, max_inflight, repeat)
    if save is not None:
        from mlserve.bench.sweeps import save_sweep

        saved = save_sweep(save, document, label=sweep_label)
        (output.err if json_ else output.out).print(f"Saved: {saved}", soft_wrap=True, markup=False)
    if plot:
        from mlserve.tools.plots import plot_open_loop
        from mlserve.workspace import Workspace

        path = plot_file or Workspace.current().plots_dir / f"bench-rate-{time.strftime('%Y%m%d-%H%M%S')}.png"
        written = plot_open_loop([lv.as_dict() for lv in levels], path,
                                 title=f"open loop ({arrival}) against {target.describe()} at {where}")
        (output.err if json_ else output.out).print(f"Plot: {written}", soft_wrap=True, markup=False)


def _v2_request(url: str, target, images, binary: bool):
    """The v2 (KServe) infer call the open loop sends: path, body encoder and (binary) headers.

    One infer goes first through the ordinary v2 client, so an unknown model fails at once.
    """
    import numpy as np

    from mlserve.client import connect, v2

    client = connect(target, transport="rest", url=url, protocol="v2", binary=binary)
    try:
        client.predict(images)
        input_name, output_name = client.input_name, client.output_name
    finally:
        client.close()

    def encode(im) -> bytes:
        return v2.infer_body({input_name: np.ascontiguousarray(im, dtype=np.float32)},
                             binary=binary, outputs=[output_name])[0]

    _, headers = v2.infer_body({input_name: np.ascontiguousarray(images, dtype=np.float32)},
                               binary=binary, outputs=[output_name])
    return v2.model_path(target) + "/infer", encode, headers or None


def _plot_sweeps(paths: list[Path], objective_ms: Optional[float], plot_file: Optional[Path],
                 json_: bool) -> None:
    """`bench --plot SWEEP.json...`: saved sweeps' p99 against arrival rate on one chart."""
    from mlserve.bench.sweeps import load_sweep, objective_held
    from mlserve.errors import UsageError

    if objective_ms is not None and not 0 < objective_ms <= 3_600_000:
        raise UsageError(f"--objective-ms must be above 0, got {objective_ms:g}", hint="e.g. --objective-ms 10")
    loaded = [load_sweep(p) for p in paths]
    from mlserve.tools.plots import plot_sweeps
    from mlserve.workspace import Workspace

    path = plot_file or Workspace.current().plots_dir / f"bench-sweeps-{time.strftime('%Y%m%d-%H%M%S')}.png"
    title = "p99 against arrival rate" + (f", objective {objective_ms:g} ms" if objective_ms else "")
    written = plot_sweeps([(s.label, s.levels) for s in loaded], path, objective_ms=objective_ms,
                          title=title)
    rows = [{"label": s.label, "file": str(s.path), "rate": lv["rate"],
             "achieved_per_s": lv.get("achieved_per_s"), "p50_ms": lv.get("p50_ms"),
             "p99_ms": lv.get("p99_ms"), "drops": lv.get("drops", 0), "errors": lv.get("errors", 0),
             "repeat_fraction": lv.get("repeat_fraction"),
             **({"objective_held": objective_held(lv, objective_ms)} if objective_ms is not None else {})}
            for s in loaded for lv in s.levels]
    if json_:
        output.print_json({"sweeps": [s.label for s in loaded], "objective_ms": objective_ms,
                           "plot": str(written), "levels": rows})
        return
    from rich.table import Table

    def ms(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    columns = ["label", "rate", "achieved", "p50", "p99", "drops", "err"]
    if objective_ms is not None:
        columns.append(f"p99 <= {objective_ms:g} ms")
    table = Table(*columns)
    for row in rows:
        cells = [row["label"], _rate(row["rate"]), _rate(row["achieved_per_s"] or 0.0),
                 ms(row["p50_ms"]), ms(row["p99_ms"]), str(row["drops"]), str(row["errors"])]
        if objective_ms is not None:
            cells.append("yes" if row["objective_held"] else "no")
        table.add_row(*cells)
    output.out.print(table)
    output.out.print(f"Plot: {written}", soft_wrap=True, markup=False)


def _print_open_loop(levels: list, arrival: str, target, where: str, connections: int,
                     max_inflight: int, repeat: float = 1.0) -> None:
    from rich.table import Table

    def ms(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    output.out.print(f"open loop ({arrival}) against {target.describe()} at {where}, "
                     f"{connections} connections, at most {max_inflight} in flight, "
                     f"{repeat:.0%} of requests repeating an input; latency in ms from each scheduled send")
    table = Table("rate", "achieved", "p50", "p99", "p99.9", "max", "ok", "err", "drops", "repeat")
    for lv in levels:
        table.add_row(_rate(lv.rate), _rate(lv.achieved_per_s), ms(lv.p50_ms), ms(lv.p99_ms),
                      ms(lv.p999_ms), ms(lv.max_ms), str(lv.ok), str(lv.errors), str(lv.drops),
                      "-" if lv.repeat_fraction is None else f"{lv.repeat_fraction:.0%}")
    output.out.print(table)
    for lv in levels:
        for message in lv.error_messages:
            output.out.print(f"errors at rate {_rate(lv.rate)}: {message}", soft_wrap=True, markup=False)


def _images(inputs, batch_size: int, data: Optional[str]):
    """`batch_size` test digits (repeated when the split is smaller)."""
    import numpy as np

    from mlserve.model.data import load_mnist

    x = load_mnist(data, allow_download=False).x_test
    picks = np.arange(batch_size) % len(x)
    return inputs.validate_images(x[picks], "test split")


class _Progress:
    """A rich progress bar on stderr, fed by the load generator's progress callback."""

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                            TextColumn("{task.fields[done]:>8} requests"), TimeElapsedColumn(),
                            console=output.err, transient=True, refresh_per_second=4)
        self.bar.__enter__()
        self.tasks: dict[str, int] = {}

        def update(phase: str, fraction: float, done: int) -> None:
            if phase not in self.tasks:
                self.tasks[phase] = self.bar.add_task(phase, total=1.0, done=0)
            self.bar.update(self.tasks[phase], completed=fraction, done=done)

        return update

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)


def _print_report(report, self_test: bool) -> None:
    from rich.table import Table

    def ms(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    what = "load generator self-test (canned server, no model)" if self_test else report.model
    output.out.print(f"{what} via {report.transport} at {report.address}, "
                     f"batch {report.batch_size}, warm-up {report.warmup_s:g} s per level")
    output.out.print("latencies in ms; errors are counted apart from the figures"
                     + ("; $/1M = cost of a million predictions" if report.price_per_hour is not None else ""))
    columns = ["conc", "req/s", "img/s", "p50", "p90", "p99", "max", "ok", "err"]
    if report.price_per_hour is not None:
        columns.append("$/1M")
    table = Table(*columns)
    for lv in report.levels:
        row = [str(lv.concurrency), _rate(lv.requests_per_s), _rate(lv.images_per_s),
               ms(lv.p50_ms), ms(lv.p90_ms), ms(lv.p99_ms), ms(lv.max_ms), str(lv.requests),
               f"[red]{lv.errors}[/red]" if lv.errors else "0"]
        if report.price_per_hour is not None:
            row.append("-" if lv.cost_per_million is None else f"{lv.cost_per_million:.3g}")
        table.add_row(*row)
    output.out.print(table)
    for lv in report.levels:
        for message in lv.error_messages:
            output.out.print(f"[red]errors at concurrency {lv.concurrency}:[/red] {message}",
                             soft_wrap=True)


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)

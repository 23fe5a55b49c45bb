"""`mlserve compare`: a model's SavedModel and TFLite formats side by side (size, accuracy, speed, memory)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from mlserve import settings
from mlserve.cli import output


def compare(
    version: Optional[str] = typer.Option(None, "--version", metavar="N", help="Version to compare (default: latest)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model name (env: MLSERVE_MODEL_NAME)."),
    model_base_path: Optional[Path] = typer.Option(
        None, "--model-base-path", help="Folder of numbered versions (default: <home>/models/<model-name>)."),
    formats: Optional[str] = typer.Option(
        None, "--formats", help="Comma-separated subset of savedmodel,float32,float16,dynamic,int8."),
    iterations: int = typer.Option(200, "--iterations", help="In-process calls timed at batch 1 (batch 64: 1/8)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Skip the embedded-server figures."),
    duration: float = typer.Option(2.0, "--duration", help="Seconds of load per served level (1 and --connections)."),
    connections: int = typer.Option(8, "--connections", help="Connections for the served throughput."),
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    plot: bool = typer.Option(False, "--plot", help="Save a PNG with one panel per measure and print its path."),
    plot_file: Optional[Path] = typer.Option(
        None, "--plot-file", help="Where --plot writes (default: <home>/plots/compare-<time>.png)."),
) -> None:
    """Put one exported version's formats side by side: the SavedModel and its TFLite conversions.

    Size on disk, test accuracy, in-process latency p50/p99 at batch 1 and 64, p50 and requests/s
    when served by the embedded server (1 image per request), and resident memory. Nothing in the
    model base path changes; the conversions live in a temporary folder.
    """
    from mlserve.edge.compare import compare as run_compare
    from mlserve.edge.compare import parse_formats
    from mlserve.errors import NotFoundError
    from mlserve.model.export import list_versions, parse_version

    chosen = parse_formats(formats)
    number = parse_version(version)
    name = settings.get("model_name", model_name)
    versions = list_versions(settings.model_base_path(name, model_base_path))
    picked = versions[-1] if number is None else next((v for v in versions if v.version == number), None)
    if picked is None:
        raise NotFoundError(f"no version {number} of {name}",
                            hint=f"versions: {', '.join(str(v.version) for v in versions)}")
    output.info(f"Comparing {name} version {picked.version} ({picked.path}) ...")
    with output.err.status("starting") as status:
        def progress(fmt: str, what: str) -> None:
            status.update(f"{fmt}: {what}")
            if not output.err.is_terminal:  # a log or a pipe gets one line per step instead
                output.info(f"{fmt}: {what}")

        result = run_compare(picked.path, formats=chosen, iterations=iterations, serve=not no_serve,
                             duration=duration, connections=connections, progress=progress)
    data = result.as_dict()
    written = None
    if plot or plot_file is not None:
        from mlserve.edge.compare_plot import plot_comparison
        from mlserve.workspace import Workspace

        path = plot_file or Workspace.current().plots_dir / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.png"
        written = plot_comparison(data, path)
    if json_:
        output.print_json(data)
        if written:
            output.err.print(f"Plot: {written}", soft_wrap=True, markup=False)
        return
    output.out.print(_table(data))
    output.out.print(f"{data['data']}; served: 1 image per REST request, {data['duration_s']:g} s per level",
                     soft_wrap=True, markup=False)
    if written:
        output.out.print(f"Plot: {written}", soft_wrap=True, markup=False)


def _table(data: dict):  # -> rich Table
    from rich.table import Table

    from mlserve.cli.export import _size

    def num(v, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    table = Table("format", "size", "accuracy", "b1 p50 ms", "b1 p99 ms", "b64 p50 ms", "b64 p99 ms",
                  "served p50 ms", f"served req/s ({data['connections']} conn)", "server RSS MiB",
                  "runtime RSS MiB")
    for f in data["formats"]:
        lat = f["latency_ms"]
        table.add_row(f["format"], _size(f["size_bytes"]), f"{f['test_accuracy']:.4f}",
                      num(lat.get("b1_p50"), ".3f"), num(lat.get("b1_p99"), ".3f"),
                      num(lat.get("b64_p50"), ".3f"), num(lat.get("b64_p99"), ".3f"),
                      num(f["served_p50_ms"], ".3f"), num(f["served_requests_per_s"], ",.0f"),
                      num(f["server_rss_mb"], ".0f"), num(f["runtime_rss_mb"], ".0f"))
    return table


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)

"""`mlserve score`: batch scoring of a .npy or a folder of images through a model server, with a
progress bar on stderr and a summary on stdout, around `mlserve.tools.scoring.score`. (`predict
--score` is its hidden alias for one release; predict is about real-time requests.)"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import typer

from mlserve import settings
from mlserve.cli import options, output


def score_command(
    source: Path = typer.Argument(..., metavar="SOURCE", help="A .npy array of digits or a folder of PNG/JPEG images."),
    destination: Optional[Path] = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Where to write (.jsonl or .csv; resumes if interrupted)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Images per request."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Requests in flight."),
    url: options.Url = None,
    grpc: options.Grpc = False,
    grpc_server: options.GrpcServer = None,
    model: options.Model = None,
    version: options.Version = None,
    label: options.Label = None,
    signature: options.Signature = "serving_default",
    columnar: options.Columnar = False,
    timeout: options.Timeout = None,
    json_: options.Json = False,
) -> None:
    """Score every digit of a .npy or a folder of images through a model server (batch, not real time).

    Rows are written in input order to --output (.jsonl or .csv); an interrupted run resumes where
    it stopped. Works with tensorflow_model_server, `mlserve serve` and any TF Serving-compatible server.
    """
    from mlserve.client import ModelTarget
    from mlserve.errors import UsageError

    if grpc and columnar:
        raise UsageError("--columnar is a REST format; gRPC always sends tensors")
    target = ModelTarget(settings.get("model_name", model), version=version, label=label, signature=signature)
    run(source, destination, connector(target, grpc=grpc, url=url, grpc_server=grpc_server, timeout=timeout,
                                       columnar=columnar),
        target, batch_size=batch_size, concurrency=concurrency, json_=json_)


def connector(target: Any, *, grpc: bool, url: str | None, grpc_server: str | None, timeout: float | None,
              columnar: bool) -> Callable[[], Any]:
    """A function that opens one client of the server the options name (each worker opens its own)."""
    from mlserve.client import connect

    return lambda: connect(target, transport="grpc" if grpc else "rest", url=settings.get("url", url),
                           grpc_server=settings.get("grpc_server", grpc_server),
                           timeout=settings.get("timeout", timeout), columnar=columnar)


def run(source: Path, destination: Path | None, make_client: Callable[[], Any], target: Any, *,
        batch_size: int, concurrency: int, json_: bool) -> None:
    """Score `source` into `destination` with a rich progress bar on stderr; summary on stdout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mlserve.errors import UsageError
    from mlserve.tools.scoring import open_dataset, score

    if destination is None:
        raise UsageError("scoring needs --output FILE (.jsonl or .csv)", hint="e.g. --output scores.jsonl")
    dataset = open_dataset(source)
    job = {"model": target.name, "version": target.version, "label": target.label,
           "signature": target.signature}
    with Progress(TextColumn("Scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=output.err, transient=True) as bar:
        task = bar.add_task("score", total=len(dataset))
        result = score(dataset, destination, make_client, batch_size=batch_size,
                       concurrency=concurrency, job=job,
                       progress=lambda done, total: bar.update(task, completed=done))
    if json_:
        output.print_json(result.as_dict())
        return
    resumed = f" (resumed after {result.resumed})" if result.resumed else ""
    output.out.print(f"{result.images} rows -> {result.output}{resumed}", soft_wrap=True, markup=False)
    output.out.print(f"{result.scored} images in {result.seconds:.2f} s: {result.images_per_s:,.0f} images/s "
                     f"(batch {batch_size}, {concurrency} in flight)")


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)

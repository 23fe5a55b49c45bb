"""`mlserve predict`: send digits to a TF Serving-compatible server and show (or draw) its answers."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from mlserve import settings
from mlserve.cli import options, output


def predict(
    index: int = typer.Option(0, "--index", min=0, help="First test image to send (the course: x_test[0:3])."),
    count: int = typer.Option(3, "--count", min=1, help="How many consecutive test images to send."),
    random_: Optional[int] = typer.Option(None, "--random", metavar="N", min=1,
                                          help="Send N test images picked at random instead."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for --random (reproducible picks)."),
    image: Optional[List[Path]] = typer.Option(
        None, "--image", help="A PNG/JPEG digit (repeatable); light backgrounds are inverted to MNIST's."),
    npy: Optional[Path] = typer.Option(
        None, "--npy", help="A .npy array: (N,28,28), (N,28,28,1) or (N,784); uint8 0-255 or float 0-1."),
    input_: Optional[List[str]] = typer.Option(
        None, "--input", metavar="NAME=FILE.npy",
        help="Any model: send this array as input NAME (repeatable); checked against the model's metadata first."),
    body: Optional[Path] = typer.Option(
        None, "--body", metavar="FILE.json",
        help="Any model: send this TF Serving predict body ('instances' or 'inputs'), checked the same way."),
    data: options.Data = None,
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
    json_: options.Json = False,
    plot: bool = typer.Option(False, "--plot", help="Save the course figure (images titled with the answers) as PNG."),
    plot_file: Optional[Path] = typer.Option(
        None, "--plot-file", help="Where --plot writes (default: <home>/plots/predictions-<time>.png)."),
    # `predict --score` is `mlserve score`'s hidden alias for one release (0.1 -> 0.2).
    score: Optional[Path] = typer.Option(None, "--score", metavar="PATH", hidden=True),
    score_output: Optional[Path] = typer.Option(None, "--output", metavar="FILE", hidden=True),
    batch_size: int = typer.Option(64, "--batch-size", hidden=True),
    concurrency: int = typer.Option(4, "--concurrency", hidden=True),
) -> None:
    """Send digits to a model server (REST or gRPC) and show each prediction with its confidence.

    Images come from the MNIST test split (--index/--count, or --random), from image files
    (--image) or from a .npy array (--npy). Any other model takes named arrays (--input
    NAME=FILE.npy) or a request body (--body FILE.json), and its outputs are printed. Works with
    tensorflow_model_server, `mlserve serve` and any TF Serving-compatible server.
    """
    from mlserve.client import ModelTarget, connect, predict_rows
    from mlserve.model import inputs
    from mlserve.errors import UsageError

    if plot_file is not None:
        plot = True
    sources = [s for s in (random_ is not None, bool(image), npy is not None, bool(input_), body is not None) if s]
    if len(sources) > 1:
        raise UsageError("give only one of --random, --image, --npy, --input and --body")
    if (input_ or body is not None) and plot:
        raise UsageError("--plot draws digit images; it goes with the test split, --image or --npy",
                         hint="drop --plot to print the model's outputs")
    target = ModelTarget(settings.get("model_name", model), version=version, label=label,
                         signature=signature)
    if grpc and columnar:
        raise UsageError("--columnar is a REST format; gRPC always sends tensors")
    if score_output is not None and score is None:
        raise UsageError("--output goes with --score", hint="e.g. --score digits.npy --output scores.jsonl")
    if score is not None:
        from mlserve.cli import score as scoring_cli

        output.info("`mlserve predict --score` is now `mlserve score SOURCE --output FILE`; the alias goes in 0.2")
        scoring_cli.run(score, score_output, scoring_cli.connector(
            target, grpc=grpc, url=url, grpc_server=grpc_server, timeout=timeout, columnar=columnar),
            target, batch_size=batch_size, concurrency=concurrency, json_=json_)
        return

    if input_ or body is not None:
        _predict_tensors(connect(target, transport="grpc" if grpc else "rest", url=settings.get("url", url),
                                 grpc_server=settings.get("grpc_server", grpc_server),
                                 timeout=settings.get("timeout", timeout), protocol=protocol, binary=binary),
                         target, input_ or [], body, json_)
        return

    if image:
        batch = inputs.from_image_files(image)
        for name, flipped in zip(batch.names, batch.inverted):
            if flipped:
                output.info(f"{name}: light background, inverted to MNIST's white digit on black")
    elif npy is not None:
        batch = inputs.from_npy(npy)
    elif random_ is not None:
        batch = inputs.from_random(random_, seed=seed, data=data)
    else:
        batch = inputs.from_test_split(index, count, data=data)

    client = connect(target, transport="grpc" if grpc else "rest", url=settings.get("url", url),
                     grpc_server=settings.get("grpc_server", grpc_server),
                     timeout=settings.get("timeout", timeout), columnar=columnar, protocol=protocol, binary=binary)
    try:
        output.info(f"Sending {len(batch)} image(s) to {target.describe()} at {client.address} "
                    f"({'gRPC' if grpc else 'REST'}{', v2' if protocol == 'v2' else ''}) ...")
        rows = predict_rows(client, batch.images, batch.names, batch.labels)
    finally:
        client.close()

    if json_:
        output.print_json([r.as_dict() for r in rows])
    else:
        output.out.print(_table(rows))
        known = [r for r in rows if r.correct is not None]
        if known:
            right = sum(1 for r in known if r.correct)
            output.out.print(f"{right}/{len(known)} correct")

    if plot:
        from mlserve.tools.plots import plot_predictions
        from mlserve.workspace import Workspace

        path = plot_file or Workspace.current().plots_dir / f"predictions-{time.strftime('%Y%m%d-%H%M%S')}.png"
        written = plot_predictions(batch.images, [r.predicted for r in rows], batch.labels, path,
                                   names=None if batch.source.startswith("test split") else batch.names,
                                   confidences=[r.confidence for r in rows])
        if json_:
            output.err.print(f"Plot: {written}", soft_wrap=True, markup=False)
        else:
            output.out.print(f"Plot: {written}", soft_wrap=True, markup=False)


def _predict_tensors(client, target, specs: list[str], body: Optional[Path], json_: bool) -> None:
    """Any model: named arrays or a request body, checked against the signature, sent, printed."""
    from dataclasses import replace

    from mlserve.client.tensors import check_inputs, parse_body, parse_input_specs

    try:
        given = parse_input_specs(specs) if specs else None  # read files before any network call
        signature = client.signature()
        where = "--input"
        if given is None:
            given, wanted = parse_body(body, signature)
            where = "--body"
            if wanted != signature.name:
                client.target = replace(target, signature=wanted)
                signature = client.signature()
        arrays = check_inputs(signature, given, where)
        output.info(f"Sending {', '.join(f'{k} {list(v.shape)}' for k, v in arrays.items())} to "
                    f"{client.target.describe()} at {client.address} ...")
        outputs = client.predict_tensors(signature, arrays)
    finally:
        client.close()
    if json_:
        output.print_json({"model": target.name, "signature": signature.name,
                           "outputs": {k: _listed(v) for k, v in outputs.items()}})
        return
    from rich.table import Table

    table = Table("output", "dtype", "shape", "values")
    for name, array in outputs.items():
        import numpy as np

        text = np.array2string(array, threshold=12, edgeitems=3, precision=4, max_line_width=100)
        table.add_row(name, str(array.dtype), str(list(array.shape)), text)
    output.out.print(table)


def _listed(array):  # -> JSON-able nested lists (bytes as text)
    if array.dtype == object:
        return [_listed_value(v) for v in array.reshape(-1)] if array.ndim == 1 else \
            [_listed(a) for a in array]
    return array.tolist()


def _listed_value(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _table(rows):  # -> rich Table
    from rich.table import Table

    table = Table("#", "image", "predicted", "confidence", "label", "")
    for r in rows:
        mark = "" if r.correct is None else ("[green]✓[/green]" if r.correct else "[red]✗[/red]")
        table.add_row(str(r.index), r.name, str(r.predicted), f"{r.confidence:.4f}",
                      "-" if r.label is None else str(r.label), mark)
    return table


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)

"""Batch scoring for `mlserve predict --score`: the progress bar and the summary around
`mlserve.tools.scoring.score` (kept apart so predict.py stays about real-time requests)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from mlserve.cli import output


def run(source: Path, destination: Path | None, make_client: Callable[[], Any], target: Any, *,
        batch_size: int, concurrency: int, json_: bool) -> None:
    """Score `source` into `destination` with a rich progress bar on stderr; summary on stdout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mlserve.errors import UsageError
    from mlserve.tools.scoring import open_dataset, score

    if destination is None:
        raise UsageError("--score needs --output FILE (.jsonl or .csv)", hint="e.g. --output scores.jsonl")
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

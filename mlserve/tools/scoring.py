"""Batch scoring: a whole dataset through a model server, as opposed to one real-time request.

Input: a .npy array of digits, or a folder of image files (sorted by name). Output: JSON lines
(`.jsonl`) or CSV (`.csv`), one row per image, in input order. Batches go to the server with
bounded concurrency (at most `concurrency` requests in flight, each thread with its own client).

Atomicity and resume: rows are appended, in order, to `<output>.partial`, with a manifest
`<output>.partial.json` saying which input and settings the rows belong to. Only when every row is
written is the partial file renamed to `<output>`; an interrupted run leaves no `<output>`, only
the partial file, and rerunning the same command resumes after the last complete row. A partial
file from a different input or format is refused with the command that clears it; an existing
`<output>` is refused unless `overwrite`.
"""
from __future__ import annotations

import csv
import io
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlserve.errors import ConflictError, DataError, NotFoundError, UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}
CLASSES = 10


@dataclass
class Dataset:
    """Images to score, loaded lazily batch by batch: float32 (n, 28, 28, 1) in [0, 1]."""

    source: Path
    names: list[str]
    load: Callable[[int, int], np.ndarray]  # (start, stop) -> images
    fingerprint: dict[str, Any]

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class ScoreResult:
    output: Path
    images: int  # rows in the output
    scored: int  # rows scored by this run (images - resumed)
    resumed: int  # rows found in a partial file from an earlier run
    seconds: float
    format: str

    @property
    def images_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "images": self.images, "scored": self.scored,
                "resumed": self.resumed, "seconds": round(self.seconds, 3),
                "images_per_s": round(self.images_per_s, 1), "format": self.format}


def open_dataset(path: str | os.PathLike) -> Dataset:
    """A .npy file or a folder of images; shapes and pixel ranges are checked before any request."""
    source = Path(path).expanduser()
    if not source.exists():
        raise NotFoundError(f"no such file or folder: {source}",
                            hint="give a .npy array of digits or a folder of PNG/JPEG digits")
    stat = source.stat()
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{source} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
                            hint="give a folder of PNG/JPEG digits, or a .npy array")

        def load_files(start: int, stop: int) -> np.ndarray:
            from mlserve.model.inputs import load_image_file

            return np.stack([load_image_file(p)[0] for p in files[start:stop]])[..., None]

        fingerprint = {"kind": "folder", "path": str(source.resolve()),
                       "files": [p.name for p in files][:3] + [len(files)]}
        return Dataset(source, [p.name for p in files], load_files, fingerprint)
    return _npy_dataset(source, stat)


def _npy_dataset(source: Path, stat: os.stat_result) -> Dataset:
    try:
        array = np.load(source, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{source} is not a readable .npy array: {e}", hint="write it with numpy.save") from e
    shape = tuple(array.shape)
    if array.ndim == 2 and shape[1] == 28 * 28:
        array = array.reshape(-1, 28, 28)
    elif array.ndim == 4 and shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1:] != (28, 28) or len(array) == 0:
        raise DataError(f"{source}: shape {shape} is not a batch of 28×28 grayscale images",
                        hint="give shape (N, 28, 28), (N, 28, 28, 1) or (N, 784)")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{source}: expected numbers, got dtype {array.dtype}",
                        hint="save a numeric array: np.save('digits.npy', x.astype('uint8'))")
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 255:
        raise DataError(f"{source}: pixel values from {low:g} to {high:g}",
                        hint="pixels are uint8 0-255 or float 0-1, with no NaN")
    # one scale for the whole file, so every batch is read the same way
    scale = 255.0 if np.issubdtype(array.dtype, np.integer) or high > 1.0 else 1.0

    def load_rows(start: int, stop: int) -> np.ndarray:
        return (np.asarray(array[start:stop], dtype=np.float32) / scale)[..., None]

    fingerprint = {"kind": "npy", "path": str(source.resolve()), "size": stat.st_size,
                   "mtime_ns": stat.st_mtime_ns, "shape": list(shape)}
    return Dataset(source, [f"{source.name}[{i}]" for i in range(len(array))], load_rows, fingerprint)


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"--output {path}: write .jsonl (JSON lines) or .csv",
                         hint="e.g. --output scores.jsonl")
    return fmt


def partial_paths(output: Path) -> tuple[Path, Path]:
    return output.with_name(output.name + ".partial"), output.with_name(output.name + ".partial.json")


def _row_text(fmt: str, index: int, name: str, scores: np.ndarray) -> str:
    predicted = int(np.argmax(scores))
    probabilities = [round(float(p), 6) for p in scores]
    if fmt == "jsonl":
        return json.dumps({"index": index, "name": name, "predicted": predicted,
                           "confidence": probabilities[predicted], "probabilities": probabilities}) + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        [index, name, predicted, probabilities[predicted], *probabilities])
    return buffer.getvalue()


def _header(fmt: str) -> str:
    if fmt != "csv":
        return ""
    return ",".join(["index", "name", "predicted", "confidence", *[f"p{d}" for d in range(CLASSES)]]) + "\n"


def _resume_point(partial: Path, manifest: Path, expected: dict[str, Any], fmt: str) -> int:
    """Rows already in a partial file that belongs to this job (cut back to its last full line)."""
    if not partial.exists():
        manifest.unlink(missing_ok=True)
        return 0
    try:
        found = json.loads(manifest.read_text())
    except (OSError, ValueError):
        found = None
    if found != expected:
        raise ConflictError(
            f"{partial} is left from another scoring job (different input, model or format)",
            hint=f"delete it to start over: rm {partial} {manifest}")
    data = partial.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]  # a row cut by the interruption is dropped
    if len(complete) != len(data):
        with open(partial, "r+b") as f:
            f.truncate(len(complete))
    rows = complete.count(b"\n")
    return max(0, rows - (1 if fmt == "csv" else 0))


def score(
    dataset: Dataset,
    output: str | os.PathLike,
    client_factory: Callable[[], Any],
    *,
    batch_size: int = 64,
    concurrency: int = 4,
    overwrite: bool = False,
    job: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ScoreResult:
    """Score every image of `dataset` and write `output` (.jsonl or .csv) atomically.

    `client_factory()` makes one client per worker thread (anything with `predict(images)` ->
    (n, 10) scores, and `close()`); `job` (the model target, say) goes into the manifest, so a
    resume only continues a job for the same model. `progress(done, total)` is called as rows land.
    """
    if batch_size < 1 or concurrency < 1:
        raise UsageError("--batch-size and --concurrency must be at least 1")
    out = Path(output).expanduser()
    fmt = output_format(out)
    if out.exists() and not overwrite:
        raise ConflictError(f"{out} already exists: scoring finished earlier",
                            hint="give another --output, or delete the file to score again")
    partial, manifest = partial_paths(out)
    expected = {"input": dataset.fingerprint, "format": fmt, "job": job or {}}
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _resume_point(partial, manifest, expected, fmt)
    if done == 0:
        partial.write_text(_header(fmt))
        manifest.write_text(json.dumps(expected))
    total = len(dataset)
    if progress:
        progress(done, total)

    local = threading.local()
    clients: list[Any] = []
    clients_lock = threading.Lock()

    def run(start: int, stop: int) -> np.ndarray:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = client_factory()
            with clients_lock:
                clients.append(client)
        return np.asarray(client.predict(dataset.load(start, stop)))

    started = time.perf_counter()
    starts = list(range(done, total, batch_size))
    pending: dict[int, Future] = {}
    finished: dict[int, np.ndarray] = {}
    next_start = done
    try:
        with open(partial, "a", encoding="utf-8") as sink, \
                ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="score") as pool:
            queue = iter(starts)
            try:
                while True:
                    while len(pending) < concurrency:  # bounded: never more than that in flight
                        start = next(queue, None)
                        if start is None:
                            break
                        pending[start] = pool.submit(run, start, min(start + batch_size, total))
                    if not pending:
                        break
                    ready, _ = wait(pending.values(), return_when=FIRST_COMPLETED)
                    for start in [s for s, f in pending.items() if f in ready]:
                        finished[start] = pending.pop(start).result()  # raises the client's error
                    while next_start in finished:  # rows land in input order
                        scores = finished.pop(next_start)
                        sink.write("".join(_row_text(fmt, next_start + i, dataset.names[next_start + i], s)
                                           for i, s in enumerate(scores)))
                        next_start += len(scores)
                        sink.flush()
                        if progress:
                            progress(next_start, total)
            except BaseException:
                for future in pending.values():
                    future.cancel()
                raise
            os.fsync(sink.fileno())
    finally:
        for client in clients:
            client.close()
    os.replace(partial, out)
    manifest.unlink(missing_ok=True)
    return ScoreResult(out, total, total - done, done, time.perf_counter() - started, fmt)

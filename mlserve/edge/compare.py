"""`mlserve compare`: one exported version in every format, side by side, measured the same way.

Formats: the SavedModel as exported, and the four TFLite conversions of it (float32, float16,
dynamic, int8; see mlserve.edge.tflite). For each:

- size on disk: the model's own files (SavedModel: saved_model.pb, variables/, assets/,
  fingerprint.pb, not the warm-up requests; TFLite: model.tflite);
- test accuracy on the test split of the model's training data;
- in-process latency p50/p99 at batch 1 and batch 64: the server's own call path (the SavedModel
  through `Servable.run`, TFLite through one LiteRT interpreter, single-threaded);
- served: the embedded server started on free 127.0.0.1 ports with this format alone
  (`--prefer_tflite_model` for TFLite), 1 image per REST request: p50 at 1 connection and
  requests/s at `connections`, each for a short bounded `duration`;
- resident memory: of that server after its load (server RSS), and of a fresh process that loads
  the model with only its runtime and runs it once (runtime RSS: TensorFlow, or LiteRT alone, as
  an edge device would).

The work happens in a temporary folder that is removed afterwards; nothing in the model base path
changes. Every server started is stopped and reaped.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mlserve.errors import ServerStartError, UsageError

FORMATS = ("savedmodel", "float32", "float16", "dynamic", "int8")
MODEL_NAME = "compare"
Progress = Callable[[str, str], None]  # (format, what is being measured)


@dataclass
class FormatFigures:
    format: str
    size_bytes: int
    test_accuracy: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # b1_p50, b1_p99, b64_p50, b64_p99
    served_p50_ms: float | None = None
    served_requests_per_s: float | None = None
    server_rss_mb: float | None = None
    runtime_rss_mb: float | None = None


@dataclass
class Comparison:
    version_path: str
    data: str
    test_images: int
    iterations: int
    connections: int
    duration_s: float
    formats: list[FormatFigures]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_formats(text: str | None) -> list[str]:
    if not text:
        return list(FORMATS)
    chosen = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in chosen if t not in FORMATS]
    if bad or not chosen:
        raise UsageError(f"unknown format(s): {', '.join(bad) or text!r}",
                         hint=f"choose from {','.join(FORMATS)}")
    return chosen


def compare(version_dir: str | os.PathLike, *, formats: list[str] | None = None, iterations: int = 200,
            serve: bool = True, duration: float = 2.0, connections: int = 8,
            progress: Progress | None = None) -> Comparison:
    """Measure each format of the SavedModel in `version_dir` (see the module docstring)."""
    from mlserve.model.data import prepare_images
    from mlserve.model.cnn import read_record
    from mlserve.edge.tflite import convert, representative_images, saved_model_size, training_data

    source = Path(version_dir)
    if not (source / "saved_model.pb").is_file():
        raise UsageError(f"no SavedModel in {source}", hint="export a model first: `mlserve export`")
    if not 10 <= iterations <= 100_000:
        raise UsageError("--iterations must be between 10 and 100000")
    if not 0.2 <= duration <= 60 or not 1 <= connections <= 256:
        raise UsageError("--duration must be 0.2..60 s and --connections 1..256")
    note = progress or (lambda fmt, what: None)
    info = _read_json(source / "assets.extra" / "mlserve.json")
    record = read_record(info["source_model"]) if info.get("source_model") else None
    mnist = training_data(record)
    images = prepare_images(mnist.x_test)
    labels = np.asarray(mnist.y_test)
    work = Path(tempfile.mkdtemp(prefix="mlserve-compare-"))
    results = []
    try:
        for fmt in formats or FORMATS:
            base = work / fmt
            folder = base / "1"
            shutil.copytree(source, folder, ignore=shutil.ignore_patterns("model.tflite"))
            if fmt == "savedmodel":
                note(fmt, "loading")
                from mlserve.server.servables.savedmodel import Servable

                servable = Servable.load(MODEL_NAME, 1, folder)
                run = lambda x, s=servable: s.run("serving_default", {"Conv1_input": x})["softmax"]  # noqa: E731
                size = saved_model_size(folder)
            else:
                note(fmt, "converting")
                reps = representative_images(mnist) if fmt == "int8" else None
                content = convert(folder, fmt, reps)
                (folder / "model.tflite").write_bytes(content)
                from mlserve.edge.litert import TFLiteModel

                model = TFLiteModel(content=content)
                run = model.predict_images
                size = len(content)
            note(fmt, "test accuracy")
            figures = FormatFigures(fmt, size, _accuracy(run, images, labels))
            note(fmt, "in-process latency")
            figures.latency_ms = _latencies(run, images, iterations)
            if serve:
                note(fmt, "served by the embedded server")
                _serve_and_load(base, fmt != "savedmodel", images[:1], duration, connections, figures,
                                work / f"{fmt}.log")
            note(fmt, "runtime memory")
            figures.runtime_rss_mb = _runtime_rss(folder, fmt)
            results.append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Comparison(str(source), mnist.description, len(images), iterations, connections, duration,
                      results)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _accuracy(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    right = 0
    for start in range(0, len(images), 256):
        right += int(np.sum(np.argmax(run(images[start:start + 256]), 1) == labels[start:start + 256]))
    return round(right / len(images), 6)


def _latencies(run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, iterations: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for batch, count in ((1, iterations), (64, max(10, iterations // 8))):
        x = np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))
        for _ in range(5):  # warm-up: first calls allocate
            run(x)
        times = np.empty(count)
        for i in range(count):
            t0 = time.perf_counter()
            run(x)
            times[i] = time.perf_counter() - t0
        out[f"b{batch}_p50"] = round(float(np.percentile(times, 50)) * 1000, 4)
        out[f"b{batch}_p99"] = round(float(np.percentile(times, 99)) * 1000, 4)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _serve_and_load(base: Path, tflite: bool, image: np.ndarray, duration: float, connections: int,
                    figures: FormatFigures, log: Path) -> None:
    from mlserve.bench import run_bench
    from mlserve.client import ModelTarget
    from mlserve.runtimes.process import ChildExitedError, spawn, tail_lines, terminate, wait_ready

    grpc_port, rest_port = _free_port(), _free_port()
    argv = [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
            f"--model_name={MODEL_NAME}", f"--model_base_path={base}", "--file_system_poll_wait_seconds=0",
            "--host=127.0.0.1"] + (["--prefer_tflite_model", "--num_tflite_pools=1",
                                    "--num_tflite_interpreters_per_pool=4"] if tflite else [])
    proc = spawn(argv, log, env={"TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        try:
            wait_ready(proc.poll, "127.0.0.1", rest_port, [MODEL_NAME], timeout=120)
        except (ChildExitedError, TimeoutError) as e:
            raise ServerStartError(f"the embedded server for the comparison did not start: {e}",
                                   hint="rerun with --no-serve to skip the served figures",
                                   details="\n".join(tail_lines(log, 15))) from e
        figures.server_rss_mb = _rss_mb(proc.pid)
        report = run_bench(image, ModelTarget(MODEL_NAME), url=f"http://127.0.0.1:{rest_port}",
                           concurrency=[1, connections], duration=duration, warmup=0.5)
        one, many = report.levels[0], report.levels[-1]
        figures.served_p50_ms = None if one.p50_ms is None else round(one.p50_ms, 3)
        figures.served_requests_per_s = round(many.requests_per_s, 1)
    finally:
        terminate(proc.pid, 10, proc)


_RSS_PROBE = """
import sys, numpy as np
fmt, folder = sys.argv[1], sys.argv[2]
x = np.zeros((1, 28, 28, 1), np.float32)
if fmt == "savedmodel":
    import tensorflow as tf
    tf.saved_model.load(folder).signatures["serving_default"](Conv1_input=tf.constant(x))
else:
    from ai_edge_litert.interpreter import Interpreter
    runner = Interpreter(model_path=folder + "/model.tflite", num_threads=1).get_signature_runner()
    runner(Conv1_input=x)
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) / 1024)
"""


def _runtime_rss(folder: Path, fmt: str) -> float | None:
    """RSS of a fresh interpreter that loads the model with only its runtime and runs it once."""
    try:
        proc = subprocess.run([sys.executable, "-c", _RSS_PROBE, fmt, str(folder)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        return round(float(proc.stdout.strip().splitlines()[-1]), 1) if proc.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return None

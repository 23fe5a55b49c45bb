"""The servers under test: how each is started, where it answers, how to know it is ready.

  embedded            python -m mlserve.server (TF Serving flags), no batching
  embedded+batching   the same with --enable_batching --batching_parameters_file
  handwritten         FastAPI + uvicorn calling the SavedModel per request (apps/handwritten.py)
  handwritten-threads the same with a plain `def` endpoint (uvicorn's thread pool)
  canned-fastapi      FastAPI that parses the body and answers a canned result (apps/canned.py)
  mlflow              `mlflow models serve --env-manager local` (from benchmarks/.venv)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bodies import MODEL_NAME, PREDICT_PATH, ROOT
from procs import free_port

HERE = Path(__file__).resolve().parent
MLFLOW_VENV = HERE / ".venv"

# TF Serving's batching guide's starting point for CPU-only serving: one batch thread per core
# (the server has one), no batch timeout (a batch runs as soon as the thread is free, so requests
# arriving meanwhile form the next), max_batch_size left at TF Serving's default.
BATCHING_PARAMETERS = """\
max_batch_size { value: 1000 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: 1 }
"""


@dataclass
class Target:
    """One server under test: how to start it, where it answers, how to know it is ready."""

    name: str
    describe: str
    argv: list[str]
    rest_port: int
    predict_path: str = PREDICT_PATH
    grpc_port: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    ready: str = "tf_serving"  # or "ping" (mlflow)
    skipped: str | None = None
    memory: bool = False

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}{self.predict_path}"


def mlflow_available() -> str | None:
    if not (MLFLOW_VENV / "bin" / "mlflow").exists():
        return f"no {MLFLOW_VENV.relative_to(ROOT)}/bin/mlflow (benchmarks/run.sh installs it)"
    return None


def latest_version(base: Path) -> Path:
    return max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def build_targets(base: Path, work: Path, args: argparse.Namespace) -> list[Target]:
    py = sys.executable
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    model_dir = latest_version(base)
    targets: list[Target] = []
    batching_file = work / "batching_parameters.txt"
    batching_file.write_text(BATCHING_PARAMETERS)
    for batching in (False, True):
        grpc_port, rest_port = free_port(), free_port()
        argv = [py, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
                f"--model_name={MODEL_NAME}", f"--model_base_path={base}"]
        if batching:
            argv += ["--enable_batching", f"--batching_parameters_file={batching_file}"]
        targets.append(Target(
            name="embedded+batching" if batching else "embedded",
            describe="python -m mlserve.server" + (" --enable_batching" if batching else ""),
            argv=argv, rest_port=rest_port, grpc_port=grpc_port, env=env, memory=not batching))
    for app, module, extra, describe in (
        ("handwritten", "handwritten", {}, "FastAPI+uvicorn, async def, SavedModel signature per request"),
        ("handwritten-threads", "handwritten", {"BENCH_THREADPOOL": "1"},
         "FastAPI+uvicorn, def (thread pool), SavedModel signature per request"),
        ("canned-fastapi", "canned", {}, "FastAPI+uvicorn, parse body, canned answer, no model"),
    ):
        port = free_port()
        targets.append(Target(
            name=app, describe=describe, rest_port=port,
            argv=[py, "-m", "uvicorn", f"{module}:app", "--app-dir", str(HERE / "apps"),
                  "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
            env=dict(env, BENCH_MODEL_DIR=str(model_dir), BENCH_MODEL_NAME=MODEL_NAME, **extra)))
    port = free_port()
    mlflow_bin = MLFLOW_VENV / "bin"
    targets.append(Target(
        name="mlflow", describe="mlflow models serve --env-manager local (1 worker)",
        argv=[str(mlflow_bin / "mlflow"), "models", "serve", "-m", str(work / "mlflow_model"),
              "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"],
        rest_port=port, predict_path="/invocations", ready="ping",
        env=dict(env, PATH=f"{mlflow_bin}:{env.get('PATH', '')}", MLFLOW_TRACKING_URI=f"file://{work}/mlruns"),
        skipped=mlflow_available()))
    if args.only:
        wanted = set(args.only.split(","))
        targets = [t for t in targets if t.name in wanted]
    if args.no_mlflow:
        for t in targets:
            if t.name == "mlflow":
                t.skipped = "--no-mlflow"
    return targets


def prepare_mlflow(model_dir: Path, work: Path) -> None:
    out = work / "mlflow_model"
    if (out / "MLmodel").exists():
        return
    done = subprocess.run(
        [str(MLFLOW_VENV / "bin" / "python"), str(HERE / "mlflow_model.py"), str(model_dir), str(out)],
        capture_output=True, text=True, timeout=300, cwd=work,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", MLFLOW_TRACKING_URI=f"file://{work}/mlruns"))
    if done.returncode != 0:
        raise RuntimeError(f"packaging the MLflow model failed: {done.stderr.strip()[-800:]}")

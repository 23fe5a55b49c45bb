"""Helpers for the predict/bench/client tests: a tiny trained digits model, exported the real way,
served by a real `python -m mlserve.server` subprocess on free ports, and the model run in-process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ports import free_port  # noqa: F401 - re-exported for the predict/bench tests

MODEL_NAME = "digits_model"


def export_tiny_model(root: Path) -> Path:
    """Train the course CNN for one epoch on the shipped sample and export it as version 1."""
    from mlserve.data import load_mnist, prepare_images
    from mlserve.export import export_model
    from mlserve.model import build_model

    data = load_mnist("sample")
    model = build_model()
    model.fit(prepare_images(data.x_train), data.y_train, epochs=1, batch_size=64, verbose=0)
    model.save(root / "model.keras")
    base = root / "models" / MODEL_NAME
    export_model(root / "model.keras", base, 1, model_name=MODEL_NAME)
    return base


@dataclass
class RunningServer:
    process: subprocess.Popen
    grpc: str
    url: str
    log: Path
    base: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(base: Path, log: Path, timeout: float = 90.0) -> RunningServer:
    """The embedded server on free ports; ready when both APIs report the model AVAILABLE."""
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_name={MODEL_NAME}", f"--model_base_path={base}"],
            stdout=sink, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}", log, base)
    from mlserve.client import ModelTarget, connect

    deadline = time.monotonic() + timeout
    ready = {"grpc": False, "rest": False}
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        for transport in [t for t, ok in ready.items() if not ok]:
            client = connect(ModelTarget(MODEL_NAME), transport=transport, url=server.url,
                             grpc_server=server.grpc, timeout=2)
            try:
                ready[transport] = any(v.state == "AVAILABLE" for v in client.model_status())
            except Exception:
                pass
            finally:
                client.close()
        if all(ready.values()):
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready in {timeout:g} s ({ready}):\n{log.read_text()[-3000:]}")


def reference_probabilities(base: Path, images: np.ndarray) -> np.ndarray:
    """The exported SavedModel run in this process: what every server must answer."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(base / "1"))
    out = loaded.signatures["serving_default"](Conv1_input=tf.constant(images, dtype=tf.float32))
    return out["softmax"].numpy()


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mlserve ARGS` in a fresh interpreter, as a user runs it."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def parse_json_stdout(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)  # fails if anything but the JSON document is on stdout

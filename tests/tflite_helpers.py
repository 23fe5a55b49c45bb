"""Helpers for the TFLite tests: one tiny trained model (1 epoch on the shipped sample), saved as
model.keras beside its record so exports find the training data the real way."""
from __future__ import annotations

import json
from pathlib import Path

MODEL_NAME = "digits_model"


def train_tiny(root: Path) -> Path:
    """model.keras + record.json (data: the shipped sample) under `root`; returns the .keras path."""
    from mlserve.data import load_mnist, prepare_images
    from mlserve.model import build_model

    data = load_mnist("sample")
    model = build_model()
    model.fit(prepare_images(data.x_train), data.y_train, epochs=1, batch_size=64, verbose=0)
    _, accuracy = model.evaluate(prepare_images(data.x_test), data.y_test, verbose=0)
    path = root / "model.keras"
    model.save(path)
    (root / "record.json").write_text(json.dumps({
        "model_name": MODEL_NAME, "test_accuracy": float(accuracy),
        "data": {"source": "sample", "description": data.description, "path": data.path}}))
    return path


def export_with_tflite(keras_path: Path, base: Path, version: int, quantization: str | None) -> Path:
    from mlserve.export import export_model

    return export_model(keras_path, base, version, model_name=MODEL_NAME, tflite=quantization).path


def start_server(base: Path, log: Path, *flags: str, timeout: float = 90.0):
    """`python -m mlserve.server` on free ports with extra `flags`; ready when REST reports a
    version AVAILABLE. Returns predict_helpers.RunningServer (stop() it)."""
    import os
    import subprocess
    import sys
    import time

    from predict_helpers import RunningServer, free_port

    from mlserve.client import ModelTarget, connect

    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_name={MODEL_NAME}", f"--model_base_path={base}", *flags],
            stdout=sink, stderr=subprocess.STDOUT, env=env)
    server = RunningServer(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}", log, base)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        client = connect(ModelTarget(MODEL_NAME), url=server.url, timeout=2)
        try:
            if any(v.state == "AVAILABLE" for v in client.model_status()):
                return server
        except Exception:
            pass
        finally:
            client.close()
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready in {timeout:g} s:\n{log.read_text()[-3000:]}")

"""Helpers for the TFLite tests: one tiny trained model (1 epoch on the shipped sample), saved as
model.keras beside its record so exports find the training data the real way."""
from __future__ import annotations

import json
from pathlib import Path

MODEL_NAME = "digits_model"


def train_tiny(root: Path) -> Path:
    """model.keras + record.json (data: the shipped sample) under `root`; returns the .keras path."""
    from mlserve.model.data import load_mnist, prepare_images
    from mlserve.model.cnn import build_model

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
    from mlserve.model.export import export_model

    return export_model(keras_path, base, version, model_name=MODEL_NAME, tflite=quantization).path


def start_server(base: Path, log: Path, *flags: str):
    """The shared test server (tests/servers.py) serving `base` with extra `flags`, ready once a
    version is AVAILABLE; stop() it."""
    from servers import launch_server

    return launch_server([f"--model_name={MODEL_NAME}", f"--model_base_path={base}", *flags], log,
                         base=base)

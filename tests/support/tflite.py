"""Helpers for the TFLite tests: exports of the tiny trained model (support.models.train_tiny_model)
with a TFLite file, and a server on them."""
from __future__ import annotations

from pathlib import Path

from support.models import MODEL_NAME


def export_with_tflite(keras_path: Path, base: Path, version: int, quantization: str | None) -> Path:
    from mlserve.model.export import export_model

    return export_model(keras_path, base, version, model_name=MODEL_NAME, tflite=quantization).path


def start_server(base: Path, log: Path, *flags: str):
    """The shared test server (support.servers) serving `base` with extra `flags`, ready once a
    version is AVAILABLE; stop() it."""
    from support.servers import launch_server

    return launch_server([f"--model_name={MODEL_NAME}", f"--model_base_path={base}", *flags], log,
                         base=base)

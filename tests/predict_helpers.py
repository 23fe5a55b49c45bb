"""Helpers for the predict/bench/client tests: a tiny trained digits model, exported the real way,
and the model run in-process. The server they talk to is the `digits_server` fixture
(tests/conftest.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ports import free_port  # noqa: F401 - re-exported for the predict/bench tests

MODEL_NAME = "digits_model"


def export_tiny_model(root: Path) -> Path:
    """Train the course CNN for one epoch on the shipped sample and export it as version 1."""
    from mlserve.model.data import load_mnist, prepare_images
    from mlserve.model.export import export_model
    from mlserve.model.cnn import build_model

    data = load_mnist("sample")
    model = build_model()
    model.fit(prepare_images(data.x_train), data.y_train, epochs=1, batch_size=64, verbose=0)
    model.save(root / "model.keras")
    base = root / "models" / MODEL_NAME
    export_model(root / "model.keras", base, 1, model_name=MODEL_NAME)
    return base


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


def assert_same_digits(predicted, reference: np.ndarray, margin: float = 1e-4) -> None:
    """The predicted classes are the reference probabilities' argmax wherever the reference is no
    near-tie (top two classes within `margin`): TensorFlow's kernels, picked per CPU and batch
    shape, move the last bits, which may flip a near-tie and nothing else."""
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > margin
    assert decided.mean() >= 0.5, "too many near-ties to compare"
    got = np.asarray([int(p) for p in predicted])
    assert (got[decided] == reference.argmax(axis=1)[decided]).all(), (got.tolist(), reference.argmax(axis=1).tolist())

"""The model the tests serve: its name (MODEL_NAME, once) and the one tiny TRAINED model (the course
CNN, one epoch on the shipped sample), saved beside its record so exports find the training data the
real way; exported as version 1 for the predict/bench/client tests; and that export run in-process."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MODEL_NAME = "digits_model"


def train_tiny_model(root: Path) -> Path:
    """Train the course CNN for one epoch on the shipped sample: model.keras + record.json (data:
    the shipped sample) under `root`; returns the .keras path."""
    from mlserve.model.cnn import build_model
    from mlserve.model.data import load_mnist, prepare_images

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


def export_tiny_model(root: Path) -> Path:
    """The tiny trained model exported (the real export path) as <root>/models/MODEL_NAME/1;
    returns the base path."""
    from mlserve.model.export import export_model

    base = root / "models" / MODEL_NAME
    export_model(train_tiny_model(root), base, 1, model_name=MODEL_NAME)
    return base


def reference_probabilities(base: Path, images: np.ndarray) -> np.ndarray:
    """The exported SavedModel run in this process: what every server must answer."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(base / "1"))
    out = loaded.signatures["serving_default"](Conv1_input=tf.constant(images, dtype=tf.float32))
    return out["softmax"].numpy()


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

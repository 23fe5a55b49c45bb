"""Untrained tiny SavedModels for the server tests, and a batch of images for them.

`export_digits(dst, seed)` writes a SavedModel with the course's exact signature (serving_default:
`Conv1_input` float32 [-1,28,28,1] -> `softmax` float32 [-1,10]); `export_examples(dst)` one taking
serialized tf.Example with classify/regress signatures. The server fixtures (tests/server/conftest.py)
export each once per session and copy it, since an export costs seconds of TF graph building.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def export_digits(path: Path, seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(2, 3, strides=2, activation="relu", name="Conv1"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="Softmax"),
    ])

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(Conv1_input: Any) -> dict[str, Any]:  # noqa: N803 - argument name = input key
        return {"softmax": model(Conv1_input, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def export_examples(path: Path) -> None:
    """A model taking serialized tf.Example (feature x: 2 floats) with classify/regress signatures."""
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([2], tf.float32)}

    def features(serialized: Any) -> Any:
        return tf.io.parse_example(serialized, spec)["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs: Any) -> dict[str, Any]:
        x = features(inputs)
        scores = tf.nn.softmax(x)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs: Any) -> dict[str, Any]:
        return {"outputs": tf.reduce_sum(features(inputs), axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def predict(x: Any) -> dict[str, Any]:
        return {"y": tf.reduce_sum(x, axis=1, keepdims=True)}

    module = tf.Module()
    module.fns = [classify, regress, predict]
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": predict, "classify_x": classify, "regress_x": regress})


def digits_batch(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)

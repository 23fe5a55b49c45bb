"""Server fixtures shared by the server tests: tiny SavedModels and a real server subprocess.

`digits_export(dst, seed)` writes a SavedModel with the course's exact signature (serving_default:
`Conv1_input` float32 [-1,28,28,1] -> `softmax` float32 [-1,10]); models are exported once per
session and copied, since an export costs seconds of TF graph building. Servers come from the
`start_server` fixture of tests/conftest.py (tests/servers.py: free ports, every model AVAILABLE).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from servers import ServerProcess, wait_available  # noqa: F401 - the server tests import them from here

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL_NAME = "digits_model"
_TEMPLATES: dict[str, Path] = {}


def _export_digits(path: Path, seed: int) -> None:
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


def _export_examples(path: Path) -> None:
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


def _template(kind: str, factory: Callable[[Path], None], root: Path) -> Path:
    if kind not in _TEMPLATES:
        path = root / kind
        factory(path)
        _TEMPLATES[kind] = path
    return _TEMPLATES[kind]


@pytest.fixture(scope="session")
def model_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`template(kind)`: a session-cached SavedModel: "digits" (seed 1), "digits2" (seed 2), "examples"."""
    root = tmp_path_factory.mktemp("saved-model-templates")
    factories = {"digits": lambda p: _export_digits(p, 1), "digits2": lambda p: _export_digits(p, 2),
                 "examples": _export_examples}
    return lambda kind: _template(kind, factories[kind], root)


@pytest.fixture
def write_version(model_templates: Callable[[str], Path]) -> Callable[..., Path]:
    """`write_version(base_path, n, kind="digits")`: copy a SavedModel into base_path/n atomically."""

    def write(base_path: Path, version: int, kind: str = "digits") -> Path:
        base_path = Path(base_path)
        base_path.mkdir(parents=True, exist_ok=True)
        tmp = base_path / f".tmp-{version}-{os.getpid()}"
        shutil.copytree(model_templates(kind), tmp)
        target = base_path / str(version)
        tmp.rename(target)
        return target

    return write


@pytest.fixture
def digits_base(tmp_path: Path, write_version: Callable[..., Path]) -> Path:
    """`<tmp>/models/digits_model` holding version 1 of the tiny course-signature model."""
    base = tmp_path / "models" / MODEL_NAME
    write_version(base, 1)
    return base




def digits_batch(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


# Servers: the `start_server` fixture of tests/conftest.py (tests/servers.py launches and waits).


@pytest.fixture(scope="session")
def half_plus_two_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's testdata `half_plus_two` (see `half_plus_two.py`), built once per session."""
    from .half_plus_two import build_half_plus_two

    root = tmp_path_factory.mktemp("half-plus-two")
    build_half_plus_two(root / "export", root / "original-assets")
    return root / "export"


@pytest.fixture
def half_plus_two_base(tmp_path: Path, half_plus_two_template: Path) -> Path:
    """`<tmp>/models/half_plus_two/123` holding TF Serving's half_plus_two."""
    base = tmp_path / "models" / "half_plus_two"
    shutil.copytree(half_plus_two_template, base / "123")
    return base

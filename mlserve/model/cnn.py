"""The course model: build it, train it on MNIST, evaluate it, save it with a record of how it was made.

    keras.Sequential([Conv2D(8, 3, strides=2, relu, name='Conv1'), Flatten(), Dense(10, softmax)])

TensorFlow is imported inside the functions, never at module level.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from mlserve import settings
from mlserve.model.data import MnistData, load_mnist, prepare_images
from mlserve.errors import DataError, NotFoundError, UsageError
from mlserve.tfquiet import quiet_tensorflow
from mlserve.workspace import Workspace

MODEL_FILE = "model.keras"
RECORD_FILE = "record.json"
INPUT_NAME = "Conv1_input"
OUTPUT_NAME = "softmax"
DEFAULT_EPOCHS = 5
DEFAULT_BATCH_SIZE = 32  # Keras's own default, which the course's model.fit() used


class TrainingListener:
    """Hooks that `train` calls while Keras trains (the CLI draws a rich progress bar with them)."""

    def train_begin(self, epochs: int, steps_per_epoch: int) -> None: ...

    def batch_end(self, epoch: int, step: int) -> None: ...

    def epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...


@dataclass
class TrainResult:
    """What a training run produced: where the model and its record are, and how well it does."""

    model_path: Path
    record_path: Path
    test_accuracy: float
    test_loss: float
    epochs: int
    batch_size: int
    seed: int | None
    duration_s: float
    history: dict[str, list[float]]
    data_source: str
    data_description: str
    record: dict[str, Any] = field(repr=False, default_factory=dict)
    model: Any = field(repr=False, default=None)  # the trained keras.Model, for callers in-process


def build_model() -> Any:
    """The course's CNN, compiled: adam, sparse categorical cross-entropy, accuracy."""
    quiet_tensorflow()  # before keras: TensorFlow's start-up lines stay off the terminal
    import keras

    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name=INPUT_NAME),
            keras.layers.Conv2D(filters=8, kernel_size=3, strides=2, activation="relu", name="Conv1"),
            keras.layers.Flatten(),
            # The string 'softmax', not tf.nn.softmax: a .keras file with the latter does not load back.
            keras.layers.Dense(10, activation="softmax", name=OUTPUT_NAME),
        ],
        name="digits_cnn",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def default_output(model_name: str | None = None, home: str | None = None) -> Path:
    """The workspace folder of a trained model: <home>/trained/<model_name>/."""
    return Workspace.current(home).trained_dir(settings.get("model_name", model_name))


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A trained model's .keras file, given the file itself or the folder that holds model.keras."""
    p = Path(path).expanduser()
    return p / MODEL_FILE if p.is_dir() or p.suffix != ".keras" else p


def record_path_for(model_path: Path) -> Path:
    """The record.json that belongs to a model file (model.keras -> record.json, x.keras -> x.json)."""
    return model_path.with_name(RECORD_FILE if model_path.name == MODEL_FILE else model_path.stem + ".json")


def train(
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int | None = None,
    data: str | os.PathLike | None = None,
    mnist: MnistData | None = None,
    output: str | os.PathLike | None = None,
    model_name: str | None = None,
    allow_download: bool = True,
    listener: TrainingListener | None = None,
) -> TrainResult:
    """Train the course model, evaluate it on the test split, save model.keras + record.json.

    `mnist` is data already loaded (else `load_mnist(data, allow_download=...)`); `output` is a folder
    (default <home>/trained/<model_name>/) or a path ending in .keras. `seed` makes the run
    reproducible (keras.utils.set_random_seed plus deterministic ops).
    """
    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    name = settings.get("model_name", model_name)
    model_path = resolve_model_path(output) if output is not None else default_output(name) / MODEL_FILE
    if model_path.parent.exists() and not model_path.parent.is_dir():
        raise UsageError(f"--output {output} is a file, not a folder or a .keras path",
                         hint="give a folder, or a path ending in .keras")
    if mnist is None:
        mnist = load_mnist(data, allow_download=allow_download)

    quiet_tensorflow()  # before keras: TensorFlow's start-up lines stay off the terminal
    import keras
    import tensorflow as tf

    restore_determinism = None
    if seed is not None:
        keras.utils.set_random_seed(seed)
        restore_determinism = _enable_determinism(tf)

    x_train, x_test = prepare_images(mnist.x_train), prepare_images(mnist.x_test)
    model = build_model()
    callbacks = [_keras_callback(listener, epochs, math.ceil(len(x_train) / batch_size))] if listener else []

    started = time.perf_counter()
    try:
        fit = model.fit(x_train, mnist.y_train, epochs=epochs, batch_size=batch_size, verbose=0,
                        callbacks=callbacks)
        test_loss, test_accuracy = model.evaluate(x_test, mnist.y_test, batch_size=256, verbose=0)
    finally:
        if restore_determinism is not None:
            restore_determinism()
    duration = time.perf_counter() - started

    history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
    record = {
        "model_name": name,
        "model_path": str(model_path.resolve()),
        "data": {"source": mnist.source, "description": mnist.description, "path": mnist.path,
                 **{f"{k}_size": v for k, v in mnist.sizes.items()}},
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": seed,
        "test_accuracy": float(test_accuracy),
        "test_loss": float(test_loss),
        "duration_s": round(duration, 3),
        "history": history,
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record_path = record_path_for(model_path)
    _save(model, model_path, record, record_path)
    return TrainResult(model_path=model_path, record_path=record_path,
                       test_accuracy=float(test_accuracy), test_loss=float(test_loss), epochs=epochs,
                       batch_size=batch_size, seed=seed, duration_s=duration, history=history,
                       data_source=mnist.source, data_description=mnist.description, record=record,
                       model=model)


def load_trained(path: str | os.PathLike) -> Any:
    """Load a trained .keras model (the file or its folder); NotFoundError / DataError otherwise."""
    model_path = resolve_model_path(path)
    if not model_path.is_file():
        raise NotFoundError(f"no trained model at {model_path}",
                            hint="run `mlserve train` first, or give the .keras file with --model")
    quiet_tensorflow()  # before keras: TensorFlow's start-up lines stay off the terminal
    import keras

    try:
        return keras.saving.load_model(model_path, compile=False)
    except Exception as e:
        first = str(e).strip().splitlines()
        raise DataError(f"{model_path} cannot be loaded as a Keras model: "
                        f"{first[0] if first else type(e).__name__}",
                        hint="retrain it with `mlserve train`") from e


def read_record(model_path: str | os.PathLike) -> dict[str, Any] | None:
    """The record.json beside a trained model, or None when there is none or it is unreadable."""
    path = record_path_for(resolve_model_path(model_path))
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _save(model: Any, model_path: Path, record: dict[str, Any], record_path: Path) -> None:
    # Write beside the target, then rename: a crash never leaves a half-written model.keras behind.
    model_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_model = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=model_path.parent)
    os.close(fd)
    tmp_record = record_path.with_name(f".tmp-{os.getpid()}-{record_path.name}")
    try:
        model.save(tmp_model)
        tmp_record.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp_model, model_path)
        os.replace(tmp_record, record_path)
    finally:
        for leftover in (Path(tmp_model), tmp_record):
            leftover.unlink(missing_ok=True)


def _enable_determinism(tf: Any) -> Callable[[], None] | None:
    """Turn on deterministic ops (so a seed means one result); return how to turn them off again.

    Multi-threaded kernels may sum floats in any order; determinism is process-wide in TensorFlow, so
    a library call restores the previous state rather than change it for its caller.
    """
    try:
        from tensorflow.python.framework import config as tf_config

        was_enabled = tf_config.is_op_determinism_enabled()
        disable = tf_config.disable_op_determinism
    except (ImportError, AttributeError):  # older/newer TF without the switch back: leave it on
        was_enabled, disable = True, None
    tf.config.experimental.enable_op_determinism()
    return None if was_enabled else disable


def _keras_callback(listener: TrainingListener, epochs: int, steps: int) -> Any:
    quiet_tensorflow()  # before keras: TensorFlow's start-up lines stay off the terminal
    import keras

    class _Relay(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_train_begin(self, logs: dict | None = None) -> None:
            listener.train_begin(epochs, steps)

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            listener.batch_end(self.epoch, batch)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            listener.epoch_end(epoch, {k: float(v) for k, v in (logs or {}).items()})

    return _Relay()

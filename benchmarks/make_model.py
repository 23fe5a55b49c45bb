"""Produce the SavedModel the serving benchmark loads: `<base>/<version>/saved_model.pb`.

Preferred path: mlserve's own workflow (`mlserve train --epochs 1` then `mlserve export`) into a
private workspace, so the benchmark serves exactly what a user would. If they fail (no MNIST
download here, say), it writes a small SavedModel with the same contract instead: the course CNN
(Conv2D 8x3x3 stride 2 -> Flatten -> Dense 10 softmax), signature `serving_default`, input
`Conv1_input` float32 [-1, 28, 28, 1], output `softmax` float32 [-1, 10]. Its weights are random:
serving cost does not depend on them.

Usage: python benchmarks/make_model.py WORKDIR   (prints the model base path on stdout)
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MODEL_NAME = "digits_model"


def _versions(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if p.name.isdigit() and (p / "saved_model.pb").exists())


def via_mlserve(workdir: Path, log: Path) -> Path | None:
    """Train 1 epoch and export with the mlserve CLI; None if that fails."""
    home = workdir / "home"
    env = dict(os.environ, MLSERVE_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="2")
    mlserve = [sys.executable, "-m", "mlserve"]
    with log.open("ab") as out:
        for args in (["train", "--epochs", "1"], ["export"]):
            try:
                done = subprocess.run(mlserve + args, env=env, stdout=out, stderr=out, timeout=600)
            except subprocess.TimeoutExpired:
                return None
            if done.returncode != 0:
                return None
    base = home / "models" / MODEL_NAME
    return base if _versions(base) else None


def tiny_saved_model(base: Path) -> Path:
    """Write the course CNN with random weights as `<base>/1`, with the serving contract."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    keras = tf.keras
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1), name="Conv1_input"),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="Conv1"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax", name="Softmax"),
        ]
    )

    class Servable(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
        def serve(self, Conv1_input: tf.Tensor) -> dict[str, tf.Tensor]:  # noqa: N803 - wire name
            return {"softmax": self.model(Conv1_input, training=False)}

    servable = Servable()
    target = base / "1"
    tf.saved_model.save(servable, str(target), signatures={"serving_default": servable.serve})
    return base


def make(workdir: Path) -> tuple[Path, str]:
    """Return (model base path, how it was made)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for base, how in ((workdir / "home" / "models" / MODEL_NAME, "mlserve train+export"),
                      (workdir / "tiny" / MODEL_NAME, "tiny SavedModel (random weights)")):
        if _versions(base):
            return base, how  # reuse: the model does not change between runs
    base = via_mlserve(workdir, workdir / "make_model.log")
    if base is not None:
        return base, "mlserve train+export"
    return tiny_saved_model(workdir / "tiny" / MODEL_NAME), "tiny SavedModel (random weights)"


if __name__ == "__main__":
    base, how = make(Path(sys.argv[1]))
    print(base)
    print(how, file=sys.stderr)

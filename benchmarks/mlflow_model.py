"""Package the benchmark's SavedModel as an MLflow model (runs inside benchmarks/.venv).

A pyfunc wrapper that calls the SavedModel's `serving_default` signature, the way an MLflow user
serves a SavedModel they did not train with MLflow. `mlflow models serve --env-manager local`
then answers `{"instances": [...]}` at /invocations with `{"predictions": [...]}`.

Usage: benchmarks/.venv/bin/python benchmarks/mlflow_model.py SAVED_MODEL_VERSION_DIR OUT_DIR
"""
from __future__ import annotations

import shutil
import sys

import mlflow.pyfunc


class DigitsModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        import tensorflow as tf

        self._tf = tf
        self._infer = tf.saved_model.load(context.artifacts["saved_model"]).signatures["serving_default"]

    def predict(self, context, model_input, params=None):
        import numpy as np

        images = self._tf.constant(np.asarray(model_input, dtype=np.float32))
        return self._infer(Conv1_input=images)["softmax"].numpy()


if __name__ == "__main__":
    saved_model, out = sys.argv[1], sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    mlflow.pyfunc.save_model(path=out, python_model=DigitsModel(), artifacts={"saved_model": saved_model})
    print(out)

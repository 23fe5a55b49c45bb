"""The server a user writes without a serving system: FastAPI + uvicorn + the SavedModel.

Written the way a competent tutorial does it, not sabotaged: the model is loaded once at start-up,
the body is validated by a pydantic model, the array is built with NumPy (not a per-value Python
loop), and the call goes straight to the SavedModel's `serving_default` concrete function (not
Keras `predict`, which is slow per call). It speaks TF Serving's REST predict API so the same load
hits every server.

Two endpoint styles, both common in tutorials; the benchmark runs both and compares mlserve with
the better one:
- default: `async def`, the model called inline on the event loop (the call takes well under 1 ms);
- BENCH_THREADPOOL=1: a plain `def`, which FastAPI runs in its thread pool (what FastAPI's docs
  advise for blocking calls).

Run: BENCH_MODEL_DIR=<base>/<version> uvicorn handwritten:app --app-dir benchmarks/apps
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from fastapi import FastAPI
from pydantic import BaseModel

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "digits_model")
model = tf.saved_model.load(os.environ["BENCH_MODEL_DIR"])
infer = model.signatures["serving_default"]

app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[list[list[list[float]]]]


@app.get(f"/v1/models/{MODEL_NAME}")
def status() -> dict:
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}


def run_model(body: PredictRequest) -> dict:
    images = tf.constant(np.asarray(body.instances, dtype=np.float32))
    scores = infer(Conv1_input=images)["softmax"]
    return {"predictions": scores.numpy().tolist()}


if os.environ.get("BENCH_THREADPOOL") == "1":

    @app.post(f"/v1/models/{MODEL_NAME}:predict")
    def predict(body: PredictRequest) -> dict:
        return run_model(body)

else:

    @app.post(f"/v1/models/{MODEL_NAME}:predict")
    async def predict(body: PredictRequest) -> dict:
        return run_model(body)

"""The bar a Python web stack must clear: parse the same body, return a canned answer, no model.

Same framework, server and body model as handwritten.py, but an `async def` endpoint (no thread
pool hop) that answers one fixed score row per instance. A serving system that beats this with a
real model makes the model's cost invisible at this request size.

Run: uvicorn canned:app --app-dir benchmarks/apps
"""
from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel

MODEL_NAME = os.environ.get("BENCH_MODEL_NAME", "digits_model")
ROW = [0.1] * 10

app = FastAPI()


class PredictRequest(BaseModel):
    instances: list[list[list[list[float]]]]


@app.get(f"/v1/models/{MODEL_NAME}")
async def status() -> dict:
    return {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}


@app.post(f"/v1/models/{MODEL_NAME}:predict")
async def predict(body: PredictRequest) -> dict:
    return {"predictions": [ROW] * len(body.instances)}

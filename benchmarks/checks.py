"""Is a server up, and does it answer correctly? Checked before any load is sent."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from bodies import MODEL_NAME, grpc_request
from procs import tail


def http(method: str, url: str, body: bytes | None = None, timeout: float = 30) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def check_predictions(payload: bytes, n: int) -> None:
    """The answer is TF Serving's: {"predictions": n rows of 10 scores}."""
    predictions = json.loads(payload)["predictions"]
    if len(predictions) != n or any(len(row) != 10 for row in predictions):
        raise RuntimeError(f"bad predictions shape: {len(predictions)} rows")


def check_grpc(port: int, n: int) -> None:
    """One Predict through the official TF Serving stubs; the output is softmax [n, 10]. h2load
    cannot read gRPC trailers (a failed call still counts as HTTP 200), so this is the proof that
    the load's answers are real answers."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest.FromString(grpc_request(n))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    dims = [d.size for d in response.outputs["softmax"].tensor_shape.dim]
    if dims != [n, 10]:
        raise RuntimeError(f"gRPC softmax shape {dims}, expected [{n}, 10]")


def wait_until(proc: subprocess.Popen, logfile: Path, ready: Callable[[], bool], timeout: float) -> None:
    """Poll `ready` while watching the child: fail at once with its log tail if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(logfile)}")
        try:
            if ready():
                return
        except (OSError, ValueError, KeyError, RuntimeError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"not ready after {timeout:.0f}s:\n{tail(logfile)}")


def tf_serving_available(rest_port: int) -> bool:
    status, payload = http("GET", f"http://127.0.0.1:{rest_port}/v1/models/{MODEL_NAME}", timeout=5)
    states = [v.get("state") for v in json.loads(payload).get("model_version_status", [])]
    return status == 200 and "AVAILABLE" in states

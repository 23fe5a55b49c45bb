"""The measurement-only HTTP/2 gRPC prototype (`benchmarks/h2_grpc_prototype.py`) answers TF Serving's
official stubs exactly as the real grpcio server in the same process does, so its benchmark
figures are figures of real answers."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from .conftest import MODEL_NAME, digits_batch

pytestmark = pytest.mark.slow

PROTOTYPE = Path(__file__).resolve().parents[2] / "benchmarks" / "h2_grpc_prototype.py"


def _request(x: np.ndarray, name: str = MODEL_NAME) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    tensor = req.inputs["Conv1_input"]
    tensor.dtype = 1  # DT_FLOAT
    for size in x.shape:
        tensor.tensor_shape.dim.add().size = size
    tensor.tensor_content = x.tobytes()
    return req


def _predict(port: int, request: Any) -> Any:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


@pytest.mark.parametrize("batching", [False, True])
def test_prototype_answers_equal_grpcio(digits_base: Path, tmp_path: Path, batching: bool) -> None:
    pytest.importorskip("hpack")
    flags = [f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}"]
    if batching:
        flags.append("--enable_batching")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, str(PROTOTYPE), "serve", *flags], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, env=env)
    try:
        line = proc.stdout.readline()
        assert line, (tmp_path / "server.log").read_text()[-2000:]
        ports = json.loads(line)
        for n in (1, 3):
            x = digits_batch(n, seed=n)
            ours, real = _predict(ports["h2"], _request(x)), _predict(ports["grpc"], _request(x))
            assert ours == real
            assert np.asarray(ours.outputs["softmax"].float_val).reshape(n, 10).sum(axis=1) == pytest.approx(1, abs=1e-5)
        for port in (ports["h2"], ports["grpc"]):
            with pytest.raises(grpc.RpcError) as missing:
                _predict(port, _request(digits_batch(1), name="no_such_model"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with grpc.insecure_channel(f"127.0.0.1:{ports['h2']}") as channel:
            status = channel.unary_unary("/tensorflow.serving.PredictionService/Classify")
            with pytest.raises(grpc.RpcError) as other:
                status(b"", timeout=10)
        assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0

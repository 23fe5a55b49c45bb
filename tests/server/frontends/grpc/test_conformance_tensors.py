"""gRPC TensorProto decoding as TensorFlow's Tensor::FromProto (tensor.cc), and string outputs.
Real server processes, TF Serving's stubs."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
import requests

from support.models import MODEL_NAME
from support.servers import ServerProcess


def _export_strings(path: Path) -> None:
    """A predict signature with string outputs: `label` and `label_bytes` ("neg"/"pos" per row)."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def serve(x: Any) -> dict[str, Any]:
        label = tf.where(x[:, 0] > 0, tf.constant("pos"), tf.constant("neg"))
        return {"label": label, "label_bytes": label, "y": x * 2.0}

    module = tf.Module()
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


@pytest.fixture
def grpc_server(start_server: Callable[..., ServerProcess], digits_base: Path) -> ServerProcess:
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}")


def _call(server: ServerProcess, proto: Any) -> Any:
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.inputs["Conv1_input"].CopyFrom(proto)
    with grpc.insecure_channel(server.grpc_target) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)


def _proto(dtype: int, dims: list[int], **fields: Any) -> Any:
    from tensorflow.core.framework import tensor_pb2

    proto = tensor_pb2.TensorProto(dtype=dtype, **fields)
    for d in dims:
        proto.tensor_shape.dim.add().size = d
    return proto


@pytest.mark.parametrize("proto_args", [
    (1, [1, 28, 28, 1], {"tensor_content": b"\0" * 100}),  # content length != shape
    (1, [-2, 28, 28, 1], {"float_val": [0.5]}),  # negative dimension
    (0, [1, 28, 28, 1], {"float_val": [0.5]}),  # DT_INVALID
    (99, [1, 28, 28, 1], {"float_val": [0.5]}),  # no such dtype
], ids=["content-length", "negative-dim", "zero-dtype", "unknown-dtype"])
def test_unparseable_tensor_is_invalid_argument(grpc_server: ServerProcess, proto_args: tuple) -> None:
    dtype, dims, fields = proto_args
    with pytest.raises(grpc.RpcError) as err:
        _call(grpc_server, _proto(dtype, dims, **fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "tensor parsing error: Conv1_input"


def test_short_value_list_repeats_its_last_value(grpc_server: ServerProcess) -> None:
    import tensorflow as tf

    short = _call(grpc_server, _proto(1, [2, 28, 28, 1], float_val=[0.25]))
    full = _call(grpc_server, tf.make_tensor_proto(np.full((2, 28, 28, 1), 0.25, np.float32)))
    assert tf.make_ndarray(short.outputs["softmax"]).tolist() == tf.make_ndarray(full.outputs["softmax"]).tolist()


def test_string_outputs_load_and_serve(start_server: Callable[..., ServerProcess], tmp_path: Path) -> None:
    base = tmp_path / "strings"
    _export_strings(base / "1")
    server = start_server("--model_name=strings", f"--model_base_path={base}", models=["strings"])
    r = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/strings:predict",
                      json={"instances": [[1.0], [-1.0]]}, timeout=30)
    assert r.status_code == 200, r.text
    b64 = {"b64": base64.b64encode(b"pos").decode()}, {"b64": base64.b64encode(b"neg").decode()}
    assert r.json() == {"predictions": [{"label": "pos", "label_bytes": b64[0], "y": [2.0]},
                                        {"label": "neg", "label_bytes": b64[1], "y": [-2.0]}]}
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    req = predict_pb2.PredictRequest()
    req.model_spec.name = "strings"
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[3.0]], np.float32)))
    with grpc.insecure_channel(server.grpc_target) as channel:
        resp = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    assert list(resp.outputs["label"].string_val) == [b"pos"]

"""TF Serving's execution semantics: shapes are TensorFlow's to judge, dtypes are not cast, and no
input ends the server. Real servers on ephemeral ports, real TensorFlow, TF Serving's stubs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
import requests

from support.models import MODEL_NAME
from support.servers import ServerProcess
from support.tinymodels import digits_batch


def _predict_stub(server: ServerProcess):  # noqa: ANN202
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc_target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _rest(server: ServerProcess, path: str, body: object) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{server.rest_port}{path}", json=body, timeout=30)


@pytest.fixture
def digits_server(start_server: Callable[..., ServerProcess], digits_base: Path) -> ServerProcess:
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}")


def test_wrong_rank_is_400_with_tensorflows_message_and_the_server_goes_on(
        digits_server: ServerProcess) -> None:
    path = f"/v1/models/{MODEL_NAME}:predict"
    for bad in (np.zeros((28, 28, 1)).tolist(), np.zeros((2, 28, 28)).tolist(), [1.0, 2.0]):
        r = _rest(digits_server, path, {"instances": bad})
        assert r.status_code == 400, r.text
        assert "Shape must be rank 4 but is rank" in r.json()["error"] or "rank" in r.json()["error"]
    good = _rest(digits_server, path, {"instances": digits_batch(2).tolist()})
    assert good.status_code == 200
    assert np.allclose(np.sum(good.json()["predictions"], axis=1), 1.0, atol=1e-5)

    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2

    channel, stub = _predict_stub(digits_server)
    with channel:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL_NAME
        wrong = tensor_pb2.TensorProto(dtype=1)
        for d in (28, 28, 1):
            wrong.tensor_shape.dim.add().size = d
        wrong.tensor_content = np.zeros((28, 28, 1), np.float32).tobytes()
        req.inputs["Conv1_input"].CopyFrom(wrong)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "rank 4" in err.value.details()
    assert digits_server.proc.poll() is None
    again = _rest(digits_server, path, {"instances": digits_batch(1).tolist()})
    assert again.status_code == 200 and len(again.json()["predictions"][0]) == 10


def test_shape_the_graph_cannot_take_at_run_time_is_invalid_argument(digits_server: ServerProcess) -> None:
    """[2,30,30,1] passes shape inference; the graph's own Reshape refuses it when it runs."""
    r = _rest(digits_server, f"/v1/models/{MODEL_NAME}:predict",
              {"instances": np.zeros((2, 30, 30, 1)).tolist()})
    assert r.status_code == 400
    assert "Input to reshape is a tensor with" in r.json()["error"]
    assert digits_server.proc.poll() is None


def test_grpc_dtype_other_than_the_signatures_is_refused_not_cast(digits_server: ServerProcess) -> None:
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2

    channel, stub = _predict_stub(digits_server)
    with channel:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL_NAME
        t = tensor_pb2.TensorProto(dtype=2)  # DT_DOUBLE against DT_FLOAT
        for d in (1, 28, 28, 1):
            t.tensor_shape.dim.add().size = d
        t.tensor_content = np.zeros((1, 28, 28, 1), np.float64).tobytes()
        req.inputs["Conv1_input"].CopyFrom(t)
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(req, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "Expects arg[0] to be float but double is provided"


def test_per_model_batching_params(start_server: Callable[..., ServerProcess], tmp_path: Path,
                                   write_version: Callable[..., Path]) -> None:
    """--enable_per_model_batching_params: a version's batching_params.pbtxt batches that model
    with its parameters; a model without one is not batched (bundle_factory_util.cc)."""
    batched, plain = tmp_path / "batched", tmp_path / "plain"
    (write_version(batched, 1) / "batching_params.pbtxt").write_text(
        "max_batch_size { value: 2 } batch_timeout_micros { value: 1000 }")
    write_version(plain, 1)
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
        config {{ name: 'batched' base_path: '{batched}' model_platform: 'tensorflow' }}
        config {{ name: 'plain' base_path: '{plain}' model_platform: 'tensorflow' }} }}""")
    server = start_server(f"--model_config_file={config}", "--enable_batching",
                          "--enable_per_model_batching_params", models=["batched", "plain"])
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    def predict(model: str, rows: int) -> Any:
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model
        req.inputs["Conv1_input"].CopyFrom(tf.make_tensor_proto(digits_batch(rows)))
        return stub.Predict(req, timeout=30)

    channel, stub = _predict_stub(server)  # gRPC: every predict goes through the batcher
    with channel:
        with pytest.raises(grpc.RpcError) as err:
            predict("batched", 3)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == "Task size 3 is larger than maximum input batch size 2"
        assert tf.make_ndarray(predict("batched", 2).outputs["softmax"]).shape == (2, 10)
        assert tf.make_ndarray(predict("plain", 3).outputs["softmax"]).shape == (3, 10)

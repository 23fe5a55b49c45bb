"""TF Serving's README Docker quickstart and g3doc/api_rest.md examples against TF Serving's own
testdata model `half_plus_two` (rebuilt by `support/half_plus_two.py`), over REST and gRPC.

api_rest.md shows its examples on `saved_model_half_plus_three` (y = 0.5x + 3); the same
requests are sent to half_plus_two (y = 0.5x + 2) and the documented answers shifted by one."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import grpc
import numpy as np
import pytest
import requests

from support.servers import ServerProcess

NAME = "half_plus_two"


@pytest.fixture
def hp2(start_server: Callable[..., ServerProcess], half_plus_two_base: Path, tmp_path: Path) -> ServerProcess:
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    return start_server(f"--model_name={NAME}", f"--model_base_path={half_plus_two_base}",
                        f"--monitoring_config_file={monitoring}", models=[NAME])


def _url(server: ServerProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.rest_port}{path}"


def test_readme_docker_quickstart(hp2: ServerProcess) -> None:
    r = requests.post(_url(hp2, f"/v1/models/{NAME}:predict"), data='{"instances": [1.0, 2.0, 5.0]}', timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"predictions": [2.5, 3.0, 4.5]}


def test_api_rest_md_examples(hp2: ServerProcess) -> None:
    status = requests.get(_url(hp2, f"/v1/models/{NAME}"), timeout=30)
    assert status.json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    regress = requests.post(_url(hp2, f"/v1/models/{NAME}:regress"), timeout=30, data=(
        '{"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}, {"x": 2.0}]}'))
    assert regress.status_code == 200, regress.text
    assert regress.json() == {"results": [2.5, 3.0]}
    missing = requests.post(_url(hp2, "/v1/models/half:predict"), data='{"instances": [1.0,5.0]}', timeout=30)
    assert missing.status_code == 404
    assert missing.json() == {"error": "Servable not found for request: Latest(half)"}


@pytest.mark.parametrize("body,expected", [
    ({"instances": [[1.0], [2.0], [5.0]]}, {"predictions": [[2.5], [3.0], [4.5]]}),
    ({"instances": [[1.0, 2.0], [3.0, 4.0]]}, {"predictions": [[2.5, 3.0], [3.5, 4.0]]}),
    ({"inputs": [1.0, 2.0, 5.0]}, {"outputs": [2.5, 3.0, 4.5]}),
    ({"inputs": {"x": [1.0, 2.0]}}, {"outputs": [2.5, 3.0]}),
    ({"inputs": 3.0}, {"outputs": 3.5}),
])
def test_elementwise_model_takes_any_shape(hp2: ServerProcess, body: dict, expected: dict) -> None:
    r = requests.post(_url(hp2, f"/v1/models/{NAME}:predict"), json=body, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == expected


def test_grpc_quickstart_and_scalar(hp2: ServerProcess) -> None:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

    with grpc.insecure_channel(hp2.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for x, want in ((np.array([1.0, 2.0, 5.0], np.float32), [2.5, 3.0, 4.5]),
                        (np.array(3.0, np.float32), 3.5),
                        (np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), [[2.5, 3.0], [3.5, 4.0]])):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = NAME
            req.inputs["x"].CopyFrom(tf.make_tensor_proto(x))
            resp = stub.Predict(req, timeout=30)
            assert tf.make_ndarray(resp.outputs["y"]).tolist() == want
            assert resp.model_spec.version.value == 123
        reg = regression_pb2.RegressionRequest()
        reg.model_spec.name = NAME
        reg.model_spec.signature_name = "regress_x_to_y"
        for v in (1.0, 2.0):
            reg.input.example_list.examples.add().features.feature["x"].float_list.value.append(v)
        assert [r.value for r in stub.Regress(reg, timeout=30).result.regressions] == [2.5, 3.0]


def test_signature_method_name_check_flag(start_server: Callable[..., ServerProcess],
                                          half_plus_two_base: Path) -> None:
    """--enable_signature_method_name_check: classify.cc/regressor.cc refuse a signature of
    another method; predict takes predict, classify and regress signatures (predict_util.cc)."""
    server = start_server(f"--model_name={NAME}", f"--model_base_path={half_plus_two_base}",
                          "--enable_signature_method_name_check", models=[NAME])
    examples = {"examples": [{"x": 1.0}]}
    r = requests.post(_url(server, f"/v1/models/{NAME}:classify"), json=examples, timeout=30)
    assert r.status_code == 400
    assert r.json() == {"error": "Expected classification signature method_name to be "
                                 "tensorflow/serving/classify. Was: tensorflow/serving/predict"}
    r = requests.post(_url(server, f"/v1/models/{NAME}:regress"),
                      json={"signature_name": "classify_x_to_y", **examples}, timeout=30)
    assert r.json() == {"error": "Expected regression signature method_name to be "
                                 "tensorflow/serving/regress. Was: tensorflow/serving/classify"}
    r = requests.post(_url(server, f"/v1/models/{NAME}:regress"),
                      json={"signature_name": "regress_x_to_y", **examples}, timeout=30)
    assert r.json() == {"results": [2.5]}


def test_error_words_of_model_spec_status_label_and_metadata(hp2: ServerProcess) -> None:
    from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc,
                                         predict_pb2, prediction_service_pb2_grpc)

    # get_model_status_impl.cc reads only the version: a label (known or not) lists every version
    for path in (f"/v1/models/{NAME}/labels/nope", f"/v1/models/{NAME}/labels/stable"):
        r = requests.get(_url(hp2, path), timeout=30)
        assert r.status_code == 200 and r.json()["model_version_status"][0]["version"] == "123"
    with grpc.insecure_channel(hp2.grpc_target) as channel:
        models = model_service_pb2_grpc.ModelServiceStub(channel)
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = NAME
        status.model_spec.version_label = "nope"
        assert [s.version for s in models.GetModelStatus(status, timeout=30).model_version_status] == [123]

        predict = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            predict.Predict(predict_pb2.PredictRequest(), timeout=30)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
        meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["nope"])
        meta.model_spec.name = "no_such_model"
        with pytest.raises(grpc.RpcError) as err:
            predict.GetModelMetadata(meta, timeout=30)
        # ValidateGetModelMetadataRequest runs first, over every field, before the model lookup
        assert err.value.details() == "Metadata field nope is not supported"
        meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def", "foo"])
        meta.model_spec.name = "no_such_model"
        with pytest.raises(grpc.RpcError) as err:
            predict.GetModelMetadata(meta, timeout=30)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                           "Metadata field foo is not supported")


def test_multi_inference_checks_in_tf_servings_order(hp2: ServerProcess) -> None:
    from tensorflow_serving.apis import inference_pb2, prediction_service_pb2_grpc

    def request(*tasks: tuple[str, str, str]) -> inference_pb2.MultiInferenceRequest:
        req = inference_pb2.MultiInferenceRequest()
        for name, signature, method in tasks:
            task = req.tasks.add(method_name=method)
            task.model_spec.name = name
            task.model_spec.signature_name = signature
        req.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
        return req

    classify, regress = "tensorflow/serving/classify", "tensorflow/serving/regress"
    cases = [
        (request(), "ModelSpec has no name specified."),
        (request((NAME, "regress_x_to_y", regress), ("", "regress_x_to_y2", regress)),
         "Found ModelSpec with an empty model name."),
        (request((NAME, "regress_x_to_y", regress), (NAME, "nope", regress)),
         "Requested signature not found in model graph: nope"),
        (request((NAME, "regress_x_to_y", regress), (NAME, "regress_x_to_y", classify)),
         "Duplicate evaluation of signature: regress_x_to_y"),
    ]
    with grpc.insecure_channel(hp2.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for req, message in cases:
            with pytest.raises(grpc.RpcError) as err:
                stub.MultiInference(req, timeout=30)
            assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
        # a classify task on the predict signature: classifier.cc's PreProcessClassification
        with pytest.raises(grpc.RpcError) as err:
            stub.MultiInference(request((NAME, "serving_default", classify)), timeout=30)
        assert err.value.details().startswith("No classification inputs found in SignatureDef: ")
        with pytest.raises(grpc.RpcError) as err:
            stub.MultiInference(request((NAME, "regress_x_to_y", "tensorflow/serving/predict")), timeout=30)
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        ok = stub.MultiInference(request((NAME, "regress_x_to_y", regress), (NAME, "regress_x_to_y2", regress),
                                         (NAME, "classify_x_to_y", classify)), timeout=30)
        assert [r.regression_result.regressions[0].value for r in ok.results[:2]] == [2.5, 3.5]
        assert ok.results[2].classification_result.classifications[0].classes[0].score == 2.5
    # util.cc RecordRequestExampleCount: each MultiInference that ran adds its examples (1 here) to
    # the model's counter and histogram (buckets Exponential(1, 2, 15)); refused ones add nothing
    text = requests.get(f"{hp2.url}/monitoring/prometheus/metrics", timeout=10).text
    assert f':tensorflow:serving:request_example_count_total{{model="{NAME}"}} 1' in text
    # TensorFlow's histogram buckets hold [limit[i-1], limit[i]): one example lands under le="2"
    assert f':tensorflow:serving:request_example_counts_bucket{{model="{NAME}",le="1"}} 0' in text
    assert f':tensorflow:serving:request_example_counts_bucket{{model="{NAME}",le="2"}} 1' in text
    assert f':tensorflow:serving:request_example_counts_bucket{{model="{NAME}",le="16384"}} 1' in text
    assert f':tensorflow:serving:request_example_counts_count{{model="{NAME}"}} 1' in text

"""The gRPC API of a real `python -m mlserve.server` process, driven by TF Serving's official stubs."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc, regression_pb2)

from support.models import MODEL_NAME
from support.servers import ServerProcess, wait_available
from support.tinymodels import digits_batch

pytestmark = pytest.mark.slow

AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def _stubs(server: ServerProcess) -> tuple[Any, Any, grpc.Channel]:
    channel = grpc.insecure_channel(server.grpc_target)
    return (prediction_service_pb2_grpc.PredictionServiceStub(channel),
            model_service_pb2_grpc.ModelServiceStub(channel), channel)


def _predict_request(x: np.ndarray, name: str = MODEL_NAME, key: str = "Conv1_input") -> Any:
    import tensorflow as tf

    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.inputs[key].CopyFrom(tf.make_tensor_proto(x))
    return req


def _status(model: Any, name: str) -> dict[int, int]:
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = name
    return {s.version: s.state for s in model.GetModelStatus(req, timeout=10).model_version_status}


def test_predict_status_metadata_and_errors(digits_base: Path, start_server: Callable[..., ServerProcess],
                                            tmp_path: Path) -> None:
    import tensorflow as tf

    log_file = tmp_path / "requests.jsonl"
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", "--grpc_health",
                          f"--request_log={log_file}")
    predict, model, channel = _stubs(server)
    with channel:
        # Predict equals running the SavedModel in this process
        x = digits_batch(3, seed=7)
        resp = predict.Predict(_predict_request(x), timeout=30)
        got = tf.make_ndarray(resp.outputs["softmax"])
        want = tf.saved_model.load(str(digits_base / "1")).signatures["serving_default"](
            Conv1_input=tf.constant(x))["softmax"].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert (resp.model_spec.name, resp.model_spec.version.value, resp.model_spec.signature_name) == (
            MODEL_NAME, 1, "serving_default")

        # tensor_content input (what most clients send) works too, and a pinned version
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL_NAME
        req.model_spec.version.value = 1
        req.inputs["Conv1_input"].dtype = 1
        for d in x.shape:
            req.inputs["Conv1_input"].tensor_shape.dim.add().size = d
        req.inputs["Conv1_input"].tensor_content = x.tobytes()
        np.testing.assert_allclose(tf.make_ndarray(predict.Predict(req, timeout=30).outputs["softmax"]), want,
                                   rtol=1e-5, atol=1e-6)

        # GetModelStatus
        status_req = get_model_status_pb2.GetModelStatusRequest()
        status_req.model_spec.name = MODEL_NAME
        [st] = model.GetModelStatus(status_req, timeout=10).model_version_status
        assert (st.version, st.state, st.status.error_code) == (1, AVAILABLE, 0)

        # GetModelMetadata: the SignatureDefs of saved_model.pb
        meta_req = get_model_metadata_pb2.GetModelMetadataRequest()
        meta_req.model_spec.name = MODEL_NAME
        meta_req.metadata_field.append("signature_def")
        meta = predict.GetModelMetadata(meta_req, timeout=10)
        sigs = get_model_metadata_pb2.SignatureDefMap()
        meta.metadata["signature_def"].Unpack(sigs)
        sd = sigs.signature_def["serving_default"]
        assert sd.method_name == "tensorflow/serving/predict"
        assert sd.inputs["Conv1_input"].name == "serving_default_Conv1_input:0"
        assert [d.size for d in sd.inputs["Conv1_input"].tensor_shape.dim] == [-1, 28, 28, 1]
        assert [d.size for d in sd.outputs["softmax"].tensor_shape.dim] == [-1, 10]

        # wrong rank: INVALID_ARGUMENT in TensorFlow's shape-inference words; the server lives on
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(_predict_request(x[..., 0]), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Shape must be rank 4 but is rank 3" in e.value.details()
        # 4 channels into a 1-channel Conv2D: the kernel refuses, with the code TensorFlow's kernel for
        # this CPU raises (INVALID_ARGUMENT from Eigen's, UNIMPLEMENTED from some oneDNN builds),
        # passed through as TF Serving passes it. The contract: a client error, never INTERNAL or
        # UNKNOWN, and the next request is served.
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(_predict_request(np.zeros((1, 28, 28, 4), np.float32)), timeout=30)
        assert e.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNIMPLEMENTED), e.value
        assert predict.Predict(_predict_request(x), timeout=30).outputs["softmax"].tensor_shape.dim[1].size == 10
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(_predict_request(x, key="wrong_input"), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "wrong_input" in e.value.details()

        # unknown model / version / signature
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(_predict_request(x, name="nope"), timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert e.value.details() == "Servable not found for request: Latest(nope)"
        status_req.model_spec.version.value = 9
        with pytest.raises(grpc.RpcError) as e:
            model.GetModelStatus(status_req, timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        bad_sig = _predict_request(x)
        bad_sig.model_spec.signature_name = "nope"
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(bad_sig, timeout=30)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        # still alive and correct after the errors
        assert tf.make_ndarray(predict.Predict(_predict_request(x), timeout=30).outputs["softmax"]).shape == (3, 10)

        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING

    # SIGTERM: graceful stop, exit 0
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert "Running gRPC ModelServer at 127.0.0.1:" in server.log_text()
    assert "Successfully loaded servable version {name: digits_model version: 1}" in server.log_text()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert {"Predict", "GetModelStatus", "GetModelMetadata"} <= {r["method"] for r in records}
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= {r["code"] for r in records}


def _example_input(request: Any) -> None:
    ex = request.input.example_list.examples.add()
    ex.features.feature["x"].float_list.value.extend([1.0, 2.0])
    ex = request.input.example_list.examples.add()
    ex.features.feature["x"].float_list.value.extend([3.0, -1.0])


def test_poll_swap_reload_and_example_apis(tmp_path: Path, write_version: Callable[..., Path],
                                           start_server: Callable[..., ServerProcess]) -> None:
    digits = tmp_path / "models" / MODEL_NAME
    examples = tmp_path / "models" / "examples"
    write_version(digits, 1)
    write_version(examples, 1, "examples")
    config = tmp_path / "models.config"
    config.write_text(f"model_config_list {{ config {{ name: '{MODEL_NAME}' base_path: '{digits}' }} }}")
    server = start_server(f"--model_config_file={config}", "--file_system_poll_wait_seconds=1")
    predict, model, channel = _stubs(server)
    with channel:
        # a new version folder is picked up by the poller and replaces version 1
        write_version(digits, 2, "digits2")
        deadline = time.monotonic() + 60
        while _status(model, MODEL_NAME) != {1: END, 2: AVAILABLE}:
            assert time.monotonic() < deadline, server.log_text()[-2000:]
            time.sleep(0.3)
        assert predict.Predict(_predict_request(digits_batch(1)), timeout=30).model_spec.version.value == 2

        # HandleReloadConfigRequest adds the tf.Example model
        reload = model_management_pb2.ReloadConfigRequest()
        for name, base in ((MODEL_NAME, digits), ("examples", examples)):
            reload.config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
        assert model.HandleReloadConfigRequest(reload, timeout=60).status.error_code == 0
        wait_available(server, ["examples"])

        creq = classification_pb2.ClassificationRequest()
        creq.model_spec.name = "examples"
        creq.model_spec.signature_name = "classify_x"
        _example_input(creq)
        result = predict.Classify(creq, timeout=30).result
        assert [[c.label for c in r.classes] for r in result.classifications] == [["neg", "pos"]] * 2
        assert result.classifications[0].classes[1].score == pytest.approx(1 / (1 + np.exp(-1)), rel=1e-5)

        rreq = regression_pb2.RegressionRequest()
        rreq.model_spec.name = "examples"
        rreq.model_spec.signature_name = "regress_x"
        _example_input(rreq)
        assert [r.value for r in predict.Regress(rreq, timeout=30).result.regressions] == [3.0, 2.0]

        mreq = inference_pb2.MultiInferenceRequest()
        for sig, method in (("classify_x", "tensorflow/serving/classify"), ("regress_x", "tensorflow/serving/regress")):
            task = mreq.tasks.add()
            task.model_spec.name = "examples"
            task.model_spec.signature_name = sig
            task.method_name = method
        _example_input(mreq)
        results = predict.MultiInference(mreq, timeout=30).results
        assert results[0].WhichOneof("result") == "classification_result"
        assert [r.value for r in results[1].regression_result.regressions] == [3.0, 2.0]

        # Classify on a signature that is not a classifier: INVALID_ARGUMENT, like TF Serving
        creq.model_spec.name = MODEL_NAME
        creq.model_spec.signature_name = ""
        with pytest.raises(grpc.RpcError) as e:
            predict.Classify(creq, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # reloading without the digits model unloads it
        del reload.config.model_config_list.config[0]
        model.HandleReloadConfigRequest(reload, timeout=60)
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(_predict_request(digits_batch(1)), timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_batching_concurrent_predicts_and_output_filter(digits_base: Path,
                                                        start_server: Callable[..., ServerProcess],
                                                        tmp_path: Path) -> None:
    import concurrent.futures

    import tensorflow as tf

    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n")
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", "--enable_batching",
                          f"--batching_parameters_file={params}", "--rest_api_port=0")
    predict, _, channel = _stubs(server)
    with channel:
        xs = [digits_batch(1 + i % 3, seed=i) for i in range(12)]
        local = tf.saved_model.load(str(digits_base / "1")).signatures["serving_default"]
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda x: predict.Predict(_predict_request(x), timeout=30), xs))
        for x, resp in zip(xs, outs):
            np.testing.assert_allclose(tf.make_ndarray(resp.outputs["softmax"]),
                                       local(Conv1_input=tf.constant(x))["softmax"].numpy(), rtol=1e-5, atol=1e-6)
        req = _predict_request(xs[0])
        req.output_filter.append("nope")
        with pytest.raises(grpc.RpcError) as e:
            predict.Predict(req, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "nope" in e.value.details()


def test_taken_port_fails_start_with_exit_3(digits_base: Path, tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mlserve.server", f"--port={port}",
                            f"--model_base_path={tmp_path / 'empty'}"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 3
    assert "Failed to start server" in r.stderr and str(port) in r.stderr

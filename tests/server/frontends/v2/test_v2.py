"""The Open Inference Protocol (v2) on a real embedded server, checked with clients nobody here
wrote: `tritonclient.http` and `tritonclient.grpc`, unmodified, and tritonclient's generated stubs
as the reference for the wire messages mlserve builds itself. One server for the module."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import requests

from support.models import export_tiny_model, reference_probabilities
from support.servers import MODEL_NAME, launch_server

pytestmark = pytest.mark.slow
http = pytest.importorskip("tritonclient.http", reason="tritonclient is in the test extra")
tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is in the test extra")


@pytest.fixture(scope="module")
def v2_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("v2")
    base = export_tiny_model(root)
    monitoring = root / "monitoring.config"
    monitoring.write_text("prometheus_config { enable: true }")
    server = launch_server([f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
                            f"--monitoring_config_file={monitoring}"], root / "server.log", base=base)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).random((4, 28, 28, 1), dtype=np.float32)


def test_tritonclient_http_health_metadata_and_infer(v2_server, images) -> None:
    client = http.InferenceServerClient(f"127.0.0.1:{v2_server.rest_port}")
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL_NAME) and client.is_model_ready(MODEL_NAME, "1")
    assert not client.is_model_ready("nope") and not client.is_model_ready(MODEL_NAME, "7")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(MODEL_NAME)
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "Conv1_input", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    assert meta["outputs"] == [{"name": "softmax", "datatype": "FP32", "shape": [-1, 10]}]
    expected = reference_probabilities(v2_server.base, images)
    for binary in (True, False):
        tensor = http.InferInput("Conv1_input", list(images.shape), "FP32")
        tensor.set_data_from_numpy(images, binary_data=binary)
        result = client.infer(MODEL_NAME, [tensor], model_version="1", request_id="r-1",
                              outputs=[http.InferRequestedOutput("softmax", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("softmax"), expected, rtol=1e-5, atol=1e-6)
        assert result.get_response()["id"] == "r-1" and result.get_response()["model_version"] == "1"
    # the TF Serving API answers the same digits the same way
    v1 = requests.post(f"{v2_server.url}/v1/models/{MODEL_NAME}:predict",
                       json={"instances": images.tolist()}, timeout=30).json()["predictions"]
    np.testing.assert_allclose(result.as_numpy("softmax"), v1, rtol=1e-5, atol=1e-6)


def test_tritonclient_grpc_health_metadata_and_infer(v2_server, images) -> None:
    client = tgrpc.InferenceServerClient(f"127.0.0.1:{v2_server.grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL_NAME)
    assert not client.is_model_ready("nope")
    assert "binary_tensor_data" in client.get_server_metadata().extensions
    meta = client.get_model_metadata(MODEL_NAME)
    assert (meta.name, list(meta.versions), list(meta.inputs[0].shape)) == (MODEL_NAME, ["1"], [-1, 28, 28, 1])
    tensor = tgrpc.InferInput("Conv1_input", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    result = client.infer(MODEL_NAME, [tensor], outputs=[tgrpc.InferRequestedOutput("softmax")])
    np.testing.assert_allclose(result.as_numpy("softmax"), reference_probabilities(v2_server.base, images),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(Exception) as err:  # tritonclient wraps the status in its own exception
        client.infer(MODEL_NAME, [tensor], outputs=[tgrpc.InferRequestedOutput("nope")])
    assert "unknown output 'nope'" in str(err.value)


def test_typed_contents_and_mlserves_own_clients(v2_server, images) -> None:
    """ModelInfer with typed `contents` (tritonclient sends raw bytes only), and mlserve's v2 client
    over REST (JSON, binary) and gRPC against the same answers."""
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from mlserve.client import ModelTarget, connect

    request = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
    entry = request.inputs.add(name="Conv1_input", datatype="FP32", shape=list(images.shape))
    entry.contents.fp32_contents.extend(images.reshape(-1).tolist())
    with grpc.insecure_channel(v2_server.grpc) as channel:
        response = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    typed = np.asarray(response.outputs[0].contents.fp32_contents, np.float32).reshape(4, 10)
    expected = reference_probabilities(v2_server.base, images)
    np.testing.assert_allclose(typed, expected, rtol=1e-5, atol=1e-6)
    for transport, binary in (("rest", False), ("rest", True), ("grpc", False)):
        client = connect(ModelTarget(MODEL_NAME), transport=transport, url=v2_server.url,
                         grpc_server=v2_server.grpc, protocol="v2", binary=binary)
        try:
            np.testing.assert_allclose(client.predict(images), expected, rtol=1e-5, atol=1e-6)
            signature = client.signature()
            assert signature.inputs["Conv1_input"].shape == (None, 28, 28, 1)
        finally:
            client.close()


@pytest.mark.parametrize("body,header,words", [
    ({"inputs": [{"name": "Conv1_input", "shape": [1, 28, 28, 1], "datatype": "FP32",
                  "parameters": {"binary_data_size": 4096}}]}, "auto", "runs past the body"),
    ({"inputs": [{"name": "Conv1_input", "shape": [2, 28, 28, 1], "datatype": "FP32",
                  "data": [0.0] * 784}]}, None, "unexpected number of elements"),
    ({"inputs": [{"name": "Conv1_input", "shape": [1], "datatype": "FP128", "data": [1]}]}, None, "invalid datatype"),
    ({"inputs": [{"name": "Conv1_input", "shape": [2, 2], "datatype": "FP32", "data": [[1, 2], [3]]}]}, None, "ragged"),
    ({"inputs": [{"name": "Conv1_input", "shape": [1, 2], "datatype": "FP32", "data": [[[[[1, 2]]]]]}]}, None,
     "Shape must be rank 4"),
    ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}, None, "x"),
    ({"inputs": "nope"}, None, "'inputs' list"),
    ({"inputs": [{"name": "Conv1_input", "shape": [-1], "datatype": "FP32", "data": [1]}]}, None, "invalid shape"),
])
def test_hostile_v2_input_is_a_client_error(v2_server, body, header, words) -> None:
    text = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if header == "auto":
        headers["Inference-Header-Content-Length"] = str(len(text))
    r = requests.post(f"{v2_server.url}/v2/models/{MODEL_NAME}/infer", data=text, headers=headers, timeout=30)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert words in r.json()["error"]


def test_header_length_past_the_body_and_the_server_goes_on(v2_server, images) -> None:
    r = requests.post(f"{v2_server.url}/v2/models/{MODEL_NAME}/infer", data=b'{"inputs": []}',
                      headers={"Inference-Header-Content-Length": "99999"}, timeout=30)
    assert r.status_code == 400 and "past the end" in r.json()["error"]
    with grpc.insecure_channel(v2_server.grpc) as channel:
        from tritonclient.grpc import service_pb2, service_pb2_grpc

        request = service_pb2.ModelInferRequest(model_name=MODEL_NAME)
        request.inputs.add(name="Conv1_input", datatype="FP32", shape=[1, 28, 28, 1])
        request.raw_input_contents.append(b"\x00" * 12)  # 3 floats for 784
        with pytest.raises(grpc.RpcError) as err:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "unexpected size" in err.value.details()
    assert requests.get(f"{v2_server.url}/v2/health/ready", timeout=10).status_code == 200
    # counted under the protocol's own entrypoint, beside TF Serving's
    text = requests.get(f"{v2_server.url}/monitoring/prometheus/metrics", timeout=10).text
    assert 'entrypoint="REST_V2"' in text and 'entrypoint="GRPC_V2"' in text


def test_the_messages_match_an_independent_implementation() -> None:
    """mlserve.protocols.oip builds the protocol's messages itself; every field it defines has the
    name, number, type and label of tritonclient's generated `service_pb2`."""
    from tritonclient.grpc import service_pb2

    from mlserve.protocols import oip

    ours = oip.messages()

    def fields(descriptor) -> dict:
        out = {}
        for f in descriptor.fields:
            out[f.name] = (f.number, f.type, f.label, f.message_type.name if f.message_type else None)
        for nested in descriptor.nested_types:
            out[nested.name] = fields(nested)
        return out

    def contained(mine: dict, theirs: dict) -> None:
        for key, value in mine.items():
            assert key in theirs, key
            if isinstance(value, dict):
                contained(value, theirs[key])
            else:
                assert value == theirs[key], (key, value, theirs[key])

    for name in vars(ours):
        contained(fields(getattr(ours, name).DESCRIPTOR), fields(getattr(service_pb2, name).DESCRIPTOR))
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    for name, (request, response) in oip.METHODS.items():
        method = service.methods_by_name[name]
        assert (method.input_type.name, method.output_type.name) == (request, response)

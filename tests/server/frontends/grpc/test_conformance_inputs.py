"""Predict's input names as current TF Serving checks them (`PreProcessPrediction`): the count
first (`VerifyRequestInputsSize`), then each signature input found by name before it is decoded
(TensorFlow's `saved_model::GetInputValues`), over gRPC with the official stubs; REST's own path
(`json_tensor.cc`) beside it. The server is the session's `digits_server`."""
from __future__ import annotations


from pathlib import Path

import grpc
import pytest
import requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stub(digits_server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(digits_server.grpc) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _predict(name: str, **inputs):
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    return request


def _filled(count: int):
    """A float tensor of `count` elements carried by one value (68 bytes on the wire)."""
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    return tensor_pb2.TensorProto(dtype=1, float_val=[1.0], tensor_shape=tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=count)]))


def test_a_missing_alias_is_worded_as_get_input_values(digits_server, stub) -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2

    meta = stub.GetModelMetadata(get_model_metadata_pb2.GetModelMetadataRequest(
        model_spec={"name": "digits_model"}, metadata_field=["signature_def"]), timeout=30)
    defs = get_model_metadata_pb2.SignatureDefMap()
    meta.metadata["signature_def"].Unpack(defs)
    feed = defs.signature_def["serving_default"].inputs["Conv1_input"].name
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_predict("digits_model", z=_filled(4)), timeout=30)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        f"Signature input alias: Conv1_input(feed name: {feed}) not found in request and no default value "
        "provided. Inputs expected to be in the request {z}, or default input alias set: ")


def test_the_count_is_checked_before_any_tensor_is_decoded(digits_server, stub) -> None:
    """Two 1 GiB filled tensors into a one-input signature: refused by count, nothing decoded."""
    pid = digits_server.proc.pid
    try:  # reset the server's peak resident size (VmHWM), so the peak below is this request's
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        reset = True
    except OSError:  # not permitted here: the peak is the whole session's, so it says nothing
        reset = False
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(_predict("digits_model", a0=_filled(268435456), a1=_filled(268435456)), timeout=30)
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 2!=1 len({a0,a1}) != len({Conv1_input}). "
        "Sent extra: {a0,a1}. Missing but required: {Conv1_input}.")
    if reset:  # the server's peak grew by far less than the 2 GiB the tensors would hold
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        peak, now = (int(status[k].split()[0]) for k in ("VmHWM", "VmRSS"))
        assert peak - now < 200_000, (peak, now)  # KiB


def test_rest_names_inputs_on_its_own_path(digits_server) -> None:
    url = f"{digits_server.url}/v1/models/digits_model:predict"
    r = requests.post(url, json={"inputs": {"z": [[[[0.0]]]]}}, timeout=30)
    assert (r.status_code, r.json()) == (400, {"error": "Missing named input: Conv1_input in 'inputs' object."})

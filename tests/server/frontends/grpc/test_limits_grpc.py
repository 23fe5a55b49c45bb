"""Hostile gRPC requests are answered with TF Serving's codes (INVALID_ARGUMENT, NOT_FOUND, ...),
never INTERNAL or UNKNOWN, and the server goes on answering.

A few hundred seeded calls from `benchmarks/hostile_grpc.py` (the generator `benchmarks/abuse.py`
sends 10,000 of), built with the official stubs' messages, against a real server process; and
TensorProto decoding's limits checked directly (`mlserve.server.servables.tensors`)."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from mlserve.server.servables import tensors
from mlserve.server.errors import ServingError
from support.models import MODEL_NAME
from support.paths import ROOT
from support.servers import ServerProcess
from support.tinymodels import digits_batch

GENERATOR = ROOT / "benchmarks" / "hostile_grpc.py"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("hostile_grpc", GENERATOR)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _tensor(dtype: int, dims: list[int], **values: Any) -> Any:
    t = tensor_pb2.TensorProto(dtype=dtype)
    for d in dims:
        t.tensor_shape.dim.add(size=d)
    for field, vals in values.items():
        if field == "tensor_content":
            t.tensor_content = vals
        else:
            getattr(t, field).extend(vals)
    return t


@pytest.mark.parametrize("proto", [
    _tensor(types_pb2.DT_FLOAT, [2**40]),  # 4 TiB of zeros
    _tensor(types_pb2.DT_INT64, [28, 2**31], int64_val=[1]),  # the last value repeated, 448 GiB
    _tensor(types_pb2.DT_FLOAT, [2**40, 2, 2**40, 0]),  # no elements, but a count past int64 on the way
    _tensor(types_pb2.DT_BOOL, [1] * 255),  # more dimensions than TensorShape allows
    _tensor(types_pb2.DT_HALF, [2**40], half_val=[1]),
], ids=["zeros", "repeated", "overflow", "rank", "half"])
def test_tensors_tensorflow_could_not_allocate_are_parse_errors(proto: Any) -> None:
    with pytest.raises(ServingError) as err:
        tensors.to_ndarray(proto, "x")
    assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", "tensor parsing error: x")


def test_small_integers_are_cast_from_int_val_as_tensorflow_does() -> None:
    # int_val holds int32s; Tensor::FromProto static_casts them to uint8/int8/int16/uint16
    got = tensors.to_ndarray(_tensor(types_pb2.DT_UINT8, [3], int_val=[139636500, -1, 7]))
    assert got.dtype == np.uint8 and got.tolist() == [139636500 % 256, 255, 7]
    got = tensors.to_ndarray(_tensor(types_pb2.DT_INT16, [4], int_val=[70000, 5]))
    assert got.dtype == np.int16 and got.tolist() == [70000 - 65536, 5, 5, 5]


@pytest.mark.slow
def test_hostile_grpc_requests_are_never_internal(start_server: Callable[..., ServerProcess],
                                                   digits_base: Path) -> None:
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}")
    result = _generator().run(server.grpc_port, 300, MODEL_NAME, seed=12)
    assert result["internal_or_unknown"] == 0, result["internal_details"]
    assert result["codes"].get("INVALID_ARGUMENT", 0) > 50  # the calls did reach the checks
    assert set(result["per_method"]) >= {"Predict", "Classify", "Regress", "MultiInference",
                                         "GetModelMetadata", "GetModelStatus"}
    # and the server still answers a good predict
    x = digits_batch(2)
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.inputs["Conv1_input"].CopyFrom(tensors.to_proto(x, as_content=True))
    with grpc.insecure_channel(server.grpc_target) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
    assert tensors.to_ndarray(next(iter(answer.outputs.values()))).shape[0] == 2


def test_rest_and_grpc_share_one_inflight_budget(start_server: Callable[..., ServerProcess],
                                                 digits_base: Path) -> None:
    """--max_inflight_bytes is one budget for the whole server: body bytes a REST request holds
    leave less for a gRPC call, and come back when that request is gone."""
    import socket
    import time

    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                          "--max_inflight_bytes=4000000")
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.inputs["Conv1_input"].CopyFrom(tensors.to_proto(digits_batch(200), as_content=True))  # 627 kB
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with socket.create_connection(("127.0.0.1", server.rest_port)) as held:
            # 3.5 MB of a body that never completes: 3.5 MB of the 4 MB held
            held.sendall(b"POST /v1/models/digits_model:predict HTTP/1.1\r\nHost: localhost\r\n"
                         b"Content-Length: 3500001\r\n\r\n" + b" " * 3_500_000)
            time.sleep(0.5)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Predict(req, timeout=30)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        time.sleep(0.3)  # the REST connection is gone, and its reservation with it
        answer = stub.Predict(req, timeout=30)
    assert tensors.to_ndarray(next(iter(answer.outputs.values()))).shape[0] == 200


def test_announced_bodies_do_not_refuse_other_clients(start_server: Callable[..., ServerProcess],
                                                      digits_base: Path) -> None:
    """Two sockets that announce 64 MiB bodies and send nothing hold nothing of the (default,
    512 MiB) in-flight budget: a third client's REST and gRPC predicts are answered (issue #21:
    they were 429 / RESOURCE_EXHAUSTED for the 60 s body timeout)."""
    import socket
    import time

    import requests

    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}")
    held = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(2)]
    try:
        for s in held:
            s.sendall(b"POST /v1/models/digits_model:predict HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Length: 67108864\r\n\r\n")
        time.sleep(0.5)
        x = digits_batch(2)
        answer = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL_NAME}:predict",
                               json={"instances": x.tolist()}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert np.asarray(answer.json()["predictions"]).shape == (2, 10)
        req = predict_pb2.PredictRequest()
        req.model_spec.name = MODEL_NAME
        req.inputs["Conv1_input"].CopyFrom(tensors.to_proto(x, as_content=True))
        with grpc.insecure_channel(server.grpc_target) as channel:
            reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(req, timeout=30)
        assert tensors.to_ndarray(next(iter(reply.outputs.values()))).shape == (2, 10)
    finally:
        for s in held:
            s.close()


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # the peak: what the request made the server allocate
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_decoded_sizes_are_checked_before_decoding_and_charged(start_server: Callable[..., ServerProcess],
                                                               digits_base: Path) -> None:
    """Issue #21: input names and count are checked before any tensor is decoded (a 68-byte
    request of two 1 GiB filled tensors is refused without allocating them), what a request's
    tensors decode to is capped per request (--max_decoded_request_bytes), and a gzip message is
    charged to the in-flight budget at its inflated size."""
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                          "--max_inflight_bytes=4000000", "--max_decoded_request_bytes=3000000")
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        peak = _rss_bytes(server.proc.pid)

        def refused(req: Any, **kwargs: Any) -> grpc.RpcError:
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(req, timeout=30, **kwargs)
            return info.value

        two = predict_pb2.PredictRequest()
        two.model_spec.name = MODEL_NAME
        for name in ("a0", "a1"):
            two.inputs[name].CopyFrom(_tensor(types_pb2.DT_FLOAT, [268435456], float_val=[1.0]))
        assert two.ByteSize() < 80
        error = refused(two)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("input size does not match signature: 2!=1")
        wrong = predict_pb2.PredictRequest()
        wrong.model_spec.name = MODEL_NAME
        wrong.inputs["a0"].CopyFrom(_tensor(types_pb2.DT_FLOAT, [268435456], float_val=[1.0]))
        error = refused(wrong)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("Signature input alias: Conv1_input(feed name: ") and "{a0}" in error.details()
        # the right name, 1 GiB once filled: over the per-request cap, refused before it exists
        big = predict_pb2.PredictRequest()
        big.model_spec.name = MODEL_NAME
        big.inputs["Conv1_input"].CopyFrom(_tensor(types_pb2.DT_FLOAT, [268435456], float_val=[1.0]))
        error = refused(big)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max_decoded_request_bytes" in error.details()
        assert _rss_bytes(server.proc.pid) - peak < 100 * 1024 * 1024
        # 5 MB of zeros, a few kB once gzipped: charged at 5 MB, past the 4 MB budget
        zeros = predict_pb2.PredictRequest()
        zeros.model_spec.name = MODEL_NAME
        zeros.inputs["Conv1_input"].CopyFrom(
            tensors.to_proto(np.zeros((1600, 28, 28, 1), np.float32), as_content=True))
        error = refused(zeros, compression=grpc.Compression.Gzip)
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "in flight" in error.details()
        # and everything held was given back: a good predict fits
        good = predict_pb2.PredictRequest()
        good.model_spec.name = MODEL_NAME
        good.inputs["Conv1_input"].CopyFrom(tensors.to_proto(digits_batch(200), as_content=True))
        reply = stub.Predict(good, timeout=30, compression=grpc.Compression.Gzip)
    assert tensors.to_ndarray(next(iter(reply.outputs.values()))).shape == (200, 10)

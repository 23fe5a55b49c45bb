"""The HTTP/2 gRPC front-end (mlserve/server/transport/http2/ + grpc_frontend.py, the default) against real
server processes: the official stubs through grpcio, and a raw HTTP/2 client (support/h2client.py) for
what grpcio never sends. Large answers and tiny windows, grpc-timeout, unknown methods, health
Check and Watch, gzip requests, limits, hostile bytes, graceful drain, and the grpcio fallback."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, model_management_pb2, model_service_pb2_grpc,
                                     predict_pb2, prediction_service_pb2_grpc)

from mlserve.server.transport.http2 import frames as f
from support.models import MODEL_NAME
from support.servers import ServerProcess
from support.tinymodels import digits_batch
from support.h2client import RawH2, messages

pytestmark = pytest.mark.slow
PREDICT = "/tensorflow.serving.PredictionService/Predict"
MAX_REQUEST = 8_000_000


def _request(x: np.ndarray) -> Any:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = MODEL_NAME
    req.inputs["Conv1_input"].CopyFrom(tf.make_tensor_proto(x))
    return req


def _stub(server: ServerProcess, **kw: Any) -> tuple[Any, grpc.Channel]:
    channel = grpc.insecure_channel(server.grpc_target, **kw)
    return prediction_service_pb2_grpc.PredictionServiceStub(channel), channel


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], digits_base: Path) -> ServerProcess:
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", "--grpc_health",
                        f"--max_request_bytes={MAX_REQUEST}", f"--allowed_model_roots={digits_base.parent}",
                        "--grpc_channel_arguments=grpc.max_concurrent_streams=4")


def test_large_answers_small_windows_gzip_and_unknown_methods(server: ServerProcess) -> None:
    x = digits_batch(2000)
    expected = None
    # the same computation (500 rows) through a plain channel: a 500-row slice of the 2000-row
    # answer may differ in the last bits, since oneDNN picks its kernels by batch shape
    stub, channel = _stub(server)
    with channel:
        expected_500 = tf.make_ndarray(stub.Predict(_request(x[:500]), timeout=60).outputs["softmax"])
    for kw in ({}, {"compression": grpc.Compression.Gzip},
               {"options": [("grpc.http2.lookahead_bytes", 1024), ("grpc.http2.bdp_probe", 0)]}):
        stub, channel = _stub(server, **kw)
        with channel:
            out = tf.make_ndarray(stub.Predict(_request(x), timeout=60).outputs["softmax"])  # ~80 KB answer
            assert out.shape == (2000, 10)
            expected = out if expected is None else expected
            np.testing.assert_array_equal(out, expected)
            meta_req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            meta_req.model_spec.name = MODEL_NAME
            assert stub.GetModelMetadata(meta_req, timeout=30).model_spec.name == MODEL_NAME
            with pytest.raises(grpc.RpcError) as e:
                channel.unary_unary("/tensorflow.serving.PredictionService/Nope")(b"", timeout=10)
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED and e.value.details() == "Method not found!"
            with pytest.raises(grpc.RpcError) as e:  # not a PredictRequest: INVALID_ARGUMENT, as grpc_guard
                channel.unary_unary(PREDICT)(b"\xff\xff\xff", timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    # a client that grants 100 bytes of window at a time still gets the whole answer, in order
    raw = RawH2(server.grpc_port, window=100)
    try:
        raw.headers(1, PREDICT)
        raw.message(1, _request(x[:500]).SerializeToString())
        answer = raw.answer(1)
        assert answer.status == "0", answer
        reply = predict_pb2.PredictResponse.FromString(messages(answer.data)[0])
        np.testing.assert_array_equal(tf.make_ndarray(reply.outputs["softmax"]), expected_500)
        assert raw.server_settings[f.MAX_CONCURRENT_STREAMS] == 4
    finally:
        raw.close()


def test_limits_and_hostile_bytes_close_one_connection_only(server: ServerProcess) -> None:
    body = _request(digits_batch(1)).SerializeToString()
    raw = RawH2(server.grpc_port)
    try:  # a fifth open stream past grpc.max_concurrent_streams=4: REFUSED_STREAM
        for sid in (1, 3, 5, 7):
            raw.headers(sid, PREDICT)
        raw.headers(9, PREDICT)
        assert raw.answer(9).reset == f.REFUSED_STREAM
        raw.message(1, body)
        assert raw.answer(1).status == "0"  # the open ones are still served
        # a message larger than --max_request_bytes (it declares 1 GB): RESOURCE_EXHAUSTED
        raw.headers(11, PREDICT)
        raw.message(11, b"\x00" * (MAX_REQUEST + 100_000), declared=1 << 30)
        answer = raw.answer(11)
        assert answer.status == "8", answer
        # a length prefix that lies: an error status, not a hang
        raw.headers(13, PREDICT)
        raw.message(13, body, declared=len(body) + 10)
        assert raw.answer(13).status not in (None, "0")
    finally:
        raw.close()

    hostile = [(f.PREFACE[:10] + b"garbage" * 10, True), (b"\x00" * 200, True),
               (f.frame(f.SETTINGS, 0, 0, b"\x00" * 5), False),  # not a multiple of 6
               (f.frame(f.DATA, 0, 0, b"x"), False),  # DATA on stream 0
               (f.frame(f.HEADERS, 0, 1, b"\x00" * 16000) + f.frame(f.CONTINUATION, 0, 1, b"\x00" * 16000) * 5, False),
               (f.frame(f.HEADERS, f.END_HEADERS, 1, b"\xff\xff\xff\xff"), False),  # not HPACK
               (b"\x00\x40\x00" + bytes((f.DATA, 0)) + b"\x00\x00\x00\x01", False)]  # over MAX_FRAME_SIZE
    for data, is_preface in hostile:
        raw = RawH2(server.grpc_port, preface=b"" if is_preface else f.PREFACE)
        try:
            raw.sock.sendall(data)
            answer = raw.answer(1)
            assert answer.closed, (data[:40], answer)
        finally:
            raw.close()

    stub, channel = _stub(server)  # and the next client is served
    with channel:
        assert stub.Predict(_request(digits_batch(1)), timeout=30).outputs["softmax"].tensor_shape.dim[0].size == 1


def test_health_check_and_watch_see_a_reload(server: ServerProcess, write_version: Callable[..., Path],
                                             digits_base: Path) -> None:
    examples = digits_base.parent / "examples"
    write_version(examples, 1, "examples")
    with grpc.insecure_channel(server.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=10)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        watch = health.Watch(health_pb2.HealthCheckRequest(service="tensorflow.serving.PredictionService"))
        seen: list[int] = []
        ended: list[Any] = []

        def read() -> None:
            try:
                for reply in watch:
                    seen.append(reply.status)
            except grpc.RpcError as e:
                ended.append(e.code())

        reader = threading.Thread(target=read)
        reader.start()
        reload = model_management_pb2.ReloadConfigRequest()
        for name, base in ((MODEL_NAME, digits_base), ("examples", examples)):
            reload.config.model_config_list.config.add(name=name, base_path=str(base), model_platform="tensorflow")
        model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(reload, timeout=60)
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        deadline = time.monotonic() + 60
        while not (seen[:1] == [serving] and not_serving in seen and seen[-1] == serving):
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        watch.cancel()
        reader.join(30)
        assert ended == [grpc.StatusCode.CANCELLED] and not reader.is_alive()
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == serving


def test_deadline_and_graceful_drain(start_server: Callable[..., ServerProcess], digits_base: Path,
                                     tmp_path: Path) -> None:
    params = tmp_path / "batching.txt"  # every batch waits 3 s for company: a call that takes a while
    params.write_text("max_batch_size { value: 64 }\nbatch_timeout_micros { value: 3000000 }\n")
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", "--enable_batching",
                          f"--batching_parameters_file={params}")
    body = _request(digits_batch(1)).SerializeToString()
    raw = RawH2(server.grpc_port)
    try:
        raw.headers(1, PREDICT, extra={"grpc-timeout": "200m"})
        raw.message(1, body)
        answer = raw.answer(1)
        assert (answer.status, answer.message) == ("4", "Deadline Exceeded")

        raw.headers(3, PREDICT)
        raw.message(3, body)
        time.sleep(1.0)  # the call is in the batcher's queue
        server.proc.terminate()
        answer = raw.answer(3)  # GOAWAY first, then the in-flight call still finishes
        assert answer.goaway == f.NO_ERROR and answer.status == "0", answer
        assert len(messages(answer.data)) == 1
        try:
            raw.headers(5, PREDICT, end_stream=True)
        except OSError:
            pass  # closed already: refused
        else:
            late = raw.answer(5)
            assert late.closed or late.reset == f.REFUSED_STREAM
    finally:
        raw.close()
    assert server.proc.wait(30) == 0
    stub, channel = _stub(server)
    with channel, pytest.raises(grpc.RpcError) as e:
        stub.Predict(_request(digits_batch(1)), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpcio_fallback_by_flag_and_by_channel_argument(start_server: Callable[..., ServerProcess],
                                                         digits_base: Path) -> None:
    for flag in ("--grpc_frontend=grpcio", "--grpc_channel_arguments=grpc.keepalive_time_ms=60000"):
        server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}", flag)
        stub, channel = _stub(server)
        with channel:
            assert tf.make_ndarray(stub.Predict(_request(digits_batch(3)), timeout=30).outputs["softmax"]).shape == (3, 10)
        server.stop()
        if "keepalive" in flag:
            assert "gRPC on grpcio: --grpc_channel_arguments grpc.keepalive_time_ms not mapped" in server.log_text()

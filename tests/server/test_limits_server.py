"""Hostile requests against a real `python -m mlserve.server` subprocess: 400 / INVALID_ARGUMENT
(never 500 / INTERNAL) for huge version numbers and deep nesting, HEAD without a body, and the
reload RPC's safety checks (docs/security.md)."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Callable

import grpc
import pytest
import requests
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from support.models import MODEL_NAME
from support.servers import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], digits_base: Path) -> ServerProcess:
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                        f"--allowed_model_roots={digits_base.parent}")


def _url(server: ServerProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.rest_port}{path}"


def test_hostile_rest_requests_are_400_not_500(server: ServerProcess) -> None:
    digits = "9" * 5000
    for answer in (requests.get(_url(server, f"/v1/models/{MODEL_NAME}/versions/{digits}")),
                   requests.post(_url(server, f"/v1/models/{MODEL_NAME}/versions/{digits}:predict"),
                                 data='{"instances": [1]}')):
        assert answer.status_code == 400, answer.text
        assert "Failed to convert version" in answer.json()["error"]
    deep = "[" * 1000 + "]" * 1000
    for api, body in (("classify", '{"examples": ' + deep + "}"),
                      ("regress", '{"examples": [{"x": ' + deep + "}]}"),
                      ("classify", '{"signature_name": ' + deep + ', "examples": [{"x": 1.0}]}'),
                      ("predict", '{"signature_name": ' + deep + ', "instances": [1.0]}')):
        answer = requests.post(_url(server, f"/v1/models/{MODEL_NAME}:{api}"), data=body)
        assert answer.status_code == 400, (api, answer.status_code, answer.text[:300])
    # a 16 MB body of numbers with one string at the end: a 400 naming the element
    body = "{\"instances\":[" + "0.5," * 4_194_304 + "\"x\"]}"
    answer = requests.post(_url(server, f"/v1/models/{MODEL_NAME}:predict"), data=body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("Failed to process element: 4194304 of 'instances' list.")


def test_head_has_no_body(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
        s.sendall(b"HEAD /v1/models/" + MODEL_NAME.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    # /v1 answers HEAD as TF Serving does (400, Malformed request): its length, not its body
    assert head.startswith(b"HTTP/1.1 400 ") and b"Content-Length: 0" not in head
    assert rest.startswith(b"HTTP/1.1 200 ")  # the next answer follows at once


def test_reload_rpc_refuses_relative_foreign_and_empty_configs(server: ServerProcess, tmp_path: Path,
                                                                digits_base: Path) -> None:
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)

        def reload(*base_paths: str) -> grpc.RpcError:
            request = model_management_pb2.ReloadConfigRequest()
            request.config.model_config_list.SetInParent()
            for path in base_paths:
                request.config.model_config_list.config.add(name=MODEL_NAME, base_path=path,
                                                            model_platform="tensorflow")
            with pytest.raises(grpc.RpcError) as info:
                stub.HandleReloadConfigRequest(request, timeout=30)
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
            return info.value

        error = reload("../../..")
        assert error.details() == f"Expected model {MODEL_NAME} to have an absolute path or URI; got base_path()=../../.."
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        assert "outside the allowed model roots" in reload(str(outside)).details()
        assert "outside the allowed model roots" in reload(str(digits_base / ".." / ".." / "elsewhere")).details()
        assert "unload every model" in reload().details()
        # bytes that are not the method's message: INVALID_ARGUMENT (grpcio alone says INTERNAL)
        raw = channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff garbage", timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
    # the model is still served
    status = requests.get(_url(server, f"/v1/models/{MODEL_NAME}")).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"

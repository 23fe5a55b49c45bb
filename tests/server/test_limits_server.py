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


def test_rest_refuses_foreign_host_names_when_bound_to_loopback(server: ServerProcess) -> None:
    # the default bind is 127.0.0.1: a Host that is not a local name is a DNS-rebinding page
    url = _url(server, f"/v1/models/{MODEL_NAME}")
    assert requests.get(url, timeout=30).status_code == 200  # requests sends Host: 127.0.0.1:<port>
    assert requests.get(url, headers={"Host": f"localhost:{server.rest_port}"}, timeout=30).status_code == 200
    answer = requests.get(url, headers={"Host": "attacker.example"}, timeout=30)
    assert answer.status_code == 421 and "--allowed_hosts" in answer.json()["error"]


def test_head_has_no_body(server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
        s.sendall(b"HEAD /v1/models/" + MODEL_NAME.encode() + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
                  b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
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


def _status(server: ServerProcess, name: str = MODEL_NAME) -> list[dict]:
    return requests.get(_url(server, f"/v1/models/{name}"), timeout=30).json().get("model_version_status", [])


def test_reload_rpc_cannot_empty_the_server_and_loads_the_checked_path(
        server: ServerProcess, tmp_path: Path, digits_base: Path, write_version: Callable[..., Path]) -> None:
    """Issue #21: a one-entry list naming only a model that cannot load is refused (the model
    served now stays AVAILABLE); a base path is kept as it resolved when checked, so a symlink
    swapped afterwards to a folder outside the roots is never loaded; a version folder that
    resolves outside the roots is not loaded either."""
    import time

    roots = digits_base.parent
    outside = tmp_path / "outside"
    write_version(outside, 7)  # a loadable model the roots do not cover

    def request(*models: tuple[str, str]) -> model_management_pb2.ReloadConfigRequest:
        req = model_management_pb2.ReloadConfigRequest()
        req.config.model_config_list.SetInParent()
        for name, path in models:
            req.config.model_config_list.config.add(name=name, base_path=path, model_platform="tensorflow")
        return req

    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request(("x", "/nonexistent")), timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "names none of the models available now (digits_model)" in info.value.details()
        assert _status(server)[0]["state"] == "AVAILABLE"
        # a second model through a symlink inside the roots: loaded from where it resolved
        real = roots / "second-real"
        write_version(real, 1)
        link = roots / "second"
        link.symlink_to(real)
        answer = stub.HandleReloadConfigRequest(request((MODEL_NAME, str(digits_base)), ("second", str(link))),
                                                timeout=60)
        assert answer.status.error_code == 0
        assert _status(server, "second")[0]["state"] == "AVAILABLE"
        # swap the link to the folder outside; version 7 there must never load
        link.unlink()
        link.symlink_to(outside)
        # and a version folder inside the roots that resolves outside them
        (digits_base / "9").symlink_to(outside / "7")
        time.sleep(3)  # a few filesystem polls (1 s apart)
        assert [s["version"] for s in _status(server, "second")] == ["1"]
        assert [s["version"] for s in _status(server)] == ["1"]
        assert _status(server)[0]["state"] == "AVAILABLE"
        # the link, checked again, now resolves outside the roots: refused
        with pytest.raises(grpc.RpcError) as info:
            stub.HandleReloadConfigRequest(request(("second", str(link))), timeout=60)
        assert "outside the allowed model roots" in info.value.details()
        # keeping one model available is allowed: the other goes
        stub.HandleReloadConfigRequest(request(("second", str(real))), timeout=60)
        assert _status(server, "second")[0]["state"] == "AVAILABLE"
        assert _status(server)[0]["state"] == "END"

"""TF Serving's REST API, through a real `python -m mlserve.server` subprocess on free ports."""
from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import requests

from support.models import MODEL_NAME
from support.servers import ServerProcess
from support.tinymodels import digits_batch

pytestmark = pytest.mark.slow


def url(server: ServerProcess, path: str) -> str:
    return f"http://127.0.0.1:{server.rest_port}{path}"


def raw(server: ServerProcess, data: bytes, *, read_until_close: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=timeout) as s:
        s.sendall(data)
        if not read_until_close:
            return s.recv(65536)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.fixture
def server(start_server: Callable[..., ServerProcess], digits_base: Path) -> ServerProcess:
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={digits_base}",
                        "--max_request_bytes=2000000")


def test_course_snippet_predictions_match_the_saved_model(server: ServerProcess, digits_base: Path) -> None:
    test_images = digits_batch(3, seed=7)
    # the course's request, verbatim (port aside)
    data = json.dumps({"signature_name": "serving_default", "instances": test_images[0:3].tolist()})
    headers = {"content-type": "application/json"}
    json_response = requests.post(url(server, f"/v1/models/{MODEL_NAME}:predict"), data=data, headers=headers)
    predictions = json.loads(json_response.text)["predictions"]

    import tensorflow as tf

    loaded = tf.saved_model.load(str(digits_base / "1"))
    expected = loaded.signatures["serving_default"](Conv1_input=tf.constant(test_images))["softmax"].numpy()
    assert json_response.status_code == 200
    # the same batch shape as the server's run, but not necessarily the same kernels (threads, path)
    np.testing.assert_allclose(np.asarray(predictions, np.float32), expected, rtol=1e-5, atol=1e-6)

    columnar = requests.post(url(server, f"/v1/models/{MODEL_NAME}/versions/1:predict"),
                             data=json.dumps({"inputs": test_images[:1].tolist()}))
    assert columnar.status_code == 200 and list(columnar.json()) == ["outputs"]
    np.testing.assert_allclose(columnar.json()["outputs"], expected[:1], rtol=1e-5, atol=1e-6)


def test_status_metadata_and_listing(server: ServerProcess) -> None:
    status = requests.get(url(server, f"/v1/models/{MODEL_NAME}"))
    assert status.status_code == 200
    assert status.json() == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert requests.get(url(server, f"/v1/models/{MODEL_NAME}/versions/1")).json() == status.json()

    meta = requests.get(url(server, f"/v1/models/{MODEL_NAME}/metadata")).json()
    assert meta["model_spec"] == {"name": MODEL_NAME, "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["Conv1_input"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in sig["inputs"]["Conv1_input"]["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert sig["method_name"] == "tensorflow/serving/predict"

    listing = requests.get(url(server, "/v1/mlserve/models")).json()
    assert listing == {"models": [{"name": MODEL_NAME, "versions": [{"version": "1", "state": "AVAILABLE"}]}]}
    assert requests.get(url(server, "/v2/health/live")).status_code == 200
    assert requests.get(url(server, "/v2/health/ready")).status_code == 200


def test_errors_keep_tf_serving_codes_and_bodies(server: ServerProcess) -> None:
    predict = url(server, f"/v1/models/{MODEL_NAME}:predict")

    def post(path_or_url: str, body: Any) -> requests.Response:
        return requests.post(path_or_url, data=body if isinstance(body, (bytes, str)) else json.dumps(body))

    cases = [
        (requests.get(url(server, "/v1/models")), 400, "Missing model name in request."),
        (post(predict, b"{not json"), 400, "JSON Parse error"),
        (post(predict, {"instances": [["a"]]}), 400, "is not of expected type: float"),
        (post(predict, {"instances": digits_batch(1)[:, :5].tolist()}), 400, "Input to reshape is a tensor with"),
        (post(predict, {"signature_name": "nope", "instances": [1]}), 400,
         'Serving signature name: "nope" not found in signature def'),
        (post(url(server, "/v1/models/nope:predict"), {"instances": [1]}), 404, "nope"),
        (post(url(server, f"/v1/models/{MODEL_NAME}/versions/9:predict"), {"instances": [1]}), 404, "9"),
        (requests.get(url(server, "/v1/models/nope")), 404, "nope"),
        (post(url(server, f"/v1/models/{MODEL_NAME}/labels/stable:predict"), {"instances": [1]}), 400, "stable"),
        (requests.put(url(server, f"/v1/models/{MODEL_NAME}")), 400, "Malformed request: PUT"),
        (post(predict, b'{"inputs": ' + b"[" * 3000 + b"]" * 3000 + b"}"), 400, ""),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert fragment in response.json()["error"]
        assert "Access-Control-Allow-Origin" not in response.headers  # CORS is off by default
    assert requests.get(url(server, "/nope")).status_code == 404
    too_big = post(predict, b"x" * 2_000_001)
    assert too_big.status_code == 413
    # still serving
    ok = post(predict, {"instances": digits_batch(1).tolist()})
    assert ok.status_code == 200 and len(ok.json()["predictions"][0]) == 10


def test_http_details_pipelining_chunked_continue_disconnect(server: ServerProcess) -> None:
    path = f"/v1/models/{MODEL_NAME}"
    two = raw(server, f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\nGET {path} HTTP/1.1\r\nHost: localhost\r\n"
                      f"Connection: close\r\n\r\n".encode())
    assert two.count(b"HTTP/1.1 200 OK") == 2 and two.count(b"AVAILABLE") == 2

    body = json.dumps({"instances": digits_batch(1).tolist()}).encode()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000]) for i in range(0, len(body), 1000))
    answer = raw(server, f"POST {path}:predict HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                         f"Connection: close\r\n\r\n".encode() + chunked + b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"predictions" in answer

    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
        s.sendall(f"POST {path}:predict HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        assert b"predictions" in s.recv(65536) + s.recv(65536)

    assert raw(server, b"GARBAGE / HTTP/9\r\n\r\n").startswith(b"HTTP/1.1 400")
    for _ in range(5):  # clients vanishing mid-body
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as s:
            s.sendall(f"POST {path}:predict HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n{{\"inst".encode())
    assert requests.get(url(server, path)).status_code == 200
    assert server.proc.poll() is None


def test_cors_prometheus_request_log_classify_regress(
        start_server: Callable[..., ServerProcess], tmp_path: Path, digits_base: Path,
        write_version: Callable[..., Path]) -> None:
    examples_base = tmp_path / "models" / "ex"
    write_version(examples_base, 1, "examples")
    config = tmp_path / "models.config"
    config.write_text(f"""model_config_list {{
      config {{ name: "{MODEL_NAME}" base_path: "{digits_base}" model_platform: "tensorflow" }}
      config {{ name: "ex" base_path: "{examples_base}" model_platform: "tensorflow" }}
    }}""")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true, path: "/metrics/here" }')
    log_path = tmp_path / "requests.jsonl"
    server = start_server(f"--model_config_file={config}", f"--monitoring_config_file={monitoring}",
                          "--rest_api_enable_cors_support=true", f"--request_log={log_path}",
                          models=[MODEL_NAME, "ex"])

    predict = requests.post(url(server, f"/v1/models/{MODEL_NAME}:predict"),
                            data=json.dumps({"instances": digits_batch(2).tolist()}))
    assert predict.status_code == 200 and predict.headers["Access-Control-Allow-Origin"] == "*"
    preflight = requests.options(url(server, f"/v1/models/{MODEL_NAME}:predict"),
                                 headers={"Origin": "http://example.com"})
    assert preflight.status_code == 200 and "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert requests.options(url(server, f"/v1/models/{MODEL_NAME}:predict")).status_code == 400

    classify = requests.post(url(server, "/v1/models/ex:classify"), data=json.dumps(
        {"signature_name": "classify_x", "examples": [{"x": [1.0, 3.0]}]}))
    assert classify.status_code == 200, classify.text
    [[neg, pos]] = classify.json()["results"]
    assert neg[0] == "neg" and pos[0] == "pos" and pos[1] > neg[1]
    regress = requests.post(url(server, "/v1/models/ex:regress"), data=json.dumps(
        {"signature_name": "regress_x", "examples": [{"x": [1.0, 3.0]}, {"x": [0.5, 0.5]}]}))
    assert regress.status_code == 200, regress.text
    assert regress.json() == {"results": [4.0, 1.0]}

    requests.get(url(server, "/v1/models/nope"))
    page = requests.get(url(server, "/metrics/here"))
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/plain")
    text = page.text
    assert f':tensorflow:serving:request_count{{model_name="{MODEL_NAME}",status="OK"}}' in text
    # a model name that is not configured is counted under one label (bounded cardinality)
    assert ':tensorflow:serving:request_count{model_name="_unknown_",status="NOT_FOUND"}' in text
    assert 'model_name="nope"' not in text
    assert f':tensorflow:serving:request_latency_bucket{{model_name="{MODEL_NAME}",API="predict",entrypoint="REST"' in text
    assert ":tensorflow:serving:runtime_latency_count" in text
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
        assert f"\n{name} " in text
    assert requests.get(url(server, "/monitoring/prometheus/metrics")).status_code == 404

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
        rest = [line for line in lines if line.get("api") == "rest"]
        if any(line["path"] == "/v1/models/nope" for line in rest):
            break
        time.sleep(0.1)
    first = next(line for line in rest if line["path"].endswith(":predict"))
    assert first["method"] == "POST" and first["status"] == 200 and first["bytes"] > 0
    assert {"time", "latency_ms"} <= set(first)
    assert any(line["status"] == 404 for line in rest)


def test_ready_is_503_until_a_version_loads(start_server: Callable[..., ServerProcess], tmp_path: Path,
                                            write_version: Callable[..., Path]) -> None:
    base = tmp_path / "models" / MODEL_NAME
    base.mkdir(parents=True)
    server = start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
                          "--file_system_poll_wait_seconds=1", wait=False)
    deadline = time.monotonic() + 60
    ready = None
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log_text()[-2000:]
        try:
            ready = requests.get(url(server, "/v2/health/ready"), timeout=2).status_code
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    assert ready == 503
    assert requests.get(url(server, "/v2/health/live")).status_code == 200
    write_version(base, 1)
    while time.monotonic() < deadline:
        if requests.get(url(server, "/v2/health/ready"), timeout=2).status_code == 200:
            break
        time.sleep(0.2)
    assert requests.get(url(server, "/v2/health/ready")).status_code == 200


def _batching_server(start_server: Callable[..., ServerProcess], base: Path, tmp_path: Path,
                     parameters: str, *flags: str) -> ServerProcess:
    params = tmp_path / "batching.config"
    params.write_text(parameters)
    return start_server(f"--model_name={MODEL_NAME}", f"--model_base_path={base}", "--enable_batching",
                        f"--batching_parameters_file={params}", *flags)


def test_batching_server_answers_concurrent_requests(start_server: Callable[..., ServerProcess],
                                                     digits_base: Path, tmp_path: Path) -> None:
    server = _batching_server(start_server, digits_base, tmp_path,
                              "max_batch_size { value: 8 } batch_timeout_micros { value: 2000 } "
                              "num_batch_threads { value: 1 } allowed_batch_sizes: 4 allowed_batch_sizes: 8")
    import concurrent.futures

    images = [digits_batch(1, seed=i) for i in range(16)]

    def call(x: np.ndarray) -> np.ndarray:
        r = requests.post(url(server, f"/v1/models/{MODEL_NAME}:predict"), data=json.dumps({"instances": x.tolist()}))
        assert r.status_code == 200, r.text
        return np.asarray(r.json()["predictions"], np.float32)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        batched = list(pool.map(call, images))
    import tensorflow as tf

    fn = tf.saved_model.load(str(digits_base / "1")).signatures["serving_default"]
    for x, got in zip(images, batched):
        np.testing.assert_allclose(got, fn(Conv1_input=tf.constant(x))["softmax"].numpy(), rtol=1e-5, atol=1e-6)


def test_rest_timeout_answers_504_and_the_server_goes_on(start_server: Callable[..., ServerProcess],
                                                        digits_base: Path, tmp_path: Path) -> None:
    # A batch that waits 5 s for company outlasts a 300 ms REST timeout: TF Serving's
    # DEADLINE_EXCEEDED, HTTP 504. A second open connection keeps the request off the lone-client
    # path (which never waits for a batch).
    server = _batching_server(start_server, digits_base, tmp_path,
                              "max_batch_size { value: 64 } batch_timeout_micros { value: 5000000 } "
                              "num_batch_threads { value: 1 }", "--rest_api_timeout_in_ms=300")
    body = json.dumps({"instances": digits_batch(1).tolist()})
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10):
        started = time.monotonic()
        r = requests.post(url(server, f"/v1/models/{MODEL_NAME}:predict"), data=body, timeout=10)
        took = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json() == {"error": "Deadline Exceeded"}
        assert 0.25 < took < 4
        # a keep-alive connection goes on after its 504: the next request on it is answered
        # (the late answer of the timed-out one is dropped, not written in its place)
        with requests.Session() as s:
            first = s.post(url(server, f"/v1/models/{MODEL_NAME}:predict"), data=body, timeout=10)
            assert first.status_code == 504
            again = s.get(url(server, f"/v1/models/{MODEL_NAME}"), timeout=10)
            assert again.status_code == 200 and "AVAILABLE" in again.text

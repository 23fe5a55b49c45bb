"""Smoke test of the serving benchmark's pieces (benchmarks/), not a benchmark and not timed.

Real things: a tiny SavedModel, the two FastAPI baseline apps as real uvicorn processes on free
ports, real wrk and the real gRPC generator against the canned servicer. Parts that need wrk or
the benchmark's mlflow venv skip, saying why, when those are not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from ports import port_is_free

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import serving  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)

pytest.importorskip("fastapi", reason="the bench extra is not installed: pip install -e .[bench]")
pytest.importorskip("uvicorn", reason="the bench extra is not installed: pip install -e .[bench]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import make_model

    base = make_model.tiny_saved_model(tmp_path_factory.mktemp("bench-model") / "digits_model")
    return base / "1"


def _serve_app(module: str, model_dir: Path, tmp_path: Path):
    port = serving.free_port()
    env = dict(os.environ, BENCH_MODEL_DIR=str(model_dir), TF_CPP_MIN_LOG_LEVEL="2")
    logfile = tmp_path / f"{module}.log"
    proc = serving.start([sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir",
                          str(ROOT / "benchmarks" / "apps"), "--host", "127.0.0.1", "--port", str(port),
                          "--no-access-log"], logfile, env=env)
    try:
        serving.wait_until(proc, logfile, lambda: serving.tf_serving_available(port), timeout=60)
    except BaseException:
        serving.stop(proc)
        raise
    return proc, port


def test_bodies_are_tf_serving_requests() -> None:
    body = json.loads(serving.rest_body(2))
    images = np.asarray(body["instances"], dtype=np.float32)
    assert images.shape == (2, 28, 28, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5

    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest.FromString(serving.grpc_request(3))
    tensor = request.inputs["Conv1_input"]
    assert request.model_spec.name == "digits_model"
    assert [d.size for d in tensor.tensor_shape.dim] == [3, 28, 28, 1]
    assert len(tensor.tensor_content) == 3 * 28 * 28 * 4


@pytest.mark.parametrize("threadpool", ["0", "1"], ids=["async", "threadpool"])
def test_handwritten_app_runs_the_model(model_dir: Path, tmp_path: Path, threadpool: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.setenv("BENCH_THREADPOOL", threadpool)
    proc, port = _serve_app("handwritten", model_dir, tmp_path)
    try:
        body = serving.rest_body(2)
        status, payload = serving.http("POST", f"http://127.0.0.1:{port}{serving.PREDICT_PATH}", body)
        assert status == 200
        serving.check_predictions(payload, 2)
        got = np.asarray(json.loads(payload)["predictions"])
        images = np.asarray(json.loads(body)["instances"], dtype=np.float32)
        expected = tf.saved_model.load(str(model_dir)).signatures["serving_default"](
            Conv1_input=tf.constant(images))["softmax"].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    finally:
        serving.stop(proc)
    assert proc.returncode is not None and port_is_free(port)


def test_canned_app_answers_without_a_model(model_dir: Path, tmp_path: Path) -> None:
    proc, port = _serve_app("canned", model_dir, tmp_path)
    try:
        status, payload = serving.http("POST", f"http://127.0.0.1:{port}{serving.PREDICT_PATH}",
                                       serving.rest_body(3))
        assert status == 200
        serving.check_predictions(payload, 3)
        status, _ = serving.http("POST", f"http://127.0.0.1:{port}{serving.PREDICT_PATH}", b'{"x": 1}')
        assert status == 422  # the body is really parsed and validated
        if shutil.which("wrk") is None:
            pytest.skip("wrk is not installed (apt-get install -y wrk): load part not checked")
        body = tmp_path / "body.json"
        body.write_bytes(serving.rest_body(1))
        figures = serving.run_wrk(f"http://127.0.0.1:{port}{serving.PREDICT_PATH}", body, 2, 1)
        assert figures["ok"] > 0 and figures["errors"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    finally:
        serving.stop(proc)


def test_grpc_generator_against_canned_servicer(tmp_path: Path) -> None:
    request, response = tmp_path / "req.pb", tmp_path / "resp.pb"
    request.write_bytes(serving.grpc_request(1))
    response.write_bytes(serving.grpc_canned_response(1))
    port = serving.free_port()
    logfile = tmp_path / "canned.log"
    proc = serving.start([sys.executable, str(ROOT / "benchmarks" / "grpc_load.py"), "canned",
                          "--port", str(port), "--response", str(response)], logfile)
    try:
        serving.wait_until(proc, logfile, lambda: bool(socket.create_connection(("127.0.0.1", port), 1)),
                           timeout=30)
        figures = serving.run_grpc_load(port, request, 4, 1)
        assert figures["ok"] > 0 and figures["errors"] == 0 and figures["p50_ms"] > 0
    finally:
        serving.stop(proc)
    assert port_is_free(port)


def test_targets_are_computed_from_the_figures() -> None:
    def scen(rps: float, p50: float, images: int = 1) -> dict:
        return {"rps": rps, "p50_ms": p50, "images_per_s": rps * images}

    results = {"servers": {
        "embedded": {"scenarios": {"rest_1img_c32": scen(2000, 1), "rest_1img_c1": scen(900, 0.8),
                                   "rest_64img_c8": scen(30, 50, 64)},
                     "memory": {"run_seconds": 60, "rss_after_warmup_mib": 100,
                                "rss_after_run_mib": 105, "growth_pct": 5.0}},
        # The targets compare with the better hand-written style for each figure.
        "handwritten": {"scenarios": {"rest_1img_c32": scen(150, 3), "rest_1img_c1": scen(300, 3),
                                      "rest_64img_c8": scen(5, 400, 64)}},
        "handwritten-threads": {"scenarios": {"rest_1img_c32": scen(210, 5), "rest_1img_c1": scen(300, 2),
                                              "rest_64img_c8": scen(4, 400, 64)}},
        "canned-fastapi": {"scenarios": {"rest_1img_c32": scen(2500, 1)}},
    }}
    verdicts = {v["target"].split(": ", 1)[1]: v["verdict"] for v in serving.targets_verdicts(results)}
    assert verdicts == {
        "req/s at 32 conns >= 10x handwritten": "FAIL",      # 2000 < 10 * 210 (threads style)
        "req/s at 32 conns > canned FastAPI": "FAIL",        # 2000 < 2500
        "p50 at 1 conn <= 1/3 handwritten": "FAIL",          # 0.8 > 2 / 3 (threads style)
        "images/s at 64/request >= 5x handwritten": "PASS",  # 1920 >= 5 * 320
        "RSS after 60s run within 10% of warm-up": "PASS",   # +5%
    }


def test_mlflow_serves_the_same_model(model_dir: Path, tmp_path: Path) -> None:
    if serving.mlflow_available():
        pytest.skip(f"mlflow not installed for the benchmark: {serving.mlflow_available()}")
    serving.prepare_mlflow(model_dir, tmp_path)
    port = serving.free_port()
    bindir = serving.MLFLOW_VENV / "bin"
    logfile = tmp_path / "mlflow.log"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = serving.start([str(bindir / "mlflow"), "models", "serve", "-m", str(tmp_path / "mlflow_model"),
                          "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"],
                         logfile, env=env, cwd=tmp_path)
    try:
        serving.wait_until(proc, logfile, lambda: serving.http(
            "GET", f"http://127.0.0.1:{port}/ping", timeout=5)[0] == 200, timeout=90)
        status, payload = serving.http("POST", f"http://127.0.0.1:{port}/invocations", serving.rest_body(2))
        assert status == 200, payload[:300]
        serving.check_predictions(payload, 2)
    finally:
        serving.stop(proc)
    assert port_is_free(port)


def test_rounds_are_summarised_as_medians_with_their_spread() -> None:
    def round_(rps: float, p50: float, p99: float) -> dict:
        return {"requests": int(rps), "ok": int(rps), "errors": 0, "seconds": 1.0, "rps": rps,
                "images_per_s": rps, "p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "loadgen_cpu": 0.1,
                "server_cpu": 1.0, "core_others": 0.0, "core_steal": 0.0}

    s = serving.summarize([round_(900, 1.0, 9), round_(1200, 0.7, 3), {"failed": "wrk gave no figures"},
                           round_(1000, 0.8, 4)])
    assert (s["rps"], s["rps_min"], s["rps_max"]) == (1000, 900, 1200)
    assert (s["p50_ms"], s["p99_ms"]) == (0.8, 4)
    assert s["requests"] == 3100 and s["rounds"] == 3
    assert s["failed_rounds"] == ["wrk gave no figures"]
    assert serving.summarize([{"failed": "boom"}]) == {"failed": "boom"}


def test_a_short_run_end_to_end(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness itself, shortened: the embedded server and the canned app started side by
    side, two alternating rounds per scenario, a table with targets, and the results JSON."""
    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk): the run needs it")
    # the harness reuses a model it finds in its work folder: the tiny one, not a training run
    shutil.copytree(model_dir.parent, tmp_path / "work" / "model" / "tiny" / "digits_model")
    out = tmp_path / "results"
    assert serving.main(["--only", "embedded,canned-fastapi", "--seconds", "2", "--rounds", "2",
                         "--memory-seconds", "1", "--warmup", "0.5", "--no-ceiling",
                         "--workdir", str(tmp_path / "work"), "--results", str(out)]) == 0
    table = capsys.readouterr().out
    assert "rounds alternating between servers (1 image: 2 x 1s; 64 images: 1 x 2s)" in table
    assert "Targets" in table
    (saved,) = out.glob("*.json")
    results = json.loads(saved.read_text())
    for name in ("embedded", "canned-fastapi"):
        server = results["servers"][name]
        assert server["scenarios"]["rest_1img_c1"]["rounds"] == 2
        assert len(server["rounds"]["rest_1img_c32"]) == 2
        assert server["scenarios"]["rest_1img_c32"]["errors"] == 0
    assert "grpc_1img_c32" in results["servers"]["embedded"]["scenarios"]
    assert "grpc_1img_c32" not in results["servers"]["canned-fastapi"]["scenarios"]
    assert results["servers"]["embedded"]["memory"]["run_seconds"] == 1

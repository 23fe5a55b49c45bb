"""Smoke test of the serving benchmark's pieces (benchmarks/), not a benchmark and not timed.

Real things: a tiny SavedModel, the two FastAPI baseline apps as real uvicorn processes on free
ports, the embedded server, real wrk (REST) and real h2load (gRPC). Parts that need wrk, h2load or
the benchmark's mlflow venv skip, saying why, when those are not installed.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from support.ports import port_is_free

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bodies  # noqa: E402  (benchmarks/ is a folder of scripts, not a package)
import checks  # noqa: E402
import loadgen  # noqa: E402
import procs  # noqa: E402
import report  # noqa: E402
import rounds  # noqa: E402
import serving  # noqa: E402
import targets  # noqa: E402

pytest.importorskip("fastapi", reason="the bench extra is not installed: pip install -e .[bench]")
pytest.importorskip("uvicorn", reason="the bench extra is not installed: pip install -e .[bench]")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import make_model

    base = make_model.tiny_saved_model(tmp_path_factory.mktemp("bench-model") / "digits_model")
    return base / "1"


def _serve_app(module: str, model_dir: Path, tmp_path: Path):
    port = procs.free_port()
    env = dict(os.environ, BENCH_MODEL_DIR=str(model_dir), TF_CPP_MIN_LOG_LEVEL="2")
    logfile = tmp_path / f"{module}.log"
    proc = procs.start([sys.executable, "-m", "uvicorn", f"{module}:app", "--app-dir",
                        str(ROOT / "benchmarks" / "apps"), "--host", "127.0.0.1", "--port", str(port),
                        "--no-access-log"], logfile, env=env)
    try:
        checks.wait_until(proc, logfile, lambda: checks.tf_serving_available(port), timeout=60)
    except BaseException:
        procs.stop(proc)
        raise
    return proc, port


def test_bodies_are_tf_serving_requests() -> None:
    body = json.loads(bodies.rest_body(2))
    images = np.asarray(body["instances"], dtype=np.float32)
    assert images.shape == (2, 28, 28, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.5

    from tensorflow_serving.apis import predict_pb2

    message = bodies.grpc_request(3)
    request = predict_pb2.PredictRequest.FromString(message)
    tensor = request.inputs["Conv1_input"]
    assert request.model_spec.name == "digits_model"
    assert [d.size for d in tensor.tensor_shape.dim] == [3, 28, 28, 1]
    assert len(tensor.tensor_content) == 3 * 28 * 28 * 4
    framed = bodies.grpc_frame(message)  # gRPC's wire framing, as h2load posts it
    assert framed[0] == 0 and struct.unpack(">I", framed[1:5])[0] == len(message)
    assert framed[5:] == message


@pytest.mark.parametrize("threadpool", ["0", "1"], ids=["async", "threadpool"])
def test_handwritten_app_runs_the_model(model_dir: Path, tmp_path: Path, threadpool: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import tensorflow as tf

    monkeypatch.setenv("BENCH_THREADPOOL", threadpool)
    proc, port = _serve_app("handwritten", model_dir, tmp_path)
    try:
        body = bodies.rest_body(2)
        status, payload = checks.http("POST", f"http://127.0.0.1:{port}{bodies.PREDICT_PATH}", body)
        assert status == 200
        checks.check_predictions(payload, 2)
        got = np.asarray(json.loads(payload)["predictions"])
        images = np.asarray(json.loads(body)["instances"], dtype=np.float32)
        expected = tf.saved_model.load(str(model_dir)).signatures["serving_default"](
            Conv1_input=tf.constant(images))["softmax"].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    finally:
        procs.stop(proc)
    assert proc.returncode is not None and port_is_free(port)


def test_canned_app_answers_without_a_model(model_dir: Path, tmp_path: Path) -> None:
    proc, port = _serve_app("canned", model_dir, tmp_path)
    try:
        status, payload = checks.http("POST", f"http://127.0.0.1:{port}{bodies.PREDICT_PATH}",
                                      bodies.rest_body(3))
        assert status == 200
        checks.check_predictions(payload, 3)
        status, _ = checks.http("POST", f"http://127.0.0.1:{port}{bodies.PREDICT_PATH}", b'{"x": 1}')
        assert status == 422  # the body is really parsed and validated
        if shutil.which("wrk") is None:
            pytest.skip("wrk is not installed (apt-get install -y wrk): load part not checked")
        body = tmp_path / "body.json"
        body.write_bytes(bodies.rest_body(1))
        figures = loadgen.run_wrk(f"http://127.0.0.1:{port}{bodies.PREDICT_PATH}", body, 2, 1)
        assert figures["ok"] > 0 and figures["errors"] == 0
        assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    finally:
        procs.stop(proc)


def test_h2load_drives_grpc_predict_on_the_embedded_server(model_dir: Path, tmp_path: Path,
                                                             start_server) -> None:
    if shutil.which("h2load") is None:
        pytest.skip("h2load is not installed (apt-get install -y nghttp2-client)")
    server = start_server("--model_name=digits_model", f"--model_base_path={model_dir.parent}")
    checks.check_grpc(server.grpc_port, 2)  # the official stubs get a real answer first
    body = tmp_path / "grpc_1.bin"
    body.write_bytes(bodies.grpc_frame(bodies.grpc_request(1)))
    figures = loadgen.run_h2load(server.grpc_port, body, 2, 1)
    assert figures["tool"] == "h2load" and figures["ok"] > 0 and figures["errors"] == 0
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    counted = loadgen.run_h2load(server.grpc_port, body, 2, 1, requests=50)  # bounded by count
    assert (counted["requests"], counted["ok"], counted["errors"]) == (50, 50, 0)


def test_h2load_summary_is_parsed() -> None:
    stdout = ("finished in 2.00s, 1500.50 req/s, 1.2MB/s\n"
              "requests: 3001 total, 3002 started, 3001 done, 3000 succeeded, 1 failed, 0 errored, "
              "0 timeout\nstatus codes: 3000 2xx, 0 3xx, 0 4xx, 1 5xx\n")
    log = [f"{i}\t200\t{1000 + i}" for i in range(100)] + ["7\t500\t5"]
    figures = loadgen.parse_h2load(stdout, log)
    assert (figures["requests"], figures["ok"], figures["errors"]) == (3001, 3000, 1)
    assert figures["rps"] == 1500.0 and figures["seconds"] == 2.0
    assert (figures["p50_ms"], figures["p99_ms"]) == (1.049, 1.098)  # 200s only


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
    verdicts = {v["target"].split(": ", 1)[1]: v["verdict"] for v in report.targets_verdicts(results)}
    assert verdicts == {
        "req/s at 32 conns >= 10x handwritten": "FAIL",      # 2000 < 10 * 210 (threads style)
        "req/s at 32 conns > canned FastAPI": "FAIL",        # 2000 < 2500
        "p50 at 1 conn <= 1/3 handwritten": "FAIL",          # 0.8 > 2 / 3 (threads style)
        "images/s at 64/request >= 5x handwritten": "PASS",  # 1920 >= 5 * 320
        "RSS after 60s run within 10% of warm-up": "PASS",   # +5%
    }


def test_mlflow_serves_the_same_model(model_dir: Path, tmp_path: Path) -> None:
    if targets.mlflow_available():
        pytest.skip(f"mlflow not installed for the benchmark: {targets.mlflow_available()}")
    targets.prepare_mlflow(model_dir, tmp_path)
    port = procs.free_port()
    bindir = targets.MLFLOW_VENV / "bin"
    logfile = tmp_path / "mlflow.log"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}",
               TF_CPP_MIN_LOG_LEVEL="2")
    proc = procs.start([str(bindir / "mlflow"), "models", "serve", "-m", str(tmp_path / "mlflow_model"),
                        "-h", "127.0.0.1", "-p", str(port), "--env-manager", "local", "-w", "1"],
                       logfile, env=env, cwd=tmp_path)
    try:
        checks.wait_until(proc, logfile, lambda: checks.http(
            "GET", f"http://127.0.0.1:{port}/ping", timeout=5)[0] == 200, timeout=90)
        status, payload = checks.http("POST", f"http://127.0.0.1:{port}/invocations", bodies.rest_body(2))
        assert status == 200, payload[:300]
        checks.check_predictions(payload, 2)
    finally:
        procs.stop(proc)
    assert port_is_free(port)


def test_rounds_are_summarised_as_medians_with_their_spread() -> None:
    def round_(rps: float, p50: float, p99: float) -> dict:
        return {"requests": int(rps), "ok": int(rps), "errors": 0, "seconds": 1.0, "rps": rps,
                "images_per_s": rps, "p50_ms": p50, "p90_ms": p50, "p99_ms": p99, "loadgen_cpu": 0.1,
                "server_cpu": 1.0, "core_others": 0.0, "core_steal": 0.0}

    s = rounds.summarize([round_(900, 1.0, 9), round_(1200, 0.7, 3), {"failed": "wrk gave no figures"},
                           round_(1000, 0.8, 4)])
    assert (s["rps"], s["rps_min"], s["rps_max"]) == (1000, 900, 1200)
    assert (s["p50_ms"], s["p99_ms"]) == (0.8, 4)
    assert s["requests"] == 3100 and s["rounds"] == 3
    assert s["failed_rounds"] == ["wrk gave no figures"]
    assert rounds.summarize([{"failed": "boom"}]) == {"failed": "boom"}


def test_a_short_run_end_to_end(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness itself, shortened and called in-process: the embedded server and the canned
    app started side by side, two alternating rounds per scenario, a table with targets and gRPC
    beside REST, the results JSON; and the test process's signal handlers left as they were."""
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install -y {package}): the run needs it")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    # the harness reuses a model it finds in its work folder: the tiny one, not a training run
    shutil.copytree(model_dir.parent, tmp_path / "work" / "model" / "tiny" / "digits_model")
    out = tmp_path / "results"
    assert serving.main(["--only", "embedded,canned-fastapi", "--seconds", "2", "--rounds", "2",
                         "--memory-seconds", "1", "--warmup", "0.5",
                         "--workdir", str(tmp_path / "work"), "--results", str(out)]) == 0
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    table = capsys.readouterr().out
    assert "gRPC (h2load) and REST (wrk) side by side" in table
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
    assert results["servers"]["embedded"]["scenarios"]["grpc_1img_c32"]["errors"] == 0
    side = {(r["server"], r["scenario"]) for r in results["grpc_vs_rest"]}
    assert ("embedded", "1img_c32") in side and not any(s == "canned-fastapi" for s, _ in side)
    assert results["servers"]["embedded"]["memory"]["run_seconds"] == 1


def test_h2load_grpc_compare_alternates_protocols_on_one_server(model_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/h2load_grpc.py compare, the gRPC/REST ratio of one build with its own flags:
    both protocols' rounds alternate against one embedded server (here with batching on, from
    this tree's PYTHONPATH), with medians from the harness's summarize and no errors."""
    for tool, package in (("wrk", "wrk"), ("h2load", "nghttp2-client")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install -y {package}): the run needs it")
    import h2load_grpc

    assert h2load_grpc.main(["compare", "--model-base", str(model_dir.parent), "--rounds", "2",
                             "-d", "1", "-c", "2", "--warmup", "0.5", "--pythonpath", str(ROOT),
                             "--server-flag=--enable_batching"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["flags"] == ["--enable_batching"]
    for protocol in ("rest", "grpc"):
        assert result[protocol]["rounds"] == 2 and result[protocol]["errors"] == 0
        assert result[protocol]["ok"] > 0 and len(result["per_round_rps"][protocol]) == 2
    assert result["grpc_over_rest"] == round(result["grpc"]["rps"] / result["rest"]["rps"], 3)
    assert not procs._LIVE  # the server was stopped


def test_policies_sweeps_each_setup_and_skips_one_that_does_not_start(model_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/policies.py, bounded to two short rates at a given capacity: the set-up that
    starts is swept and saved, the one whose flag this build lacks is skipped with its server's
    error, and the table and the overlay plot are written."""
    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed (util-linux): the script pins server and generator")
    import policies

    from mlserve.bench.sweeps import load_sweep

    out = tmp_path / "out"
    assert policies.main(["--model-base", str(model_dir.parent), "--out", str(out), "--setup", "none=",
                          "--setup", "bogus=--no_such_flag", "--capacity", "100", "--fractions", "0.5,1",
                          "-d", "0.5", "--pythonpath", str(ROOT)]) == 0
    printed = capsys.readouterr().out
    sweep = load_sweep(out / "sweeps" / "none.json")
    assert sweep.label == "none" and [lv["rate"] for lv in sweep.levels] == [50.0, 100.0]
    assert all(lv["ok"] == lv["sent"] > 0 and lv["errors"] == 0 for lv in sweep.levels)
    table = (out / "policies.md").read_text()
    assert table in printed and "| 50 |" in table and "Skipped bogus" in table and "no_such_flag" in table
    assert (out / "p99.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "sweeps" / "bogus.json").exists() and not procs._LIVE


def test_run_sh_help_installs_nothing(tmp_path: Path) -> None:
    """`benchmarks/run.sh --help` prints help and installs nothing. PATH holds only what the
    script needs to get that far, plus a stand-in `apt-get` that records being called: wrk,
    h2load and taskset are missing, so an install would be attempted if --help did not stop it."""
    import subprocess

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("bash", "dirname", "id", "env"):
        (bindir / tool).symlink_to(shutil.which(tool))
    calls = tmp_path / "apt-get.calls"
    (bindir / "apt-get").write_text(f"#!/bin/bash\necho \"$@\" >> {calls}\nexit 1\n")
    (bindir / "apt-get").chmod(0o755)
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "run.sh"), "--help"],
                          env={"PATH": str(bindir), "PYTHON": sys.executable,
                               "PYTHONPATH": os.environ.get("PYTHONPATH", str(ROOT))},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--long" in done.stdout and "--rounds" in done.stdout
    assert not calls.exists() and "installing" not in done.stderr


@pytest.mark.parametrize("script", ["serving.py", "h2load_grpc.py", "abuse.py", "abuse_h2.py", "tflite.py", "v2.py",
                                    "policies.py"])
def test_benchmark_scripts_start(script: str) -> None:
    """Each benchmark script imports and prints its help: a script that is only run by hand must
    not break silently when the harness modules it borrows from move (tflite.py once did)."""
    import subprocess

    path = Path(__file__).resolve().parents[1] / "benchmarks" / script
    done = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()

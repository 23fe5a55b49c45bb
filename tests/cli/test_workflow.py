"""The whole workflow through the CLI, as a user runs it: train -> export -> serve (embedded,
detached, on free ports) -> the course's `requests` code, `mlserve predict` over REST and gRPC ->
export version 2 while a client loops -> status -> stop. Real processes, real TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from support.models import assert_same_digits
import requests

from support.paths import ROOT
from support.ports import free_port, port_is_free

MLSERVE = [sys.executable, "-m", "mlserve"]


def mlserve(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*MLSERVE, *args], capture_output=True, text=True, env=env, timeout=timeout)
    assert proc.returncode == 0, f"mlserve {' '.join(args)} -> {proc.returncode}\n{proc.stderr[-3000:]}"
    return proc


def saved_model_softmax(version_dir: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    fn = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    return fn(Conv1_input=tf.constant(images, dtype=tf.float32))["softmax"].numpy()


@pytest.fixture
def env(mlserve_home: Path) -> dict[str, str]:
    grpc_port, rest_port = free_port(), free_port()
    return {**os.environ, "MLSERVE_HOME": str(mlserve_home), "MLSERVE_GRPC_PORT": str(grpc_port),
            "MLSERVE_REST_PORT": str(rest_port), "MLSERVE_URL": f"http://127.0.0.1:{rest_port}",
            "MLSERVE_GRPC_SERVER": f"127.0.0.1:{grpc_port}"}


def test_train_export_serve_query_hot_swap_stop(env: dict[str, str], mlserve_home: Path) -> None:
    from mlserve.model.data import load_mnist, prepare_images

    mlserve("train", "--epochs", "1", "--seed", "1", env=env)
    mlserve("export", "--version", "1", env=env)
    base = mlserve_home / "models" / "digits_model"
    served = mlserve("serve", "--detach", "--poll-seconds", "1", env=env)
    assert "embedded" in served.stderr
    url = env["MLSERVE_URL"]
    try:
        # The course notebook's client code, verbatim but for the model name and port.
        test_images = prepare_images(load_mnist("sample").x_test)
        data = json.dumps({"signature_name": "serving_default", "instances": test_images[0:3].tolist()})
        headers = {"content-type": "application/json"}
        json_response = requests.post(f"{url}/v1/models/digits_model:predict", data=data, headers=headers)
        predictions = json.loads(json_response.text)["predictions"]
        expected_v1 = saved_model_softmax(base / "1", test_images[0:3])
        np.testing.assert_allclose(predictions, expected_v1, rtol=1e-5, atol=1e-6)

        rest = json.loads(mlserve("predict", "--json", env=env).stdout)
        grpc = json.loads(mlserve("predict", "--grpc", "--json", env=env).stdout)
        for rows in (rest, grpc):
            assert_same_digits([r["predicted"] for r in rows], expected_v1)
            np.testing.assert_allclose([r["probabilities"] for r in rows], expected_v1, rtol=1e-5,
                                       atol=1e-6)

        # Export version 2 (different weights) while a client loops: no failed request, and the
        # answers switch to version 2's.
        mlserve("train", "--epochs", "1", "--seed", "2", env=env)
        failures: list[str] = []
        answers: list[list] = []
        stop = threading.Event()

        def loop() -> None:
            with requests.Session() as session:
                while not stop.is_set():
                    try:
                        r = session.post(f"{url}/v1/models/digits_model:predict", data=data,
                                         headers=headers, timeout=30)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                        else:
                            answers.append(r.json()["predictions"])
                    except requests.RequestException as e:
                        failures.append(repr(e))

        client = threading.Thread(target=loop)
        client.start()
        try:
            mlserve("export", "--version", "2", env=env)
            expected_v2 = saved_model_softmax(base / "2", test_images[0:3])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if answers and np.allclose(answers[-1], expected_v2, rtol=1e-5, atol=1e-6):
                    break
                time.sleep(0.2)
        finally:
            stop.set()
            client.join(timeout=60)
        assert failures == []
        assert np.allclose(answers[0], expected_v1, rtol=1e-5, atol=1e-6)
        assert np.allclose(answers[-1], expected_v2, rtol=1e-5, atol=1e-6), "never switched to v2"

        status = json.loads(mlserve("status", "--json", env=env).stdout)
        text = json.dumps(status)
        assert '"AVAILABLE"' in text and "digits_model" in text
        served_versions = requests.get(f"{url}/v1/models/digits_model").json()["model_version_status"]
        assert [(v["version"], v["state"]) for v in served_versions if v["state"] == "AVAILABLE"] == [
            ("2", "AVAILABLE")]
    finally:
        mlserve("stop", "--all", env=env)
    assert port_is_free(int(env["MLSERVE_REST_PORT"])) and port_is_free(int(env["MLSERVE_GRPC_PORT"]))
    assert json.loads(mlserve("status", "--json", env=env).stdout) == []


def test_readme_demo_script_runs_end_to_end(env: dict[str, str]) -> None:
    """`make demo` runs examples/demo.sh; run it here on free ports with this interpreter's mlserve."""
    root = ROOT
    mlserve_bin = Path(sys.executable).parent / "mlserve"
    proc = subprocess.run(["bash", str(root / "examples" / "demo.sh")], capture_output=True, text=True,
                          env={**env, "MLSERVE": str(mlserve_bin)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    png = next(line.split(": ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("Plot: "))
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "correct" in proc.stdout
    assert port_is_free(int(env["MLSERVE_REST_PORT"]))

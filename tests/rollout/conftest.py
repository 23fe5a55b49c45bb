"""Rollout fixtures: tiny versioned models whose answer names their version, a real server on free ports.

Version v of `labelled` answers class CLASSES[v] for every image, so each answer says which
version produced it (the full CNN would take minutes to train per version; these load in well
under a second). Version 9 has a corrupt saved_model.pb: it fails to load.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from ports import free_port

MODEL = "labelled"
CLASSES = {1: 1, 2: 2, 3: 3, 4: 5}  # version -> the digit it always answers
BROKEN = 9

_SCRIPT = """
import sys
import tensorflow as tf

class Constant(tf.Module):
    def __init__(self, digit):
        self.digit = tf.constant(digit)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(self, Conv1_input):
        return {"softmax": tf.one_hot(tf.fill([tf.shape(Conv1_input)[0]], self.digit), 10)}

for arg in sys.argv[2:]:
    version, digit = map(int, arg.split(":"))
    m = Constant(digit)
    tf.saved_model.save(m, f"{sys.argv[1]}/{version}", signatures={"serving_default": m.serve})
"""


@pytest.fixture(scope="session")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rollout-models") / MODEL
    subprocess.run([sys.executable, "-c", _SCRIPT, str(base), *(f"{v}:{c}" for v, c in CLASSES.items())],
                   check=True, timeout=300,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    (base / str(BROKEN)).mkdir()
    (base / str(BROKEN) / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return base


@pytest.fixture
def base_path(model_template: Path, tmp_path: Path) -> Path:
    base = tmp_path / "models" / MODEL
    shutil.copytree(model_template, base)
    return base


CONFIG = """# Written by hand: rollout commands keep this comment and the other model.
model_config_list {{
  # the model under test
  config {{
    name: "{model}"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ specific {{ versions: 1 }} }}
    version_labels {{ key: "stable" value: 1 }}
  }}
  config {{
    name: "other"  # a second model nobody touches
    base_path: "{base}"
    model_version_policy {{ specific {{ versions: 4 }} }}
  }}
}}
"""


@pytest.fixture
def config_file(base_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "models.config"
    path.write_text(CONFIG.format(model=MODEL, base=base_path))
    return path


@dataclass
class Server:
    process: subprocess.Popen
    grpc: str
    url: str
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(config: Path, log: Path, *extra: str, timeout: float = 120) -> Server:
    """`python -m mlserve.server --model_config_file=...` on free ports, ready when MODEL is AVAILABLE."""
    from mlserve.rollout.serverlink import ServerLink

    grpc_port, rest_port = free_port(), free_port()
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}", f"--rest_api_port={rest_port}",
             f"--model_config_file={config}",
             # TF Serving checks labels before it loads anything: without this flag a config with
             # labels cannot start a server (TF Serving issues #1230, #1608)
             "--allow_version_labels_for_unavailable_models", *extra],
            stdout=sink, stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    server = Server(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{rest_port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with ServerLink(server.grpc, timeout=2) as link:
                grpc_ready = bool(link.available(MODEL))
            with urllib.request.urlopen(f"{server.url}/v1/models/{MODEL}", timeout=2) as response:
                if grpc_ready and b"AVAILABLE" in response.read():
                    return server
        except Exception:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server not ready in {timeout:g}s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(config_file: Path, tmp_path: Path) -> Iterator[Server]:
    s = start_server(config_file, tmp_path / "server.log")
    yield s
    s.stop()

"""Server fixtures shared by the server tests: tiny SavedModels and a real server subprocess.

`digits_export(dst, seed)` writes a SavedModel with the course's exact signature (serving_default:
`Conv1_input` float32 [-1,28,28,1] -> `softmax` float32 [-1,10]); models are exported once per
session and copied, since an export costs seconds of TF graph building. `start_server(...)` runs
`python -m mlserve.server` on free ports and waits until every model is AVAILABLE over gRPC.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from ports import free_port

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MODEL_NAME = "digits_model"
_TEMPLATES: dict[str, Path] = {}


def _export_digits(path: Path, seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(2, 3, strides=2, activation="relu", name="Conv1"),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax", name="Softmax"),
    ])

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(Conv1_input: Any) -> dict[str, Any]:  # noqa: N803 - argument name = input key
        return {"softmax": model(Conv1_input, training=False)}

    module = tf.Module()
    module.model = model
    module.serve = serve
    tf.saved_model.save(module, str(path), signatures={"serving_default": serve})


def _export_examples(path: Path) -> None:
    """A model taking serialized tf.Example (feature x: 2 floats) with classify/regress signatures."""
    import tensorflow as tf

    spec = {"x": tf.io.FixedLenFeature([2], tf.float32)}

    def features(serialized: Any) -> Any:
        return tf.io.parse_example(serialized, spec)["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs: Any) -> dict[str, Any]:
        x = features(inputs)
        scores = tf.nn.softmax(x)
        classes = tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(x)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(inputs: Any) -> dict[str, Any]:
        return {"outputs": tf.reduce_sum(features(inputs), axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def predict(x: Any) -> dict[str, Any]:
        return {"y": tf.reduce_sum(x, axis=1, keepdims=True)}

    module = tf.Module()
    module.fns = [classify, regress, predict]
    tf.saved_model.save(module, str(path), signatures={
        "serving_default": predict, "classify_x": classify, "regress_x": regress})


def _template(kind: str, factory: Callable[[Path], None], root: Path) -> Path:
    if kind not in _TEMPLATES:
        path = root / kind
        factory(path)
        _TEMPLATES[kind] = path
    return _TEMPLATES[kind]


@pytest.fixture(scope="session")
def model_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`template(kind)`: a session-cached SavedModel: "digits" (seed 1), "digits2" (seed 2), "examples"."""
    root = tmp_path_factory.mktemp("saved-model-templates")
    factories = {"digits": lambda p: _export_digits(p, 1), "digits2": lambda p: _export_digits(p, 2),
                 "examples": _export_examples}
    return lambda kind: _template(kind, factories[kind], root)


@pytest.fixture
def write_version(model_templates: Callable[[str], Path]) -> Callable[..., Path]:
    """`write_version(base_path, n, kind="digits")`: copy a SavedModel into base_path/n atomically."""

    def write(base_path: Path, version: int, kind: str = "digits") -> Path:
        base_path = Path(base_path)
        base_path.mkdir(parents=True, exist_ok=True)
        tmp = base_path / f".tmp-{version}-{os.getpid()}"
        shutil.copytree(model_templates(kind), tmp)
        target = base_path / str(version)
        tmp.rename(target)
        return target

    return write


@pytest.fixture
def digits_base(tmp_path: Path, write_version: Callable[..., Path]) -> Path:
    """`<tmp>/models/digits_model` holding version 1 of the tiny course-signature model."""
    base = tmp_path / "models" / MODEL_NAME
    write_version(base, 1)
    return base




def digits_batch(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 28, 28, 1), dtype=np.float32)


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    grpc_port: int
    rest_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def wait_available(server: ServerProcess, models: list[str], timeout: float = 90) -> None:
    """Poll GetModelStatus until every model has an AVAILABLE version; fail fast if the child dies."""
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        pending = list(models)
        while pending:
            if server.proc.poll() is not None:
                raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                server.stop()
                raise AssertionError(f"server not ready in {timeout}s:\n{server.log_text()[-3000:]}")
            req = get_model_status_pb2.GetModelStatusRequest()
            req.model_spec.name = pending[0]
            try:
                resp = stub.GetModelStatus(req, timeout=2)
                if any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
                       for s in resp.model_version_status):
                    pending.pop(0)
                    continue
            except grpc.RpcError:
                pass
            time.sleep(0.2)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """`start_server(*flags, models=[...])`: a real `python -m mlserve.server` on free ports, stopped
    (SIGTERM, then SIGKILL) and reaped at teardown. REST is on (`--rest_api_port`) unless a flag says."""
    started: list[ServerProcess] = []

    def start(*flags: str, models: list[str] | None = None, wait: bool = True) -> ServerProcess:
        grpc_port, rest_port = free_port(), free_port()
        log_path = tmp_path / f"server-{len(started)}.log"
        args = [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}",
                f"--rest_api_port={rest_port}", *flags]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        server = ServerProcess(proc, grpc_port, rest_port, log_path, args)
        started.append(server)
        if wait:
            wait_available(server, models or [MODEL_NAME])
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def half_plus_two_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's testdata `half_plus_two` (see `half_plus_two.py`), built once per session."""
    from .half_plus_two import build_half_plus_two

    root = tmp_path_factory.mktemp("half-plus-two")
    build_half_plus_two(root / "export", root / "original-assets")
    return root / "export"


@pytest.fixture
def half_plus_two_base(tmp_path: Path, half_plus_two_template: Path) -> Path:
    """`<tmp>/models/half_plus_two/123` holding TF Serving's half_plus_two."""
    base = tmp_path / "models" / "half_plus_two"
    shutil.copytree(half_plus_two_template, base / "123")
    return base

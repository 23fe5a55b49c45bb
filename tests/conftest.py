"""Shared fixtures: every test gets its own workspace (MLSERVE_HOME) and no stray MLSERVE_* settings;
and the ONE way tests start a real embedded server: `start_server` (per test) / `digits_server`
(per session), on ephemeral ports, ready when every model is AVAILABLE over gRPC and REST."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from ports import free_port

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def mlserve_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace per test; MLSERVE_* variables of the developer's shell do not leak in."""
    for name in list(os.environ):
        if name.startswith("MLSERVE_"):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("mlserve-home")
    monkeypatch.setenv("MLSERVE_HOME", str(home))
    return home


# -- a real embedded server on ephemeral ports ---------------------------------------------------
MODEL_NAME = "digits_model"


@dataclass
class ServerProcess:
    """A `python -m mlserve.server` child of the test process."""

    proc: subprocess.Popen
    grpc_port: int
    rest_port: int
    log_path: Path
    args: list[str] = field(default_factory=list)
    base: Path | None = None  # the model base path, when one model is served

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    grpc = grpc_target

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL; reaped either way. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def _grpc_available(target: str, model: str) -> bool:
    import grpc
    from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    with grpc.insecure_channel(target) as channel:
        try:
            answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=2)
        except grpc.RpcError:
            return False
    return any(s.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
               for s in answer.model_version_status)


def wait_available(server: ServerProcess, models: list[str], timeout: float = 90) -> None:
    """Until every model is AVAILABLE over gRPC (and REST, when it is on); fails at once with the
    log tail if the child exits, and stops it if it is not ready in time."""
    from mlserve.runtimes import process

    rest = server.rest_port > 0 and "--rest_api_port=0" not in server.args
    deadline = time.monotonic() + timeout
    pending = list(models)
    while pending:
        if server.proc.poll() is not None:
            raise AssertionError(f"server exited with {server.proc.returncode}:\n{server.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            server.stop()
            raise AssertionError(f"server not ready in {timeout:g}s:\n{server.log_text()[-3000:]}")
        model = pending[0]
        if _grpc_available(server.grpc_target, model) and \
                (not rest or process.models_ready("127.0.0.1", server.rest_port, [model])[0]):
            pending.pop(0)
            continue
        time.sleep(0.2)


def launch_server(flags: list[str], log_path: Path, models: list[str] | None = None,
                  wait: bool = True, base: Path | None = None) -> ServerProcess:
    """`python -m mlserve.server --port=<free> --rest_api_port=<free> FLAGS`, output to log_path."""
    grpc_port, rest_port = free_port(), free_port()
    args = [sys.executable, "-m", "mlserve.server", f"--port={grpc_port}",
            f"--rest_api_port={rest_port}", *flags]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    server = ServerProcess(proc, grpc_port, rest_port, log_path, args, base)
    if wait:
        try:
            wait_available(server, models or [MODEL_NAME])
        except BaseException:
            server.stop()
            raise
    return server


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """`start_server(*flags, models=[...], wait=True)`: a real embedded server on free ports,
    stopped (SIGTERM, then SIGKILL) and reaped at teardown."""
    started: list[ServerProcess] = []

    def start(*flags: str, models: list[str] | None = None, wait: bool = True) -> ServerProcess:
        server = launch_server(list(flags), tmp_path / f"server-{len(started)}.log", models, wait)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# -- predict / bench / client tests (tests/predict_helpers.py) -----------------------------------
@pytest.fixture(scope="session")
def digits_model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained digits model exported as <base>/1 (the real export path)."""
    from predict_helpers import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("digits-export"))


@pytest.fixture(scope="session")
def digits_server(digits_model_base: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real embedded server serving digits_model on free ports, for the whole session."""
    server = launch_server([f"--model_name={MODEL_NAME}", f"--model_base_path={digits_model_base}"],
                           tmp_path_factory.mktemp("digits-server") / "server.log",
                           base=digits_model_base)
    yield server
    server.stop()

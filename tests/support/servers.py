"""A real `python -m mlserve.server` on ephemeral ports, for tests: started, waited for (every
model AVAILABLE over gRPC and REST, the child watched), stopped and reaped. The fixtures that
hand it out are `start_server` and `digits_server` in tests/conftest.py; tests import
`ServerProcess` and `wait_available` from here."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from support.models import MODEL_NAME
from support.ports import free_port


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

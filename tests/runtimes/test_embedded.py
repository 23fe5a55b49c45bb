"""End to end with a real server: mlserve's embedded server behind each runtime's lifecycle.

The embedded runtime runs `python -m mlserve.server` directly. The binary and Docker runtimes run
stand-ins (tests/standins/: no TF Serving apt repository and no Docker engine on these machines)
that exec the same embedded server with the flags they were given (Docker: -p ports and bind
mounts mapped back), so the whole path from command line to a prediction is real.
"""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from .conftest import MODEL, Env, pid_gone, port_free

pytestmark = pytest.mark.slow


def predict(rest: int) -> list[float]:
    body = json.dumps({"instances": [[[[0.5]] * 28] * 28]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{rest}/v1/models/{MODEL}:predict", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["predictions"][0]


@pytest.mark.parametrize("runtime", ["embedded", "binary", "docker"])
def test_detach_status_predict_stop(env: Env, saved_model: Path, ports: tuple[int, int],
                                    runtime: str) -> None:
    grpc, rest = ports
    extra = {"MLSERVE_STANDIN_SERVE": "embedded", "MLSERVE_STANDIN_DOCKER_ENGINE": "1"}
    done = env.run("serve", "--detach", "--runtime", runtime, "--model-base-path", str(saved_model),
                   "--port", str(grpc), "--rest-port", str(rest), "--ready-timeout", "120", **extra)
    assert done.returncode == 0, done.stderr
    [state] = env.status()
    assert state["runtime"] == runtime
    assert state["models"] == {MODEL: [{"version": "1", "state": "AVAILABLE"}]}
    scores = predict(rest)
    assert len(scores) == 10 and abs(sum(scores) - 1) < 1e-4
    done = env.run("stop", MODEL, **extra)
    assert done.returncode == 0 and done.stdout.strip() == f"{MODEL}: terminated", done.stderr
    assert pid_gone(state["pid"]) and port_free(grpc) and port_free(rest)
    assert env.status() == []

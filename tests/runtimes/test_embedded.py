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

from support.models import MODEL_NAME
from support.ports import pid_gone, port_free
from support.runtimes import Env

pytestmark = pytest.mark.slow


def predict(rest: int) -> list[float]:
    body = json.dumps({"instances": [[[[0.5]] * 28] * 28]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{rest}/v1/models/{MODEL_NAME}:predict", data=body,
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
    assert state["models"] == {MODEL_NAME: [{"version": "1", "state": "AVAILABLE"}]}
    scores = predict(rest)
    assert len(scores) == 10 and abs(sum(scores) - 1) < 1e-4
    done = env.run("stop", MODEL_NAME, **extra)
    assert done.returncode == 0 and done.stdout.strip() == f"{MODEL_NAME}: terminated", done.stderr
    assert pid_gone(state["pid"]) and port_free(grpc) and port_free(rest)
    assert env.status() == []


def test_two_embedded_servers_racing_for_the_same_ports(env: Env, saved_model: Path,
                                                        ports: tuple[int, int], tmp_path: Path) -> None:
    """The real race of the issue: two `serve --detach --runtime embedded` started at the same
    moment on the same ports. Both find the ports free; whichever binds first answers both
    readiness polls; only that one may report success."""
    import subprocess
    import sys

    grpc, rest = ports
    procs = []
    for name in ("one", "two"):
        with open(tmp_path / f"{name}.out", "w") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "mlserve", "serve", "--detach", "--runtime", "embedded",
                 "--model-base-path", str(saved_model), "--name", name, "--port", str(grpc),
                 "--rest-port", str(rest), "--ready-timeout", "120"],
                env=env, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=240) for p in procs]
    outputs = [(tmp_path / f"{n}.out").read_text() for n in ("one", "two")]
    assert sorted(codes)[0] == 0 and sorted(codes)[1] in (3, 6), outputs
    [state] = env.status()
    assert state["name"] == ("one" if codes[0] == 0 else "two")
    scores = predict(rest)
    assert len(scores) == 10


def test_stopping_a_foreground_server_signals_it_once(env: Env, saved_model: Path,
                                                      ports: tuple[int, int], tmp_path: Path) -> None:
    """`mlserve stop` of a foreground embedded server: its mlserve stops it, and the server's
    log says "Received SIGTERM" once (not once per stopper)."""
    import subprocess
    import sys
    import time

    grpc, rest = ports
    err = tmp_path / "serve.stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--runtime", "embedded", "--model-base-path",
             str(saved_model), "--port", str(grpc), "--rest-port", str(rest)],
            env=env, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 180
    while "Ready:" not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.1)
    done = env.run("stop")
    assert done.returncode == 0 and done.stdout.strip() == f"{MODEL_NAME}: terminated", done.stderr
    assert proc.wait(timeout=60) == 0
    log = (env.home / "logs" / f"{MODEL_NAME}.log").read_text()
    assert log.count("Received SIGTERM") == 1, log[-2000:]
    assert port_free(grpc) and port_free(rest) and env.status() == []

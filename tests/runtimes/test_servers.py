"""Several servers at once: racing starts, and `logs`, `stop`, `status` with zero, one or two.

`tensorflow_model_server` and `docker` are stand-ins (tests/standins/): these machines have no TF
Serving apt repository and no Docker engine. With MLSERVE_STANDIN_SERVE=stub each start is a tiny
REST stub; MLSERVE_STANDIN_BIND_DELAY makes it wait before binding, as a real server loading
TensorFlow does, which is the window a racing start falls into.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.models import MODEL_NAME
from support.ports import free_port, pid_gone, port_free
from support.runtimes import Env

DOCKER = {"MLSERVE_STANDIN_DOCKER_ENGINE": "1", "MLSERVE_TFS_BINARY": "/nonexistent/tfs"}


def _serve_detached(env: Env, base_path: Path, name: str, grpc: int, rest: int, runtime: str,
                    bind_delay: float, out_path: Path) -> subprocess.Popen:
    with open(out_path, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--detach", "--runtime", runtime,
             "--model-base-path", str(base_path), "--name", name, "--port", str(grpc),
             "--rest-port", str(rest)],
            env={**env, **(DOCKER if runtime == "docker" else {}),
                 "MLSERVE_STANDIN_BIND_DELAY": str(bind_delay)},
            stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("runtime", ["binary", "docker"])
def test_racing_detached_starts_on_the_same_ports_never_both_succeed(
        env: Env, base_path: Path, ports: tuple[int, int], tmp_path: Path, runtime: str) -> None:
    """Two real `serve --detach` started at the same moment on the same ports. Both pass the
    port check (nothing is bound yet); the first binds after 1 s and is ready, and from then on
    it answers the second one's readiness poll too, while the second's own server still waits
    to bind (3 s). The second must not take that answer for its own."""
    grpc, rest = ports
    first = _serve_detached(env, base_path, "first", grpc, rest, runtime, 1.0,
                            tmp_path / "first.out")
    second = _serve_detached(env, base_path, "second", grpc, rest, runtime, 3.0,
                             tmp_path / "second.out")
    codes = {"first": first.wait(timeout=60), "second": second.wait(timeout=60)}
    output = {n: (tmp_path / f"{n}.out").read_text() for n in codes}
    assert codes["first"] == 0, output["first"]
    assert codes["second"] in (3, 6), output["second"]  # start failed / port in use: never 0
    assert "Error:" in output["second"]
    assert [s["name"] for s in env.status()] == ["first"]
    assert not (env.home / "servers" / "second.json").exists()


def test_racing_starts_of_one_name_leave_the_winner_recorded(
        env: Env, base_path: Path, tmp_path: Path) -> None:
    """Same name, different ports, same moment: one claims the name; the other refuses (exit 6)
    and must not remove or overwrite the winner's record."""
    procs = [_serve_detached(env, base_path, "same", free_port(), free_port(), "binary", 0.5,
                             tmp_path / f"same-{i}.out") for i in range(2)]
    codes = sorted(p.wait(timeout=60) for p in procs)
    assert codes == [0, 6], [(tmp_path / f"same-{i}.out").read_text() for i in range(2)]
    [state] = env.status()
    assert state["name"] == "same" and state["models"][MODEL_NAME][0]["state"] == "AVAILABLE"


def _detach(env: Env, base_path: Path, name: str, *extra: str) -> dict:
    done = env.run("serve", "--detach", "--runtime", "binary", "--model-base-path", str(base_path),
                   "--name", name, "--port", str(free_port()), "--rest-port", str(free_port()),
                   *extra)
    assert done.returncode == 0, done.stderr
    return json.loads((env.home / "servers" / f"{name}.json").read_text())


def test_logs_with_two_servers_shows_the_latest(env: Env, base_path: Path) -> None:
    _detach(env, base_path, "older")
    time.sleep(1.1)  # `started` has whole seconds: the second start is later on the record
    newer = _detach(env, base_path, "newer")
    done = env.run("logs")
    assert done.returncode == 0, done.stderr
    assert f"--rest_api_port={newer['rest_port']}" in done.stdout  # the newer server's own log


def test_stop_with_nothing_running_succeeds_and_names_nothing(env: Env) -> None:
    (env.home / "logs").mkdir(parents=True, exist_ok=True)
    (env.home / "logs" / "fleet.log").write_text("an old log of a stopped server\n")
    for args in (["stop"], ["stop", "--all"]):
        done = env.run(*args)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "" and "fleet" not in done.stderr
        assert "No server is running" in done.stderr and "mlserve status" in done.stderr
    done = env.run("stop", "fleet")  # a name the user gave, not recorded: an error
    assert done.returncode == 4 and "'fleet'" in done.stderr and "mlserve status" in done.stderr


def test_stop_without_name_among_two_names_the_commands(env: Env, base_path: Path) -> None:
    _detach(env, base_path, "a")
    _detach(env, base_path, "b")
    done = env.run("stop")
    assert done.returncode == 2
    assert "mlserve stop a" in done.stderr and "mlserve stop --all" in done.stderr
    assert sorted(s["name"] for s in env.status()) == ["a", "b"]
    done = env.run("stop", "--all")
    assert done.returncode == 0 and sorted(done.stdout.split()) == ["a:", "b:", "terminated",
                                                                   "terminated"]
    assert env.status() == []


def test_stop_removes_the_files_written_for_the_server(env: Env, base_path: Path) -> None:
    _detach(env, base_path, "mon", "--monitoring")
    monitoring = env.home / "servers" / "mon.monitoring.config"
    assert monitoring.exists()
    assert env.run("stop", "mon").returncode == 0
    assert sorted(p.name for p in (env.home / "servers").iterdir()) == []


def test_mlserve_stop_of_a_foreground_server_asks_it_once(env: Env, base_path: Path,
                                                         ports: tuple[int, int], tmp_path: Path) -> None:
    grpc, rest = ports
    err = tmp_path / "serve.stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--runtime", "binary", "--monitoring",
             "--model-base-path", str(base_path), "--port", str(grpc), "--rest-port", str(rest)],
            env=env, stdout=subprocess.DEVNULL, stderr=sink)
    deadline = time.monotonic() + 60
    while "Ready:" not in err.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        time.sleep(0.05)
    child = env.status()[0]["pid"]
    done = env.run("stop")
    assert done.returncode == 0 and done.stdout.strip() == f"{MODEL_NAME}: terminated", done.stderr
    assert proc.wait(timeout=30) == 0  # stopped on request (SIGTERM), not interrupted
    log = (env.home / "logs" / f"{MODEL_NAME}.log").read_text()
    assert log.count("SIGTERM, shutting down") == 1
    assert pid_gone(child) and port_free(rest) and env.status() == []
    assert list((env.home / "servers").iterdir()) == []  # no record, no .monitoring.config

"""The lifecycle of a managed server: detach, status, stop, logs, crash, timeout, Ctrl-C, no orphan.

`tensorflow_model_server` and `docker` are stand-ins (tests/standins/), because these machines have
no TF Serving apt repository and no Docker engine. They record their argv and run a tiny REST stub
(MLSERVE_STANDIN_SERVE=stub) that answers TF Serving's model status, so each start takes a blink;
tests/runtimes/test_embedded.py runs the real embedded server behind the same stand-ins.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from support.models import MODEL_NAME
from support.ports import pid_gone, port_free
from support.runtimes import Env


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        assert proc.poll() is None, content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path}: {path.read_text()}")


def test_binary_detach_status_logs_stop(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    args = ["--runtime", "binary", "--model-base-path", str(base_path), "--port", str(grpc),
            "--rest-port", str(rest)]
    planned = shlex.split(env.run("serve", "--dry-run", *args).stdout)
    done = env.run("serve", "--detach", *args)
    assert done.returncode == 0, done.stderr
    assert f"REST http://127.0.0.1:{rest}" in done.stdout
    # The stand-in ran exactly the command that --dry-run showed.
    assert env.recorded("tensorflow_model_server") == [planned[1:]]
    record = json.loads((env.home / "servers" / f"{MODEL_NAME}.json").read_text())
    assert record["runtime"] == "binary" and record["command"] == planned
    assert record["log_path"] == str(env.home / "logs" / f"{MODEL_NAME}.log")
    [state] = env.status()
    assert state["alive"] and state["pid"] == record["pid"]
    assert state["models"] == {MODEL_NAME: [{"version": "1", "state": "AVAILABLE"}]}

    logs = env.run("logs", "-n", "3")
    assert logs.returncode == 0 and len(logs.stdout.splitlines()) == 3
    assert "standin stub" in env.run("logs", MODEL_NAME).stdout

    done = env.run("stop", MODEL_NAME)
    assert done.returncode == 0 and done.stdout.strip() == f"{MODEL_NAME}: terminated"
    assert pid_gone(record["pid"]) and port_free(grpc) and port_free(rest)
    assert env.status() == [] and not (env.home / "servers" / f"{MODEL_NAME}.json").exists()
    assert "SIGTERM, shutting down" in (env.home / "logs" / f"{MODEL_NAME}.log").read_text()


def test_docker_detach_pulls_serves_and_stops(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    engine = {"MLSERVE_STANDIN_DOCKER_ENGINE": "1", "MLSERVE_TFS_BINARY": "/nonexistent/tfs"}
    args = ["--model-base-path", str(base_path), "--port", str(grpc), "--rest-port", str(rest),
            "--name", "dk"]
    planned = shlex.split(env.run("serve", "--dry-run", *args, **engine).stdout)
    done = env.run("serve", "--detach", *args, **engine)
    assert done.returncode == 0, done.stderr
    assert "Runtime: docker" in done.stderr and "Pull complete" in done.stderr
    calls = env.recorded("docker")
    assert ["image", "inspect", "tensorflow/serving:2.19.1"] in calls
    assert ["pull", "tensorflow/serving:2.19.1"] in calls
    assert calls[-1] == planned[1:]
    [state] = env.status()
    assert state["container"] == "mlserve-dk" and state["models"][MODEL_NAME][0]["state"] == "AVAILABLE"
    assert ["inspect", "--format", "{{.State.Running}}", "mlserve-dk"] in env.recorded("docker")
    assert env.run("stop", "dk").returncode == 0
    assert ["stop", "-t", "10", "mlserve-dk"] in env.recorded("docker")
    assert pid_gone(state["pid"]) and port_free(grpc) and port_free(rest)
    assert env.status() == []


def test_crash_at_start_exits_3_with_log_tail(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    # An hour of --ready-timeout: the crash must be noticed at once (else env.run times out).
    done = env.run("serve", "--detach", "--runtime", "binary", "--model-base-path", str(base_path),
                   "--port", str(grpc), "--rest-port", str(rest), "--ready-timeout", "3600",
                   MLSERVE_STANDIN_CRASH="1")
    assert done.returncode == 3
    assert "exited during start (exit code 1)" in done.stderr
    assert "Could not load model (stand-in crash)" in done.stderr  # the child's own log lines
    assert "Hint:" in done.stderr
    assert not list((env.home / "servers").glob("*.json")) and port_free(rest)


def test_not_ready_in_time_leaves_nothing(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    done = env.run("serve", "--detach", "--runtime", "binary", "--model-base-path", str(base_path),
                   "--port", str(grpc), "--rest-port", str(rest), "--ready-timeout", "1.5",
                   MLSERVE_STANDIN_READY_DELAY="60")
    assert done.returncode == 3
    assert "not ready within 1.5s" in done.stderr and "LOADING" in done.stderr
    assert "standin stub: serving" in done.stderr  # log tail
    assert port_free(rest) and port_free(grpc) and env.status() == []


def test_stale_record_is_cleaned(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    done = env.run("serve", "--detach", "--runtime", "binary", "--model-base-path", str(base_path),
                   "--port", str(grpc), "--rest-port", str(rest))
    assert done.returncode == 0, done.stderr
    path = env.home / "servers" / f"{MODEL_NAME}.json"
    pid = json.loads(path.read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    assert pid_gone(pid)
    # A second record whose pid is alive but is another program (a recycled pid): also stale.
    other = json.loads(path.read_text()) | {"name": "recycled", "pid": os.getpid()}
    (env.home / "servers" / "recycled.json").write_text(json.dumps(other))
    done = env.run("status", "--json")
    assert done.returncode == 0 and json.loads(done.stdout) == []
    assert f"removed stale record '{MODEL_NAME}'" in done.stderr and "'recycled'" in done.stderr
    assert not path.exists() and not (env.home / "servers" / "recycled.json").exists()


def test_sigkill_when_sigterm_is_ignored(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    done = env.run("serve", "--detach", "--runtime", "binary", "--model-base-path", str(base_path),
                   "--port", str(grpc), "--rest-port", str(rest), MLSERVE_STANDIN_IGNORE_TERM="1")
    assert done.returncode == 0, done.stderr
    pid = env.status()[0]["pid"]
    done = env.run("stop", "--timeout", "1")
    assert done.stdout.strip() == f"{MODEL_NAME}: killed"
    assert pid_gone(pid) and port_free(rest)


def test_same_name_twice_is_a_conflict(env: Env, base_path: Path, ports: tuple[int, int]) -> None:
    grpc, rest = ports
    args = ["--runtime", "binary", "--model-base-path", str(base_path)]
    assert env.run("serve", "--detach", *args, "--port", str(grpc), "--rest-port", str(rest)).returncode == 0
    from support.ports import free_port

    done = env.run("serve", "--detach", *args, "--port", str(free_port()), "--rest-port", str(free_port()))
    assert done.returncode == 6 and "already running" in done.stderr


def _foreground(env: Env, base_path: Path, ports: tuple[int, int], tmp_path: Path,
                **extra: str) -> tuple[subprocess.Popen, Path]:
    grpc, rest = ports
    err = tmp_path / "serve.stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--runtime", "binary", "--model-base-path",
             str(base_path), "--port", str(grpc), "--rest-port", str(rest)],
            env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=sink)
    wait_for(err, "Ready:", proc)
    return proc, err


def test_foreground_ctrl_c_stops_the_child(env: Env, base_path: Path, ports: tuple[int, int],
                                           tmp_path: Path) -> None:
    proc, err = _foreground(env, base_path, ports, tmp_path)
    child = env.status()[0]["pid"]
    text = err.read_text()
    assert "standin stub: serving" in text  # the child's log streams to the terminal
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130  # Ctrl-C's exit code (docs/exit-codes.md)
    text = err.read_text()
    assert "Stopped digits_model (terminated)." in text and "Traceback" not in text
    assert pid_gone(child) and port_free(ports[1]) and env.status() == []
    assert text.count("SIGTERM, shutting down") == 1  # the server was asked once


def test_second_ctrl_c_forces(env: Env, base_path: Path, ports: tuple[int, int], tmp_path: Path) -> None:
    proc, err = _foreground(env, base_path, ports, tmp_path, MLSERVE_STANDIN_IGNORE_TERM="1")
    child = env.status()[0]["pid"]
    proc.send_signal(signal.SIGINT)
    wait_for(err, "Ctrl-C again to force", proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 130
    assert "(killed)" in err.read_text() and pid_gone(child)


def test_killed_mlserve_leaves_no_orphan(env: Env, base_path: Path, ports: tuple[int, int],
                                         tmp_path: Path) -> None:
    proc, _ = _foreground(env, base_path, ports, tmp_path)
    child = env.status()[0]["pid"]
    proc.kill()  # SIGKILL: mlserve cannot clean up; PR_SET_PDEATHSIG must take the child down
    proc.wait(timeout=10)
    assert pid_gone(child) and port_free(ports[1])
    assert env.status() == []  # the record it left is found stale and removed


def test_mlserve_killed_during_a_detached_start_leaves_a_server_status_and_stop_find(
        env: Env, base_path: Path, ports: tuple[int, int], tmp_path: Path) -> None:
    """A detached server outlives mlserve on purpose, so it is recorded before the readiness wait:
    if mlserve is killed while waiting, the server is not an unknown orphan."""
    grpc, rest = ports
    err = tmp_path / "serve.stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--detach", "--runtime", "binary",
             "--model-base-path", str(base_path), "--port", str(grpc), "--rest-port", str(rest)],
            env={**env, "MLSERVE_STANDIN_READY_DELAY": "60"}, stdout=subprocess.DEVNULL, stderr=sink)
    record = env.home / "servers" / f"{MODEL_NAME}.json"

    def spawned() -> bool:  # the name is claimed (pid 0) just before the spawn; then the pid
        try:
            return json.loads(record.read_text())["pid"] > 0
        except (OSError, ValueError):
            return False

    deadline = time.monotonic() + 30
    while not spawned() and time.monotonic() < deadline:
        assert proc.poll() is None, err.read_text()
        time.sleep(0.05)
    proc.kill()  # mlserve dies mid-wait; the detached child lives on
    proc.wait(timeout=10)
    child = json.loads(record.read_text())["pid"]
    assert [s["pid"] for s in env.status()] == [child]
    done = env.run("stop", MODEL_NAME)
    assert done.returncode == 0, done.stderr
    assert pid_gone(child) and port_free(rest) and env.status() == []


def test_ctrl_c_before_ready_stops_the_child_and_exits_130(env: Env, base_path: Path,
                                                          ports: tuple[int, int], tmp_path: Path) -> None:
    grpc, rest = ports
    err = tmp_path / "serve.stderr"
    with open(err, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlserve", "serve", "--runtime", "binary", "--model-base-path",
             str(base_path), "--port", str(grpc), "--rest-port", str(rest)],
            env={**env, "MLSERVE_STANDIN_READY_DELAY": "600"}, stdout=subprocess.DEVNULL, stderr=sink)
    wait_for(err, "standin stub: serving", proc)  # the child runs; its models are LOADING
    child = env.status()[0]["pid"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert "Traceback" not in err.read_text()
    assert pid_gone(child) and port_free(rest) and env.status() == []

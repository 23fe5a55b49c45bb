"""Fixtures for the runtime tests: stand-in executables on PATH, free ports, `mlserve` subprocesses.

The stand-ins in tests/standins/ replace `tensorflow_model_server` and `docker`, which these machines
cannot run (no TF Serving apt repository, no Docker engine). They record their argv and really
serve: the fast tests use the REST stub, the end-to-end ones exec mlserve's embedded server.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ports import free_port, port_is_free  # noqa: F401 - free_port is used by the tests

STANDINS = Path(__file__).resolve().parents[1] / "standins"
MODEL = "digits_model"


def port_free(port: int) -> bool:
    return port_is_free(port, "0.0.0.0")


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            if state == "Z":
                return True
        except (ProcessLookupError, FileNotFoundError):
            return True
        time.sleep(0.05)
    return False


class Env(dict):
    """The environment of `mlserve` subprocesses, plus helpers bound to it."""

    @property
    def home(self) -> Path:
        return Path(self["MLSERVE_HOME"])

    def run(self, *args: str, timeout: float = 90, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlserve", *args], env={**self, **extra},
                              capture_output=True, text=True, timeout=timeout)

    def recorded(self, tool: str) -> list[list[str]]:
        """The argv of every call of a stand-in (`tool`), oldest first."""
        path = Path(self["MLSERVE_STANDIN_LOG"])
        if not path.exists():
            return []
        lines = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
        return [ln["argv"] for ln in lines if ln["tool"] == tool]

    def status(self) -> list[dict]:
        done = self.run("status", "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def env(mlserve_home: Path, tmp_path: Path) -> Iterator[Env]:
    e = Env(os.environ)
    e.update({
        "PATH": f"{STANDINS}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLSERVE_HOME": str(mlserve_home),
        "MLSERVE_STANDIN_LOG": str(tmp_path / "standin-argv.jsonl"),
        "MLSERVE_STANDIN_STATE": str(tmp_path / "docker-state"),
        "MLSERVE_STANDIN_PYTHON": sys.executable,
        "MLSERVE_STANDIN_SERVE": "stub",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "COLUMNS": "200",
    })
    yield e
    # Never leave a server behind, whatever the test did.
    e.run("stop", "--all", "--timeout", "2", timeout=60)
    state = Path(e["MLSERVE_STANDIN_STATE"]) / "containers"
    for path in state.glob("*.json") if state.exists() else []:
        try:
            os.kill(json.loads(path.read_text())["pid"], signal.SIGKILL)
        except (ProcessLookupError, ValueError, KeyError):
            pass
    # Last net, for a test that failed half-way (or a status that lost a record): every process
    # whose command line names this test's folder is this test's server or mlserve.
    for pid in _pids_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _pids_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(int(entry.name))
    return found


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    """A model base path with version 1 (an empty saved_model.pb: enough for the REST stub)."""
    base = tmp_path / "models" / MODEL
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    return base


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SavedModel with the course's signature (Conv1_input -> softmax), version 1."""
    base = tmp_path_factory.mktemp("runtimes-model") / "models" / MODEL
    script = f"""
import tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones([784, 10]) / 784.0)
    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(self, Conv1_input):
        return {{"softmax": tf.nn.softmax(tf.reshape(Conv1_input, [-1, 784]) @ self.w)}}
m = M()
tf.saved_model.save(m, {str(base / '1')!r}, signatures={{"serving_default": m.serve}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=180,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})
    return base

"""The runtime tests' `mlserve` subprocesses: their environment (stand-ins on PATH), the commands
run in it, a real SavedModel with the course's signature, and the processes a test left behind.

The stand-ins in tests/standins/ replace `tensorflow_model_server` and `docker`, which these machines
cannot run (no TF Serving apt repository, no Docker engine). They record their argv and really
serve: the fast tests use the REST stub, the end-to-end ones exec mlserve's embedded server.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


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


def pids_mentioning(text: str) -> list[int]:
    """Every process (but this one) whose command line contains `text`."""
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


def write_linear_model(version_dir: Path) -> None:
    """A real SavedModel with the course's signature (Conv1_input -> softmax) at `version_dir` (in a
    subprocess: TF stays out of the test process)."""
    script = f"""
import tensorflow as tf
class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(tf.ones([784, 10]) / 784.0)
    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name="Conv1_input")])
    def serve(self, Conv1_input):
        return {{"softmax": tf.nn.softmax(tf.reshape(Conv1_input, [-1, 784]) @ self.w)}}
m = M()
tf.saved_model.save(m, {str(version_dir)!r}, signatures={{"serving_default": m.serve}})
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=180,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""})

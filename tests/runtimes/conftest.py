"""Fixtures for the runtime tests: stand-in executables on PATH, free ports, `mlserve` subprocesses
(support/runtimes.py), and no process left behind."""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Iterator

import pytest

from support.models import MODEL_NAME
from support.paths import STANDINS
from support.ports import free_port
from support.runtimes import Env, pids_mentioning, write_linear_model


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
    for pid in pids_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def base_path(tmp_path: Path) -> Path:
    """A model base path with version 1 (an empty saved_model.pb: enough for the REST stub)."""
    base = tmp_path / "models" / MODEL_NAME
    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_bytes(b"")
    return base


@pytest.fixture
def ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SavedModel with the course's signature (Conv1_input -> softmax), version 1."""
    base = tmp_path_factory.mktemp("runtimes-model") / "models" / MODEL_NAME
    write_linear_model(base / "1")
    return base

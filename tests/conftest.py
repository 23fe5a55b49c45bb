"""Shared fixtures: every test gets its own workspace (MLSERVE_HOME) and no stray MLSERVE_* settings;
and the ONE way tests start a real embedded server: `start_server` (per test) / `digits_server`
(per session), on ephemeral ports, ready when every model is AVAILABLE over gRPC and REST."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support.models import MODEL_NAME
from support.servers import ServerProcess, launch_server

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


# -- a real embedded server on ephemeral ports (support/servers.py) --------------------------------
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


# -- predict / bench / client tests (support/models.py) --------------------------------------------
@pytest.fixture(scope="session")
def digits_model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained digits model exported as <base>/1 (the real export path)."""
    from support.models import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("digits-export"))


@pytest.fixture(scope="session")
def digits_server(digits_model_base: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real embedded server serving digits_model on free ports, for the whole session."""
    server = launch_server([f"--model_name={MODEL_NAME}", f"--model_base_path={digits_model_base}"],
                           tmp_path_factory.mktemp("digits-server") / "server.log",
                           base=digits_model_base)
    yield server
    server.stop()

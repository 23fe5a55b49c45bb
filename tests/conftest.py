"""Shared fixtures: every test gets its own workspace (MLSERVE_HOME) and no stray MLSERVE_* settings."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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


# -- predict / bench / client tests (tests/predict_helpers.py) -----------------------------------
@pytest.fixture(scope="session")
def digits_model_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained digits model exported as <base>/1 (the real export path)."""
    from predict_helpers import export_tiny_model

    return export_tiny_model(tmp_path_factory.mktemp("digits-export"))


@pytest.fixture(scope="session")
def digits_server(digits_model_base: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `python -m mlserve.server` serving digits_model on free gRPC and REST ports."""
    from predict_helpers import start_server

    server = start_server(digits_model_base, tmp_path_factory.mktemp("digits-server") / "server.log")
    yield server
    server.stop()

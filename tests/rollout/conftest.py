"""Rollout fixtures: the `labelled` model's versions (support/rollout.py), copied per test, its
config file, and a real server on free ports."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from support.rollout import CONFIG, MODEL, start_server, write_labelled_versions
from support.servers import ServerProcess


@pytest.fixture(scope="session")
def model_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_labelled_versions(tmp_path_factory.mktemp("rollout-models") / MODEL)


@pytest.fixture
def base_path(model_template: Path, tmp_path: Path) -> Path:
    base = tmp_path / "models" / MODEL
    shutil.copytree(model_template, base)
    return base


@pytest.fixture
def config_file(base_path: Path, tmp_path: Path) -> Path:
    path = tmp_path / "models.config"
    path.write_text(CONFIG.format(model=MODEL, base=base_path))
    return path


@pytest.fixture
def server(config_file: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    s = start_server(config_file, tmp_path / "server.log")
    yield s
    s.stop()

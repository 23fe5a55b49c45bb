"""Fixtures shared by the server tests: tiny SavedModels (support/tinymodels.py, support/half_plus_two.py)
exported once per session and copied, since an export costs seconds of TF graph building. Servers
come from the `start_server` fixture of tests/conftest.py (support/servers.py: free ports, every
model AVAILABLE).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest

from support.models import MODEL_NAME
from support.tinymodels import export_digits, export_examples

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def model_templates(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`template(kind)`: a session-cached SavedModel: "digits" (seed 1), "digits2" (seed 2), "examples"."""
    root = tmp_path_factory.mktemp("saved-model-templates")
    factories = {"digits": lambda p: export_digits(p, 1), "digits2": lambda p: export_digits(p, 2),
                 "examples": export_examples}
    made: dict[str, Path] = {}

    def template(kind: str) -> Path:
        if kind not in made:
            factories[kind](root / kind)
            made[kind] = root / kind
        return made[kind]

    return template


@pytest.fixture
def write_version(model_templates: Callable[[str], Path]) -> Callable[..., Path]:
    """`write_version(base_path, n, kind="digits")`: copy a SavedModel into base_path/n atomically."""

    def write(base_path: Path, version: int, kind: str = "digits") -> Path:
        base_path = Path(base_path)
        base_path.mkdir(parents=True, exist_ok=True)
        tmp = base_path / f".tmp-{version}-{os.getpid()}"
        shutil.copytree(model_templates(kind), tmp)
        target = base_path / str(version)
        tmp.rename(target)
        return target

    return write


@pytest.fixture
def digits_base(tmp_path: Path, write_version: Callable[..., Path]) -> Path:
    """`<tmp>/models/digits_model` holding version 1 of the tiny course-signature model."""
    base = tmp_path / "models" / MODEL_NAME
    write_version(base, 1)
    return base



@pytest.fixture(scope="session")
def half_plus_two_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TF Serving's testdata `half_plus_two` (see support/half_plus_two.py), built once per session."""
    from support.half_plus_two import build_half_plus_two

    root = tmp_path_factory.mktemp("half-plus-two")
    build_half_plus_two(root / "export", root / "original-assets")
    return root / "export"


@pytest.fixture
def half_plus_two_base(tmp_path: Path, half_plus_two_template: Path) -> Path:
    """`<tmp>/models/half_plus_two/123` holding TF Serving's half_plus_two."""
    base = tmp_path / "models" / "half_plus_two"
    shutil.copytree(half_plus_two_template, base / "123")
    return base

"""Fixtures for the deploy and plan tests: a fake export and a kubectl stand-in (the validators and
the stand-in's log are in support/deploy.py).

`--apply` runs tests/standins/kubectl, a stand-in that records its argv and runs the same checks as
support/deploy.py (there is no cluster here).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from support.models import MODEL_NAME
from support.paths import STANDINS


@pytest.fixture
def exported(mlserve_home: Path) -> Path:
    """Versions 1 and 2 of digits_model in the workspace, laid out as `mlserve export` writes them.

    The files are stand-ins for SavedModels (nothing here loads them): deploy only copies versions.
    """
    base = mlserve_home / "models" / MODEL_NAME
    for version in (1, 2):
        folder = base / str(version)
        (folder / "variables").mkdir(parents=True)
        (folder / "assets.extra").mkdir()
        (folder / "saved_model.pb").write_bytes(f"saved model {version}".encode())
        (folder / "variables" / "variables.index").write_bytes(b"index")
        (folder / "assets.extra" / "mlserve.json").write_text(json.dumps({"version": version}))
    return base


@pytest.fixture
def kubectl_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH starts with tests/standins (the kubectl stand-in; there is no cluster here), then this
    venv's bin (the stand-in's python3 needs kubernetes-validate). Returns its argv log."""
    log = tmp_path / "standin.log"
    monkeypatch.setenv("PATH", os.pathsep.join([str(STANDINS), str(Path(sys.executable).parent),
                                                os.environ.get("PATH", "")]))
    monkeypatch.setenv("MLSERVE_STANDIN_LOG", str(log))
    monkeypatch.setenv("MLSERVE_STANDIN_STATE", str(tmp_path / "standin-state"))
    return log

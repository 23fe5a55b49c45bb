"""examples/course_flow_train_export.py runs, end to end, in a fresh workspace."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT

EXAMPLE = ROOT / "examples" / "course_flow_train_export.py"


@pytest.mark.slow
def test_course_flow_example_runs(tmp_path: Path) -> None:
    env = {**os.environ, "MLSERVE_HOME": str(tmp_path), "HOME": str(tmp_path), "MLSERVE_DATA": "sample",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("MLSERVE_MODEL_BASE_PATH", None)
    env.pop("MLSERVE_MODEL_NAME", None)
    done = subprocess.run([sys.executable, str(EXAMPLE), "--epochs", "1"], capture_output=True, text=True,
                          timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exported version 1" in done.stdout and "SavedModel == Keras model" in done.stdout
    assert (tmp_path / "models" / "digits_model" / "1" / "saved_model.pb").is_file()

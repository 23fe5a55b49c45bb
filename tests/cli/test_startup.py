"""`mlserve --help`, `--version` and every command's `--help` start without TensorFlow or matplotlib.

Run in a fresh interpreter (a subprocess), since this test process may have imported TF already.
"""
from __future__ import annotations

import pytest
from support.cli import heavy_imports

from mlserve.cli.app import app


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_group(app)
    result: list[list[str]] = [[]]
    for name, command in group.commands.items():
        result.append([name])
        for sub in getattr(command, "commands", {}) or {}:
            result.append([name, sub])
    return result


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a) or "mlserve")
def test_help_does_not_import_tensorflow_or_matplotlib(args: list[str]) -> None:
    result = heavy_imports([*args, "--help"])
    assert result["code"] == 0
    assert result["heavy"] == []


def test_version_is_fast_and_light() -> None:
    result = heavy_imports(["--version"])
    assert result == {"code": 0, "heavy": []}


def test_config_is_client_only() -> None:
    result = heavy_imports(["config", "--json"])
    assert result == {"code": 0, "heavy": []}


# Lines TensorFlow 2.21 writes on start-up on a machine without a GPU (issue 13); none is about
# the user's command.
TF_NOISE = ("absl::InitializeLog", "cudart_stub.cc", "cuInit", "cpu_feature_guard.cc", "port.cc")


def _import_tensorflow(env: dict[str, str]) -> str:
    """stderr of a fresh interpreter that imports TensorFlow the way mlserve does and runs an op."""
    import os
    import subprocess
    import sys

    code = ("from mlserve.tfquiet import quiet_tensorflow\n"
            "tf = quiet_tensorflow()\n"
            "print(float(tf.reduce_sum(tf.constant([1.0, 2.0]))))\n")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("MLSERVE_") and k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                          env={**clean, **env})
    assert proc.returncode == 0 and proc.stdout.strip() == "3.0", proc.stderr[-2000:]
    return proc.stderr


def test_tensorflow_starts_quietly_and_verbose_brings_its_lines_back() -> None:
    quiet = _import_tensorflow({})
    assert not [marker for marker in TF_NOISE if marker in quiet], quiet
    verbose = _import_tensorflow({"MLSERVE_VERBOSE": "1"})
    assert len(verbose) > len(quiet) and any(marker in verbose for marker in TF_NOISE), verbose

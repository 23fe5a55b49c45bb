"""`mlserve --help`, `--version` and every command's `--help` start without TensorFlow or matplotlib.

Run in a fresh interpreter (a subprocess), since this test process may have imported TF already.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlserve.cli.app import app

PROBE = r"""
import json, sys
from mlserve.cli.app import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ("tensorflow", "keras", "matplotlib") if m in sys.modules)
print("\nPROBE" + json.dumps({"code": code, "heavy": heavy}))
"""


def _commands() -> list[list[str]]:
    import typer.main

    group = typer.main.get_group(app)
    result: list[list[str]] = [[]]
    for name, command in group.commands.items():
        result.append([name])
        for sub in getattr(command, "commands", {}) or {}:
            result.append([name, sub])
    return result


def _probe(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=60)
    line = proc.stdout.rsplit("PROBE", 1)[-1]
    return json.loads(line)


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a) or "mlserve")
def test_help_does_not_import_tensorflow_or_matplotlib(args: list[str]) -> None:
    result = _probe([*args, "--help"])
    assert result["code"] == 0
    assert result["heavy"] == []


def test_version_is_fast_and_light() -> None:
    result = _probe(["--version"])
    assert result == {"code": 0, "heavy": []}


def test_config_is_client_only() -> None:
    result = _probe(["config", "--json"])
    assert result == {"code": 0, "heavy": []}

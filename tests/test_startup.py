"""`mlserve --help`, `--version` and every command's `--help` start without TensorFlow or matplotlib.

Run in a fresh interpreter (a subprocess), since this test process may have imported TF already.
"""
from __future__ import annotations

import pytest
from probes import heavy_imports

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

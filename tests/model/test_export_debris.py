"""Folders left by an interrupted `mlserve export` (`.tmp-*`): listed as debris by `mlserve models`
and removed by the next export. The folders are made by hand, as a killed export leaves them."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from mlserve.cli.app import app
from mlserve.model.export import list_debris, remove_debris


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # reaped: no process has this pid now (barring reuse in the next instant)


def _layout(base: Path) -> dict[str, Path]:
    folders = {
        "dead": base / f".tmp-3-{_dead_pid()}-abcd1234",
        "live": base / f".tmp-4-{os.getpid()}-abcd1234",
        "old": base / ".tmp-5-abcd1234",  # a name from before pids were recorded, hours old
        "fresh": base / ".tmp-6-abcd1234",
        "version": base / "1",
    }
    for folder in folders.values():
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"")
    hours_ago = time.time() - 3 * 3600
    os.utime(folders["old"], (hours_ago, hours_ago))
    return folders


def test_debris_is_listed_and_removed_but_running_exports_are_kept(tmp_path: Path) -> None:
    base = tmp_path / "models" / "m"
    folders = _layout(base)
    assert set(list_debris(base)) == {folders["dead"], folders["old"]}
    removed = remove_debris(base)
    assert set(removed) == {folders["dead"], folders["old"]}
    assert not folders["dead"].exists() and not folders["old"].exists()
    assert folders["live"].exists() and folders["fresh"].exists() and folders["version"].exists()


def test_models_command_names_debris_on_stderr(tmp_path: Path) -> None:
    base = tmp_path / "models" / "m"
    folders = _layout(base)
    result = CliRunner().invoke(app, ["models", "--model-base-path", str(base), "--json"])
    assert result.exit_code == 0, result.stderr
    assert f"debris: {folders['dead']}" in result.stderr.replace("\n", "")
    assert '"version": 1' in result.stdout and ".tmp-" not in result.stdout

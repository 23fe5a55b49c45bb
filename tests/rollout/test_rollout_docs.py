"""docs/rollout.md runs: every block marked `<!-- test: run -->`, command by command, as a user would.

The page's versions come from `mlserve train && mlserve export` (minutes); here the workspace gets
the tiny per-version models of conftest.py instead, copied in where the page exports (version v always answers digit CLASSES[v]), on
the embedded runtime and free ports (MLSERVE_GRPC_PORT and friends replace the defaults).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from support.ports import free_port
from support.rollout import CLASSES

EXPECTED = {"canary": 2, "stable": 1}  # the version each label names whenever the page predicts

PAGE = Path(__file__).resolve().parents[2] / "docs" / "rollout.md"


def _marked_blocks(text: str) -> list[tuple[str, str, str]]:
    """(marker, language, body) of every fenced block right after a `<!-- test: ... -->` line."""
    return re.findall(r"<!-- test: (.*?) -->\n(?:<!-- not-run:[^\n]*-->\n)?```(\w+)\n(.*?)```", text, re.S)


def test_the_rollout_walkthrough_runs(model_template: Path, mlserve_home: Path, tmp_path: Path) -> None:
    base = mlserve_home / "models" / "digits_model"
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "MLSERVE_HOME": str(mlserve_home), "MLSERVE_RUNTIME": "embedded",
           "MLSERVE_DATA": "sample", "MLSERVE_GRPC_PORT": str(grpc_port), "MLSERVE_REST_PORT": str(rest_port),
           "MLSERVE_URL": f"http://127.0.0.1:{rest_port}", "MLSERVE_GRPC_SERVER": f"127.0.0.1:{grpc_port}",
           "TF_CPP_MIN_LOG_LEVEL": "2", "COLUMNS": "200"}
    outputs: dict[str, str] = {}
    ran = 0
    try:
        for marker, _, body in _marked_blocks(PAGE.read_text()):
            if marker.startswith("export "):  # the page trains and exports; here: a tiny model
                version = marker.split()[1]
                shutil.copytree(model_template / version, base / version)
                continue
            if marker.startswith("file "):
                text = body.replace("/home/you/.mlserve", str(mlserve_home))
                (tmp_path / marker.split()[1]).write_text(text)
                continue
            assert marker == "run", marker
            for line in body.splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line:
                    continue
                args = shlex.split(line)
                assert args[0] == "mlserve", line
                done = subprocess.run([sys.executable, "-m", "mlserve", *args[1:]], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=180)
                assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
                outputs[line] = done.stdout
                ran += 1
                if args[1] == "predict":  # the same request as JSON: which version answered
                    again = subprocess.run([sys.executable, "-m", "mlserve", *args[1:], "--json"], cwd=tmp_path,
                                           env=env, capture_output=True, text=True, timeout=180)
                    label = args[args.index("--label") + 1]
                    assert {r["predicted"] for r in json.loads(again.stdout)} == {CLASSES[EXPECTED[label]]}
    finally:
        subprocess.run([sys.executable, "-m", "mlserve", "stop", "--all"], env=env, capture_output=True,
                       timeout=60)
    assert ran >= 10
    # what the page says happened did happen
    moves = json.loads(outputs["mlserve history --json"])
    assert [(m["label"], m["from"], m["to"], m["action"]) for m in moves] == [
        ("stable", None, 1, "promote"), ("canary", None, 2, "canary"), ("stable", 1, 2, "promote"),
        ("stable", 2, 1, "rollback")]
    assert moves[2]["accuracy"]["passed"] is True
    assert "labels" in outputs["mlserve models"] and "stable" in outputs["mlserve models"]

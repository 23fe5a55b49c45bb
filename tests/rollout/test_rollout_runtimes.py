"""The commands against servers that `mlserve serve` started: found through the server record.

The binary runtime runs the stand-in `tensorflow_model_server` of tests/standins/ (the real one
cannot be installed here: no access to Google's apt repository); the stand-in records its argv
and execs mlserve's embedded server with the same flags, so HandleReloadConfigRequest is served
by the embedded server's implementation, not by TF Serving's. The Docker runtime is not tested
here: its stand-in rewrites container paths only when the server starts, and a reload names the
container's paths (/models/<name>), which only a real container has.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import STANDINS
from support.ports import free_port
from support.rollout import CLASSES, MODEL



def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True,
                          timeout=180, env=env)


@pytest.mark.parametrize("runtime", ["binary", "embedded"])
def test_promote_through_the_record_then_predict_by_label_over_rest_and_grpc(
        runtime: str, config_file: Path, base_path: Path, mlserve_home: Path, tmp_path: Path) -> None:
    shutil.rmtree(base_path / "9")  # the newest version here must load (for --keep-newest)
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{STANDINS}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLSERVE_HOME": str(mlserve_home), "MLSERVE_STANDIN_SERVE": "embedded",
           "MLSERVE_STANDIN_PYTHON": sys.executable, "MLSERVE_STANDIN_LOG": str(tmp_path / "argv.jsonl"),
           "MLSERVE_DATA": "sample", "MLSERVE_MODEL_NAME": MODEL, "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLSERVE_URL": f"http://127.0.0.1:{rest_port}", "MLSERVE_GRPC_SERVER": f"127.0.0.1:{grpc_port}",
           "COLUMNS": "200"}
    started = _run(env, "serve", "--runtime", runtime, "--model-config-file", str(config_file),
                   "--port", str(grpc_port), "--rest-port", str(rest_port), "--detach")
    try:
        assert started.returncode == 0, started.stderr
        if runtime == "binary":  # really the stand-in, with the config file mlserve edits
            argv = [json.loads(line) for line in (tmp_path / "argv.jsonl").read_text().splitlines()]
            assert f"--model_config_file={config_file}" in argv[-1]["argv"]
        done = _run(env, "promote", "2", "--json")  # MODEL from MLSERVE_MODEL_NAME; server: the only one
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["labels"] == {"stable": 2}
        done = _run(env, "canary", "3", "--keep-newest")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"{MODEL}: canary (none) -> 3 (labels canary=3, stable=2; "
                                      "loaded versions 2, 3, 4)"), done.stdout
        for label, version in (("stable", 2), ("canary", 3)):
            for transport in ([], ["--grpc"]):
                done = _run(env, "predict", "--label", label, "--count", "2", "--json", *transport)
                assert done.returncode == 0, done.stderr
                rows = json.loads(done.stdout)
                rows = rows["predictions"] if isinstance(rows, dict) else rows
                assert {r["predicted"] for r in rows} == {CLASSES[version]}, (label, transport)
        for transport in ([], ["--grpc"]):  # bench addresses the label the same way
            done = _run(env, "bench", "--label", "canary", "-c", "2", "--requests", "20", "--warmup", "0", "--json",
                        *transport)
            assert done.returncode == 0, done.stderr
            assert [lv["errors"] for lv in json.loads(done.stdout)["levels"]] == [0]
        done = _run(env, "models", "--model-base-path", str(base_path), "--json")
        assert {v["version"]: v["labels"] for v in json.loads(done.stdout)}[3] == ["canary"]
        done = _run(env, "rollback")
        assert done.returncode == 0 and done.stdout.startswith(f"{MODEL}: stable 2 -> 1"), done.stderr
    finally:
        _run(env, "stop", "--all", "--timeout", "5")
    done = _run(env, "history", "--config", str(config_file))  # the server is gone; its history is not
    assert done.returncode == 0 and done.stdout.count(MODEL) == 3, done.stdout + done.stderr


def test_managed_config_keeps_labels_across_a_restart(model_template: Path, mlserve_home: Path,
                                                      tmp_path: Path) -> None:
    """`mlserve serve` on a base path (no config file) serves through the managed config."""
    base = mlserve_home / "models" / MODEL
    shutil.copytree(model_template, base)
    for version in ("4", "9"):
        shutil.rmtree(base / version)  # versions 1, 2, 3: the newest, 3, is what serve serves
    grpc_port, rest_port = free_port(), free_port()
    env = {**os.environ, "PATH": f"{STANDINS}{os.pathsep}{os.environ.get('PATH', '')}",
           "MLSERVE_HOME": str(mlserve_home), "MLSERVE_STANDIN_SERVE": "embedded",
           "MLSERVE_STANDIN_PYTHON": sys.executable, "MLSERVE_STANDIN_LOG": str(tmp_path / "argv.jsonl"),
           "MLSERVE_DATA": "sample", "MLSERVE_MODEL_NAME": MODEL, "TF_CPP_MIN_LOG_LEVEL": "2",
           "MLSERVE_RUNTIME": "binary", "MLSERVE_GRPC_PORT": str(grpc_port), "MLSERVE_REST_PORT": str(rest_port),
           "MLSERVE_URL": f"http://127.0.0.1:{rest_port}", "MLSERVE_GRPC_SERVER": f"127.0.0.1:{grpc_port}",
           "COLUMNS": "200"}
    config = mlserve_home / "configs" / f"{MODEL}.config"

    def answers(label: str) -> set[int]:
        done = _run(env, "predict", "--label", label, "--count", "2", "--json", "--grpc")
        assert done.returncode == 0, done.stderr
        return {r["predicted"] for r in json.loads(done.stdout)}

    try:
        assert _run(env, "serve", "--detach").returncode == 0
        assert f"--model_config_file={config}" in json.loads(
            (tmp_path / "argv.jsonl").read_text().splitlines()[-1])["argv"]
        # a canary first: the version served until now (3) is pinned as stable
        done = _run(env, "canary", "2")
        assert done.returncode == 0, done.stderr
        assert (answers("stable"), answers("canary")) == ({CLASSES[3]}, {CLASSES[2]})
        assert _run(env, "promote", "2").returncode == 0
        assert _run(env, "rollback").returncode == 0
        assert answers("stable") == {CLASSES[3]}
        assert _run(env, "stop").returncode == 0
        # restart: the labels are in the managed file; TF Serving needs the allow flag to start with them
        done = _run(env, "serve", "--detach")
        assert done.returncode == 0, done.stderr
        argv = json.loads((tmp_path / "argv.jsonl").read_text().splitlines()[-1])["argv"]
        assert "--allow_version_labels_for_unavailable_models" in argv
        assert (answers("stable"), answers("canary")) == ({CLASSES[3]}, {CLASSES[2]})
    finally:
        _run(env, "stop", "--all", "--timeout", "5")
    done = _run(env, "history", "--json")  # no server: the managed config's history
    assert [(m["label"], m["from"], m["to"], m["action"]) for m in json.loads(done.stdout)] == [
        ("stable", None, 3, "promote"), ("canary", None, 2, "canary"), ("stable", 3, 2, "promote"),
        ("stable", 2, 3, "rollback")]
    assert "pinned" in json.loads(done.stdout)[0]["by"]

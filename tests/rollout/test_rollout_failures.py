"""A failed promote changes nothing (server, file, backup, history); concurrent promotes take turns."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from mlserve.client import ModelTarget, connect
from mlserve.errors import ExitCode
from mlserve.rollout import actions, configfile, history
from mlserve.rollout.gate import GateFailedError
from mlserve.rollout.serverlink import ReloadRefusedError, ServerLink, VersionLoadError
from support.servers import ServerProcess as Server
from support.rollout import BROKEN, CLASSES, MODEL

GATE_DIGITS = 200  # of the sample's test split: 18 are 1s (version 1), 16 are 5s (version 4)


def _answer(server: Server, label: str) -> int:
    client = connect(ModelTarget(MODEL, label=label), transport="grpc", grpc_server=server.grpc)
    try:
        return int(np.argmax(client.predict(np.zeros((1, 28, 28, 1), np.float32))[0]))
    finally:
        client.close()


def _snapshot(server: Server, config_file: Path) -> dict[str, object]:
    with ServerLink(server.grpc) as link:
        available = (sorted(link.available(MODEL)), sorted(link.available("other")))
    return {"file": config_file.read_text(),
            "backup": configfile.read_optional(configfile.backup_path(config_file)),
            "history": configfile.read_optional(history.history_path(config_file)),
            "available": available, "stable answers": _answer(server, "stable")}


def _mlserve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200", "MLSERVE_DATA": "sample"})


def test_failed_promotes_change_nothing_and_concurrent_promotes_take_turns(
        server: Server, config_file: Path) -> None:
    target = actions.Target(config_file, server.grpc)
    before = _snapshot(server, config_file)
    assert before["available"] == ([1], [4]) and before["stable answers"] == CLASSES[1]

    # 1. a version that fails to load: refused, everything as it was
    with pytest.raises(VersionLoadError, match=f"version {BROKEN} of model '{MODEL}' failed to load"):
        actions.move_label(target, MODEL, BROKEN)
    assert _snapshot(server, config_file) == before

    # 2. a version that fails the gate (the same through the CLI: exit code, Error and Hint lines)
    with pytest.raises(GateFailedError, match="failed the accuracy gate"):
        actions.move_label(target, MODEL, 4, check=GATE_DIGITS, max_drop=0.0, data="sample")
    assert _snapshot(server, config_file) == before
    done = _mlserve("promote", MODEL, "4", "--check", str(GATE_DIGITS), "--config", str(config_file),
                    "--grpc-server", server.grpc)
    assert done.returncode == ExitCode.CONFLICT, done.stderr
    assert "Error: version 4 failed the accuracy gate: version 4: accuracy 0.0800" in done.stderr
    assert "Hint:" in done.stderr and done.stdout == ""
    assert _snapshot(server, config_file) == before

    # 3. two promotes at once: the first holds the lock while its version loads, the second fails
    loading, release = threading.Event(), threading.Event()
    result: dict[str, object] = {}

    def hold(message: str) -> None:
        if message.startswith("Loading version"):
            loading.set()
            release.wait(60)

    def first() -> None:
        try:
            result["outcome"] = actions.move_label(target, MODEL, 3, notify=hold)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert loading.wait(60)
        with pytest.raises(configfile.RolloutLockedError,
                           match=f"another rollout command is changing {config_file}: promote {MODEL} stable -> 3"):
            actions.move_label(target, MODEL, 2)
        done = _mlserve("promote", MODEL, "2", "--config", str(config_file), "--grpc-server", server.grpc)
        assert done.returncode == ExitCode.CONFLICT
        assert f"Error: another rollout command is changing {config_file}" in done.stderr
    finally:
        release.set()
        thread.join(120)
    assert "error" not in result, result.get("error")
    assert actions.labels(config_file, MODEL) == {"stable": 3}  # the winner's change, whole
    assert configfile.parse(config_file.read_text(), "after") is not None
    assert _answer(server, "stable") == CLASSES[3]

    # 4. --force passes a failed gate, and the history says so, with the accuracies measured
    done = _mlserve("promote", MODEL, "4", "--check", str(GATE_DIGITS), "--force", "--json",
                    "--config", str(config_file), "--grpc-server", server.grpc)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert (outcome["from"], outcome["to"], outcome["gate"]["passed"]) == (3, 4, False)
    done = _mlserve("history", MODEL, "--config", str(config_file), "--json")
    moves = json.loads(done.stdout)
    assert [(m["from"], m["to"]) for m in moves] == [(1, 3), (3, 4)]
    assert moves[1]["accuracy"] == {"n": GATE_DIGITS, "to": 0.08, "from": 0.105, "max_drop": 0.0, "passed": False}
    assert "forced" in moves[1]["by"]

    # 5. the server refuses the reload (here: the file now names a platform the server lacks):
    #    the file is put back as the user left it, and the history is not written
    text = config_file.read_text().replace('name: "other"', 'name: "other" model_platform: "tflite"')
    config_file.write_text(text)
    before = _snapshot(server, config_file)
    with pytest.raises(ReloadRefusedError, match="INVALID_ARGUMENT") as refused:
        actions.move_label(target, MODEL, 1)
    assert "restoring the server's previous config failed too" in (refused.value.details or "")
    assert _snapshot(server, config_file) == before

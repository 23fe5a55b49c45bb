"""Shared by the stand-in executables in this folder (see README.md there): record argv, then serve.

Serving mode (MLSERVE_STANDIN_SERVE, default "embedded" where mlserve's server exists): "stub" runs
stub_server.py (a tiny REST stub, instant start);
"embedded" execs mlserve's embedded server `python -m mlserve.server` with the translated flags,
so the stand-in really serves the model.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def record_argv(tool: str) -> None:
    """Append {"tool", "argv"} as one JSON line to $MLSERVE_STANDIN_LOG (when set)."""
    log = os.environ.get("MLSERVE_STANDIN_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"tool": tool, "argv": sys.argv[1:], "time": time.time()}) + "\n")


def python() -> str:
    return os.environ.get("MLSERVE_STANDIN_PYTHON", sys.executable)


def exec_server(flags: list[str]) -> None:
    """Replace this process by a server taking TF Serving flags (same pid: signals reach it)."""
    embedded_exists = (HERE.parent.parent / "mlserve" / "server" / "main.py").exists()
    mode = os.environ.get("MLSERVE_STANDIN_SERVE", "embedded" if embedded_exists else "stub")
    if mode == "embedded":
        argv = [python(), "-m", "mlserve.server", *flags]
    else:
        argv = [python(), str(HERE / "stub_server.py"), *flags]
    sys.stdout.flush()
    os.execv(argv[0], argv)

"""`mlserve` in a fresh interpreter, as a user runs it: its output, its JSON, and which heavy modules
it imported."""
from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("tensorflow", "keras", "matplotlib", "starlette", "uvicorn")  # the last two: `mlserve ui` only

_PROBE = r"""
import json, sys
from mlserve.cli.app import main
try:
    main(sys.argv[1:])
    code = 0
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in %r if m in sys.modules)
print("\nPROBE" + json.dumps({"code": code, "heavy": heavy}))
""" % (HEAVY,)


def heavy_imports(args: list[str], timeout: float = 60) -> dict:
    """{"code": exit code, "heavy": heavy modules imported} for `mlserve <args>` (a subprocess,
    since this test process may have imported TensorFlow already)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True,
                          timeout=timeout)
    assert "PROBE" in proc.stdout, proc.stderr[-1500:]
    return json.loads(proc.stdout.rsplit("PROBE", 1)[-1])


def run_cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """`mlserve ARGS` in a fresh interpreter, as a user runs it."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlserve", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


def parse_json_stdout(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)  # fails if anything but the JSON document is on stdout

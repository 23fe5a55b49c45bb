"""Stopping a server, the same way for every runtime: ask, a bounded wait, then force.

The runtime says how to ask (SIGTERM to the process group, or `docker stop`) and how to force
(SIGKILL, and `docker rm -f`); our own children are always reaped.
"""
from __future__ import annotations

import subprocess
from typing import Callable

from mlserve.runtimes import process
from mlserve.runtimes.base import Runtime
from mlserve.runtimes.records import ServerRecord

STOP_GRACE = 10.0  # seconds between the stop request (SIGTERM, docker stop) and SIGKILL


def stop_server(runtime: Runtime, record: ServerRecord, grace: float,
                proc: subprocess.Popen | None = None, tick: Callable[[], None] | None = None,
                give_up: Callable[[], bool] | None = None) -> str:
    """Stop the recorded server: ask once, wait up to `grace` s, then force. "terminated" or
    "killed". `proc`: our own child (reaped); `give_up()` true forces at once (a 2nd Ctrl-C)."""
    helper = runtime.request_stop(record, grace)
    how = "terminated"
    if not process.wait_gone(record.pid, grace, proc, tick, give_up):
        how = "killed"
        runtime.force_stop(record)
        process.wait_gone(record.pid, 10, proc, tick)
    if helper is not None:  # `docker stop`: bounded by its own -t; reaped either way
        try:
            helper.wait(timeout=grace + 5)
        except subprocess.TimeoutExpired:
            helper.kill()
            helper.wait()
    return how

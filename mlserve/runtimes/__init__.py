"""How a model server is started and stopped: the TF Serving binary, its Docker image, or mlserve's
embedded server, all behind one lifecycle (`mlserve.runtimes.lifecycle`).

    plan = make_plan(runtime="auto", model_name="digits_model", model_base_path=path)
    plan.command_line                      # the exact command, one shell-quoted line
    start(plan, detach=True, notify=print) # returns once every model is AVAILABLE on *our* server
    status(); stop("digits_model")

Modules: base (options, TF Serving flags, the Runtime hooks), binary/docker/embedded (one per
runtime), planning (checks and the exact command), lifecycle (launch, await ready, supervise),
stopping (ask, wait, force), control (status, stop, logs of recorded servers), process (spawn,
readiness, port ownership, signals), records (servers/*.json).

Nothing here imports TensorFlow.
"""
from __future__ import annotations

from mlserve.runtimes.base import Launch, Runtime, ServeOptions, tfs_flags
from mlserve.runtimes.gpu import GpuCheck, check_gpus, require_gpu
from mlserve.runtimes.lifecycle import (RUNTIMES, Plan, RunResult, ServerState, StopResult,
                                        get_runtime, make_plan, select_runtime, start, status, stop,
                                        stop_all)
from mlserve.runtimes.records import ServerRecord

__all__ = ["Launch", "Runtime", "ServeOptions", "tfs_flags", "GpuCheck", "check_gpus",
           "require_gpu", "RUNTIMES", "Plan", "RunResult", "ServerState", "StopResult",
           "get_runtime", "make_plan", "select_runtime", "start", "status", "stop", "stop_all",
           "ServerRecord"]

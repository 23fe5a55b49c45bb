"""One lifecycle for every runtime: launch, await ready, then detach or supervise; stop.

    plan = make_plan(...)                       # mlserve.runtimes.planning: checks, exact command
    start(plan, detach=True, notify=print)      # launch -> await_ready -> (detach | supervise)

Library code: it returns values and raises MlserveError subclasses; what the user should see
arrives through the `notify` (progress lines) and `log_sink` (server log lines) callbacks. What
differs between runtimes (how to stop, liveness, who owns the ports) is a hook on the `Runtime`;
nothing here branches on a runtime's name. Status, stop and logs of recorded servers are in
`mlserve.runtimes.control`.
"""
from __future__ import annotations

import datetime as _dt
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Callable

from mlserve.errors import ServerStartError
from mlserve.runtimes import process, records
from mlserve.runtimes.base import Notify, Runtime
from mlserve.runtimes.control import (ServerState, StopResult, find_log, latest_server,
                                      only_server, status, stop, stop_all)
from mlserve.runtimes.planning import (MONITORING_CONFIG, RUNTIMES, Plan, get_runtime,
                                       log_path_for, make_plan, preflight, select_runtime)
from mlserve.runtimes.records import ServerRecord
from mlserve.runtimes.stopping import STOP_GRACE, stop_server

__all__ = ["MONITORING_CONFIG", "RUNTIMES", "Plan", "RunResult", "ServerState", "StopResult", "STOP_GRACE",
           "find_log", "latest_server", "only_server", "get_runtime", "log_path_for", "make_plan",
           "select_runtime", "start", "status", "stop", "stop_all"]

LOG_TAIL = 20  # log lines shown when a server fails to start


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Signals:
    """Foreground Ctrl-C / SIGTERM: the first asks for a clean stop, the second forces.

    Installed only around a foreground run (a detached start keeps Python's own Ctrl-C).
    """

    def __init__(self, install: bool) -> None:
        self.install = install
        self.count = 0
        self.first: int | None = None  # the signal that asked for the stop
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if self.install:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class RunResult:
    record: ServerRecord
    how: str  # "detached", "terminated", "killed"
    signal: int | None = None  # what stopped a foreground server: SIGINT (Ctrl-C) or SIGTERM


@dataclass
class Child:
    """A launched server: its process, its record, and what watches it."""

    plan: Plan
    proc: subprocess.Popen
    record: ServerRecord
    follower: process.LogFollower | None = None
    guard: subprocess.Popen | None = None

    @property
    def runtime(self) -> Runtime:
        return self.plan.runtime

    def tick(self) -> None:
        if self.follower:
            self.follower.poll()


def _start_failure(plan: Plan, message: str, hint: str) -> ServerStartError:
    tail = process.tail_lines(plan.log_path, LOG_TAIL)
    details = (f"Last {len(tail)} lines of {plan.log_path}:\n" + "\n".join(tail)) if tail else \
        f"(the log {plan.log_path} is empty)"
    return ServerStartError(message, hint=hint, details=details)


# --- launch -------------------------------------------------------------------------------------

def launch(plan: Plan, *, detach: bool, notify: Notify,
           log_sink: Callable[[str], None] | None = None) -> Child:
    """Write the plan's files, claim the server's name, start the process, record it."""
    opts = plan.options
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    plan.runtime.prepare(opts, notify)  # may take minutes (docker pull): before the claim
    for note in plan.launch.notes:
        notify(note)
    record = ServerRecord(
        name=opts.name, runtime=plan.runtime.name, pid=0, host=opts.host,
        grpc_port=opts.grpc_port, rest_port=opts.rest_port, models=opts.model_names,
        model_base_path=str(opts.model_base_path) if opts.model_base_path else None,
        model_config_file=str(opts.model_config_file) if opts.model_config_file else None,
        log_path=str(plan.log_path), command=plan.launch.argv, started=_now(),
        container=plan.launch.container, detached=detach, gpu=opts.gpu,
        mlserve_pid=None if detach else os.getpid(), files=[str(p) for p in plan.files],
        extra={"starter_pid": os.getpid()})
    # Claimed right before the spawn, with pid 0 until then: of two starts racing for one name,
    # one gets it. A pid-0 record counts as running while the mlserve that claimed it lives.
    records.claim(plan.workspace, record)
    try:
        plan.log_path.parent.mkdir(parents=True, exist_ok=True)
        plan.log_path.write_text(f"# mlserve {_now()}: {plan.command_line}\n")
        proc = process.spawn(plan.launch.argv, plan.log_path, plan.launch.env,
                             die_with_parent=not detach)
    except OSError as e:
        records.remove(plan.workspace, opts.name, pid=0)
        raise ServerStartError(f"could not start {plan.launch.argv[0]}: {e}",
                               hint="check the runtime with `mlserve server info`") from e
    except BaseException:
        records.remove(plan.workspace, opts.name, pid=0)
        raise
    # pid + start time name the process; its command line is read once it is ready (a launcher
    # may still exec into the server before that). Saved before the readiness wait: if mlserve
    # dies meanwhile, status and stop still find the server.
    record.pid = proc.pid
    record.proc_start_ticks = process.proc_start_ticks(proc.pid)
    records.save(plan.workspace, record)
    child = Child(plan, proc, record,
                  follower=process.LogFollower(plan.log_path, log_sink) if log_sink else None)
    if not detach:
        child.guard = plan.runtime.guard(record)
    return child


# --- await ready --------------------------------------------------------------------------------

def await_ready(child: Child, interrupted: Callable[[], bool] = lambda: False) -> None:
    """Wait until every model is AVAILABLE *on our server*, watching the child all along.

    Readiness answered by another server on the same ports (one started a moment earlier) does
    not count: the runtime must show that the listening sockets are this child's.
    """
    plan, opts, proc = child.plan, child.plan.options, child.proc
    deadline = time.monotonic() + opts.ready_timeout
    while True:
        try:
            process.wait_ready(lambda: proc.poll() if not interrupted() else True,
                               opts.connect_host, opts.rest_port, opts.model_names,
                               max(0.0, deadline - time.monotonic()), tick=child.tick)
        except process.ChildExitedError as e:
            if interrupted():
                raise KeyboardInterrupt from None
            raise _start_failure(plan, f"the {plan.runtime.name} server exited during start "
                                 f"(exit code {e.code})",
                                 "fix what the log says, then run `mlserve serve` again") from None
        except TimeoutError as e:
            raise _start_failure(
                plan, f"the server was not ready within {opts.ready_timeout:g}s ({e})",
                "raise --ready-timeout if the model is large, or read the log: "
                f"`mlserve logs {opts.name}`") from None
        if plan.runtime.owns_ports(child.record):
            break
        if time.monotonic() >= deadline:
            raise _start_failure(
                plan, f"the server was not ready within {opts.ready_timeout:g}s (another server "
                f"answers on REST port {opts.rest_port} or gRPC port {opts.grpc_port})",
                "`mlserve status` lists mlserve's servers; pick other ports (--port, --rest-port)")
        time.sleep(0.2)  # ready, but not ours (yet): our child will bind or exit
    child.record.proc_cmdline = process.proc_cmdline(proc.pid)
    records.save(plan.workspace, child.record)


# --- supervise ----------------------------------------------------------------------------------

def supervise(child: Child, signals: Signals, notify: Notify) -> str:
    """Run in the foreground until Ctrl-C/SIGTERM (clean stop; a second forces) or until the
    server exits by itself (ServerStartError with its log tail). Returns how it stopped."""
    proc, opts = child.proc, child.plan.options
    while proc.poll() is None and signals.count == 0:
        child.tick()
        time.sleep(0.1)
    if signals.count == 0:
        raise _start_failure(child.plan, f"the server exited by itself (exit code {proc.returncode})",
                             f"read the log: `mlserve logs {opts.name}`")
    notify("Stopping (Ctrl-C again to force)...")
    return _stop_child(child, signals)


def _stop_child(child: Child, signals: Signals) -> str:
    first = signals.count
    return stop_server(child.runtime, child.record, STOP_GRACE, proc=child.proc, tick=child.tick,
                       give_up=lambda: signals.count > max(first, 1))


def start(plan: Plan, *, detach: bool, notify: Notify,
          log_sink: Callable[[str], None] | None = None) -> RunResult:
    """Start the planned server: launch, await ready, then detach or supervise.

    detach: return once ready, leaving a record in servers/. Otherwise run in the foreground,
    streaming the log to `log_sink`. Whatever goes wrong (a start failure, Ctrl-C during the
    start), nothing is left running and no record is left behind.
    """
    preflight(plan)
    opts = plan.options
    with Signals(install=not detach) as signals:
        child = launch(plan, detach=detach, notify=notify, log_sink=log_sink)
        try:
            await_ready(child, interrupted=lambda: signals.count > 0)
            if detach:
                return RunResult(child.record, "detached")
            notify(f"Ready: {opts.name} ({plan.runtime.name}) REST http://{opts.connect_host}:"
                   f"{opts.rest_port}/v1/models/{opts.model_names[0]}  gRPC {opts.connect_host}:"
                   f"{opts.grpc_port}  (Ctrl-C to stop)")
            how = supervise(child, signals, notify)
            return RunResult(child.record, how, signals.first)
        except BaseException:
            if child.proc.poll() is None:
                _stop_child(child, signals)
            records.remove(plan.workspace, opts.name, pid=child.proc.pid)
            raise
        finally:
            if child.follower:
                child.follower.poll(final=True)
            if not detach:
                records.remove(plan.workspace, opts.name, pid=child.proc.pid)
            if child.guard is not None:
                process.terminate(child.guard.pid, 1, child.guard)

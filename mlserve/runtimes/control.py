"""The recorded servers from any shell: status, stop, logs.

A record is a claim, never trusted: each is checked against the live process (or the Docker
engine) and stale ones are removed. Without a name, `stop` means the only running server and
`logs` the latest one started.
"""
from __future__ import annotations

import dataclasses
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import ConflictError, MlserveError, NotFoundError, UsageError
from mlserve.runtimes import process, records
from mlserve.runtimes.planning import log_path_for, record_alive, runtime_of
from mlserve.runtimes.records import ServerRecord
from mlserve.runtimes.stopping import STOP_GRACE, stop_server
from mlserve.workspace import Workspace


@dataclass
class ServerState:
    record: ServerRecord
    alive: bool
    models: dict[str, Any]  # model -> [{"version", "state"}] or {"error": ...}

    def as_dict(self) -> dict[str, Any]:
        r = self.record
        return {"name": r.name, "runtime": r.runtime, "alive": self.alive, "pid": r.pid,
                "container": r.container, "host": r.host, "grpc_port": r.grpc_port,
                "rest_port": r.rest_port, "models": self.models,
                "model_base_path": r.model_base_path, "model_config_file": r.model_config_file,
                "log_path": r.log_path, "started": r.started, "detached": r.detached,
                "command": r.command}


def _live_records(workspace: Workspace) -> tuple[list[ServerRecord], list[str]]:
    """The records whose server runs; stale ones are removed and described."""
    found, broken = records.list_all(workspace)
    live: list[ServerRecord] = []
    cleaned = [f"unreadable record {p} left in place (delete it by hand)" for p in broken]
    for record in found:
        if record_alive(record):
            live.append(record)
            continue
        records.remove(workspace, record.name, pid=record.pid)
        what = f"container {record.container}" if record.container else f"pid {record.pid}"
        cleaned.append(f"removed stale record {record.name!r}: its server ({what}) is no longer "
                       "running")
    return live, cleaned


def status(workspace: Workspace | None = None) -> tuple[list[ServerState], list[str]]:
    """Every recorded server that is really running, with each model's versions and states.

    Records whose process is gone (or whose pid now belongs to another program) are deleted and
    reported in the second list, never shown as running.
    """
    workspace = workspace or Workspace.current()
    live, cleaned = _live_records(workspace)
    states: list[ServerState] = []
    for record in live:
        host = "127.0.0.1" if record.host in ("0.0.0.0", "", "::") else record.host
        models: dict[str, Any] = {}
        for model in record.models:
            try:
                models[model] = [{"version": v.get("version"), "state": v.get("state")}
                                 for v in process.model_status(host, record.rest_port, model)]
            except Exception as e:  # noqa: BLE001 (a status line, whatever the failure)
                models[model] = {"error": str(getattr(e, "reason", e))}
        states.append(ServerState(record, True, models))
    return states, cleaned


@dataclass
class StopResult:
    name: str
    how: str  # "terminated", "killed", "not running"
    port_free: bool


def stop(name: str, workspace: Workspace | None = None, grace: float = STOP_GRACE) -> StopResult:
    """Stop one recorded server (ask, bounded wait, force) and remove its record and files."""
    workspace = workspace or Workspace.current()
    record = records.load(workspace, name)
    if record.pid <= 0 and record_alive(record):
        raise ConflictError(f"server {name!r} is still starting (mlserve pid "
                            f"{record.extra.get('starter_pid')})",
                            hint=f"wait for that start to finish, then `mlserve stop {name}`")
    runtime = runtime_of(record)
    how = "not running"
    if record_alive(record):
        how = "terminated"
        owner = record.mlserve_pid
        if owner and not record.detached and process.pid_alive(owner):
            # A foreground server: its mlserve stops it the usual way (and cleans up); asking
            # the server too would make it receive two stop requests.
            os.kill(owner, signal.SIGTERM)
            if not process.wait_gone(record.pid, grace + 5):
                how = stop_server(runtime, record, 0.5)
        elif process.same_process(record.pid, record.proc_cmdline, record.proc_start_ticks):
            how = stop_server(runtime, record, grace)
        else:
            # The engine still runs the container, but the recorded pid is no longer our
            # `docker run` client (it may belong to anyone now): stop through the engine only.
            how = stop_server(runtime, dataclasses.replace(record, pid=0), grace)
    records.remove(workspace, name)
    host = runtime.bind_host(record.host)
    deadline = time.monotonic() + 5
    free = False
    while time.monotonic() < deadline:
        free = process.port_is_free(host, record.rest_port) and \
            process.port_is_free(host, record.grpc_port)
        if free:
            break
        time.sleep(0.1)
    return StopResult(name, how, free)


def stop_all(workspace: Workspace | None = None, grace: float = STOP_GRACE) -> list[StopResult]:
    workspace = workspace or Workspace.current()
    found, _ = records.list_all(workspace)
    return [stop(r.name, workspace, grace) for r in found]


def only_server(workspace: Workspace) -> str | None:
    """The name of the only running server, for `stop` without NAME; None when none runs.

    Several running: a UsageError whose hint names both ways out.
    """
    live, _ = _live_records(workspace)
    if not live:
        return None
    if len(live) == 1:
        return live[0].name
    names = ", ".join(r.name for r in live)
    raise UsageError(f"{len(live)} servers are running ({names}): which one?",
                     hint=f"name one (`mlserve stop {live[0].name}`) or stop them all "
                          "(`mlserve stop --all`)")


def latest_server(workspace: Workspace) -> str:
    """The server `logs` shows without NAME: the latest one started that is recorded, else the
    one whose log file was written last."""
    found, _ = records.list_all(workspace)
    if found:
        return max(found, key=lambda r: (r.started, _mtime(records_path(workspace, r.name)))).name
    logs = sorted(workspace.logs_dir.glob("*.log"), key=_mtime)
    if logs:
        return logs[-1].stem
    raise NotFoundError("no server has run in this workspace yet (no log to show)",
                        hint="start one: `mlserve serve --detach`")


def records_path(workspace: Workspace, name: str) -> Path:
    return workspace.servers_dir / f"{name}.json"


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def find_log(name: str, workspace: Workspace | None = None) -> tuple[Path | None, list[str] | None]:
    """The server's log file, or (when the file is gone) a command that prints its logs."""
    workspace = workspace or Workspace.current()
    path = log_path_for(workspace, name)
    if path.exists():
        return path, None
    try:
        record = records.load(workspace, name)
    except MlserveError:
        raise NotFoundError(f"no log for server {name!r} ({path} does not exist)",
                            hint="`mlserve status` lists the running servers") from None
    return None, runtime_of(record).logs_command(record, False, 100)

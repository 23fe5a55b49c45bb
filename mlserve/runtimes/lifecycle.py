"""One lifecycle for every runtime: plan, check, start, wait for ready, run or detach, status, stop.

Library code: it returns values and raises MlserveError subclasses; what the user should see
arrives through the `notify` (progress lines) and `log_sink` (server log lines) callbacks.
"""
from __future__ import annotations

import datetime as _dt
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from mlserve.errors import (ConflictError, DataError, MlserveError, NotFoundError, ServerStartError,
                            UnavailableError, UsageError)
from mlserve.runtimes import process, records
from mlserve.runtimes.base import Launch, Notify, Runtime, ServeOptions, shell_line
from mlserve.runtimes.binary import BinaryRuntime
from mlserve.runtimes.docker import DockerRuntime
from mlserve.runtimes.embedded import EmbeddedRuntime
from mlserve.runtimes.gpu import GpuCheck, require_gpu
from mlserve.runtimes.records import ServerRecord
from mlserve.workspace import Workspace

RUNTIMES: dict[str, type[Runtime]] = {"binary": BinaryRuntime, "docker": DockerRuntime,
                                      "embedded": EmbeddedRuntime}
STOP_GRACE = 10.0  # seconds between SIGTERM (or docker stop) and SIGKILL
LOG_TAIL = 20  # log lines shown when a server fails to start

MONITORING_CONFIG = """prometheus_config {
  enable: true
  path: "/monitoring/prometheus/metrics"
}
"""


def get_runtime(name: str) -> Runtime:
    try:
        return RUNTIMES[name]()
    except KeyError:
        raise UsageError(f"unknown runtime {name!r}",
                         hint="use one of: auto, " + ", ".join(RUNTIMES)) from None


def select_runtime(choice: str, require: bool = True) -> tuple[Runtime, str]:
    """The runtime to use and why. auto: the binary, else a Docker engine, else embedded."""
    if choice != "auto":
        runtime = get_runtime(choice)
        ok, why = runtime.available()
        if not ok and require:
            hints = {"binary": "install it (`mlserve server install --method apt`) or use "
                               "--runtime embedded",
                     "docker": "start a Docker engine, or use --runtime embedded",
                     "embedded": "pip install tensorflow"}
            raise UnavailableError(f"runtime {choice!r} is not available here: {why}",
                                   hint=hints[choice])
        return runtime, f"asked for; {why}" if ok else f"asked for; not available here: {why}"
    binary = BinaryRuntime()
    ok, why_binary = binary.available()
    if ok:
        return binary, why_binary
    docker = DockerRuntime()
    ok, why_docker = docker.available()
    if ok:
        return docker, f"{why_binary}; {why_docker}"
    return EmbeddedRuntime(), f"{why_binary}; {why_docker}"


def log_path_for(workspace: Workspace, name: str) -> Path:
    return workspace.logs_dir / f"{records.check_name(name)}.log"


# --- planning: everything is checked before anything starts ------------------------------------

@dataclass
class Plan:
    runtime: Runtime
    reason: str  # why this runtime was chosen
    options: ServeOptions
    launch: Launch
    workspace: Workspace
    log_path: Path
    files: dict[Path, str] = field(default_factory=dict)  # written before the start
    gpu: GpuCheck | None = None

    @property
    def command_line(self) -> str:
        """The exact command, one shell-quoted line (environment additions first)."""
        return shell_line(self.launch.argv, self.launch.env)


def _check_base_path(path: Path, model: str) -> None:
    if not path.exists():
        raise NotFoundError(f"model base path {path} does not exist (model {model!r})",
                            hint="export a model first: `mlserve export`, or pass --model-base-path")
    if not path.is_dir():
        raise DataError(f"model base path {path} is not a folder",
                        hint="give the folder that holds the numbered versions (1/, 2/, ...)")
    if not any(p.is_dir() and p.name.isdigit() for p in path.iterdir()):
        raise NotFoundError(
            f"model base path {path} has no numbered version folder (like {path}/1/saved_model.pb)",
            hint="TF Serving serves <base>/<version>/: run `mlserve export` to write version 1")


def _existing_file(value: str | Path | None, what: str) -> Path | None:
    if value is None or str(value) == "":
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise NotFoundError(f"{what} {path} does not exist", hint=f"check the path given to {what}")
    return path


def make_plan(*, runtime: str, model_name: str, model_base_path: str | Path | None,
              model_config_file: str | Path | None = None, grpc_port: int = 8500,
              rest_port: int = 8501, host: str = "127.0.0.1", poll_seconds: int | None = None,
              batching: bool = False, batching_parameters_file: str | Path | None = None,
              monitoring: bool = False, name: str | None = None, ready_timeout: float = 120.0,
              gpu: bool = False, extra_flags: list[str] | None = None, dry_run: bool = False,
              workspace: Workspace | None = None, tflite: bool = False) -> Plan:
    """Resolve and check everything `serve` needs; build the exact command. Starts nothing.

    With `dry_run` the checks that depend on this machine's state right now (GPU, runtime
    availability) are skipped, so the command for any runtime can be shown anywhere.
    """
    workspace = workspace or Workspace.current()
    name = records.check_name(name or model_name)
    for port, what in ((grpc_port, "--port"), (rest_port, "--rest-port")):
        if not 0 < port < 65536:
            raise UsageError(f"{what} {port} is not a TCP port", hint=f"give {what} 1..65535")
    if grpc_port == rest_port:
        raise UsageError(f"--port and --rest-port are both {grpc_port}",
                         hint="gRPC and REST need two different ports")
    if ready_timeout <= 0:
        raise UsageError("--ready-timeout must be positive")
    config = _existing_file(model_config_file, "--model-config-file")
    config_models: dict[str, str] = {}
    base: Path | None = None
    if config is not None:
        from mlserve.runtimes.modelconfig import read_models

        config_models = read_models(config)
        for model, model_base in config_models.items():
            _check_base_path(Path(model_base), model)
        models = list(config_models)
    else:
        if model_base_path is None or str(model_base_path) == "":
            raise UsageError("no model base path", hint="pass --model-base-path or --model-config-file")
        base = Path(model_base_path).expanduser().resolve()
        _check_base_path(base, model_name)
        models = [model_name]
    options = ServeOptions(
        name=name, model_name=model_name, model_base_path=base, model_config_file=config,
        grpc_port=grpc_port, rest_port=rest_port, host=host, poll_seconds=poll_seconds,
        batching=batching,
        batching_parameters_file=_existing_file(batching_parameters_file, "--batching-parameters-file"),
        gpu=gpu, ready_timeout=ready_timeout, extra_flags=list(extra_flags or []),
        model_names=models, config_models=config_models, tflite=tflite)
    files: dict[Path, str] = {}
    if monitoring:
        options.monitoring_config_file = workspace.servers_dir / f"{name}.monitoring.config"
        files[options.monitoring_config_file] = MONITORING_CONFIG
    chosen, reason = select_runtime(runtime, require=not dry_run)
    gpu_check = require_gpu() if gpu and not dry_run else None
    launch = chosen.launch(options)
    files.update(launch.files)
    plan = Plan(chosen, reason, options, launch, workspace, log_path_for(workspace, name), files,
                gpu_check)
    if not dry_run:
        _preflight(plan)
    return plan


# --- starting -----------------------------------------------------------------------------------

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _record_alive(record: ServerRecord) -> bool:
    runtime = RUNTIMES.get(record.runtime, EmbeddedRuntime)()
    engine = runtime.is_running(record.as_dict())
    if engine is not None:
        return engine
    return process.same_process(record.pid, record.proc_cmdline, record.proc_start_ticks)


def _preflight(plan: Plan) -> None:
    """What must hold right before the start: no live server of this name, both ports free."""
    try:
        existing = records.load(plan.workspace, plan.options.name)
    except (NotFoundError, DataError):
        existing = None
    if existing is not None:
        if _record_alive(existing):
            raise ConflictError(
                f"a server named {plan.options.name!r} is already running "
                f"(pid {existing.pid}, REST port {existing.rest_port})",
                hint=f"stop it first (`mlserve stop {plan.options.name}`) or pick --name")
        records.remove(plan.workspace, plan.options.name)
    host = plan.launch.bind_host
    process.check_port_free(host, plan.options.grpc_port, "gRPC")
    process.check_port_free(host, plan.options.rest_port, "REST")


class _Signals:
    """Foreground Ctrl-C / SIGTERM handling: the first asks for a clean stop, the second forces."""

    def __init__(self) -> None:
        self.count = 0
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_Signals":
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.count += 1

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class RunResult:
    record: ServerRecord
    how: str  # "detached", "terminated", "killed", "exited"


def _start_failure(plan: Plan, message: str, hint: str) -> ServerStartError:
    tail = process.tail_lines(plan.log_path, LOG_TAIL)
    details = (f"Last {len(tail)} lines of {plan.log_path}:\n" + "\n".join(tail)) if tail else \
        f"(the log {plan.log_path} is empty)"
    return ServerStartError(message, hint=hint, details=details)


def start(plan: Plan, *, detach: bool, notify: Notify,
          log_sink: Callable[[str], None] | None = None) -> RunResult:
    """Start the planned server; wait until every model is AVAILABLE while watching the child.

    detach: return once ready, leaving a record in servers/. Otherwise run in the foreground:
    stream the log to `log_sink` until Ctrl-C/SIGTERM (clean stop; a second one forces) or until
    the server exits by itself (ServerStartError with its log tail).
    """
    _preflight(plan)
    for path, text in plan.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    plan.runtime.prepare(plan.options, notify)
    for note in plan.launch.notes:
        notify(note)
    plan.log_path.parent.mkdir(parents=True, exist_ok=True)
    plan.log_path.write_text(f"# mlserve {_now()}: {plan.command_line}\n")
    follower = process.LogFollower(plan.log_path, log_sink) if log_sink else None
    opts = plan.options
    with _Signals() if not detach else _NoSignals() as signals:
        try:
            proc = process.spawn(plan.launch.argv, plan.log_path, plan.launch.env,
                                 die_with_parent=not detach)
        except OSError as e:
            raise ServerStartError(f"could not start {plan.launch.argv[0]}: {e}",
                                   hint="check the runtime with `mlserve server info`") from e
        watchdog = _start_watchdog(plan) if not detach else None
        record = ServerRecord(
            name=opts.name, runtime=plan.runtime.name, pid=proc.pid, host=opts.host,
            grpc_port=opts.grpc_port, rest_port=opts.rest_port, models=opts.model_names,
            model_base_path=str(opts.model_base_path) if opts.model_base_path else None,
            model_config_file=str(opts.model_config_file) if opts.model_config_file else None,
            log_path=str(plan.log_path), command=plan.launch.argv, started=_now(),
            container=plan.launch.container, detached=detach, gpu=opts.gpu,
            mlserve_pid=None if detach else os.getpid())
        # pid + start time name the process; its command line is read once it is ready (a
        # launcher may still exec into the server before that)
        record.proc_start_ticks = process.proc_start_ticks(proc.pid)
        if detach:  # recorded before the wait: if mlserve dies meanwhile, status/stop still find it
            records.save(plan.workspace, record)
        try:
            try:
                process.wait_ready(
                    lambda: proc.poll() if signals.count == 0 else True,
                    opts.connect_host, opts.rest_port, opts.model_names, opts.ready_timeout,
                    tick=follower.poll if follower else None)
            except process.ChildExited as e:
                if signals.count:
                    raise KeyboardInterrupt from None
                raise _start_failure(plan, f"the {plan.runtime.name} server exited during start "
                                     f"(exit code {e.code})",
                                     "fix what the log says, then run `mlserve serve` again") from None
            except TimeoutError as e:
                raise _start_failure(
                    plan, f"the server was not ready within {opts.ready_timeout:g}s ({e})",
                    "raise --ready-timeout if the model is large, or read the log: "
                    f"`mlserve logs {opts.name}`") from None
            record.proc_cmdline = process.proc_cmdline(proc.pid)
            records.save(plan.workspace, record)
            if detach:
                return RunResult(record, "detached")
            notify(f"Ready: {opts.name} ({plan.runtime.name}) REST http://{opts.connect_host}:"
                   f"{opts.rest_port}/v1/models/{opts.model_names[0]}  gRPC {opts.connect_host}:"
                   f"{opts.grpc_port}  (Ctrl-C to stop)")
            while proc.poll() is None and signals.count == 0:
                if follower:
                    follower.poll()
                time.sleep(0.1)
            if signals.count == 0:
                raise _start_failure(plan, f"the server exited by itself (exit code {proc.returncode})",
                                     f"read the log: `mlserve logs {opts.name}`")
            notify("Stopping (Ctrl-C again to force)...")
            how = _stop_foreground(plan, proc, signals, follower)
            return RunResult(record, how)
        except BaseException:
            # Whatever went wrong (start failure, Ctrl-C during start): leave nothing running.
            if proc.poll() is None:
                _stop_foreground(plan, proc, signals, follower)
            records.remove(plan.workspace, opts.name)
            raise
        finally:
            if follower:
                follower.poll(final=True)
            if not detach:
                records.remove(plan.workspace, opts.name)
            if watchdog is not None:
                process.terminate(watchdog.pid, 1, watchdog)


class _NoSignals:
    count = 0

    def __enter__(self) -> "_NoSignals":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def _start_watchdog(plan: Plan) -> subprocess.Popen | None:
    if not plan.launch.container:
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "mlserve.runtimes.watchdog", str(os.getpid()), plan.launch.container],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def _stop_foreground(plan: Plan, proc: subprocess.Popen, signals: Any,
                     follower: process.LogFollower | None) -> str:
    """Clean stop of our own child: SIGTERM (docker stop), wait, SIGKILL; a 2nd signal forces."""
    first = signals.count
    docker_stop = None
    if plan.launch.container:
        docker_stop = subprocess.Popen(
            ["docker", "stop", "-t", str(int(STOP_GRACE)), plan.launch.container],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    process.signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    how = "terminated"
    while proc.poll() is None:
        if follower:
            follower.poll()
        if time.monotonic() > deadline or signals.count > max(first, 1):
            how = "killed"
            process.signal_group(proc.pid, signal.SIGKILL)
            if plan.launch.container:
                subprocess.run(["docker", "rm", "-f", plan.launch.container],
                               capture_output=True, timeout=30, check=False)
            proc.wait(timeout=10)
            break
        time.sleep(0.05)
    if docker_stop is not None:
        try:
            docker_stop.wait(timeout=STOP_GRACE + 5)
        except subprocess.TimeoutExpired:
            docker_stop.kill()
            docker_stop.wait()
    return how


# --- status, stop, logs -------------------------------------------------------------------------

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


def status(workspace: Workspace | None = None) -> tuple[list[ServerState], list[str]]:
    """Every recorded server that is really running, with each model's versions and states.

    Records whose process is gone (or whose pid now belongs to another program) are deleted and
    reported in the second list, never shown as running.
    """
    workspace = workspace or Workspace.current()
    found, broken = records.list_all(workspace)
    states: list[ServerState] = []
    cleaned = [f"unreadable record {p} left in place (delete it by hand)" for p in broken]
    for record in found:
        if not _record_alive(record):
            records.remove(workspace, record.name)
            cleaned.append(f"removed stale record {record.name!r}: its server "
                           f"({'container ' + record.container if record.container else 'pid ' + str(record.pid)})"
                           " is no longer running")
            continue
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
    """Stop one recorded server: docker stop / SIGTERM, bounded wait, SIGKILL; remove its record."""
    workspace = workspace or Workspace.current()
    record = records.load(workspace, name)
    runtime = RUNTIMES.get(record.runtime, EmbeddedRuntime)()
    how = "not running"
    if _record_alive(record):
        owner = record.mlserve_pid
        if owner and process.pid_alive(owner) and not record.detached:
            # A foreground server: ask its mlserve to stop it the usual way (it also cleans up).
            os.kill(owner, signal.SIGTERM)
        runtime.stop_extra(record.as_dict(), grace)
        if process.same_process(record.pid, record.proc_cmdline, record.proc_start_ticks):
            how = process.terminate(record.pid, grace)
            how = "terminated" if how == "not running" else how
        else:
            how = "terminated"
    records.remove(workspace, name)
    host = "0.0.0.0" if record.runtime == "binary" else record.host
    deadline = time.monotonic() + 5
    free = False
    while time.monotonic() < deadline:
        free = process.port_is_free(host, record.rest_port) and process.port_is_free(host, record.grpc_port)
        if free:
            break
        time.sleep(0.1)
    return StopResult(name, how, free)


def stop_all(workspace: Workspace | None = None, grace: float = STOP_GRACE) -> list[StopResult]:
    workspace = workspace or Workspace.current()
    found, _ = records.list_all(workspace)
    return [stop(r.name, workspace, grace) for r in found]


def default_name(workspace: Workspace) -> str:
    """The only recorded server's name, for `stop`/`logs` without NAME."""
    found, _ = records.list_all(workspace)
    if len(found) == 1:
        return found[0].name
    if not found:
        logs = sorted(workspace.logs_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        if logs:
            return logs[-1].stem
        raise NotFoundError("no server is recorded", hint="start one: `mlserve serve --detach`")
    raise UsageError("several servers are recorded: " + ", ".join(r.name for r in found),
                     hint="name one, e.g. `mlserve stop " + found[0].name + "` (or --all)")


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
                            hint="`mlserve status` lists the servers") from None
    runtime = RUNTIMES.get(record.runtime, EmbeddedRuntime)()
    return None, runtime.logs_command(record.as_dict(), False, 100)

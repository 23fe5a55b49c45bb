"""Planning a server: the runtime chosen, every option checked, the exact command built.

Nothing starts here; `mlserve.runtimes.lifecycle.start` takes the plan from there. Everything that
can be checked before a start is checked here (paths, ports, names, the runtime, the GPU), so a
bad option fails before any process exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlserve.errors import ConflictError, DataError, NotFoundError, UnavailableError, UsageError
from mlserve.runtimes import process, records
from mlserve.runtimes.base import Launch, Runtime, ServeOptions, shell_line
from mlserve.runtimes.binary import BinaryRuntime
from mlserve.runtimes.docker import DockerRuntime
from mlserve.runtimes.embedded import EmbeddedRuntime
from mlserve.runtimes.gpu import GpuCheck, require_gpu
from mlserve.runtimes.records import ServerRecord
from mlserve.workspace import Workspace

RUNTIMES: dict[str, type[Runtime]] = {"binary": BinaryRuntime, "docker": DockerRuntime,
                                      "embedded": EmbeddedRuntime}
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
    launch = chosen.launch(options, workspace)
    files.update(launch.files)
    plan = Plan(chosen, reason, options, launch, workspace, log_path_for(workspace, name), files,
                gpu_check)
    if not dry_run:
        preflight(plan)
    return plan


# --- right before the start ---------------------------------------------------------------------

def runtime_of(record: ServerRecord) -> Runtime:
    """The runtime that started a recorded server."""
    return RUNTIMES.get(record.runtime, EmbeddedRuntime)()


def record_alive(record: ServerRecord) -> bool:
    """The recorded server still runs: the engine says so, or its pid is the same process."""
    if record.pid <= 0:  # claimed, not spawned yet: it lives while the mlserve starting it does
        return process.pid_alive(int(record.extra.get("starter_pid", 0)))
    engine = runtime_of(record).is_running(record)
    if engine is not None:
        return engine
    return process.same_process(record.pid, record.proc_cmdline, record.proc_start_ticks)


def preflight(plan: Plan) -> None:
    """What must hold right before the start: no live server of this name, both ports free."""
    try:
        existing = records.load(plan.workspace, plan.options.name)
    except (NotFoundError, DataError):
        existing = None
    if existing is not None:
        if record_alive(existing):
            raise ConflictError(
                f"a server named {plan.options.name!r} is already running "
                f"(pid {existing.pid}, REST port {existing.rest_port})",
                hint=f"stop it first (`mlserve stop {plan.options.name}`) or pick --name")
        records.remove(plan.workspace, plan.options.name)
    host = plan.runtime.bind_host(plan.options.host)
    process.check_port_free(host, plan.options.grpc_port, "gRPC")
    process.check_port_free(host, plan.options.rest_port, "REST")

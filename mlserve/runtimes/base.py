"""What every runtime shares: the serve options, the TF Serving flags they map to, the Runtime interface.

A runtime (binary, Docker, embedded) only decides *how* TF Serving is started: the command line,
its environment, and how a running server is found, stopped and its logs read. The lifecycle
around it (checks, log file, readiness, Ctrl-C, records) is one piece of code for all of them,
in `mlserve.runtimes.lifecycle`.
"""
from __future__ import annotations

import abc
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from mlserve.runtimes import process

if TYPE_CHECKING:
    from mlserve.runtimes.records import ServerRecord
    from mlserve.workspace import Workspace

Notify = Callable[[str], None]


@dataclass
class ServeOptions:
    """Everything `mlserve serve` was asked for, resolved (flags > settings > defaults)."""

    name: str  # server record name (default: the model name)
    model_name: str
    model_base_path: Path | None  # None when a model config file lists the models
    model_config_file: Path | None = None
    grpc_port: int = 8500
    rest_port: int = 8501
    host: str = "127.0.0.1"
    poll_seconds: int | None = None
    batching: bool = False
    batching_parameters_file: Path | None = None
    monitoring_config_file: Path | None = None  # written by the lifecycle when --monitoring is given
    gpu: bool = False
    tflite: bool = False  # serve <version>/model.tflite where it exists (--prefer_tflite_model)
    ready_timeout: float = 120.0
    extra_flags: list[str] = field(default_factory=list)  # passed to TF Serving as they are
    # The models to wait for: [model_name], or the names listed in the config file.
    model_names: list[str] = field(default_factory=list)
    # With a config file: each model's name -> base path, as the file says (Docker remaps them).
    config_models: dict[str, str] = field(default_factory=dict)

    @property
    def connect_host(self) -> str:
        """Where a local client reaches the server (a wildcard bind is reached on loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host


def tfs_flags(options: ServeOptions, path: Callable[[Path], str] = str,
              entrypoint_flags: bool = True) -> list[str]:
    """TF Serving's own flags for these options: the one mapping from friendly options to flags.

    `path` turns a host path into the path the server sees (the Docker runtime maps it into the
    container). `entrypoint_flags=False` leaves out --port, --rest_api_port, --model_name and
    --model_base_path: the Docker image's entrypoint passes those itself.
    """
    flags: list[str] = []
    if entrypoint_flags:
        flags += [f"--port={options.grpc_port}", f"--rest_api_port={options.rest_port}"]
    if options.model_config_file is not None:
        flags.append(f"--model_config_file={path(options.model_config_file)}")
    elif entrypoint_flags:
        assert options.model_base_path is not None
        flags += [f"--model_name={options.model_name}",
                  f"--model_base_path={path(options.model_base_path)}"]
    if options.poll_seconds is not None:
        flags.append(f"--file_system_poll_wait_seconds={options.poll_seconds}")
    if options.batching or options.batching_parameters_file is not None:
        flags.append("--enable_batching")
    if options.batching_parameters_file is not None:
        flags.append(f"--batching_parameters_file={path(options.batching_parameters_file)}")
    if options.monitoring_config_file is not None:
        flags.append(f"--monitoring_config_file={path(options.monitoring_config_file)}")
    if options.tflite:
        flags.append("--prefer_tflite_model")
    flags += options.extra_flags
    return flags


def shell_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    """One shell-quoted line that reproduces the command (with its extra environment first)."""
    prefix = [f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()]
    return " ".join(prefix + [shlex.quote(a) for a in argv])


@dataclass
class Launch:
    """A command to start, as a runtime built it."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to mlserve's own environment
    container: str | None = None  # Docker container name
    notes: list[str] = field(default_factory=list)  # lines worth telling the user before start
    files: dict[Path, str] = field(default_factory=dict)  # written before the start (not on --dry-run)


class Runtime(abc.ABC):
    """How TF Serving is started by one runtime. Subclasses build commands and know their own
    stop, liveness and port-ownership rules; they never wait for readiness or print.

    The lifecycle (`mlserve.runtimes.lifecycle`) calls these hooks and has no runtime-specific
    branch of its own.
    """

    name: str = ""

    @abc.abstractmethod
    def available(self) -> tuple[bool, str]:
        """Whether this runtime can start a server here, and why (or why not)."""

    @abc.abstractmethod
    def launch(self, options: ServeOptions, workspace: Workspace) -> Launch:
        """The exact command line (and environment) that starts the server for these options.

        Files the command needs (written before the start) go under `workspace`.
        """

    def bind_host(self, host: str) -> str:
        """Where the server really binds for `--host` (checked free before the start)."""
        return host

    def prepare(self, options: ServeOptions, notify: Notify) -> None:
        """Work to do once before starting for real (the Docker runtime pulls its image)."""

    def guard(self, record: ServerRecord) -> subprocess.Popen | None:
        """A helper that cleans up if mlserve dies while running this server in the foreground.

        The child itself dies with mlserve (PR_SET_PDEATHSIG); the Docker runtime adds a watchdog
        for the container, which a killed `docker run` client cannot stop.
        """
        return None

    def is_running(self, record: ServerRecord) -> bool | None:
        """Runtime-specific liveness (Docker asks the engine); None: use the pid check only."""
        return None

    def owns_ports(self, record: ServerRecord) -> bool:
        """Whether the sockets listening on the record's ports belong to this very server.

        Readiness alone does not prove it: a server started a moment earlier on the same ports
        answers the readiness poll too. Default: a process of the child's session holds both
        listening sockets (the child leads its own session, see `process.spawn`).
        """
        return all(process.port_owned_by_session(port, record.pid) is True
                   for port in (record.rest_port, record.grpc_port))

    def request_stop(self, record: ServerRecord, grace: float) -> subprocess.Popen | None:
        """Ask the server to stop cleanly; a helper process to reap afterwards, if any.

        Default: SIGTERM to the child's process group.
        """
        process.signal_group(record.pid, signal.SIGTERM)
        return None

    def force_stop(self, record: ServerRecord) -> None:
        """The server did not stop in time: SIGKILL it (Docker also removes the container)."""
        process.signal_group(record.pid, signal.SIGKILL)

    def logs_command(self, record: ServerRecord, follow: bool, lines: int) -> list[str] | None:
        """A command that prints this server's logs when its log file is gone; None: none."""
        return None

    def describe(self) -> dict[str, Any]:
        """What `mlserve server info` shows about this runtime."""
        ok, why = self.available()
        return {"runtime": self.name, "available": ok, "detail": why}

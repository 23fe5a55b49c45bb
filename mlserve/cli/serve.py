"""`mlserve serve`, `status`, `stop`, `logs`: run TF Serving (binary, Docker or embedded) and manage it."""
from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from mlserve import settings
from mlserve.cli import output
from mlserve.workspace import Workspace


_say = _log_line = output.say  # progress and the server's log lines: plain stderr lines


def serve(
    tfs_args: Optional[List[str]] = typer.Argument(
        None, metavar="[-- TF_SERVING_FLAGS...]",
        help="Extra TF Serving flags, passed on as they are (after --)."),
    model_name: Optional[str] = typer.Option(None, "--model-name", help="Model name (MLSERVE_MODEL_NAME)."),
    model_base_path: Optional[Path] = typer.Option(
        None, "--model-base-path", help="Folder of numbered versions (default: the workspace's)."),
    model_config_file: Optional[Path] = typer.Option(
        None, "--model-config-file", help="TF Serving model config file (serves every model listed)."),
    port: Optional[int] = typer.Option(None, "--port", help="gRPC port (default 8500)."),
    rest_port: Optional[int] = typer.Option(None, "--rest-port", help="REST port (default 8501)."),
    host: Optional[str] = typer.Option(
        None, "--host", help="Address to bind: 127.0.0.1 unless told (docker and embedded)."),
    runtime: Optional[str] = typer.Option(
        None, "--runtime", help="auto, binary, docker or embedded (MLSERVE_RUNTIME)."),
    poll_seconds: Optional[int] = typer.Option(
        None, "--poll-seconds", help="Seconds between checks for new versions (--file_system_poll_wait_seconds)."),
    batching: bool = typer.Option(False, "--batching", help="Enable server-side batching."),
    batching_parameters_file: Optional[Path] = typer.Option(
        None, "--batching-parameters-file", help="TF Serving batching parameters file (implies --batching)."),
    monitoring: bool = typer.Option(
        False, "--monitoring", help="Expose Prometheus metrics at /monitoring/prometheus/metrics."),
    name: Optional[str] = typer.Option(None, "--name", help="Server name for status/stop/logs (default: model name)."),
    ready_timeout: Optional[float] = typer.Option(
        None, "--ready-timeout", help="Seconds to wait for every model to be AVAILABLE."),
    gpu: bool = typer.Option(False, "--gpu", help="Serve on the NVIDIA GPU (fails when none is visible)."),
    tflite: bool = typer.Option(
        False, "--tflite", help="Serve each version's model.tflite where it exists (--prefer_tflite_model)."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Return once ready; the server keeps running."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the exact command line and start nothing."),
    feature_lookup: Optional[Path] = typer.Option(
        None, "--feature-lookup", help="Fill missing inputs from a feature store by an entity key "
        "(a YAML/JSON config; embedded runtime; docs/feature-lookup.md)."),
    batching_policy: Optional[str] = typer.Option(
        None, "--batching-policy", help="fixed (TF Serving's) or adaptive: batch size and wait tuned to keep p99 "
        "under --latency-objective-ms (implies --batching; embedded runtime)."),
    latency_objective_ms: Optional[float] = typer.Option(
        None, "--latency-objective-ms", help="The p99 in milliseconds --batching-policy adaptive keeps under."),
    prediction_cache_bytes: Optional[int] = typer.Option(
        None, "--prediction-cache-bytes", help="Keep predict answers in memory up to this many bytes (LRU; embedded)."),
    prediction_cache: Optional[str] = typer.Option(
        None, "--prediction-cache", help="redis://host:port[/db]: share predict answers between replicas (embedded)."),
) -> None:
    """Start a model server: tensorflow_model_server, the tensorflow/serving image or the embedded server.

    Foreground by default (logs stream here, Ctrl-C stops it); --detach returns once every model is
    AVAILABLE. The same friendly options map to TF Serving's flags for every runtime.
    """
    from mlserve.runtimes import lifecycle

    workspace = Workspace.current()
    model = settings.get("model_name", model_name)
    base = str(settings.model_base_path(model, model_base_path))
    # The managed config (mlserve.rollout.managed): the server gets a config file that promote,
    # canary and rollback can edit; a config with labels needs TF Serving's allow flag to start.
    from mlserve.rollout import managed

    config_file, extra = managed.serve_config(workspace.root, model, base, model_config_file, tfs_args)
    chosen_runtime = settings.get("runtime", runtime)
    if feature_lookup is not None:
        extra = [*extra, _feature_lookup_flag(feature_lookup, chosen_runtime)]
        chosen_runtime = "embedded"  # auto would pick tensorflow_model_server where installed
    ours = _extension_flags(batching_policy, latency_objective_ms, prediction_cache_bytes, prediction_cache,
                            chosen_runtime)
    if ours:
        extra = [*extra, *ours]
        chosen_runtime = "embedded"
    batching = batching or batching_policy is not None
    plan = lifecycle.make_plan(
        runtime=chosen_runtime, model_name=model,
        model_base_path=None if config_file else base, model_config_file=config_file,
        grpc_port=settings.get("grpc_port", port), rest_port=settings.get("rest_port", rest_port),
        host=settings.get("host", host), poll_seconds=poll_seconds, batching=batching,
        batching_parameters_file=batching_parameters_file, monitoring=monitoring, name=name,
        ready_timeout=settings.get("ready_timeout", ready_timeout), gpu=gpu,
        extra_flags=extra, dry_run=dry_run, workspace=workspace, tflite=tflite)
    _say(f"Runtime: {plan.runtime.name} ({plan.reason})")
    if dry_run:
        sys.stdout.write(plan.command_line + "\n")
        return
    if plan.gpu is not None:
        _say(f"GPU: {', '.join(plan.gpu.devices)} ({plan.gpu.method})")
    _say(f"Starting: {plan.command_line}")
    _say(f"Log: {plan.log_path}")
    if detach:
        with output.err.status(f"Waiting for {', '.join(plan.options.model_names)} to be AVAILABLE..."):
            result = lifecycle.start(plan, detach=True, notify=_say)
        r = result.record
        sys.stdout.write(f"{r.name}: {r.runtime} pid {r.pid}"
                         + (f" container {r.container}" if r.container else "")
                         + f", REST http://{plan.options.connect_host}:{r.rest_port}"
                         f", gRPC {plan.options.connect_host}:{r.grpc_port}\n")
        _say(f"Stop it with: mlserve stop {r.name}   Logs: mlserve logs {r.name} -f")
        return
    result = lifecycle.start(plan, detach=False, notify=_say, log_sink=_log_line)
    _say(f"Stopped {result.record.name} ({result.how}).")
    if result.signal == signal.SIGINT:  # Ctrl-C: 130, as for every command (docs/exit-codes.md)
        raise typer.Exit(130)


def _feature_lookup_flag(path: Path, runtime: str | None) -> str:
    """`--feature_lookup=<absolute path>`: an mlserve extension, so the embedded server only."""
    from mlserve.errors import NotFoundError, UsageError

    if runtime not in (None, "auto", "embedded"):
        raise UsageError(f"--feature-lookup needs the embedded server, not --runtime {runtime} "
                         "(tensorflow_model_server has no feature lookup)", hint="add --runtime embedded")
    if not path.is_file():
        raise NotFoundError(f"feature lookup config {path} does not exist",
                            hint="docs/feature-lookup.md shows one")
    return f"--feature_lookup={path.resolve()}"


def _extension_flags(policy: Optional[str], objective_ms: Optional[float], cache_bytes: Optional[int],
                     cache_url: Optional[str], runtime: Optional[str]) -> list[str]:
    """The embedded server's flags for adaptive batching and the prediction cache (checked here,
    so a mistake is one line before anything starts)."""
    from mlserve.errors import UsageError

    flags: list[str] = []
    if policy is not None:
        if policy not in ("fixed", "adaptive"):
            raise UsageError(f"--batching-policy {policy!r}: choose fixed or adaptive",
                             hint="mlserve serve --batching-policy adaptive --latency-objective-ms 10")
        if policy == "adaptive":  # fixed is TF Serving's own: no flag, any runtime
            flags.append("--batching_policy=adaptive")
    if objective_ms is not None:
        if policy != "adaptive" or not objective_ms > 0:
            raise UsageError("--latency-objective-ms takes a positive number of milliseconds, with "
                             "--batching-policy adaptive",
                             hint="mlserve serve --batching-policy adaptive --latency-objective-ms 10")
        flags.append(f"--latency_objective_ms={objective_ms:g}")
    elif policy == "adaptive":
        raise UsageError("--batching-policy adaptive needs --latency-objective-ms (a p99 in milliseconds)",
                         hint="mlserve serve --batching-policy adaptive --latency-objective-ms 10")
    if cache_bytes is not None:
        if cache_bytes < 0:
            raise UsageError(f"--prediction-cache-bytes must be 0 (off) or positive, got {cache_bytes}")
        flags.append(f"--prediction_cache_bytes={cache_bytes}")
    if cache_url is not None:
        if not cache_url.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(f"--prediction-cache {cache_url!r}: expected a redis:// URL",
                             hint="mlserve serve --prediction-cache redis://127.0.0.1:6379/0")
        flags.append(f"--prediction_cache={cache_url}")
    if flags and runtime not in (None, "auto", "embedded"):
        raise UsageError(f"{flags[0].split('=')[0].replace('_', '-')} needs the embedded server, not --runtime "
                         f"{runtime} (tensorflow_model_server has no such flag)", hint="add --runtime embedded")
    return flags


def _versions(models: dict) -> str:
    parts = []
    for model, versions in models.items():
        if isinstance(versions, dict):
            parts.append(f"{model}: {versions.get('error')}")
        else:
            parts.append(f"{model}: " + (", ".join(f"v{v['version']} {v['state']}" for v in versions)
                                         or "no version"))
    return "; ".join(parts)


def status(
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the running servers and each model version's state; stale records are removed."""
    from mlserve.runtimes import lifecycle

    states, cleaned = lifecycle.status()
    for note in cleaned:
        _say(note)
    if json_:
        output.print_json([s.as_dict() for s in states])
        return
    if not states:
        _say("No server is running (start one: mlserve serve --detach).")
        return
    table = Table()
    for column in ("name", "runtime", "pid", "REST/gRPC", "models", "since"):
        table.add_column(column, overflow="fold")
    for s in states:
        r = s.record
        ports = f"{r.rest_port}/{r.grpc_port}" + ("" if r.host == "127.0.0.1" else f"\non {r.host}")
        since = r.started[11:19] if len(r.started) >= 19 else r.started  # ISO time: HH:MM:SS
        table.add_row(r.name, r.runtime, r.container or str(r.pid), ports,
                      _versions(s.models).replace("; ", "\n"), since)
    output.out.print(table)


def stop(
    name: Optional[str] = typer.Argument(None, help="Server name (default: the only one running)."),
    all_: bool = typer.Option(False, "--all", help="Stop every recorded server."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds between SIGTERM and SIGKILL."),
) -> None:
    """Stop a server: SIGTERM (docker stop), a bounded wait, then SIGKILL; its record is removed.

    Without NAME it stops the only running server. With nothing running, `stop` and `stop --all`
    both say so and succeed (exit 0); a NAME that is not recorded is an error (exit 4).
    """
    from mlserve.runtimes import lifecycle

    workspace = Workspace.current()
    if all_:
        results = lifecycle.stop_all(workspace, timeout)
    else:
        server = name or lifecycle.only_server(workspace)
        results = [lifecycle.stop(server, workspace, timeout)] if server else []
    if not results:
        _say("No server is running; nothing to stop (`mlserve status` lists servers).")
    for r in results:
        sys.stdout.write(f"{r.name}: {r.how}" + ("" if r.port_free else " (its ports are still busy)")
                         + "\n")


def logs(
    name: Optional[str] = typer.Argument(None, help="Server name (default: the latest one started)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C ends)."),
    lines: int = typer.Option(50, "--lines", "-n", help="How many of the last lines to print."),
) -> None:
    """Print a server's log (the workspace log file; `docker logs` when that file is gone).

    Without NAME: the latest server started (or, with none recorded, the last log written).
    """
    import subprocess

    from mlserve.runtimes import lifecycle, process

    workspace = Workspace.current()
    server = name or lifecycle.latest_server(workspace)
    path, command = lifecycle.find_log(server, workspace)
    if path is None:
        assert command is not None
        if follow:
            command.insert(-1, "--follow")
        command[command.index("--tail") + 1] = str(lines)
        raise typer.Exit(subprocess.call(command))
    for line in process.tail_lines(path, lines):
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
    if not follow:
        return
    follower = process.LogFollower(path, lambda ln: (sys.stdout.write(ln + "\n"), sys.stdout.flush()),
                                   from_start=False)
    try:
        while True:
            follower.poll()
            time.sleep(0.2)
    except KeyboardInterrupt:
        follower.poll(final=True)
        raise typer.Exit(130) from None


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("logs")(logs)

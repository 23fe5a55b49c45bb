"""Which config file and which server a rollout command is about: a server record, or flags.

A server started by `mlserve serve` left a record (runtime, ports, model config file); the
rollout edits that file and applies it on that server. `--config FILE --grpc-server ADDR` name
any TF Serving-compatible server started elsewhere.
"""
from __future__ import annotations

from pathlib import Path

from mlserve import settings
from mlserve.errors import NotFoundError, UsageError
from mlserve.rollout.actions import Target
from mlserve.workspace import Workspace


def _docker_view(model: str, host_path: str) -> str:
    # The Docker runtime mounts each model of a config file at /models/<name> in the container.
    return f"/models/{model}"


def history_file(*, server: str | None, config_file: Path | None, model: str | None) -> Path:
    """The config file whose history to show: as `resolve` finds it, else the model's managed one
    (the history outlives the server)."""
    from mlserve.rollout import managed

    try:
        return resolve(server=server, config_file=config_file, grpc_server="127.0.0.1:0").config_file
    except NotFoundError:
        if server is not None or config_file is not None:
            raise
        path = managed.config_path(Workspace.current().root, model or settings.get("model_name"))
        if path.exists():
            return path
        raise


def resolve(*, server: str | None = None, config_file: Path | None = None,
            grpc_server: str | None = None, workspace: Workspace | None = None) -> Target:
    """The target: the explicit config file (and --grpc-server), else the named/only server's record."""
    if config_file is not None:
        path = Path(config_file).expanduser().resolve()
        if not path.is_file():
            raise NotFoundError(f"model config file {path} does not exist",
                                hint="give the file the server was started with (--model_config_file)")
        return Target(path, settings.get("grpc_server", grpc_server))
    from mlserve.runtimes import lifecycle, records

    workspace = workspace or Workspace.current()
    name = server or lifecycle.only_server(workspace)
    if name is None:
        raise NotFoundError("no server is running",
                            hint="start one (`mlserve serve --detach`), or pass --config FILE --grpc-server "
                                 "ADDR for a server started elsewhere")
    record = records.load(workspace, name)
    if not record.model_config_file:
        raise UsageError(
            f"server {name!r} was started without a model config file, so its labels cannot change",
            hint="restart it with `mlserve serve --model-config-file FILE`, or pass --config FILE "
                 "--grpc-server ADDR for a server started elsewhere")
    host = "127.0.0.1" if record.host in ("0.0.0.0", "", "::") else record.host
    address = grpc_server or f"{host}:{record.grpc_port}"
    return Target(Path(record.model_config_file), address, server=name, runtime=record.runtime,
                  base_path_for=_docker_view if record.runtime == "docker" else None)


def single_model(config_file: Path) -> str:
    """The model MODEL defaults to: the file's only model, else MLSERVE_MODEL_NAME's if listed."""
    from mlserve.rollout import configfile

    names = configfile.model_names(configfile.parse(config_file.read_text(), str(config_file)))
    if len(names) == 1:
        return names[0]
    if settings.get("model_name") in names:
        return settings.get("model_name")
    raise UsageError(f"{config_file} lists several models: {', '.join(names)}",
                     hint="name the model, e.g. `mlserve promote " + (names[0] if names else "MODEL") + " 2`")


def labels_by_version(model: str, workspace: Workspace | None = None) -> dict[int, list[str]]:
    """version -> the labels pointing at it, from the config file of a recorded server of `model`."""
    from mlserve.errors import MlserveError
    from mlserve.rollout import configfile
    from mlserve.runtimes import records

    from mlserve.rollout import managed

    workspace = workspace or Workspace.current()
    found, _ = records.list_all(workspace)
    paths = [Path(r.model_config_file) for r in found if r.model_config_file]
    paths.append(managed.config_path(workspace.root, model))  # no server running: its managed file
    for path in paths:
        try:
            proto = configfile.parse(path.read_text(), str(path))
            labels = configfile.model_state(proto, model, str(path)).labels
        except (OSError, MlserveError):
            continue
        by_version: dict[int, list[str]] = {}
        for label, version in sorted(labels.items()):
            by_version.setdefault(version, []).append(label)
        return by_version
    return {}

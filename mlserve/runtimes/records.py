"""Server records: one JSON file per running server in the workspace's servers/ folder.

A record says what was started (runtime, pid or container, ports, host, models, base path, log,
command, start time) so `mlserve status`, `stop` and `logs` can find it from another shell. A
record is a claim, never trusted: status checks it against the live process and drops stale ones.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import ConflictError, DataError, NotFoundError, UsageError
from mlserve.workspace import Workspace

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_name(name: str) -> str:
    """Server names become file and container names: keep them to letters, digits, `_.-`."""
    if not _NAME.match(name):
        raise UsageError(f"invalid server name {name!r}",
                         hint="use letters, digits, '_', '.' and '-' (e.g. --name digits)")
    return name


@dataclass
class ServerRecord:
    name: str
    runtime: str
    pid: int
    host: str
    grpc_port: int
    rest_port: int
    models: list[str]
    model_base_path: str | None
    model_config_file: str | None
    log_path: str
    command: list[str]
    started: str  # ISO 8601, UTC
    container: str | None = None
    detached: bool = True
    gpu: bool = False
    # How the live process looked once ready: a recycled pid never matches both.
    proc_cmdline: list[str] | None = None
    proc_start_ticks: int | None = None
    mlserve_pid: int | None = None  # the foreground mlserve that owns it (None when detached)
    files: list[str] = field(default_factory=list)  # written for this server; removed at its stop
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _path(workspace: Workspace, name: str) -> Path:
    return workspace.servers_dir / f"{check_name(name)}.json"


def save(workspace: Workspace, record: ServerRecord) -> Path:
    """Write the record atomically (a reader never sees half a file)."""
    path = _path(workspace, record.name)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.as_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def claim(workspace: Workspace, record: ServerRecord) -> Path:
    """Write the record only if no record of that name exists (atomic: of two starts racing for
    one name, exactly one gets it). Later updates of the claimed record go through `save`."""
    path = _path(workspace, record.name)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record.as_dict(), indent=2) + "\n")
    try:
        os.link(tmp, path)  # fails if the name is taken, unlike os.replace
    except FileExistsError:
        raise ConflictError(f"a server named {record.name!r} is already starting or running",
                            hint=f"`mlserve status` lists it; stop it (`mlserve stop {record.name}`) "
                                 "or pick another --name") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(workspace: Workspace, name: str) -> ServerRecord:
    path = _path(workspace, name)
    if not path.exists():
        raise NotFoundError(f"no server named {name!r} is recorded in {workspace.servers_dir}",
                            hint="`mlserve status` lists the running servers")
    return _read(path)


def _read(path: Path) -> ServerRecord:
    try:
        data = json.loads(path.read_text())
        known = {k: v for k, v in data.items() if k in ServerRecord.__dataclass_fields__}
        return ServerRecord(**known)
    except (OSError, ValueError, TypeError) as e:
        raise DataError(f"unreadable server record {path}: {e}",
                        hint=f"delete it: rm {path}") from e


def list_all(workspace: Workspace) -> tuple[list[ServerRecord], list[Path]]:
    """Every readable record (sorted by name), and the paths of unreadable ones."""
    records, broken = [], []
    for path in sorted(workspace.servers_dir.glob("*.json")):
        try:
            records.append(_read(path))
        except DataError:
            broken.append(path)
    return records, broken


def remove(workspace: Workspace, name: str, pid: int | None = None) -> None:
    """Delete the record, and the files written for its server. With `pid`: only when the
    record is still that server's (a racing start of the same name may own it now)."""
    path = _path(workspace, name)
    try:
        record = _read(path)
    except (DataError, FileNotFoundError):
        record = None
    if pid is not None and (record is None or record.pid != pid):
        return
    for extra in record.files if record else []:
        Path(extra).unlink(missing_ok=True)
    path.unlink(missing_ok=True)

"""The model config file a rollout edits: read one model's labels and policy, write changes safely.

Writes are atomic (a temporary file, then `os.replace`) and keep the previous text as
`<file>.bak`. Only the edited model's `model_version_policy` and `version_labels` are rewritten;
every other entry, comment and line stays as the user wrote it. A lock (`<file>.lock`, an
exclusive `flock` that the kernel drops when its holder dies) makes concurrent commands on one
file take turns: the second fails at once with `RolloutLockedError`, never waits or overwrites.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from mlserve.errors import ConflictError, DataError, NotFoundError
from mlserve.rollout import textproto


class RolloutLockedError(ConflictError):
    """Another rollout command holds the config file's lock."""


@dataclass(frozen=True)
class ModelState:
    """One model's entry as the file says: where, which versions to keep, which labels."""

    name: str
    base_path: str
    policy_kind: str  # "latest" | "all" | "specific"
    policy_versions: tuple[int, ...] = ()  # specific: the versions; latest: () and num_versions
    num_versions: int = 1
    labels: dict[str, int] = field(default_factory=dict)

    def on_disk(self) -> list[int]:
        """Version folders under base_path that hold a SavedModel."""
        base = Path(self.base_path)
        try:
            return sorted(int(p.name) for p in base.iterdir()
                          if p.name.isdigit() and (p / "saved_model.pb").is_file())
        except OSError:
            return []


def parse(text: str, source: str) -> Any:
    """The ModelServerConfig proto of `text` (DataError when TF Serving would reject its syntax)."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    proto = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as e:
        raise DataError(f"model config file {source} does not parse: {e}",
                        hint="fix the file (the last good text is in its .bak), then retry") from e
    return proto


def model_state(proto: Any, model: str, source: str) -> ModelState:
    names = [c.name for c in proto.model_config_list.config]
    for c in proto.model_config_list.config:
        if c.name == model:
            choice = c.model_version_policy.WhichOneof("policy_choice") or "latest"
            base = Path(c.base_path)
            if not base.is_absolute():  # relative paths: against the config file's folder is
                base = Path(source).parent / base  # a guess; TF Serving uses its own cwd
            return ModelState(
                name=c.name, base_path=str(base), policy_kind=choice,
                policy_versions=tuple(c.model_version_policy.specific.versions) if choice == "specific" else (),
                num_versions=c.model_version_policy.latest.num_versions or 1,
                labels=dict(c.version_labels))
    raise NotFoundError(f"model {model!r} is not in the model config file {source}",
                        hint="it lists: " + (", ".join(names) or "no model"))


def model_names(proto: Any) -> list[str]:
    return [c.name for c in proto.model_config_list.config]


def render(text: str, source: str, model: str, versions: list[int], labels: dict[str, int]) -> str:
    """`text` with `model`'s policy set to `specific {versions}` and its labels to `labels`.

    The edit is checked: the new text must parse to exactly the intended config. If the text's
    layout defeats the in-place edit, the whole file is printed from the proto instead (its
    comments are then lost, which is what the text format allows).
    """
    from google.protobuf import text_format

    intended = parse(text, source)
    for c in intended.model_config_list.config:
        if c.name == model:
            c.model_version_policy.Clear()
            c.model_version_policy.specific.versions.extend(sorted(versions))
            c.ClearField("version_labels")
            for label, version in labels.items():
                c.version_labels[label] = version
    try:
        edited = textproto.replace_model_fields(text, model, textproto.specific_policy(versions), labels)
        if parse(edited, source) == intended:
            return edited
    except DataError:
        pass
    return text_format.MessageToString(intended)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def read_optional(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def write(path: Path, text: str) -> None:
    """Replace the file's text atomically (a reader sees the old text or the new, never half)."""
    try:
        _atomic_write(path, text)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e}",
                        hint="the folder of the model config file must be writable by this user") from e


def put_back(path: Path, text: str | None) -> None:
    """Restore a file's earlier text (None: it did not exist)."""
    if text is None:
        path.unlink(missing_ok=True)
    else:
        _atomic_write(path, text)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    try:
        mode = path.stat().st_mode & 0o777
        os.chmod(tmp, mode)
    except OSError:
        pass
    os.replace(tmp, path)


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold the config file's lock while a change runs; RolloutLockedError if someone else does."""
    lock = lock_path(path)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DataError(f"cannot create the lock file {lock}: {e}",
                        hint="the folder of the model config file must be writable by this user") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(lock)
            raise RolloutLockedError(
                f"another rollout command is changing {path}"
                + (f": {holder['what']} (pid {holder['pid']} on {holder['host']}, since {holder['since']})"
                   if holder else ""),
                hint="wait for it to finish, check the result with `mlserve history`, then retry") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _holder(lock: Path) -> dict[str, Any] | None:
    for _ in range(5):  # the holder writes its line right after it locks
        try:
            data = json.loads(lock.read_text() or "null")
            if data:
                return data
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return None

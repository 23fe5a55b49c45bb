"""The rollout history: every label move, one JSON line each, next to the config file it changed.

`<config file>.history.jsonl` holds, per move: time (UTC), model, label, from, to, action
(promote, canary, rollback), who decided (the user, or the gate that passed) and the accuracies
the gate measured. It is appended only after the server took the change, so a refused or failed
command leaves it as it was. `rollback` reads it to find where `stable` pointed before.
"""
from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import DataError


@dataclass(frozen=True)
class Move:
    model: str
    label: str
    from_version: int | None
    to_version: int
    action: str  # "promote" | "canary" | "rollback"
    by: str  # "alice@host" or "alice@host, gate: ..." or "... (forced past the gate)"
    accuracy: dict[str, Any] | None = None  # {"n", "to", "from", "max_drop", "passed"}
    time: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc)
                      .isoformat(timespec="milliseconds"))

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["from"], d["to"] = d.pop("from_version"), d.pop("to_version")
        return {k: d[k] for k in ("time", "model", "label", "from", "to", "action", "by", "accuracy")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Move":
        return cls(model=d["model"], label=d["label"], from_version=d.get("from"), to_version=d["to"],
                   action=d.get("action", "promote"), by=d.get("by", ""), accuracy=d.get("accuracy"),
                   time=d.get("time", ""))


def who() -> str:
    """The user and host a command ran as (the 'who' of a history line)."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def history_path(config_file: Path) -> Path:
    return config_file.with_name(config_file.name + ".history.jsonl")


def append(config_file: Path, moves: list[Move]) -> None:
    """Append moves as JSON lines (one write, flushed to disk)."""
    if not moves:
        return
    data = "".join(json.dumps(m.as_dict()) + "\n" for m in moves)
    with open(history_path(config_file), "a") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read(config_file: Path, model: str | None = None) -> list[Move]:
    """Every recorded move (oldest first), of one model when `model` is given."""
    path = history_path(config_file)
    if not path.exists():
        return []
    moves = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            move = Move.from_dict(json.loads(line))
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"history {path} line {n} is not a move: {e}",
                            hint=f"fix or delete that line of {path}") from e
        if model is None or move.model == model:
            moves.append(move)
    return moves


def previous_stable(moves: list[Move], label: str = "stable") -> int | None:
    """Where `label` pointed before its current version: promotes push, rollbacks pop."""
    stack: list[int | None] = []
    for m in moves:
        if m.label != label:
            continue
        if m.action == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(m.from_version)
    return stack[-1] if stack else None

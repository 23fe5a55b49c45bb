"""Saved open-loop sweeps (`bench --rate ... --save FILE`), read back to draw several on one chart.

A saved sweep is the `bench --rate --json` document plus a label and a format tag, written
atomically; `load_sweep` checks it is one before anything is drawn.

    save_sweep("sweeps/adaptive.json", document, label="adaptive")
    sweep = load_sweep("sweeps/adaptive.json")
    sweep.label, sweep.levels[0]["p99_ms"]
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlserve.errors import DataError, NotFoundError

FORMAT = "mlserve-bench-sweep/1"


@dataclass
class Sweep:
    """One saved sweep: its label, its levels (RateLevel.as_dict() rows) and the whole document."""

    label: str
    levels: list[dict[str, Any]]
    document: dict[str, Any]
    path: Path | None = None


def save_sweep(path: str | os.PathLike, document: dict[str, Any], *, label: str | None = None) -> Path:
    """Write `document` (the `--json` one) with `label` (default: the file's stem); returns the path."""
    path = Path(path)
    saved = {"format": FORMAT, "label": label or path.stem, **document}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(saved, indent=1) + "\n")
    os.replace(partial, path)
    return path


def load_sweep(path: str | os.PathLike) -> Sweep:
    """A sweep saved by `save_sweep`; NotFoundError when missing, DataError when not one."""
    path = Path(path)
    hint = "save one with `mlserve bench --rate 100,200 --save FILE`"
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise NotFoundError(f"no saved sweep at {path}", hint=hint) from e
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path} is not a saved sweep: {e}", hint=hint) from e
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise DataError(f"{path} is not a saved sweep (no \"format\": \"{FORMAT}\")", hint=hint)
    levels = document.get("levels")
    if not isinstance(levels, list) or not all(
            isinstance(lv, dict) and isinstance(lv.get("rate"), (int, float)) for lv in levels):
        raise DataError(f"{path}: \"levels\" must be a list of rate levels", hint=hint)
    return Sweep(str(document.get("label") or path.stem), levels, document, path)


def objective_held(level: dict[str, Any], objective_ms: float) -> bool:
    """Did a level keep p99 within the objective, answering every request it scheduled?"""
    p99 = level.get("p99_ms")
    return (p99 is not None and p99 <= objective_ms and not level.get("errors")
            and not level.get("drops"))

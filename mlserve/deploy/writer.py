"""The output folder, written whole or not at all: a temporary sibling folder, then a rename."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from mlserve.atomic import replace_folder
from mlserve.errors import ConflictError, UsageError


def check_out(out: Path, force: bool) -> Path:
    """Refuse a non-empty --out unless --force (before any work is done)."""
    out = Path(out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise ConflictError(f"--out {out} is a file", hint="give a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConflictError(f"--out {out} is not empty",
                            hint="give an empty or new folder, or --force to replace its contents")
    return out


def write_folder(out: Path, texts: dict[str, str], trees: dict[str, Path] | None = None,
                 *, force: bool = False) -> list[Path]:
    """Write `texts` (relative path -> text) and copy `trees` (relative path -> folder) into `out`.

    Everything goes to `.<out>.tmp-<random>` beside `out` first; only a complete folder is renamed
    into place (an existing one is swapped out and removed with --force). Returns the files written.
    """
    out = check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{secrets.token_hex(4)}")
    try:
        tmp.mkdir()
        for rel, text in texts.items():
            path = _inside(tmp, rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for rel, source in (trees or {}).items():
            target = _inside(tmp, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())


def _inside(root: Path, rel: str) -> Path:
    path = (root / rel).resolve()
    if root.resolve() not in path.parents:
        raise UsageError(f"refusing to write {rel!r} outside the output folder")
    return path


def _swap(tmp: Path, out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(tmp, out)
        return
    replace_folder(tmp, out)

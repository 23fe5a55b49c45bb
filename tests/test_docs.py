"""Docs are tested: every command has a page, and every `mlserve ...` line in the docs parses.

Parsing (not running) each documented command line checks that every option a page shows exists
and takes the value shown; the examples/ scripts, which really run, are tested elsewhere.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from mlserve.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
GROUP = typer.main.get_group(app)


def _command_paths() -> list[list[str]]:
    paths = []
    for name, command in GROUP.commands.items():
        subs = getattr(command, "commands", None)
        if subs:
            paths.extend([name, sub] for sub in subs)
        else:
            paths.append([name])
    return paths


def _documented_lines() -> list[tuple[str, str]]:
    lines = []
    for page in DOCS:
        for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", page.read_text(), re.S):
            for line in block.splitlines():
                line = line.split(" #", 1)[0].strip().removeprefix("$ ")
                if line.startswith("mlserve ") or " mlserve " in line:
                    command = line[line.index("mlserve "):].split("|")[0].split("&&")[0].strip()
                    lines.append((page.name, command))
    return lines


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_command_is_documented(path: list[str]) -> None:
    text = "\n".join(page.read_text() for page in DOCS)
    assert re.search(rf"^#+ .*`mlserve {' '.join(path)}", text, re.M), (
        f"no docs heading names `mlserve {' '.join(path)}`"
    )


@pytest.mark.parametrize("page,line", _documented_lines(), ids=lambda v: v if isinstance(v, str) else "")
def test_documented_command_lines_parse(page: str, line: str) -> None:
    args = shlex.split(line)[1:]
    command, name = GROUP, "mlserve"
    while args and getattr(command, "commands", None) and args[0] in command.commands:
        name, command, args = args[0], command.commands[args[0]], args[1:]
    assert not getattr(command, "commands", None), f"{page}: no such command in {line!r}"
    command.make_context(name, args)  # raises on an unknown option or a bad value

"""Docs are tested: every command has a page, every `mlserve ...` line parses, every snippet runs.

`test_snippet_runs` executes every fenced ```python and ```bash block of docs/*.md and README.md,
page by page and in page order, as a reader would: in one scratch folder, one workspace
(MLSERVE_HOME), against an embedded server on ephemeral ports. The page's ports 8501/8500 are
replaced by those ports and the MLSERVE_* variables point at them, so a page reads as a user would
type it. Each Python block runs in a fresh interpreter: a snippet must be self-contained.

A block that cannot run here is marked in the page, on the line just before its fence:

    <!-- not-run: needs Docker -->

and is reported as skipped with that reason. Pages that start no server of their own find one
running (started with `mlserve serve --detach`, after training and exporting a model when the
workspace has none); getting-started.md runs first since it builds the workspace the others use.
"""
from __future__ import annotations

import re
import shlex

import pytest
import typer.main

from mlserve.cli.app import app
from support.docs import MARKER, Block, DocsWorld, page_blocks
from support.paths import ROOT

# Reading order: getting-started builds the workspace, the train/export/serve/predict pages follow
# the workflow (export.md uses the model train.md saved); pages not listed come after, then README.
ORDER = ["getting-started.md", "train.md", "data.md", "export.md", "serve.md", "predict.md",
         "server-rest.md", "bench.md", "configuration.md", "exit-codes.md", "server-install.md",
         "benchmarks.md", "architecture.md"]
PAGES = sorted((ROOT / "docs").glob("*.md"),
               key=lambda p: (ORDER.index(p.name) if p.name in ORDER else len(ORDER), p.name))
PAGES.append(ROOT / "README.md")
DOCS = PAGES
GROUP = typer.main.get_group(app)
ALL_BLOCKS = [block for page in PAGES for block in page_blocks(page)]


# -- parsing: every command documented, every documented command line valid -------------------------

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
                    command = line[line.index("mlserve "):]
                    for end in ("|", "&&", ">", "<", ";"):
                        command = command.split(end)[0]
                    lines.append((page.name, command.strip()))
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
    while args and args[0] == "--verbose":  # the one root option a page shows before a command
        args = args[1:]
    command, name = GROUP, "mlserve"
    while args and getattr(command, "commands", None) and args[0] in command.commands:
        name, command, args = args[0], command.commands[args[0]], args[1:]
    assert not getattr(command, "commands", None), f"{page}: no such command in {line!r}"
    command.make_context(name, args)  # raises on an unknown option or a bad value


def test_markers_are_found() -> None:
    """The marker syntax works: every marked block is known, so a typo in a marker is not silent."""
    for page in PAGES:
        marked = len(MARKER.findall(page.read_text()))
        assert marked == sum(1 for b in page_blocks(page) if b.skip), f"{page.name}: a stray not-run marker"


# -- running: every snippet, in page order, against a live embedded server --------------------------

@pytest.fixture(scope="module")
def docs_world(tmp_path_factory: pytest.TempPathFactory):
    world = DocsWorld(tmp_path_factory.mktemp("docs"))
    yield world
    world.stop_all()
    leftovers = world.kill_leftovers()
    assert not leftovers, f"servers outlived `mlserve stop --all` (pids {leftovers}; stopped now)"


# Pages that start (and stop) their own server, from a clean slate; every other page finds one running.
OWN_SERVER = {"getting-started.md", "README.md"}
# What an unmarked block must never do on a developer's machine or a CI runner: change the system.
UNSAFE = re.compile(r"(^|[;&|(]\s*)(sudo|apt-get|apt|docker|kubectl|make)\b"
                    r"|server install(?![^\n]*--dry-run)|--apply\b", re.M)


@pytest.mark.slow
@pytest.mark.parametrize("block", ALL_BLOCKS, ids=lambda b: b.id)
def test_snippet_runs(block: Block, docs_world: DocsWorld) -> None:
    if block.page in OWN_SERVER and block.number == 1:
        docs_world.stop_all()  # the page starts its own server, as on a fresh machine
    if block.skip:
        pytest.skip(f"marked not-run in {block.page}: {block.skip}")
    unsafe = block.language == "bash" and UNSAFE.search(
        "\n".join(line.split("#", 1)[0] for line in block.code.splitlines()))
    assert not unsafe, (f"{block.id} runs {unsafe.group(0)!r}: mark it "
                        "<!-- not-run: reason --> on the line before its fence")
    if block.page not in OWN_SERVER:
        docs_world.ensure_server()
    proc = docs_world.run(block.code, block.language)
    assert proc.returncode == 0, (
        f"{block.page} line {block.line} ({block.language}) exited {proc.returncode}\n"
        f"--- block ---\n{block.code}--- stdout (tail) ---\n{proc.stdout[-2000:]}\n"
        f"--- stderr (tail) ---\n{proc.stderr[-3000:]}"
    )

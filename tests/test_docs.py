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

import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer.main

from mlserve.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
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
BLOCK_TIMEOUT_S = 240  # a training run of 5 epochs on the sample, or a short bench, fits easily
MARKER = re.compile(r"<!--\s*not-run:\s*(.*?)\s*-->")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    page: str
    number: int  # 1-based, among the runnable-language blocks of the page
    line: int
    language: str  # "python" or "bash"
    code: str
    skip: str | None  # the not-run reason, when the page marks the block

    @property
    def id(self) -> str:
        return f"{self.page}:{self.number}:L{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """The ```python / ```bash / ```sh blocks of a page, in order, with their not-run markers."""
    text = page.read_text()
    blocks: list[Block] = []
    for match in FENCE.finditer(text):
        language = {"sh": "bash", "shell": "bash"}.get(match.group(1), match.group(1))
        if language not in ("python", "bash"):
            continue
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        blocks.append(Block(page.name, len(blocks) + 1, text.count("\n", 0, match.start()) + 1,
                            language, match.group(2), marker.group(1) if marker else None))
    return blocks


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

class DocsWorld:
    """The scratch folder, workspace, ports and environment every snippet runs in."""

    def __init__(self, root: Path) -> None:
        from support.ports import free_port

        self.cwd = root / "reader"
        self.cwd.mkdir()
        self.home = root / "mlserve-home"
        self.rest, self.grpc = free_port(), free_port()
        bin_dir = str(Path(sys.executable).parent)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MLSERVE_")},
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HOME": str(root),  # `~` in a page is the scratch home, not the developer's
            "KERAS_HOME": str(root / "keras"),
            "MLSERVE_HOME": str(self.home),
            "MLSERVE_DATA": "sample",  # offline and fast, wherever the suite runs
            "MLSERVE_RUNTIME": "embedded",
            "MLSERVE_REST_PORT": str(self.rest),
            "MLSERVE_GRPC_PORT": str(self.grpc),
            "MLSERVE_URL": f"http://127.0.0.1:{self.rest}",
            "MLSERVE_GRPC_SERVER": f"127.0.0.1:{self.grpc}",
            "COLUMNS": "80",
        }

    def localize(self, code: str) -> str:
        """The page's default ports become this world's (8501 REST, 8500 gRPC)."""
        code = re.sub(r"(?<=[:=])8501\b", str(self.rest), code)
        return re.sub(r"(?<=[:=])8500\b", str(self.grpc), code)

    def run(self, code: str, language: str) -> subprocess.CompletedProcess:
        if language == "python":
            argv = [sys.executable, "-"]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-s"]
        return subprocess.run(argv, input=self.localize(code), cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)

    def mlserve(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mlserve", *args], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)

    def server_answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.rest}/v1/models/digits_model",
                                        timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def ensure_server(self) -> None:
        """A server for pages that start none: train and export a model first if there is none."""
        if self.server_answers():
            return
        base = self.home / "models" / "digits_model"
        if not (base.is_dir() and any(p.name.isdigit() for p in base.iterdir())):
            for args in (("train", "--epochs", "1", "--seed", "1"), ("export",)):
                proc = self.mlserve(*args)
                assert proc.returncode == 0, proc.stderr[-2000:]
        proc = self.mlserve("serve", "--detach")
        assert proc.returncode == 0, proc.stderr[-2000:]
        deadline = time.monotonic() + 30
        while not self.server_answers():
            assert time.monotonic() < deadline, "the docs' server does not answer"
            time.sleep(0.2)

    def stop_all(self) -> None:
        self.mlserve("stop", "--all")

    def kill_leftovers(self) -> list[int]:
        """SIGTERM any process still serving this world's workspace (a server whose record a
        snippet removed); returns their pids. Linux only: elsewhere `stop --all` must do."""
        import signal

        leftovers = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(str(self.home).encode() in arg for arg in argv) and int(proc.name) != os.getpid():
                leftovers.append(int(proc.name))
                try:
                    os.kill(int(proc.name), signal.SIGTERM)
                except OSError:
                    pass
        return leftovers


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

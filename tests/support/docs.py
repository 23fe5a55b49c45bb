"""The docs' code blocks and the world they run in (tests/test_docs.py, and the feature-lookup
page's own test): a page's runnable blocks with their not-run markers, and `DocsWorld`, the scratch
folder, workspace, ports and environment every snippet runs in."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support.paths import ROOT

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

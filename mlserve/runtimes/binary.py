"""The `tensorflow_model_server` binary (TF Serving's apt package, or one built from source)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from mlserve import settings
from mlserve.runtimes.base import Launch, Runtime, ServeOptions, tfs_flags
from mlserve.workspace import Workspace


def find_binary() -> str | None:
    """The executable named by MLSERVE_TFS_BINARY / settings `tfs_binary` (a name on PATH or a path)."""
    name = str(settings.get("tfs_binary"))
    if os.sep in name:
        path = Path(name).expanduser()
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(name)


def binary_version(path: str, timeout: float = 10.0) -> str | None:
    """The first line of `tensorflow_model_server --version` (None if it does not answer)."""
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [ln.strip() for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else None


class BinaryRuntime(Runtime):
    name = "binary"

    def available(self) -> tuple[bool, str]:
        path = find_binary()
        if path:
            return True, f"{path} is installed"
        return False, f"{settings.get('tfs_binary')} is not on PATH (see `mlserve server install`)"

    def bind_host(self, host: str) -> str:
        return "0.0.0.0"  # TF Serving has no bind-address flag: it listens on every interface

    def launch(self, options: ServeOptions, workspace: Workspace) -> Launch:
        path = find_binary() or str(settings.get("tfs_binary"))
        notes = []
        if options.host not in ("0.0.0.0", "::"):
            # TF Serving has no bind-address flag: both ports listen on every interface.
            notes.append(f"tensorflow_model_server listens on all interfaces (it has no address "
                         f"flag); --host {options.host} applies to the docker and embedded runtimes")
        if options.gpu:
            notes.append("the apt tensorflow_model_server is a CPU build; it uses the GPU only if "
                         "it was built with CUDA (else use --runtime docker --gpu)")
        return Launch(argv=[path, *tfs_flags(options)], notes=notes)

    def describe(self) -> dict[str, object]:
        path = find_binary()
        return {"runtime": self.name, "available": path is not None, "path": path,
                "version": binary_version(path) if path else None,
                "detail": self.available()[1]}

"""mlserve's embedded model server (`python -m mlserve.server`): always here, takes TF Serving's flags."""
from __future__ import annotations

import importlib.metadata
import sys

from mlserve.runtimes.base import Launch, Runtime, ServeOptions, tfs_flags
from mlserve.workspace import Workspace


def tensorflow_version() -> str | None:
    try:
        return importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        return None


class EmbeddedRuntime(Runtime):
    name = "embedded"

    def available(self) -> tuple[bool, str]:
        tf = tensorflow_version()
        if tf is None:
            return False, "TensorFlow is not installed (pip install tensorflow)"
        return True, f"mlserve's embedded server on TensorFlow {tf}"

    def launch(self, options: ServeOptions, workspace: Workspace) -> Launch:
        argv = [sys.executable, "-m", "mlserve.server", *tfs_flags(options), f"--host={options.host}"]
        env: dict[str, str] = {}
        notes: list[str] = []
        if not options.gpu:
            # Match the other runtimes: a GPU serves only when asked for (TF would grab it otherwise).
            env["CUDA_VISIBLE_DEVICES"] = ""
        else:
            notes.append("the embedded server runs TensorFlow with the GPU visible: TensorFlow "
                         "places the model on GPU:0 (the server log names the device)")
        return Launch(argv=argv, env=env, notes=notes)

    def describe(self) -> dict[str, object]:
        ok, why = self.available()
        return {"runtime": self.name, "available": ok, "detail": why,
                "python": sys.executable, "tensorflow": tensorflow_version()}

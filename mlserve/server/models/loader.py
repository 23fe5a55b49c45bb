"""Loading one model version: load, warm up, and retry a failed load (TF Serving's LoaderHarness).

The manager decides *which* versions to load and keeps their states; this module only turns a
version folder into a `Servable`. The warm-up replay is part of the load, as in TF Serving: a
version whose warm-up fails never becomes AVAILABLE. A failed attempt is retried
`max_num_load_retries` times, `load_retry_interval_s` apart, unless the caller gives up meanwhile
(the server stops, or the model leaves the config); the last failure is raised as a `LoadError`
carrying the canonical error code that `status()` reports.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mlserve.server.errors import ServingError
from mlserve.server.servables.savedmodel import Servable
from mlserve.server.servables.tflite import TFLiteOptions, load_servable

log = logging.getLogger("mlserve.server")


@dataclass(frozen=True)
class LoadOptions:
    """How every version is loaded (the server's load flags)."""
    tags: Sequence[str] = ("serve",)
    tflite: TFLiteOptions | None = None
    enable_warmup: bool = True
    warmup_iterations: int = 0
    max_num_load_retries: int = 0
    load_retry_interval_s: float = 0.0


class LoadError(Exception):
    """A version failed to load (after its retries); `code` and `message` go into its status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def sid(name: str, version: int) -> str:
    """A servable's id as TF Serving writes it in its logs."""
    return f"{{name: {name} version: {version}}}"


def error_status(e: BaseException) -> tuple[str, str]:
    """The canonical (code, message) a load failure is reported with."""
    if isinstance(e, ServingError):
        return (e.code if e.code != "OK" else "UNKNOWN"), e.message
    msg = f"{type(e).__name__}: {e}".strip()
    if isinstance(e, FileNotFoundError):
        return "NOT_FOUND", msg
    if isinstance(e, (OSError, ValueError)):
        return "INVALID_ARGUMENT", msg
    return "UNKNOWN", msg


def load_once(name: str, version: int, path: Path, options: LoadOptions) -> Servable:
    """Load one version and replay its warm-up (both are the load, as in TF Serving)."""
    servable = load_servable(name, version, path, tags=tuple(options.tags), tflite=options.tflite)
    if options.enable_warmup:
        t0 = time.perf_counter()
        n = servable.warmup(options.warmup_iterations or 1)
        if n:
            log.info("Finished reading warmup data for model at %s. Number of warmup records read: "
                     "%d. Elapsed time (microseconds): %d.", path / "assets.extra" /
                     "tf_serving_warmup_requests", n, (time.perf_counter() - t0) * 1e6)
    return servable


def load_with_retries(name: str, version: int, path: Path, options: LoadOptions,
                      give_up: Callable[[float], bool]) -> Servable:
    """Load a version, retrying a failure; `give_up(seconds)` waits up to that long before a
    retry and returns True to stop retrying. Raises LoadError with the last failure."""
    attempt = 0
    while True:
        try:
            return load_once(name, version, path, options)
        except Exception as e:  # any load failure is reported in status, never fatal
            code, msg = error_status(e)
            log.error("Loading servable: %s failed: %s", sid(name, version), msg)
            if attempt >= options.max_num_load_retries or give_up(options.load_retry_interval_s):
                raise LoadError(code, msg) from e
            attempt += 1
            log.info("Retrying of Loading servable: %s retry: %d", sid(name, version), attempt)

"""TF Serving's batching parameters (`--batching_parameters_file`, a BatchingParameters proto in
text format) and mlserve's batching policy, parsed and checked once for the `Batcher`.

    options = BatchingOptions.from_file(path, policy="adaptive", latency_objective_ms=10)

Without a file the defaults are TF Serving's: max_batch_size 1000, batch_timeout_micros 0,
max_enqueued_batches 10, num_batch_threads = number of CPUs. A field TF Serving has but mlserve
does not use (enable_large_batch_splitting, max_execution_batch_size) is accepted and ignored; an
unknown field is a UsageError.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlserve.errors import UsageError

POLICIES = ("fixed", "adaptive")


@dataclass
class BatchingOptions:
    """TF Serving's BatchingParameters (session_bundle_config.proto), with its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    # mlserve extension (servables/adaptive.py): "fixed" (TF Serving's) or "adaptive"
    policy: str = "fixed"
    latency_objective_ms: float = 0.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise UsageError(f"--batching_policy {self.policy!r}: choose {' or '.join(POLICIES)}",
                             hint="--batching_policy adaptive --latency_objective_ms 10")
        if self.policy == "adaptive" and not self.latency_objective_ms > 0:
            raise UsageError("--batching_policy adaptive needs --latency_objective_ms (a p99 in milliseconds)",
                             hint="--batching_policy adaptive --latency_objective_ms 10")
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise UsageError("batching parameters: max_batch_size, num_batch_threads and "
                             "max_enqueued_batches must be positive")
        sizes = tuple(self.allowed_batch_sizes)
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
                raise UsageError("batching parameters: allowed_batch_sizes must increase")
            if sizes[-1] != self.max_batch_size:
                raise UsageError(
                    "Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                    f"{sizes[-1]}; expected {self.max_batch_size}")
        self.allowed_batch_sizes = sizes

    @classmethod
    def parse(cls, text: str) -> "BatchingOptions":
        """Options from the text format of a BatchingParameters proto."""
        text = re.sub(r"#[^\n]*", "", text)
        values: dict[str, Any] = {}
        allowed: list[int] = []
        wrapped = re.compile(r"(\w+)\s*:?\s*\{\s*value\s*:\s*(\"[^\"]*\"|'[^']*'|[^\s}]+)\s*\}")
        for name, raw in wrapped.findall(text):
            values[name] = raw.strip("\"'")
        rest = wrapped.sub(" ", text)
        for name, raw in re.findall(r"(\w+)\s*:\s*(\[[^\]]*\]|\"[^\"]*\"|[^\s]+)", rest):
            if name == "allowed_batch_sizes":
                allowed += [int(v) for v in re.findall(r"\d+", raw)]
            else:
                values[name] = raw.strip("\"'")
        kwargs: dict[str, Any] = {}
        try:
            for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
                if name in values:
                    kwargs[name] = int(values.pop(name))
            if "thread_pool_name" in values:
                kwargs["thread_pool_name"] = values.pop("thread_pool_name")
            if "pad_variable_length_inputs" in values:
                kwargs["pad_variable_length_inputs"] = values.pop("pad_variable_length_inputs").lower() in ("true", "1")
        except ValueError as e:
            raise UsageError(f"batching parameters: {e}") from None
        for ignored in ("enable_large_batch_splitting", "max_execution_batch_size"):
            values.pop(ignored, None)
        if values:
            raise UsageError(f"batching parameters: unknown field(s): {', '.join(sorted(values))}")
        return cls(allowed_batch_sizes=tuple(allowed), **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, **extra: Any) -> "BatchingOptions":
        """TF Serving's defaults without a file, else the file's parameters; `extra` sets the
        mlserve fields (policy, latency_objective_ms)."""
        options = cls.parse(Path(path).read_text()) if path else cls()
        return dataclasses.replace(options, **extra) if extra else options

"""What a bench run measures and reports: the load plan (validated once, here), per-level
counters while the load runs, and the figures of each level."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from mlserve.errors import UsageError

MAX_DURATION_S = 600.0  # per level, also the time cap of a --requests run
MAX_REQUESTS = 1_000_000  # per level
MAX_CONCURRENCY = 1024
MAX_BATCH = 1024
MAX_WARMUP_S = 60.0
MAX_ERROR_MESSAGES = 5  # distinct first messages kept per level

Progress = Callable[[str, float, int], None]  # (phase, fraction done, requests done)


def parse_levels(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32] (the syntax only; LoadPlan checks the values)."""
    try:
        levels = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise UsageError(f"--concurrency takes comma-separated integers, got {text!r}",
                         hint="e.g. --concurrency 1,8,32") from None
    if not levels:
        raise UsageError("--concurrency names no level", hint="e.g. --concurrency 1,8,32")
    return levels


@dataclass(frozen=True)
class LoadPlan:
    """The bounds of a run, checked in one place: at construction."""

    levels: tuple[int, ...] = (1,)
    duration: float | None = 5.0  # seconds per level; None: --requests decides
    requests: int | None = None  # requests per level instead of a duration
    warmup: float = 1.0  # seconds of unmeasured load before each level
    batch_size: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        if self.duration is not None and self.requests is not None:
            raise UsageError("give --duration or --requests, not both")
        if self.duration is None and self.requests is None:
            raise UsageError("give --duration or --requests")
        if self.duration is not None and not 0 < self.duration <= MAX_DURATION_S:
            raise UsageError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, "
                             f"got {self.duration:g}")
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise UsageError(f"--requests must be between 1 and {MAX_REQUESTS}, got {self.requests}")
        if not 0 <= self.warmup <= MAX_WARMUP_S:
            raise UsageError(f"--warmup must be between 0 and {MAX_WARMUP_S:g} seconds, "
                             f"got {self.warmup:g}")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UsageError(f"--batch-size must be between 1 and {MAX_BATCH}, got {self.batch_size}")
        if not self.levels or any(not 1 <= c <= MAX_CONCURRENCY for c in self.levels):
            raise UsageError(f"concurrency levels must be between 1 and {MAX_CONCURRENCY}, "
                             f"got {','.join(map(str, self.levels))}")


@dataclass
class BenchLevel:
    """Figures of one concurrency level. Latencies are of successful requests only."""

    concurrency: int
    requests: int  # successful requests
    images: int
    errors: int
    error_messages: list[str]
    duration_s: float
    requests_per_s: float
    images_per_s: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    cost_per_million: float | None = None  # with a price per hour

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class BenchReport:
    transport: str
    address: str
    model: str
    batch_size: int
    warmup_s: float
    levels: list[BenchLevel] = field(default_factory=list)
    price_per_hour: float | None = None
    interrupted: bool = False  # Ctrl-C: `levels` holds the levels measured before it

    def as_dict(self) -> dict[str, object]:
        return {"transport": self.transport, "address": self.address, "model": self.model,
                "batch_size": self.batch_size, "warmup_s": self.warmup_s,
                "price_per_hour": self.price_per_hour, "interrupted": self.interrupted,
                "levels": [lv.as_dict() for lv in self.levels]}


def cost_per_million(price_per_hour: float, images_per_s: float) -> float | None:
    """What a million predictions cost on a machine billed `price_per_hour`, at `images_per_s`."""
    if images_per_s <= 0:
        return None
    return price_per_hour / (images_per_s * 3600.0) * 1_000_000


class LevelCounter:
    """Shared state of one level's workers: what may still be sent, and what came back."""

    def __init__(self, duration: float | None, requests: int | None) -> None:
        self.duration = min(duration, MAX_DURATION_S) if duration is not None else MAX_DURATION_S
        self.limit = min(requests, MAX_REQUESTS) if requests is not None else MAX_REQUESTS
        self.by_count = requests is not None
        self.issued = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.messages: list[str] = []
        self.begin()

    def begin(self) -> None:
        self.start = time.perf_counter()
        self.deadline = self.start + self.duration
        self.last_done = self.start

    def take(self) -> bool:
        """May a worker send one more request?"""
        if self.issued >= self.limit or time.perf_counter() >= self.deadline:
            return False
        self.issued += 1
        return True

    def ok(self, seconds: float) -> None:
        self.latencies.append(seconds)
        self.last_done = time.perf_counter()

    def fail(self, message: str) -> None:
        self.errors += 1
        self.last_done = time.perf_counter()
        message = " ".join(message.split())[:300]
        if len(self.messages) < MAX_ERROR_MESSAGES and message not in self.messages:
            self.messages.append(message)

    @property
    def done(self) -> int:
        return len(self.latencies) + self.errors

    def fraction(self) -> float:
        if self.by_count:
            return min(1.0, self.done / max(self.limit, 1))
        return min(1.0, (time.perf_counter() - self.start) / self.duration)

    def result(self, concurrency: int, batch_size: int, price: float | None) -> BenchLevel:
        elapsed = max(self.last_done - self.start, 1e-9)
        n = len(self.latencies)
        if n:
            ms = np.asarray(self.latencies) * 1000.0
            p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
            mx, mean = float(ms.max()), float(ms.mean())
        else:
            p50 = p90 = p99 = mx = mean = None
        images_per_s = n * batch_size / elapsed
        return BenchLevel(concurrency, n, n * batch_size, self.errors, list(self.messages),
                          round(elapsed, 4), n / elapsed, images_per_s, p50, p90, p99, mx, mean,
                          cost_per_million(price, images_per_s) if price is not None else None)

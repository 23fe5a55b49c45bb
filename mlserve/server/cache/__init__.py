"""`--prediction_cache_bytes` / `--prediction_cache redis://...` (mlserve extensions): predict
answers kept by what was asked, so a repeated input skips the model.

`PredictionCache` is what the data plane calls: `key(...)` before a predict, `get(key)` (a hit
skips the batcher and the model), `put(key, outputs)` after a computed answer. It holds one or two
tiers, each a module: `memory.MemoryTier` (an LRU bounded in bytes, in this process) and
`redis.RedisTier` (shared by replicas through a real Redis). With both, memory is asked first and
a Redis hit fills it. Keys are built in `keys.py`; Redis values are encoded by `codec.py`.
"""
from __future__ import annotations

import logging
from typing import Any, Protocol, Sequence

import numpy as np

from mlserve.server.cache.keys import request_key
from mlserve.server.observability import metrics

log = logging.getLogger("mlserve.server")

Outputs = dict  # dict[str, np.ndarray]


class Tier(Protocol):
    label: str  # "memory" or "redis://host:port/db"

    def get(self, key: bytes) -> Outputs | None: ...

    def put(self, key: bytes, outputs: Outputs) -> None: ...

    def close(self) -> None: ...


class PredictionCache:
    """Tiers asked in order; counts lookups by tier and result (hit, miss) in the metrics."""

    def __init__(self, tiers: Sequence[Tier]) -> None:
        self.tiers = list(tiers)
        # a tier that does network I/O must not be asked on an event loop (frontends check this)
        self.remote = any(getattr(t, "remote", False) for t in self.tiers)

    @classmethod
    def from_flags(cls, max_bytes: int, url: str, ttl_seconds: float, timeout_ms: float) -> PredictionCache | None:
        """The cache the flags ask for, or None (both off). A bad URL raises UsageError."""
        tiers: list[Any] = []
        if max_bytes > 0:
            from mlserve.server.cache.memory import MemoryTier

            tiers.append(MemoryTier(max_bytes))
        if url:
            from mlserve.server.cache.redis import RedisTier

            tiers.append(RedisTier(url, ttl_seconds=ttl_seconds, timeout_s=timeout_ms / 1000))
        return cls(tiers) if tiers else None

    @property
    def label(self) -> str:
        return "+".join(t.label for t in self.tiers)

    def key(self, servable: Any, signature_name: str, inputs: dict[str, np.ndarray],
            output_filter: Sequence[str] | None) -> bytes | None:
        """The request's cache key, or None when it cannot be cached (an input that is no array)."""
        return request_key(servable, signature_name, inputs, output_filter)

    def get(self, key: bytes, model: str) -> Outputs | None:
        for i, tier in enumerate(self.tiers):
            outputs = tier.get(key)
            if outputs is not None:
                metrics.observe_prediction_cache(model, tier.label, "hit")
                for upper in self.tiers[:i]:  # a shared hit fills the tiers before it
                    upper.put(key, outputs)
                return outputs
            metrics.observe_prediction_cache(model, tier.label, "miss")
        return None

    def put(self, key: bytes, outputs: Outputs) -> None:
        for tier in self.tiers:
            tier.put(key, outputs)

    def close(self) -> None:
        for tier in self.tiers:
            tier.close()

"""The in-process tier: an LRU of answers bounded in bytes (`--prediction_cache_bytes`).

An entry costs its arrays' bytes plus a fixed overhead for the key and the dict; the least
recently used entries go when a new one would pass the bound (each counted as an eviction), and an
answer bigger than the whole bound is never kept. Arrays are stored read-only, so no caller can
change what a later hit returns.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from mlserve.server.observability import metrics

ENTRY_OVERHEAD = 256  # key, OrderedDict node, dict of outputs: bytes charged per entry


def outputs_bytes(outputs: dict) -> int:
    size = ENTRY_OVERHEAD
    for name, arr in outputs.items():
        size += len(name) + 96
        if arr.dtype == object:
            size += sum(len(v) if isinstance(v, (bytes, str)) else 8 for v in arr.reshape(-1)) + 8 * arr.size
        else:
            size += arr.nbytes
    return size


class MemoryTier:
    label = "memory"
    remote = False

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, tuple[dict, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> dict | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: bytes, outputs: dict) -> None:
        frozen = {}
        for name, value in outputs.items():
            arr = np.array(value, copy=True)
            arr.flags.writeable = False
            frozen[name] = arr
        size = outputs_bytes(frozen)
        if size > self.max_bytes:
            return
        evicted = 0
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            while self.bytes + size > self.max_bytes and self._entries:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                evicted += 1
            self._entries[key] = (frozen, size)
            self.bytes += size
            entries, used = len(self._entries), self.bytes
        metrics.observe_prediction_cache_size(self.label, entries, used, evicted)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

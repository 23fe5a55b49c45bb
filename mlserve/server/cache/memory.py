"""The in-process tier: an LRU of answers bounded in bytes (`--prediction_cache_bytes`).

Answers are kept encoded (`codec.py`, as for Redis): one immutable bytes object per entry, so an
entry's size is exact, and the arrays a hit reads back are read-only views, so no caller can
change what a later hit returns. An entry costs its bytes plus a fixed overhead for the key and
the dict node; the least recently used entries go when a new one would pass the bound (each
counted as an eviction), and an answer bigger than the whole bound is never kept.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from mlserve.server.cache import codec
from mlserve.server.observability import metrics

ENTRY_OVERHEAD = 160  # key bytes object and OrderedDict node: bytes charged per entry


class MemoryTier:
    label = "memory"
    remote = False

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> dict | None:
        with self._lock:
            data = self._entries.get(key)
            if data is None:
                return None
            self._entries.move_to_end(key)
        return codec.decode(data)

    def put(self, key: bytes, outputs: dict) -> None:
        data = codec.encode(outputs)
        size = len(data) + len(key) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        evicted = 0
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= len(old) + len(key) + ENTRY_OVERHEAD
            while self.bytes + size > self.max_bytes and self._entries:
                dropped_key, dropped = self._entries.popitem(last=False)
                self.bytes -= len(dropped) + len(dropped_key) + ENTRY_OVERHEAD
                evicted += 1
            self._entries[key] = data
            self.bytes += size
            entries, used = len(self._entries), self.bytes
        metrics.observe_prediction_cache_size(self.label, entries, used, evicted)

    def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

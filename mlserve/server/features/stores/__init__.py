"""Online stores the feature lookup reads, one module each; `open_store(config)` picks one.

Every store answers `read(keys, features, timeout)`: one batched read for a request's entities,
a row of feature values per key (None for a key the store lacks, or a feature it lacks), and
raises `StoreUnavailableError` when it is down, slow past `timeout` or unreadable. Stores only read.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from mlserve.server.features.config import StoreConfig

Row = list  # list[float | None]: one entity's features, in the order asked


class StoreUnavailableError(Exception):
    """The store could not answer (down, too slow, unreadable); the message says why."""


class Store(Protocol):
    label: str

    def read(self, keys: Sequence[str | int], features: Sequence[str], timeout: float) -> list[Row | None]:
        ...

    def check(self, features: Sequence[str]) -> None:
        ...

    def close(self) -> None:
        ...


def open_store(config: StoreConfig, key_column: str) -> Store:
    """The store `config` names (Redis is imported only when used)."""
    if config.kind == "sqlite":
        from mlserve.server.features.stores.sqlite import SqliteStore

        return SqliteStore(config, key_column)
    from mlserve.server.features.stores.redis import RedisStore

    return RedisStore(config)

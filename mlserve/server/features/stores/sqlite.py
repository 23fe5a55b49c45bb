"""The embedded online store: one SQLite table, a row per entity, a column per feature.

Opened read-only (`mode=ro`), one connection per thread (sqlite3 connections are not shared).
A read that runs past its timeout is interrupted by a progress handler, so a slow or locked
database answers UNAVAILABLE rather than holding the request.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from mlserve.errors import UsageError
from mlserve.server.features.config import StoreConfig
from mlserve.server.features.stores import Row, StoreUnavailableError

CHUNK = 900  # bound variables per statement: below every SQLite build's limit


class SqliteStore:
    def __init__(self, config: StoreConfig, key_column: str) -> None:
        self.path = Path(config.location)
        self.table = config.table
        self.key_column = key_column
        self.label = config.label
        self._local = threading.local()

    def _connection(self, timeout: float) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if not self.path.is_file():
                raise StoreUnavailableError(f"{self.path} does not exist")
            # mode=ro: the server never writes the store; timeout: how long a lock may hold us
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=timeout,
                                   check_same_thread=True)
            self._local.conn = conn
        return conn

    def check(self, features: Sequence[str]) -> None:
        """At start-up: the file opens and its table has the key and every feature column."""
        try:
            conn = self._connection(1.0)
            columns = {row[1] for row in conn.execute(f'PRAGMA table_info("{self.table}")')}
        except (sqlite3.Error, StoreUnavailableError) as e:
            raise UsageError(f"--feature_lookup: store {self.label}: {e}",
                             hint="write the features first (examples/delivery_time/features.py)") from e
        if not columns:
            raise UsageError(f"--feature_lookup: store {self.label} has no table {self.table!r}")
        missing = [c for c in (self.key_column, *features) if c not in columns]
        if missing:
            raise UsageError(f"--feature_lookup: table {self.table!r} of {self.label} lacks column(s) "
                             f"{', '.join(missing)} (it has {', '.join(sorted(columns))})")

    def read(self, keys: Sequence[str | int], features: Sequence[str], timeout: float) -> list[Row | None]:
        unique = list(dict.fromkeys(keys))
        found: dict[str | int, Row] = {}
        deadline = time.monotonic() + timeout
        cols = ", ".join(f'"{f}"' for f in features)
        try:
            conn = self._connection(timeout)
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            for i in range(0, len(unique), CHUNK):
                part = unique[i:i + CHUNK]
                sql = (f'SELECT "{self.key_column}", {cols} FROM "{self.table}" '
                       f'WHERE "{self.key_column}" IN ({", ".join("?" * len(part))})')
                for row in conn.execute(sql, part):
                    found[row[0]] = list(row[1:])
        except sqlite3.Error as e:
            self._drop()
            reason = "timed out" if time.monotonic() > deadline else str(e)
            raise StoreUnavailableError(reason) from e
        return [found.get(k) for k in keys]

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self._drop()

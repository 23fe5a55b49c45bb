"""The shared tier: answers in a real Redis (`--prediction_cache redis://host:port[/db]`).

Replicas that name the same Redis share answers. Values are `codec.py` bytes under
`mlserve:pc:<key hex>`, written with SET ... EX `--prediction_cache_ttl_seconds` (Redis's own
`maxmemory-policy allkeys-lru` bounds it in bytes). Reads run on the request's thread with a short
socket timeout (`--prediction_cache_timeout_ms`); writes go to one writer thread, so an answer never
waits for its own SET, and a full write queue drops the write.

A Redis that goes away is a cache that misses: the first failure logs one warning, then the tier
stays quiet (every lookup a miss, no network call) for a second before trying again, and logs when
Redis answers again. Never an error to the client.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from mlserve.errors import UsageError
from mlserve.server.cache import codec
from mlserve.server.observability import metrics

log = logging.getLogger("mlserve.server")

PREFIX = b"mlserve:pc:"
RETRY_SECONDS = 1.0
_WRITE_QUEUE = 1024


class RedisTier:
    remote = True

    def __init__(self, url: str, *, ttl_seconds: float = 3600, timeout_s: float = 0.05) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise UsageError(f"--prediction_cache {url!r}: expected a redis:// URL",
                             hint="--prediction_cache redis://127.0.0.1:6379/0")
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise UsageError("--prediction_cache redis://... needs the redis package",
                             hint="pip install 'mlserve[redis]'") from None
        self._errors = (redis.exceptions.RedisError, OSError)
        try:
            self._client: Any = redis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0), health_check_interval=0)
        except ValueError as e:
            raise UsageError(f"--prediction_cache {url!r}: {e}") from None
        kwargs = self._client.connection_pool.connection_kwargs
        self.label = f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
        self.ttl = max(1, int(ttl_seconds))
        self._down_until = 0.0
        self._down = False
        self._state = threading.Lock()
        self._writes: queue.Queue = queue.Queue(_WRITE_QUEUE)
        self._writer = threading.Thread(target=self._write_loop, name="prediction-cache-writer", daemon=True)
        self._writer.start()
        try:
            self._client.ping()
        except self._errors as e:
            self._failed(e)

    # -- health -----------------------------------------------------------------------------

    def _available(self) -> bool:
        return not self._down or time.monotonic() >= self._down_until

    def _failed(self, error: BaseException) -> None:
        with self._state:
            self._down_until = time.monotonic() + RETRY_SECONDS
            if self._down:
                return
            self._down = True
        log.warning("Prediction cache %s unavailable (%s): computing every answer until it is back",
                    self.label, error or type(error).__name__)

    def _answered(self) -> None:
        if self._down:
            with self._state:
                if not self._down:
                    return
                self._down = False
            log.info("Prediction cache %s is back", self.label)

    # -- the tier ---------------------------------------------------------------------------

    def get(self, key: bytes) -> dict | None:
        if not self._available():
            return None
        try:
            data = self._client.get(PREFIX + key.hex().encode())
        except self._errors as e:
            self._failed(e)
            metrics.observe_prediction_cache("", self.label, "unavailable")
            return None
        self._answered()
        return codec.decode(data) if data is not None else None

    def put(self, key: bytes, outputs: dict) -> None:
        if not self._available():
            return
        try:
            self._writes.put_nowait((PREFIX + key.hex().encode(), codec.encode(outputs)))
        except queue.Full:
            pass

    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            if item is None:
                return
            batch, marks = [], []
            while True:
                if isinstance(item, threading.Event):
                    marks.append(item)
                else:
                    batch.append(item)
                if len(batch) >= 64:
                    break
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._writes.put(None)
                    break
            if batch and self._available():
                try:
                    pipe = self._client.pipeline(transaction=False)
                    for name, value in batch:
                        pipe.set(name, value, ex=self.ttl)
                    pipe.execute()
                except self._errors as e:
                    self._failed(e)
                else:
                    self._answered()
            for mark in marks:
                mark.set()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the writes queued so far were sent (tests; close)."""
        mark = threading.Event()
        self._writes.put(mark)
        return mark.wait(timeout)

    def close(self) -> None:
        self._writes.put(None)
        self._writer.join(timeout=2)
        try:
            self._client.close()
        except self._errors:
            pass

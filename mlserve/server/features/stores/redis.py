"""The production online store: Redis, a hash per entity (`key_prefix + key`), a field per feature.

One pipelined HMGET per entity, sent as one round trip. The client has connect and socket
timeouts, so a Redis that is down or slow answers UNAVAILABLE within them. Only HMGET is sent:
the server never writes (a read-only ACL user is enough; docs/feature-lookup.md).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mlserve.server.features.config import StoreConfig
from mlserve.server.features.stores import Row, StoreUnavailableError

log = logging.getLogger("mlserve.server")


class RedisStore:
    def __init__(self, config: StoreConfig) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                        redis.exceptions.ResponseError, OSError)
        self.label = config.label
        self.prefix = config.key_prefix
        seconds = config.timeout_ms / 1000
        self._client: Any = redis.Redis.from_url(
            config.location, socket_timeout=seconds, socket_connect_timeout=seconds,
            # redis-py retries a timed-out command by default (3 times in 8.x), which would
            # stretch the timeout past the request's deadline: no retries, the client retries.
            retry=Retry(NoBackoff(), 0), health_check_interval=0)

    def check(self, features: Sequence[str]) -> None:
        """At start-up: warn (do not fail) when Redis does not answer; it may come up later."""
        try:
            self._client.ping()
        except self._errors as e:
            log.warning("Feature store %s does not answer yet (%s); predicts that need it answer "
                        "UNAVAILABLE until it does", self.label, e)

    def read(self, keys: Sequence[str | int], features: Sequence[str], timeout: float) -> list[Row | None]:
        unique = list(dict.fromkeys(keys))
        pipe = self._client.pipeline(transaction=False)
        for k in unique:
            pipe.hmget(f"{self.prefix}{k}", list(features))
        try:
            replies = pipe.execute()
        except self._errors as e:
            raise StoreUnavailableError(str(e) or type(e).__name__) from e
        found: dict[Any, Row | None] = {}
        for k, values in zip(unique, replies):
            found[k] = None if all(v is None for v in values) else list(values)
        return [found[k] for k in keys]

    def close(self) -> None:
        self._client.close()

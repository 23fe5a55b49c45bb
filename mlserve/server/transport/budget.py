"""`--max_inflight_bytes`: one budget for what requests hold between arrival and answer, REST and
gRPC together. Each front-end runs on its own event-loop thread, so the count takes a lock (an
uncontended acquire: about as cheap as the add it guards)."""
from __future__ import annotations

import threading


class InflightBudget:
    """Bytes held by requests in flight, against `limit`, across every connection and front-end."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, n: int) -> bool:
        """Hold `n` more bytes if they fit under the limit; False (nothing held) if not."""
        with self._lock:
            if self.held + n > self.limit:
                return False
            self.held += n
            return True

    def charge(self, n: int) -> bool:
        """Hold `n` more bytes that have already arrived; False when the total is now over the limit
        (the caller refuses the request and releases what it holds)."""
        with self._lock:
            self.held += n
            return self.held <= self.limit

    def release(self, n: int) -> None:
        with self._lock:
            self.held -= n

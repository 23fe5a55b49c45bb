"""`DeadlineQueue`: one timeout shared by many pending answers, on an event loop.

Every entry has the same timeout, so deadlines fall in arrival order: one queue and one timer
for its head, instead of a timer per request."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol


class Expirable(Protocol):
    done: bool  # answered already: the queue forgets it
    deadline: float  # loop time; set by `watch`

    def expire(self) -> None:
        """The deadline passed unanswered (called on the loop)."""


class DeadlineQueue:
    """Call `entry.expire()` for entries still not `done` `timeout` seconds after `watch(entry)`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self._pending: deque[Expirable] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, entry: Expirable) -> None:
        """Start `entry`'s clock (on the loop)."""
        entry.deadline = self.loop.time() + self.timeout
        pending = self._pending
        while pending and pending[0].done:  # answered already: forget (keeps the queue short)
            pending.popleft()
        pending.append(entry)
        if self._timer is None:
            self._timer = self.loop.call_at(pending[0].deadline, self._expire)

    def cancel(self) -> None:
        """Stop the timer (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        pending = self._pending
        now = self.loop.time()
        while pending and (pending[0].done or pending[0].deadline <= now):
            entry = pending.popleft()
            if not entry.done:
                entry.expire()
        if pending:
            self._timer = self.loop.call_at(pending[0].deadline, self._expire)

"""`--batching_policy adaptive --latency_objective_ms N` (mlserve extension): the batcher's size
limit and wait, tuned online to the highest throughput whose p99 stays under the objective.

One `AdaptiveControl` per (loaded version, signature): a promoted version starts afresh and
learns its own model time. It combines the two approaches the literature offers:

- **AIMD on the batch size limit** (Clipper): every `EVAL_EVERY` requests (or quarter second)
  it decides. When the median call of the batches at least half the limit took over half the
  objective: the limit is cut by 10 % (a median of big batches, since a busy CPU slows a call now
  and then, big or small, and that is no reason to shrink them).
  Otherwise, when batches ran full or with requests waiting behind them: the limit grows by one.
  Half the objective goes to the model call, half to queueing. The controller steers by model
  time, not end-to-end latency: when queueing breaks the objective the server is past capacity,
  and cutting the batch size then would only lower the capacity further.
- **A model-time estimate** (BentoML's dispatcher): a least-squares line `t(rows) = a + b * rows`
  over the last batches sets how long an open batch may wait for more requests: only when the
  next request is due sooner than a model call's fixed cost `a` (then waiting costs the queued
  requests less than one more call would), and then `a`, within half the objective less the
  batch's own model time. The line does not cap the limit: on a busy CPU bigger batches come with
  more contention, so its slope overstates the model's cost per row (measured: it held the
  limit at 17 where batches of 30 ran well within the budget); the AIMD cut, which looks at
  the calls themselves, caps it.

The p99 of the last `WINDOW` requests (queueing plus model time) is published with the choice.

At low load (arrival rate × one-row model time under `QUIET_LOAD`) a request that finds the
batcher idle (no batch queued or running, no other request bypassing) does not go through a batch
thread at all: it runs on its caller's thread, the unbatched path, with the unbatched latency.
Above that load every request goes through the batch threads, even in an idle moment: a request
run on its caller's thread is a batch of one, and at high load the calls it adds cost more CPU
than the hand-off saves (measured: bypassing in every idle moment cut capacity by 14 %).
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable

from mlserve.server.observability import metrics

EVAL_EVERY = 32  # requests between two decisions
WINDOW = 256  # requests whose latency one decision reads
SAMPLES = 64  # batches the model-time line is fitted on
DECREASE = 0.9  # multiplicative cut when p99 is over the objective
START_LIMIT = 8
QUIET_LOAD = 0.25


class AdaptiveControl:
    """The controller of one queue family; its methods are called under the batcher's lock or
    from batch threads (it takes its own small lock for what batch threads update)."""

    def __init__(self, objective_s: float, max_batch_size: int, model: str = "", signature: str = "",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.objective = objective_s
        self._clock = clock
        self.max_batch_size = max_batch_size
        self.model, self.signature = model, signature
        self.limit = min(START_LIMIT, max_batch_size)
        self.wait = 0.0  # seconds an open batch may wait for more requests
        self.p99 = 0.0
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=WINDOW)
        self._since_eval = 0
        self._pressed = 0  # batches that ran full, or with another waiting behind them
        self._window: list[tuple[int, float]] = []  # (rows, seconds) of the calls since the last decision
        self._samples: deque[tuple[int, float]] = deque(maxlen=SAMPLES)
        self._fit = (0.0, 0.0)  # (a, b): seconds = a + b * rows
        self._arrivals = 0
        self._window_start = clock()
        self._rate = 0.0  # requests per second, smoothed

    # -- called per request ---------------------------------------------------------------------

    def arrived(self) -> None:
        self._arrivals += 1  # under the batcher's lock

    @property
    def quiet(self) -> bool:
        """Low load: requests one at a time would keep the model busy under `QUIET_LOAD` of the
        time. Then a request that finds the batcher idle may skip it (the batcher checks that)."""
        return self._rate * self.model_time(1) < QUIET_LOAD

    # -- called per batch (batch threads, or a caller's thread for a bypassed request) -----------

    def observe(self, rows: int, model_seconds: float, latencies: list[float], pressed: bool) -> None:
        with self._lock:
            self._samples.append((rows, model_seconds))
            self._latencies.extend(latencies)
            self._since_eval += len(latencies)
            self._pressed += pressed
            self._window.append((rows, model_seconds))
            now = self._clock()
            if self._since_eval < EVAL_EVERY and now - self._window_start < 0.25:
                return
            self._decide(now)

    def _decide(self, now: float) -> None:
        elapsed = max(now - self._window_start, 1e-6)
        rate = self._arrivals / elapsed
        self._rate = rate if self._rate == 0 else 0.5 * self._rate + 0.5 * rate
        self._fit = _fit_line(self._samples)
        ordered = sorted(self._latencies)
        self.p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0
        budget = self.objective / 2  # for one batch's model time; the other half is for queueing
        if self._full_batches_too_slow(budget):
            self.limit = max(1, min(self.limit - 1, int(self.limit * DECREASE)))
        elif self._pressed:  # requests waited for room: a bigger batch serves more per model call
            self.limit = min(self.max_batch_size, self.limit + 1)
        a, _ = self._fit
        # Wait for one more request only when it comes sooner than a model call's fixed cost:
        # then waiting costs those queued less than the extra call would (BentoML's rule).
        if self._rate > 0 and 1 / self._rate < a:
            self.wait = max(0.0, min(a, budget - self.model_time(self.limit)))
        else:
            self.wait = 0.0
        self._since_eval = self._pressed = self._arrivals = 0
        self._window = []
        self._window_start = now
        metrics.observe_adaptive_batching(self.model, self.signature, self.limit, self.wait, self.p99)

    def _full_batches_too_slow(self, budget: float) -> bool:
        """Whether the typical (median) call of a batch at least half the limit took over
        `budget`. A median, and big batches only: a busy CPU also slows a call now and then, and
        small batches as much as big ones; that is no reason to shrink the batches."""
        big = sorted(t for r, t in self._window if r * 2 >= self.limit)
        return bool(big) and big[len(big) // 2] > budget

    def model_time(self, rows: int) -> float:
        a, b = self._fit
        return max(0.0, a + b * rows)


def _fit_line(samples: deque[tuple[int, float]]) -> tuple[float, float]:
    """Least squares `seconds = a + b * rows` (b = 0 and a = the mean with one batch size)."""
    n = len(samples)
    if n == 0:
        return 0.0, 0.0
    mean_x = sum(r for r, _ in samples) / n
    mean_y = sum(t for _, t in samples) / n
    var = sum((r - mean_x) ** 2 for r, _ in samples)
    if var == 0:
        return mean_y, 0.0
    b = sum((r - mean_x) * (t - mean_y) for r, t in samples) / var
    b = max(b, 0.0)
    return max(0.0, mean_y - b * mean_x), b

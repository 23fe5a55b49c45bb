"""`--batching_policy adaptive --latency_objective_ms N` (mlserve extension): the batcher's size
limit and wait, tuned online to the highest throughput whose p99 stays under the objective.

One `AdaptiveControl` per (loaded version, signature): a promoted version starts afresh and
learns its own model time. It combines the two approaches the literature offers:

- **AIMD on the batch size limit** (Clipper): every `EVAL_EVERY` requests (or quarter second)
  it decides. When over a tenth of the model calls took over half the objective (one slow call on a
  busy CPU is no trend): the limit is cut by 10 %.
  Otherwise, when batches ran full or with requests waiting behind them: the limit grows by one.
  Half the objective goes to the model call, half to queueing. The controller steers by model
  time, not end-to-end latency: when queueing breaks the objective the server is past capacity,
  and cutting the batch size then would only lower the capacity further.
- **A model-time estimate** (BentoML's dispatcher): a least-squares line `t(rows) = a + b * rows`
  over the last batches caps the limit where one batch alone would take half the objective,
  and sets how long an open batch may wait for more requests: only when the next request is due
  sooner than a model call's fixed cost `a` (then waiting costs the queued requests less than one
  more call would), and then `a`, within half the objective less the batch's own model time.

The p99 of the last `WINDOW` requests (queueing plus model time) is published with the choice.

At low load a request finds the batcher idle (no batch queued or running, no other request
bypassing): it does not go through a batch thread at all but runs on its caller's thread, the
unbatched path, so its latency is the unbatched latency.
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
        self._batches = 0
        self._over = 0  # model calls over half the objective, since the last decision
        self._samples: deque[tuple[int, float]] = deque(maxlen=SAMPLES)
        self._fit = (0.0, 0.0)  # (a, b): seconds = a + b * rows
        self._arrivals = 0
        self._window_start = clock()
        self._rate = 0.0  # requests per second, smoothed

    # -- called per request ---------------------------------------------------------------------

    def arrived(self) -> None:
        self._arrivals += 1  # under the batcher's lock

    # -- called per batch (batch threads, or a caller's thread for a bypassed request) -----------

    def observe(self, rows: int, model_seconds: float, latencies: list[float], pressed: bool) -> None:
        with self._lock:
            self._samples.append((rows, model_seconds))
            self._latencies.extend(latencies)
            self._since_eval += len(latencies)
            self._pressed += pressed
            self._batches += 1
            self._over += model_seconds > self.objective / 2
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
        if self._over * 10 > self._batches:  # over 10 % of batches alone took too long: cut
            self.limit = max(1, min(self.limit - 1, int(self.limit * DECREASE)))
        elif self._pressed:  # requests waited for room: a bigger batch serves more per model call
            self.limit = min(self.max_batch_size, self.limit + 1)
        a, b = self._fit
        if b > 0:  # what the model-time line says one batch may hold within the budget
            self.limit = max(1, min(self.limit, int((budget - a) / b + 1e-6)))
        # Wait for one more request only when it comes sooner than a model call's fixed cost:
        # then waiting costs those queued less than the extra call would (BentoML's rule).
        if self._rate > 0 and 1 / self._rate < a:
            self.wait = max(0.0, min(a, budget - self.model_time(self.limit)))
        else:
            self.wait = 0.0
        self._since_eval = self._pressed = self._arrivals = 0
        self._batches = self._over = 0
        self._window_start = now
        metrics.observe_adaptive_batching(self.model, self.signature, self.limit, self.wait, self.p99)

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

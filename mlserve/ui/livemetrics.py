"""The model server's Prometheus page, read into what a person watches: requests/s, p50/p99, errors.

The names are TF Serving's (mlserve/server/observability/metrics.py writes the same ones):
`:tensorflow:serving:request_count{model_name,status}` and the histogram
`:tensorflow:serving:request_latency{model_name,API,entrypoint}` in microseconds. Requests/s and
the percentiles count inference calls only (predict, classify, regress, multi-inference: the
histogram's API label), so the status and metadata calls the page itself makes every poll do not
show up as load; errors are every request_count with a status other than OK. Rates and
percentiles are taken between the oldest and newest scrape of the last `window_s` seconds, so they
describe now, not the server's whole life.
"""
from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
DEFAULT_PATH = "/monitoring/prometheus/metrics"
_LINE = re.compile(r'^([^\s{]+)(?:\{(.*)\})?\s+(\S+)')
INFERENCE_APIS = frozenset({"predict", "classify", "regress", "multiinference", "multi_inference"})
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    """The numbers of one read of the page, for one model."""

    at: float
    requests: float = 0.0  # inference calls answered OK (the latency histogram's count)
    errors: float = 0.0  # any request with a status other than OK
    buckets: dict[float, float] = field(default_factory=dict)  # latency upper bound (µs) -> count


def parse(text: str, model: str) -> Scrape:
    """The request counters and latency buckets of `model` (summed over APIs and entry points)."""
    scrape = Scrape(time.monotonic())
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, labels_text, value_text = match.groups()
        if not (name == REQUEST_COUNT or name == REQUEST_LATENCY + "_bucket"):
            continue
        labels = dict(_LABEL.findall(labels_text or ""))
        if labels.get("model_name") != model:
            continue
        try:
            value = float(value_text)
        except ValueError:
            continue
        if name == REQUEST_COUNT:
            if labels.get("status", "OK") != "OK":
                scrape.errors += value
        elif labels.get("API", "").lower() in INFERENCE_APIS:
            bound = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "nan"))
            scrape.buckets[bound] = scrape.buckets.get(bound, 0.0) + value
    scrape.requests = scrape.buckets.get(math.inf, 0.0)
    return scrape


def percentile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile (0..1) of cumulative histogram buckets, interpolated within its bucket, as
    Prometheus' histogram_quantile does; None when the histogram is empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    total = buckets[bounds[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the last finite bound: its edge is all that is known
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


class LiveMetrics:
    """Scrapes kept for `window_s` seconds; `summary` gives the rates between the oldest and newest."""

    def __init__(self, model: str, window_s: float = 5.0) -> None:
        self.model = model
        self.window_s = window_s
        self._scrapes: deque[Scrape] = deque()
        self._lock = threading.Lock()

    def add(self, text: str, own_errors: int = 0) -> dict[str, object]:
        """One more read of the page; `own_errors`: failed requests the app itself made so far
        (asking for a label the server lacks), taken out of the error count."""
        scrape = parse(text, self.model)
        scrape.errors = max(0.0, scrape.errors - own_errors)
        with self._lock:
            if self._scrapes and scrape.requests < self._scrapes[-1].requests:
                self._scrapes.clear()  # the server restarted: its counters began again
            self._scrapes.append(scrape)
            while len(self._scrapes) > 2 and scrape.at - self._scrapes[0].at > self.window_s:
                self._scrapes.popleft()
            first = self._scrapes[0]
        return summary(first, scrape)


def summary(first: Scrape, last: Scrape) -> dict[str, object]:
    """requests/s, errors/s, p50/p99 (ms) over first..last; totals since the server started."""
    seconds = last.at - first.at
    delta = {b: last.buckets.get(b, 0.0) - first.buckets.get(b, 0.0) for b in last.buckets}
    window = seconds > 0 and (last.requests - first.requests) > 0
    source = delta if window else last.buckets  # nothing new: the whole life's percentiles

    def ms(q: float) -> float | None:
        value = percentile(source, q)
        return None if value is None else round(value / 1000.0, 3)

    return {
        "requests_per_s": round((last.requests - first.requests) / seconds, 2) if seconds > 0 else 0.0,
        "errors_per_s": round((last.errors - first.errors) / seconds, 2) if seconds > 0 else 0.0,
        "requests_total": int(last.requests),
        "errors_total": int(last.errors),
        "p50_ms": ms(0.50),
        "p99_ms": ms(0.99),
        "percentiles_over": f"last {seconds:.0f} s" if window else "since the server started",
    }

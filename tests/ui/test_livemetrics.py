"""The live panel's numbers, read from the page the embedded server's own exporter writes
(mlserve/server/observability/metrics.py renders it; mlserve/ui/livemetrics.py reads it back)."""
from __future__ import annotations

import math

import pytest

from mlserve.server.observability import metrics
from mlserve.ui import livemetrics


@pytest.fixture
def registry():
    metrics.reset()
    yield metrics
    metrics.reset()


def test_counts_errors_and_percentiles_from_the_real_exporter(registry) -> None:
    for i in range(100):  # 1..100 ms, REST and gRPC mixed; two failures; another model apart
        registry.observe_request("digits", "predict" if i % 2 else "Predict", "REST" if i % 2 else "GRPC",
                                 "OK", (i + 1) / 1000)
    registry.observe_request("digits", "predict", "REST", "INVALID_ARGUMENT", None)
    registry.observe_request("digits", "predict", "REST", "NOT_FOUND", None)
    registry.observe_request("other", "predict", "REST", "OK", 5.0)
    registry.observe_request("digits", "", "REST", "OK", 0.0001)  # a status or metadata GET: no load
    scrape = livemetrics.parse(registry.render().decode(), "digits")
    assert (scrape.requests, scrape.errors) == (100, 2)
    assert scrape.buckets[math.inf] == 100
    p50 = livemetrics.percentile(scrape.buckets, 0.5) / 1000
    p99 = livemetrics.percentile(scrape.buckets, 0.99) / 1000
    # exponential buckets (growth 1.8): the answer lies in the bucket that holds the true value
    assert 50 / 1.8 <= p50 <= 50 * 1.8, p50
    assert 99 / 1.8 <= p99 <= 99 * 1.8, p99
    assert p50 < p99


def test_rates_over_the_window_and_a_restarted_server(registry) -> None:
    live = livemetrics.LiveMetrics("digits", window_s=60)
    registry.observe_request("digits", "predict", "REST", "OK", 0.001)
    first = live.add(registry.render().decode())
    assert first["requests_per_s"] == 0.0 and first["percentiles_over"] == "since the server started"
    for _ in range(30):
        registry.observe_request("digits", "predict", "REST", "OK", 0.002)
    live._scrapes[0].at -= 3.0  # as if the first scrape was 3 s ago (no sleeping in tests)
    second = live.add(registry.render().decode())
    assert second["requests_per_s"] == pytest.approx(10.0, rel=0.05)
    assert second["requests_total"] == 31 and second["errors_total"] == 0
    registry.observe_request("digits", "", "REST", "NOT_FOUND", None)  # the app asked for a missing label
    assert live.add(registry.render().decode(), own_errors=1)["errors_total"] == 0
    assert second["percentiles_over"].startswith("last ")
    registry.reset()  # the server restarted: its counters begin again; no negative rate
    registry.observe_request("digits", "predict", "REST", "OK", 0.001)
    third = live.add(registry.render().decode())
    assert third["requests_per_s"] == 0.0 and third["requests_total"] == 1


def test_no_latency_yet() -> None:
    assert livemetrics.percentile({}, 0.5) is None
    assert livemetrics.percentile({10.0: 0.0, math.inf: 0.0}, 0.99) is None

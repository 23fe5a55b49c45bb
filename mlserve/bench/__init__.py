"""The load generator behind `mlserve bench`: bounded, concurrent predict requests and their figures.

    report = run_bench(images, ModelTarget("digits_model"), url="http://127.0.0.1:8501",
                       concurrency=[1, 8, 32], duration=5)
    report.levels[0].p99_ms

Modules: figures (the load plan, validated once; counters; the report), loads (the REST and gRPC
loads behind one interface), wire (HTTP/1.1 framing), runner (levels, preflight, Ctrl-C),
canned (a server that does no work: `python -m mlserve.bench.canned`).
"""
from __future__ import annotations

from mlserve.bench.canned import CannedServer
from mlserve.bench.figures import (MAX_BATCH, MAX_CONCURRENCY, MAX_DURATION_S, MAX_REQUESTS,
                                   BenchLevel, BenchReport, LoadPlan, Progress, cost_per_million,
                                   parse_levels)
from mlserve.bench.runner import run_bench, self_test

__all__ = ["CannedServer", "MAX_BATCH", "MAX_CONCURRENCY", "MAX_DURATION_S", "MAX_REQUESTS",
           "BenchLevel", "BenchReport", "LoadPlan", "Progress", "cost_per_million",
           "parse_levels", "run_bench", "self_test"]

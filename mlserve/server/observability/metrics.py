"""Server metrics in Prometheus text format, under TF Serving's metric names.

TF Serving's exporter turns a TensorFlow metric name such as ``/tensorflow/serving/request_count``
into ``:tensorflow:serving:request_count`` and writes latencies as histograms in microseconds with
exponential buckets (scale 10, growth 1.8, 33 buckets for request/runtime latency). The same names,
labels and buckets are used here, so dashboards built for TF Serving keep working. Process metrics
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``process_open_fds``...) are added.

Both APIs record into one process-wide registry:

    metrics.observe_request(model, api, entrypoint, status, seconds)   # REST: api="predict",
                                                                      # entrypoint="REST"; gRPC:
                                                                      # api="Predict", "GRPC"
    metrics.observe_runtime(model, api, seconds)                      # the model call itself
    metrics.render()                                                  # the text page (bytes)

The monitoring config (``--monitoring_config_file``) is TF Serving's text-format MonitoringConfig;
`parse_monitoring_config` reads the ``prometheus_config { enable: true path: "..." }`` part of it.
"""
from __future__ import annotations

import bisect
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def exponential_buckets(scale: float, growth: float, count: int) -> tuple[float, ...]:
    """TensorFlow's Buckets::Exponential: `count` upper bounds scale*growth**i (then +Inf)."""
    return tuple(scale * growth**i for i in range(count))


LATENCY_BUCKETS = exponential_buckets(10, 1.8, 33)  # microseconds, ~20 minutes at the top
QUEUING_BUCKETS = exponential_buckets(100, 1.2, 52)  # microseconds, ~1 second
BATCH_SIZE_BUCKETS = exponential_buckets(1, 2, 14)
EXAMPLE_COUNT_BUCKETS = exponential_buckets(1, 2, 15)  # util.cc: [1, 2, 4, ..., 16384], then +Inf


def _num(value: float) -> str:
    """absl::StrCat's six significant digits, as TF Serving's exporter prints bounds and sums."""
    text = f"{value:.6g}"
    return text


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Counter:
    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name, self.labels = name, labels
        self.values: dict[tuple[str, ...], int] = {}

    def inc(self, key: tuple[str, ...], by: int = 1) -> None:
        self.values[key] = self.values.get(key, 0) + by

    def lines(self) -> Iterable[str]:
        yield f"# TYPE {self.name} counter"
        for key, value in sorted(self.values.items()):
            labels = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key))
            yield f"{self.name}{{{labels}}} {value}"


class Gauge:
    def __init__(self, name: str, labels: tuple[str, ...]) -> None:
        self.name, self.labels = name, labels
        self.values: dict[tuple[str, ...], float] = {}

    def set(self, key: tuple[str, ...], value: float) -> None:
        self.values[key] = value

    def lines(self) -> Iterable[str]:
        yield f"# TYPE {self.name} gauge"
        for key, value in sorted(self.values.items()):
            labels = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key))
            yield f"{self.name}{{{labels}}} {_num(value)}"


class Histogram:
    def __init__(self, name: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name, self.labels, self.bounds = name, labels, bounds
        self.values: dict[tuple[str, ...], list] = {}  # key -> [bucket counts..., sum]

    def observe(self, key: tuple[str, ...], value: float) -> None:
        cell = self.values.get(key)
        if cell is None:
            cell = self.values[key] = [0] * (len(self.bounds) + 1) + [0.0]
        cell[bisect.bisect_right(self.bounds, value)] += 1
        cell[-1] += value

    def lines(self) -> Iterable[str]:
        yield f"# TYPE {self.name} histogram"
        for key, cell in sorted(self.values.items()):
            labels = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labels, key))
            prefix = f"{self.name}_bucket{{{labels}{',' if labels else ''}"
            total = 0
            for i, count in enumerate(cell[:-1]):
                total += count
                bound = _num(self.bounds[i]) if i < len(self.bounds) else "+Inf"
                yield f'{prefix}le="{bound}"}} {total}'
            yield f"{self.name}_sum{{{labels}}} {_num(cell[-1])}"
            yield f"{self.name}_count{{{labels}}} {total}"


_lock = threading.Lock()
request_count = Counter(":tensorflow:serving:request_count", ("model_name", "status"))
request_latency = Histogram(":tensorflow:serving:request_latency", ("model_name", "API", "entrypoint"),
                            LATENCY_BUCKETS)
runtime_latency = Histogram(":tensorflow:serving:runtime_latency", ("model_name", "API", "runtime"),
                            LATENCY_BUCKETS)
queuing_latency = Histogram(":tensorflow:serving:batching_session:queuing_latency", ("thread_pool_name",),
                            QUEUING_BUCKETS)
input_batch_size = Histogram(":tensorflow:serving:batching_session:input_batch_size", (), BATCH_SIZE_BUCKETS)
processed_batch_size = Histogram(":tensorflow:serving:batching_session:processed_batch_size", (),
                                 BATCH_SIZE_BUCKETS)
padding_size = Histogram(":tensorflow:serving:batching_session:padding_size", ("execution_batch_size",),
                         BATCH_SIZE_BUCKETS)
wrapped_run_count = Counter(":tensorflow:serving:batching_session:wrapped_run_count", ())
# tf.Examples per MultiInference request (servables/tensorflow/util.cc, RecordRequestExampleCount)
example_counts = Histogram(":tensorflow:serving:request_example_counts", ("model",), EXAMPLE_COUNT_BUCKETS)
example_count_total = Counter(":tensorflow:serving:request_example_count_total", ("model",))
# mlserve extension (--feature_lookup): one online-store read per request, in microseconds
feature_lookup_latency = Histogram(":mlserve:feature_lookup_latency", ("model_name", "store", "status"),
                                   LATENCY_BUCKETS)
# mlserve extension (--prediction_cache*): lookups by tier and result, the in-process tier's size
prediction_cache_lookups = Counter(":mlserve:prediction_cache:lookups", ("model_name", "tier", "result"))
prediction_cache_evictions = Counter(":mlserve:prediction_cache:evictions", ("tier",))
prediction_cache_entries = Gauge(":mlserve:prediction_cache:entries", ("tier",))
prediction_cache_bytes = Gauge(":mlserve:prediction_cache:bytes", ("tier",))
# mlserve extension (--batching_policy adaptive): the controller's current choice and what it saw
adaptive_batch_limit = Gauge(":mlserve:batching:adaptive_max_batch_size", ("model_name", "signature_name"))
adaptive_batch_wait = Gauge(":mlserve:batching:adaptive_batch_timeout_micros", ("model_name", "signature_name"))
adaptive_p99 = Gauge(":mlserve:batching:adaptive_observed_p99_micros", ("model_name", "signature_name"))
_ALL = (request_count, request_latency, runtime_latency, queuing_latency, input_batch_size,
        processed_batch_size, padding_size, wrapped_run_count, example_counts, example_count_total,
        feature_lookup_latency, prediction_cache_lookups, prediction_cache_evictions, prediction_cache_entries,
        prediction_cache_bytes, adaptive_batch_limit, adaptive_batch_wait, adaptive_p99)


UNKNOWN_MODEL = "_unknown_"  # the model_name label of requests naming no configured model
_REFRESH_SECONDS = 1.0
_model_names: Callable[[], Iterable[str]] | None = None
_known: frozenset[str] = frozenset()
_known_at = 0.0


def track_models(names: Callable[[], Iterable[str]] | None) -> None:
    """Label requests only with the model names `names()` returns (the configured models);
    any other requested name is counted under `UNKNOWN_MODEL`, so a client cannot create one
    series per name it makes up. None: label with every name (tests, no server)."""
    global _model_names, _known, _known_at
    with _lock:
        _model_names, _known, _known_at = names, frozenset(), 0.0


def model_label(model: str) -> str:
    """`model` if it is configured (the list re-read at most once a second), else UNKNOWN_MODEL."""
    global _known, _known_at
    if _model_names is None or model in _known:
        return model
    now = time.monotonic()
    if now - _known_at > _REFRESH_SECONDS:
        _known, _known_at = frozenset(_model_names()), now
        if model in _known:
            return model
    return UNKNOWN_MODEL


def observe_request(model: str, api: str, entrypoint: str, status: str, seconds: float | None) -> None:
    """Count one request (every status) and, when it succeeded, its latency — as TF Serving does.
    A model name that is not configured is counted as `UNKNOWN_MODEL` (see `track_models`)."""
    model = model_label(model)
    with _lock:
        request_count.inc((model, status))
        if status == "OK" and seconds is not None:
            request_latency.observe((model, api, entrypoint), seconds * 1e6)


def observe_runtime(model: str, api: str, seconds: float, runtime: str = "TF1") -> None:
    """The wall time of one model call (TF Serving's runtime label for a SavedModel session: TF1)."""
    with _lock:
        runtime_latency.observe((model, api, runtime), seconds * 1e6)


def observe_examples(model: str, count: int) -> None:
    """The tf.Examples one MultiInference request ran on (TF Serving records them once its one
    computation has run, before the results are checked)."""
    with _lock:
        example_counts.observe((model,), count)
        example_count_total.inc((model,), count)


def observe_feature_lookup(model: str, store: str, status: str, seconds: float) -> None:
    """One feature-store read of `--feature_lookup` (status: OK, NOT_FOUND, UNAVAILABLE...)."""
    with _lock:
        feature_lookup_latency.observe((model_label(model), store, status), seconds * 1e6)


def observe_prediction_cache(model: str, tier: str, result: str) -> None:
    """One prediction cache lookup in `tier` (result: hit, miss, unavailable)."""
    with _lock:
        prediction_cache_lookups.inc((model_label(model) if model else "", tier, result))


def observe_prediction_cache_size(tier: str, entries: int, size: int, evicted: int) -> None:
    """The in-process tier after a put: entries, bytes held, entries just evicted."""
    with _lock:
        prediction_cache_entries.set((tier,), entries)
        prediction_cache_bytes.set((tier,), size)
        if evicted:
            prediction_cache_evictions.inc((tier,), evicted)


def observe_adaptive_batching(model: str, signature: str, limit: int, wait_seconds: float,
                              p99_seconds: float) -> None:
    """The adaptive batcher's current batch size limit and wait, and the p99 it steered by."""
    with _lock:
        key = (model_label(model), signature)
        adaptive_batch_limit.set(key, limit)
        adaptive_batch_wait.set(key, round(wait_seconds * 1e6))
        adaptive_p99.set(key, round(p99_seconds * 1e6))


def observe_batch(*, input_sizes: Iterable[int], processed: int, padding: int, queuing_seconds: Iterable[float],
                  thread_pool_name: str = "model_server_batch_threads") -> None:
    """One executed batch: the tasks' sizes, the executed size, the padding and queuing delays."""
    with _lock:
        for size in input_sizes:
            input_batch_size.observe((), size)
        processed_batch_size.observe((), processed)
        padding_size.observe((str(processed),), padding)
        for delay in queuing_seconds:
            queuing_latency.observe((thread_pool_name,), delay * 1e6)
        wrapped_run_count.inc(())


def reset() -> None:
    """Forget every recorded value (tests)."""
    with _lock:
        for metric in _ALL:
            metric.values.clear()


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _process_lines() -> list[str]:
    lines = []
    times = os.times()
    lines += ["# TYPE process_cpu_seconds_total counter",
              f"process_cpu_seconds_total {times.user + times.system:.2f}"]
    try:
        with open("/proc/self/statm", "rb") as f:
            size, resident = (int(v) for v in f.read().split()[:2])
        lines += ["# TYPE process_virtual_memory_bytes gauge", f"process_virtual_memory_bytes {size * _PAGE}",
                  "# TYPE process_resident_memory_bytes gauge",
                  f"process_resident_memory_bytes {resident * _PAGE}"]
    except OSError:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        lines += ["# TYPE process_resident_memory_bytes gauge", f"process_resident_memory_bytes {rss}"]
    try:
        lines += ["# TYPE process_open_fds gauge", f"process_open_fds {len(os.listdir('/proc/self/fd'))}"]
    except OSError:
        pass
    try:
        with open("/proc/self/stat", "rb") as f:
            start_ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/stat", "rb") as f:
            btime = next(int(line.split()[1]) for line in f if line.startswith(b"btime"))
        lines += ["# TYPE process_start_time_seconds gauge",
                  f"process_start_time_seconds {btime + start_ticks / _CLK_TCK:.2f}"]
    except (OSError, StopIteration, IndexError, ValueError):
        pass
    return lines


def render() -> bytes:
    """The Prometheus text page: every metric with at least one value, then process metrics."""
    with _lock:
        lines = [line for metric in _ALL if metric.values for line in metric.lines()]
    lines += _process_lines()
    return ("\n".join(lines) + "\n").encode()


_BLOCK = re.compile(r"prometheus_config\s*:?\s*\{([^}]*)\}", re.S)


def parse_monitoring_config(text: str) -> tuple[bool, str]:
    """(enabled, path) from a text-format MonitoringConfig; the path defaults to TF Serving's."""
    text = re.sub(r"#[^\n]*", "", text)
    match = _BLOCK.search(text)
    if not match:
        return False, DEFAULT_PROMETHEUS_PATH
    body = match.group(1)
    enable = re.search(r"\benable\s*:\s*(\w+)", body)
    enabled = bool(enable) and enable.group(1).lower() in ("true", "1", "t")
    path = re.search(r"\bpath\s*:\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')", body)
    return enabled, (path.group(1)[1:-1] if path and path.group(1)[1:-1] else DEFAULT_PROMETHEUS_PATH)


def read_monitoring_config(path: str) -> tuple[bool, str]:
    """`parse_monitoring_config` of a file ("" means no file: Prometheus off)."""
    if not path:
        return False, DEFAULT_PROMETHEUS_PATH
    return parse_monitoring_config(Path(path).read_text())


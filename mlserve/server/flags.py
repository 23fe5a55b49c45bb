"""TensorFlow Serving's command line flags, parsed the way `tensorflow_model_server` reads them.

The same command line starts either server, so the names and defaults follow TF Serving's
`main.cc`/`server.h` (note: `--rest_api_port` defaults to 0, which means REST is off).
Accepted syntaxes: `--flag=value`, `--flag value`, and for booleans `--flag`, `--flag=true|false`.
A single leading dash works as well. Flags marked "mlserve extension" do not exist in TF Serving.
Flags that TF Serving has but that mean nothing here (TPU, SSL...) are accepted and ignored,
so a command line written for TF Serving still starts.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Sequence

from mlserve.errors import UsageError

_CPUS = os.cpu_count() or 1


def schedulable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, as `taskset` sets it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - no affinity API (macOS)
        return _CPUS


@dataclass
class ServerOptions:
    """Every flag's value after parsing (field name = flag name)."""

    # gRPC
    port: int = 8500
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 4 * _CPUS
    grpc_socket_path: str = ""
    enable_grpc_healthcheck_service: bool = False
    # HTTP/REST
    rest_api_port: int = 0
    rest_api_num_threads: int = 4 * _CPUS
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    # models
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    saved_model_tags: str = "serve"
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    num_load_threads: int = 0
    num_unload_threads: int = 0
    flush_filesystem_caches: bool = True
    # batching and monitoring
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_params: bool = False
    monitoring_config_file: str = ""
    # TensorFlow runtime
    tensorflow_session_parallelism: int = 0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    enable_serialization_as_tensor_content: bool = False
    enable_signature_method_name_check: bool = False
    # accepted for command-line compatibility, no effect here
    platform_config_file: str = ""
    tensorflow_session_config_file: str = ""
    ssl_config_file: str = ""
    use_alts_credentials: bool = False
    # TFLite (mlserve.server.servables.tflite): serve <version>/model.tflite where it exists
    prefer_tflite_model: bool = False
    num_tflite_pools: int = _CPUS
    num_tflite_interpreters_per_pool: int = 1
    enable_profiler: bool = True
    thread_pool_factory_config_file: str = ""
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    remove_unused_fields_from_bundle_metagraph: bool = True
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    version: bool = False
    # mlserve extensions
    host: str = "127.0.0.1"
    request_log: str = ""
    max_request_bytes: int = 64 * 1024 * 1024
    grpc_health: bool = False
    grpc_frontend: str = "h2"
    # mlserve extensions: limits (docs/security.md)
    http_max_request_line_bytes: int = 16 * 1024
    http_max_header_bytes: int = 64 * 1024
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_idle_timeout_seconds: float = 60.0
    http_max_connections: int = 4096
    http_max_unsent_bytes: int = 1024 * 1024
    max_inflight_bytes: int = 512 * 1024 * 1024
    max_decoded_request_bytes: int = 256 * 1024 * 1024
    allowed_model_roots: str = ""
    allowed_hosts: str = ""
    allow_unload_all_models: bool = False
    feature_lookup: str = ""
    # mlserve extensions: SLO-adaptive batching and the prediction cache (docs/serve.md)
    batching_policy: str = "fixed"
    latency_objective_ms: float = 0.0
    prediction_cache_bytes: int = 0
    prediction_cache: str = ""
    prediction_cache_ttl_seconds: float = 3600.0
    prediction_cache_timeout_ms: float = 50.0

    @property
    def health_service(self) -> bool:
        """Whether to serve grpc.health.v1 (TF Serving's flag or the mlserve spelling)."""
        return self.enable_grpc_healthcheck_service or self.grpc_health

    def channel_arguments(self) -> list[tuple[str, Any]]:
        """`--grpc_channel_arguments` as gRPC options: "k=v,k2=v2", ints where they parse."""
        result: list[tuple[str, Any]] = []
        for item in filter(None, (p.strip() for p in self.grpc_channel_arguments.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise UsageError(f"--grpc_channel_arguments: expected key=value, got {item!r}")
            try:
                result.append((key.strip(), int(value)))
            except ValueError:
                result.append((key.strip(), value))
        return result


# Help texts; every name here is a flag. Extensions are tagged so `--help` shows what is ours.
HELP: dict[str, str] = {
    "port": "Port to listen on for gRPC API.",
    "grpc_channel_arguments": "Comma separated list of gRPC channel arguments, e.g. key1=val1,key2=val2.",
    "grpc_max_threads": "Max gRPC server threads to handle gRPC messages.",
    "grpc_socket_path": "Accepted, not supported: gRPC over a UNIX socket.",
    "enable_grpc_healthcheck_service": "Enable the standard gRPC health checking service.",
    "rest_api_port": "Port to listen on for HTTP/REST API. 0 disables the REST API.",
    "rest_api_num_threads": "Number of threads for HTTP/REST API processing.",
    "rest_api_timeout_in_ms": "Timeout for HTTP/REST API calls.",
    "rest_api_enable_cors_support": "Enable CORS headers in REST API responses.",
    "model_name": "Name of model (ignored if --model_config_file is set).",
    "model_base_path": "Path to export (ignored if --model_config_file is set).",
    "model_config_file": "Read an ascii ModelServerConfig protobuf from this file and serve its models.",
    "model_config_file_poll_wait_seconds": "Seconds between reads of --model_config_file (0: read once).",
    "file_system_poll_wait_seconds": "Seconds between polls of the filesystem for new model versions.",
    "allow_version_labels_for_unavailable_models": "Allow assigning labels to versions not yet available.",
    "enable_model_warmup": "Replay assets.extra/tf_serving_warmup_requests before serving a version.",
    "num_request_iterations_for_warmup": "Times each warm-up request is replayed (used if > 0).",
    "saved_model_tags": "Comma-separated tags of the meta graph to load from a SavedModel.",
    "max_num_load_retries": "Retries of a failed version load.",
    "load_retry_interval_micros": "Microseconds between retries of a failed load.",
    "num_load_threads": "Accepted; versions load one at a time here.",
    "num_unload_threads": "Accepted; versions unload one at a time here.",
    "flush_filesystem_caches": "Accepted; no effect here.",
    "enable_batching": "Enable server-side request batching.",
    "batching_parameters_file": "Read an ascii BatchingParameters protobuf from this file.",
    "enable_per_model_batching_params": "Read batching parameters from each model's folder.",
    "monitoring_config_file": "Read an ascii MonitoringConfig protobuf (Prometheus endpoint) from this file.",
    "tensorflow_session_parallelism": "Threads for TensorFlow ops (0: auto).",
    "tensorflow_intra_op_parallelism": "Threads inside one TensorFlow op (0: auto).",
    "tensorflow_inter_op_parallelism": "Threads running independent TensorFlow ops (0: auto).",
    "per_process_gpu_memory_fraction": "Accepted; GPU memory grows as needed here.",
    "enable_serialization_as_tensor_content": "Serialize gRPC predict outputs as tensor_content.",
    "enable_signature_method_name_check": "Check that a signature's method name fits the API called.",
    "platform_config_file": "Accepted, not supported.",
    "tensorflow_session_config_file": "Accepted, not supported.",
    "ssl_config_file": "Accepted, not supported: TLS.",
    "use_alts_credentials": "Accepted, not supported: ALTS.",
    "prefer_tflite_model": "Serve <version>/model.tflite (LiteRT) where it exists, else the SavedModel.",
    "num_tflite_pools": "TFLite interpreter pools per model version (default: number of CPUs).",
    "num_tflite_interpreters_per_pool": "TFLite interpreters per pool; one per concurrent call.",
    "enable_profiler": "Accepted; no effect here.",
    "thread_pool_factory_config_file": "Accepted, not supported.",
    "mixed_precision": "Accepted, not supported.",
    "skip_initialize_tpu": "Accepted; no TPU here.",
    "remove_unused_fields_from_bundle_metagraph": "Accepted; no effect here.",
    "xla_cpu_compilation_enabled": "Accepted; no effect here.",
    "xla_gpu_compilation_enabled": "Accepted; no effect here.",
    "version": "Display version and exit.",
    "host": "(mlserve extension) Address both APIs bind; 0.0.0.0 for every interface.",
    "request_log": "(mlserve extension) Append one JSON line per request to this file.",
    "max_request_bytes": "(mlserve extension) Largest REST request body accepted (larger: HTTP 413).",
    "grpc_health": "(mlserve extension) Same as --enable_grpc_healthcheck_service.",
    "grpc_frontend": "(mlserve extension) gRPC server: h2 (ours, on an event loop; the default) or grpcio "
                     "(chosen by itself when --grpc_channel_arguments names an argument h2 does not map).",
    "http_max_request_line_bytes": "(mlserve extension) Longest REST request line (longer: HTTP 414, closed).",
    "http_max_header_bytes": "(mlserve extension) Largest REST request headers (larger: HTTP 431, closed).",
    "http_header_timeout_seconds": "(mlserve extension) Seconds a REST request's headers may take (else 408, closed).",
    "http_body_timeout_seconds": "(mlserve extension) Seconds a REST request's body may take after its headers.",
    "http_idle_timeout_seconds": "(mlserve extension) Seconds an idle keep-alive REST connection stays open.",
    "http_max_connections": "(mlserve extension) Open REST connections; past it the oldest with no request in flight "
                            "is closed (never-used first), and a new one is refused only when every connection has a "
                            "request in flight.",
    "http_max_unsent_bytes": "(mlserve extension) Unread answer bytes after which a REST connection stops reading.",
    "max_inflight_bytes": "(mlserve extension) memory requests may hold in flight at once, REST and gRPC together: "
                          "a REST body is charged as its bytes arrive, then 4x once complete (past it: 429 RESOURCE_EXHAUSTED).",
    "max_decoded_request_bytes": "(mlserve extension) What one gRPC request's tensors may decode to, all together "
                                 "(filled tensors at their full shape; past it: RESOURCE_EXHAUSTED).",
    "allowed_hosts": "(mlserve extension) Comma-separated Host names REST answers besides localhost, 127.0.0.1 and [::1] "
                     "when bound to a loopback address ('*': any; other binds never check). Others: HTTP 421.",
    "allowed_model_roots": "(mlserve extension) Comma-separated folders every model base path must lie under "
                           "(empty: any absolute path).",
    "allow_unload_all_models": "(mlserve extension) Let a config reload unload every model available now "
                               "(an empty model list, or one naming none of them).",
    "feature_lookup": "(mlserve extension) YAML/JSON config: fill missing predict inputs from an online "
                      "feature store (SQLite or Redis) by an entity key; docs/feature-lookup.md.",
    "batching_policy": "(mlserve extension) fixed (TF Serving's: the batching parameters as given) or adaptive "
                       "(batch size limit and wait tuned online to keep p99 under --latency_objective_ms).",
    "latency_objective_ms": "(mlserve extension) The p99 (queueing plus model time) --batching_policy adaptive keeps under.",
    "prediction_cache_bytes": "(mlserve extension) Keep predict answers in memory, LRU, up to this many bytes "
                              "(0: off); keyed by model, version, signature and input bytes.",
    "prediction_cache": "(mlserve extension) redis://host:port[/db]: share predict answers between replicas "
                        "through Redis (after the in-memory tier when both are on); a Redis that is down is a miss.",
    "prediction_cache_ttl_seconds": "(mlserve extension) How long Redis keeps a cached answer.",
    "prediction_cache_timeout_ms": "(mlserve extension) Longest wait for Redis on a cache read before it counts as a miss.",
}

EXTENSIONS = frozenset({"host", "request_log", "max_request_bytes", "grpc_health", "grpc_frontend", "http_max_request_line_bytes",
                        "http_max_header_bytes", "http_header_timeout_seconds", "http_body_timeout_seconds",
                        "http_idle_timeout_seconds", "http_max_connections", "http_max_unsent_bytes",
                        "max_inflight_bytes", "max_decoded_request_bytes", "allowed_model_roots",
                        "allow_unload_all_models", "allowed_hosts", "feature_lookup", "batching_policy",
                        "latency_objective_ms", "prediction_cache_bytes", "prediction_cache",
                        "prediction_cache_ttl_seconds", "prediction_cache_timeout_ms"})

_FIELDS = {f.name: f for f in dataclasses.fields(ServerOptions)}
assert set(HELP) == set(_FIELDS), set(HELP) ^ set(_FIELDS)

GRPC_FRONTENDS = ("h2", "grpcio")
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def _kind(name: str) -> type:
    return type(_FIELDS[name].default)


def _convert(name: str, raw: str) -> Any:
    kind = _kind(name)
    if kind is bool:
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise UsageError(f"invalid value for --{name}: {raw!r} (expected true or false)")
    try:
        return kind(raw)
    except ValueError:
        raise UsageError(f"invalid value for --{name}: {raw!r} (expected {kind.__name__})") from None


def parse_flags(argv: Sequence[str]) -> ServerOptions:
    """Parse TF Serving style flags; an unknown flag or a stray argument raises `UsageError`."""
    options = ServerOptions()
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            raise UsageError(f"unknown argument: {arg!r} (flags are written --name=value)")
        body = arg.lstrip("-")
        name, has_value, value = body.partition("=")
        if name not in _FIELDS:
            raise UsageError(f"unknown command line flag '{name}'",
                             hint="python -m mlserve.server --help lists the flags.")
        if _kind(name) is bool:
            setattr(options, name, _convert(name, value) if has_value else True)
            continue
        if not has_value:
            if i >= len(args):
                raise UsageError(f"flag --{name} needs a value")
            value = args[i]
            i += 1
        setattr(options, name, _convert(name, value))
    if options.grpc_frontend not in GRPC_FRONTENDS:
        raise UsageError(f"invalid value for --grpc_frontend: {options.grpc_frontend!r} "
                         f"(expected {' or '.join(GRPC_FRONTENDS)})")
    return options


def usage(prog: str = "python -m mlserve.server") -> str:
    """The `--help` text: every flag with its type, default and description."""
    lines = [f"usage: {prog} --model_base_path=PATH [--model_name=NAME] [--port=8500] "
             "[--rest_api_port=8501] ...", "Flags:"]
    for name, text in HELP.items():
        default = _FIELDS[name].default
        lines.append(f"\t--{name}={str(default).lower() if isinstance(default, bool) else default}"
                     f"\t{_kind(name).__name__}\t{text}")
    return "\n".join(lines) + "\n"

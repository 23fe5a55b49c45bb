"""`python -m mlserve.server` / `mlserve-model-server`: a drop-in for `tensorflow_model_server`.

`main(argv)` parses TF Serving's flags, loads the models, serves gRPC (and REST when
`--rest_api_port` is not 0) and stops gracefully on
SIGTERM/SIGINT: in-flight requests finish, then the process exits 0; a second SIGINT exits at once.
`ModelServer` is the same thing as an object, for running the server inside another program.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any, Sequence

from mlserve.errors import MlserveError, UsageError
from mlserve.server.observability import metrics
from mlserve.server.servables.batching import Batcher
from mlserve.server.servables.batchingparams import BatchingOptions
from mlserve.server.transport.budget import InflightBudget
from mlserve.server.models.config import build_config
from mlserve.server.dataplane import DataPlane
from mlserve.server.flags import ServerOptions, parse_flags, usage
from mlserve.server.transport.loopthread import LoopThread
from mlserve.server.models.manager import ModelManager
from mlserve.server.models.reloadpolicy import ReloadPolicy
from mlserve.server.servables.tflite import TFLiteOptions
from mlserve.server.cache import PredictionCache
from mlserve.server.observability.requestlog import RequestLog
from mlserve.server.servables.savedmodel import Servable

if TYPE_CHECKING:
    from mlserve.server.frontends.grpc.start import GrpcFront

log = logging.getLogger("mlserve.server")


def _configure_tensorflow(options: ServerOptions) -> None:
    intra, inter = options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
    if intra > 0 and inter > 0 and options.tensorflow_session_parallelism > 0:
        raise UsageError("Either configure server_options.tensorflow_session_parallelism or "
                         "(server_options.tensorflow_intra_op_parallelism, "
                         "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all.")
    if options.tensorflow_session_parallelism > 0 and not (intra or inter):
        intra = inter = options.tensorflow_session_parallelism
    if not (intra or inter):
        return
    import tensorflow as tf

    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        if inter:
            tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError as e:  # TF already initialised (an in-process server after other TF work)
        log.warning("TensorFlow thread pools already set up; parallelism flags ignored: %s", e)


def _check(options: ServerOptions) -> None:
    if options.batching_parameters_file and not options.enable_batching:
        raise UsageError("server_options.batching_parameters_file is set without setting "
                         "server_options.enable_batching to true.")
    if options.batching_policy != "fixed" and not options.enable_batching:
        raise UsageError(f"--batching_policy {options.batching_policy} is set without --enable_batching",
                         hint="--enable_batching --batching_policy adaptive --latency_objective_ms 10")
    if options.prediction_cache_bytes < 0:
        raise UsageError(f"--prediction_cache_bytes must be 0 (off) or positive, got {options.prediction_cache_bytes}")
    if not options.model_base_path and not options.model_config_file:
        raise UsageError("Both server_options.model_base_path and server_options.model_config_file are empty!",
                         hint="pass --model_base_path=/path/to/model (the folder holding 1/, 2/, ...)")
    if options.grpc_socket_path:
        raise UsageError("--grpc_socket_path is not supported by mlserve's embedded server")
    for flag in ("ssl_config_file", "platform_config_file", "use_alts_credentials", "prefer_tflite_model"):
        if getattr(options, flag):
            log.warning("--%s is accepted for compatibility and ignored by mlserve's embedded server", flag)


class ModelServer:
    """Manager + data plane + gRPC + optional REST, started and stopped as one. The one place
    that builds the shared Batcher and RequestLog."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.manager: ModelManager | None = None
        self.dataplane: DataPlane | None = None
        self.grpc: GrpcFront | None = None
        self.rest: LoopThread | None = None
        self.request_log: RequestLog | None = None
        self.batcher: Batcher | None = None

    @property
    def grpc_port(self) -> int | None:
        return self.grpc.port if self.grpc else None

    def start(self) -> None:
        """Load the models, then open the ports. Raises MlserveError/OSError when it cannot."""
        # The front-ends pull in gRPC and TensorFlow's protos (hence TensorFlow): imported here,
        # so that `--help`, `--version` and flag errors answer at once.
        from mlserve.server.frontends.grpc.methods import METHODS
        from mlserve.server.frontends.grpc.start import start_grpc
        from mlserve.server.frontends.rest.routes import serve_rest
        from mlserve.server.frontends.v2 import grpc as v2_grpc
        from mlserve.server.frontends.v2.rest import V2Rest

        options = self.options
        _check(options)
        if options.model_config_file:
            log.info("Loading models from config file %s", options.model_config_file)
        else:
            log.info("Building single TensorFlow model file config:  model_name: %s model_base_path: %s",
                     options.model_name, options.model_base_path)
        models = build_config(options)
        _configure_tensorflow(options)
        Servable.method_name_check = options.enable_signature_method_name_check
        if options.enable_batching:
            # one batcher for gRPC and REST, as TF Serving shares its batching session
            self.batcher = Batcher(BatchingOptions.from_file(
                options.batching_parameters_file or None, policy=options.batching_policy,
                latency_objective_ms=options.latency_objective_ms))
        self.request_log = RequestLog(options.request_log or None)
        features = None
        if options.feature_lookup:  # checked before the models load: a bad config fails at once
            from mlserve.server.features.lookup import FeatureLookup

            features = FeatureLookup.from_file(options.feature_lookup)
            log.info("Feature lookup from %s", features.store.label)
        cache = PredictionCache.from_flags(options.prediction_cache_bytes, options.prediction_cache,
                                           options.prediction_cache_ttl_seconds, options.prediction_cache_timeout_ms)
        if cache is not None:
            log.info("Prediction cache: %s", cache.label)
        self.manager = ModelManager(
            models, poll_seconds=options.file_system_poll_wait_seconds,
            enable_warmup=options.enable_model_warmup,
            warmup_iterations=options.num_request_iterations_for_warmup,
            tags=[t.strip() for t in options.saved_model_tags.split(",") if t.strip()] or ["serve"],
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            config_file=options.model_config_file or None,
            config_poll_seconds=options.model_config_file_poll_wait_seconds,
            tflite=TFLiteOptions(options.prefer_tflite_model, options.num_tflite_pools,
                                 options.num_tflite_interpreters_per_pool),
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_s=options.load_retry_interval_micros / 1e6)
        self.manager.start()
        self.dataplane = DataPlane(self.manager, self.batcher,
                                   per_model_batching=options.enable_per_model_batching_params,
                                   budget=InflightBudget(options.max_inflight_bytes))
        self.dataplane.max_decoded_bytes = options.max_decoded_request_bytes
        metrics.track_models(self.manager.model_names)  # bounded label cardinality
        self.dataplane.reload_policy = ReloadPolicy.from_flags(options.allowed_model_roots,
                                                               options.allow_unload_all_models)
        self.dataplane.features = features
        self.dataplane.cache = cache
        self.manager.allowed_roots = self.dataplane.reload_policy.allowed_roots
        # TF Serving's API and the Open Inference Protocol (v2) on each port, over one data plane
        calls = v2_grpc.V2Calls(self.dataplane, self.request_log,
                                tensor_content=options.enable_serialization_as_tensor_content)
        self.grpc = start_grpc(self.dataplane, options, self.request_log, {**METHODS, **v2_grpc.METHODS}, calls)
        if options.rest_api_port:
            if options.rest_api_port == options.port:
                log.error("server_options.http_port cannot be same as grpc_port. Please use a different "
                          "port for HTTP/REST API. Skipped exporting HTTP/REST API.")
            else:
                try:
                    self.rest = serve_rest(self.dataplane, options, self.request_log, apps=[V2Rest])
                except OSError as e:  # TF Serving too keeps serving gRPC when its HTTP server fails
                    log.error("Failed to start HTTP Server at %s:%d: %s", options.host, options.rest_api_port, e)
                else:
                    log.info("Exporting HTTP/REST API at:%s:%d ...", options.host, options.rest_api_port)

    def stop(self, grace: float = 5.0) -> None:
        """Drain and close REST and gRPC, then unload the models."""
        if self.rest is not None:
            self.rest.stop(grace)
            self.rest = None
        if self.grpc is not None:
            self.grpc.stop(grace)
        if self.dataplane is not None:
            self.dataplane.close()
            if self.dataplane.features is not None:
                self.dataplane.features.close()
            if self.dataplane.cache is not None:
                self.dataplane.cache.close()
        if self.batcher is not None:
            self.batcher.close()
            self.batcher = None
        if self.manager is not None:
            self.manager.stop()
        if self.request_log is not None:
            self.request_log.close()


def _setup_logging() -> None:
    root = logging.getLogger("mlserve")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s.%(msecs)03d: %(levelname).1s %(name)s] %(message)s",
                                               "%Y-%m-%d %H:%M:%S"))
        root.addHandler(handler)
    from mlserve import settings

    root.setLevel(str(settings.get("server_log_level")).upper())


def _version_text() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("mlserve")
    except PackageNotFoundError:  # pragma: no cover
        ours = "unknown"
    import tensorflow as tf

    return f"TensorFlow ModelServer: mlserve-{ours} (embedded)\nTensorFlow Library: {tf.__version__}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGTERM/SIGINT; returns the exit status (2: bad flags, 3: start failed)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--help", "-help", "-h", "--helpfull") for a in args):
        sys.stdout.write(usage())
        return 0
    try:
        options = parse_flags(args)
    except UsageError as e:
        sys.stderr.write(f"ERROR: {e.message}\n")
        if e.hint:
            sys.stderr.write(f"Hint: {e.hint}\n")
        return 2
    from mlserve.tfquiet import quiet_tensorflow

    quiet_tensorflow()  # TensorFlow's C++ start-up lines stay out of the server log unless verbose
    if options.version:
        sys.stdout.write(_version_text())
        return 0
    _setup_logging()

    stopping = threading.Event()
    signals_seen = {"count": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        signals_seen["count"] += 1
        if signals_seen["count"] > 1 and signum == signal.SIGINT:
            sys.stderr.write("Second interrupt: exiting now.\n")
            os._exit(130)
        log.info("Received %s; shutting down (in-flight requests finish first)...",
                 signal.Signals(signum).name)
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = ModelServer(options)
    try:
        try:
            server.start()
        except MlserveError as e:
            sys.stderr.write(f"Failed to start server. Error: {e.message}\n")
            if e.hint:
                sys.stderr.write(f"Hint: {e.hint}\n")
            server.stop(0)
            return e.exit_code if e.exit_code != 1 else 3
        except OSError as e:
            sys.stderr.write(f"Failed to start server. Error: {e}\n")
            server.stop(0)
            return 3
        # What is loaded by now (TensorFlow, the models: ~320,000 objects) lives as long as the
        # process; frozen, the cyclic collector's full passes stop walking it between requests.
        gc.freeze()
        while not stopping.wait(1.0):
            pass
        server.stop(grace=5.0)
        log.info("Server stopped.")
        return 0
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

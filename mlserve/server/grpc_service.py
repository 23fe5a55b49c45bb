"""TF Serving's gRPC API (PredictionService, ModelService, optional grpc.health.v1) on the
official stubs of `tensorflow_serving.apis`, so any TF Serving client works unchanged.

A synchronous `grpc.server` with a thread pool: the TensorFlow call releases the GIL, so threads
overlap model work, and the handlers stay plain functions that share `Servable`'s code.
"""
from __future__ import annotations

import logging
import time
from concurrent import futures
from typing import Any, Callable

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from mlserve.server.errors import ServingError
from mlserve.server.manager import ModelManager
from mlserve.server.requestlog import RequestLog
from mlserve.server.servable import Servable

log = logging.getLogger("mlserve.server")

_CODE_NUMBERS = {c.name: c.value[0] for c in grpc.StatusCode}
_SERVICE_NAMES = ("tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")

try:  # metrics are the REST engineer's module; gRPC counts requests there when it exists
    from mlserve.server import metrics as _metrics
except ImportError:  # pragma: no cover
    _metrics = None


def resolve(manager: ModelManager, model_spec: Any) -> Servable:
    """The servable a request's ModelSpec names (latest, a version or a label)."""
    if not model_spec.name:
        raise ServingError("INVALID_ARGUMENT", "ModelSpec has no name specified.")
    choice = model_spec.WhichOneof("version_choice")
    if choice == "version":
        return manager.get(model_spec.name, version=model_spec.version.value)
    if choice == "version_label":
        return manager.get(model_spec.name, label=model_spec.version_label)
    return manager.get(model_spec.name)


class _Base:
    def __init__(self, manager: ModelManager, options: Any, request_log: RequestLog, batcher: Any = None) -> None:
        self.manager = manager
        self.options = options
        self.request_log = request_log
        self.batcher = batcher

    def _handle(self, method: str, model_name: str, context: grpc.ServicerContext,
                work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        code, message = "OK", ""
        try:
            return work()
        except ServingError as e:
            code, message = e.code, e.message
        except Exception as e:  # a bug or an unexpected TF failure: INTERNAL, server stays up
            log.exception("%s failed", method)
            code, message = "INTERNAL", f"{type(e).__name__}: {e}"
        finally:
            elapsed = time.perf_counter() - start
            if _metrics is not None:
                try:
                    _metrics.observe_request(model_name, method, "GRPC", code, elapsed)
                except Exception:  # pragma: no cover - metrics must never fail a request
                    pass
            if self.request_log.enabled:
                self.request_log.write(api="grpc", method=method, model=model_name, code=code,
                                       ms=round(elapsed * 1000, 3), error=message or None)
        context.abort(getattr(grpc.StatusCode, code), message)


class PredictionServicer(_Base, prediction_service_pb2_grpc.PredictionServiceServicer):
    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC names
        as_content = bool(self.options.enable_serialization_as_tensor_content)
        return self._handle("Predict", request.model_spec.name, context,
                            lambda: resolve(self.manager, request.model_spec).predict(
                                request, tensor_content=as_content, batcher=self.batcher,
                                timeout=context.time_remaining()))

    def Classify(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Classify", request.model_spec.name, context,
                            lambda: resolve(self.manager, request.model_spec).classify(request))

    def Regress(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return self._handle("Regress", request.model_spec.name, context,
                            lambda: resolve(self.manager, request.model_spec).regress(request))

    def MultiInference(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.tasks:
                raise ServingError("INVALID_ARGUMENT", "Tasks is empty.")
            return resolve(self.manager, request.tasks[0].model_spec).multi_inference(request)

        name = request.tasks[0].model_spec.name if request.tasks else ""
        return self._handle("MultiInference", name, context, work)

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.metadata_field:
                raise ServingError("INVALID_ARGUMENT",
                                   "GetModelMetadataRequest must specify at least one metadata_field")
            return resolve(self.manager, request.model_spec).metadata_response(list(request.metadata_field))

        return self._handle("GetModelMetadata", request.model_spec.name, context, work)


def status_response(manager: ModelManager, model_spec: Any) -> Any:
    """A GetModelStatusResponse for `model_spec` (all versions unless it names one)."""
    choice = model_spec.WhichOneof("version_choice")
    statuses = manager.status(
        model_spec.name,
        version=model_spec.version.value if choice == "version" else None,
        label=model_spec.version_label if choice == "version_label" else None)
    resp = get_model_status_pb2.GetModelStatusResponse()
    for s in statuses:
        entry = resp.model_version_status.add()
        entry.version = s.version
        entry.state = get_model_status_pb2.ModelVersionStatus.State.Value(s.state)
        entry.status.error_code = _CODE_NUMBERS.get(s.error_code, 2)
        entry.status.error_message = s.error_message
    return resp


class ModelServicer(_Base, model_service_pb2_grpc.ModelServiceServicer):
    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if not request.HasField("model_spec"):
                raise ServingError("INVALID_ARGUMENT", "Missing ModelSpec")
            return status_response(self.manager, request.model_spec)

        return self._handle("GetModelStatus", request.model_spec.name, context, work)

    def HandleReloadConfigRequest(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        def work() -> Any:
            if request.config.WhichOneof("config") != "model_config_list":
                raise ServingError("INVALID_ARGUMENT",
                                   "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                                   "Only ModelConfigList is currently supported")
            try:
                self.manager.reload_config(request.config)
            except ServingError:
                raise
            except Exception as e:  # a UsageError from config validation
                raise ServingError("INVALID_ARGUMENT", getattr(e, "message", str(e))) from e
            resp = model_management_pb2.ReloadConfigResponse()
            resp.status.error_code = 0
            return resp

        return self._handle("HandleReloadConfigRequest", "", context, work)


class GrpcServer:
    """The gRPC server: `start()` binds and serves, `stop(grace)` drains in-flight calls."""

    def __init__(self, manager: ModelManager, options: Any, request_log: RequestLog | None = None,
                 batcher: Any = None) -> None:
        self.batcher = batcher
        self.manager = manager
        self.options = options
        self.request_log = request_log or RequestLog(None)
        self.port: int | None = None
        self._server: grpc.Server | None = None
        self._health: Any = None

    def start(self) -> int:
        """Bind `options.host:options.port` (0: any free port) and serve; returns the port."""
        max_msg = 2**31 - 1  # TF Serving lifts gRPC's 4 MB limit the same way
        grpc_options = [("grpc.max_receive_message_length", max_msg),
                        ("grpc.max_send_message_length", max_msg),
                        ("grpc.so_reuseport", 0)]  # a taken port must fail, not be shared
        grpc_options += self.options.channel_arguments()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=max(self.options.grpc_max_threads, 1),
                                                        thread_name_prefix="grpc"),
                             options=grpc_options)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.manager, self.options, self.request_log, self.batcher), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.manager, self.options, self.request_log), server)
        if self.options.health_service:
            self._add_health(server)
        address = f"{self.options.host}:{self.options.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}: {e}") from e
        if not port:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}")
        server.start()
        self._server, self.port = server, port
        log.info("Running gRPC ModelServer at %s:%d ...", self.options.host, port)
        return port

    def _add_health(self, server: grpc.Server) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

        def update(*_: Any) -> None:
            status = (health_pb2.HealthCheckResponse.SERVING if self.manager.all_available()
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", *_SERVICE_NAMES):
                self._health.set(name, status)

        update()
        self.manager.add_listener(update)

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish for up to `grace` seconds."""
        if self._server is None:
            return
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait(grace + 1)
        self._server = None

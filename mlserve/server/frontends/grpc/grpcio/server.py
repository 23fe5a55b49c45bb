"""grpcio's gRPC server, the fallback front-end (`--grpc_frontend=grpcio`; `grpc/start.py` picks
one): binds, serves the TF Serving services over `grpc/methods.py` (and grpc.health.v1 when asked)
and drains on stop."""
from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from mlserve.server.dataplane import DataPlane
from mlserve.server.flags import ServerOptions, schedulable_cpus
from mlserve.server.frontends.grpc.grpcio.guard import GuardedServer
from mlserve.server.frontends.grpc.grpcio.servicers import MODEL_SERVICE, PREDICTION_SERVICE, ModelServicer, PredictionServicer
from mlserve.server.observability.requestlog import RequestLog

log = logging.getLogger("mlserve.server.grpc")


def handler_threads(options: ServerOptions, *, batching: bool) -> int:
    """grpcio's handler pool: `--grpc_max_threads`, at most 2 per schedulable CPU without batching.

    Without batching each handler runs its own model call, and more of them than the CPUs can
    run only take turns at the GIL: on one core, 1 image at 32 connections, 2 threads serve
    0.80-0.90x REST's requests/s, 8 threads 0.62-0.81x (docs/architecture.md). With batching a handler waits in a batch, so all of
    `--grpc_max_threads` stay (they bound how many calls one batch can gather)."""
    threads = max(options.grpc_max_threads, 1)
    if not batching:
        threads = min(threads, 2 * schedulable_cpus())
    return threads


class GrpcServer:
    """`start()` binds `options.host:options.port` and serves; `stop(grace)` drains in-flight calls."""

    def __init__(self, dataplane: DataPlane, options: ServerOptions, request_log: RequestLog) -> None:
        self.dataplane = dataplane
        self.options = options
        self.request_log = request_log
        self.port: int | None = None
        self._server: grpc.Server | None = None
        self._health: health.HealthServicer | None = None

    def start(self) -> int:
        """Bind (port 0: any free port) and serve; returns the port. OSError when it cannot bind."""
        options = self.options
        max_msg = 2**31 - 1  # TF Serving lifts gRPC's 4 MB limit the same way
        grpc_options = [("grpc.max_receive_message_length", max_msg),
                        ("grpc.max_send_message_length", max_msg),
                        ("grpc.so_reuseport", 0)]  # a taken port must fail, not be shared
        grpc_options += options.channel_arguments()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=handler_threads(options, batching=self.dataplane.batcher is not None),
                                                        thread_name_prefix="grpc"),
                             options=grpc_options)
        as_content = options.enable_serialization_as_tensor_content
        guarded = GuardedServer(server)  # unparsable requests: INVALID_ARGUMENT, not INTERNAL
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.dataplane, self.request_log, tensor_content=as_content), guarded)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.dataplane, self.request_log), guarded)
        if options.health_service:
            self._add_health(server)
        address = f"{options.host}:{options.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}: {e}") from e
        if not port:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}")
        server.start()
        self._server, self.port = server, port
        log.info("Running gRPC ModelServer at %s:%d ...", options.host, port)
        return port

    def _add_health(self, server: grpc.Server) -> None:
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)

        def update(*_: Any) -> None:
            status = (health_pb2.HealthCheckResponse.SERVING if self.dataplane.ready()
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", PREDICTION_SERVICE, MODEL_SERVICE):
                self._health.set(name, status)

        update()
        self.dataplane.on_change(update)

    def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish for up to `grace` seconds."""
        if self._server is None:
            return
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        self._server.stop(grace).wait(grace + 1)
        self._server = None

"""The gRPC server on grpc.aio: binds, registers the TF Serving servicers (and grpc.health.v1
when asked) and drains on stop. Hosted on its own event-loop thread (`loopthread.LoopThread`)."""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from mlserve.server.dataplane import DataPlane
from mlserve.server.flags import ServerOptions
from mlserve.server.grpc_servicers import MODEL_SERVICE, PREDICTION_SERVICE, ModelServicer, PredictionServicer
from mlserve.server.loopthread import LoopThread
from mlserve.server.requestlog import RequestLog

log = logging.getLogger("mlserve.server.grpc")


class GrpcServer:
    """`start()` binds `options.host:options.port` and serves; `stop(grace)` drains in-flight
    calls. Both inside the running event loop."""

    def __init__(self, dataplane: DataPlane, options: ServerOptions, request_log: RequestLog) -> None:
        self.dataplane = dataplane
        self.options = options
        self.request_log = request_log
        self.port = 0
        # model calls too long for the loop (large predicts, classify, regress, reloads)
        self.executor = ThreadPoolExecutor(max_workers=max(options.grpc_max_threads, 1), thread_name_prefix="grpc")
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    async def start(self) -> None:
        """Bind (port 0: any free port, see `.port`) and serve. OSError when it cannot bind."""
        options = self.options
        max_msg = 2**31 - 1  # TF Serving lifts gRPC's 4 MB limit the same way
        grpc_options = [("grpc.max_receive_message_length", max_msg),
                        ("grpc.max_send_message_length", max_msg),
                        ("grpc.so_reuseport", 0)]  # a taken port must fail, not be shared
        grpc_options += options.channel_arguments()
        server = grpc.aio.server(options=grpc_options)
        as_content = options.enable_serialization_as_tensor_content
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionServicer(self.dataplane, self.request_log, self.executor, tensor_content=as_content), server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelServicer(self.dataplane, self.request_log, self.executor), server)
        if options.health_service:
            await self._add_health(server)
        address = f"{options.host}:{options.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as e:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}: {e}") from e
        if not port:
            raise OSError(f"Failed to BuildAndStart gRPC server: cannot bind {address}")
        await server.start()
        self._server, self.port = server, port
        log.info("Running gRPC ModelServer at %s:%d ...", options.host, port)

    async def _add_health(self, server: grpc.aio.Server) -> None:
        servicer = self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        loop = asyncio.get_running_loop()

        async def update() -> None:
            status = (health_pb2.HealthCheckResponse.SERVING if self.dataplane.ready()
                      else health_pb2.HealthCheckResponse.NOT_SERVING)
            for name in ("", PREDICTION_SERVICE, MODEL_SERVICE):
                await servicer.set(name, status)

        def changed(*_: Any) -> None:  # on a manager thread
            if not loop.is_closed():
                asyncio.run_coroutine_threadsafe(update(), loop)

        await update()
        self.dataplane.on_change(changed)

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish for up to `grace` seconds."""
        if self._server is None:
            return
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        await self._server.stop(grace)
        self._server = None
        self.executor.shutdown(wait=False, cancel_futures=True)


def serve_grpc(dataplane: DataPlane, options: ServerOptions, request_log: RequestLog) -> LoopThread:
    """Start the gRPC server on its own event-loop thread; returns once the port is bound.

    Raises OSError when the port cannot be bound. `.stop(grace)` drains and closes it."""
    return LoopThread.start(GrpcServer(dataplane, options, request_log), name="grpc-loop")

"""`start_grpc`: the one place the gRPC front-end is chosen (`--grpc_frontend`): our HTTP/2 one
(`h2front.py`) by default, grpcio's server (`grpcio/`) as the fallback."""
from __future__ import annotations

import logging
from typing import Protocol

from mlserve.server.dataplane import DataPlane
from mlserve.server.flags import ServerOptions
from mlserve.server.observability.requestlog import RequestLog

log = logging.getLogger("mlserve.server.grpc")


class GrpcFront(Protocol):
    port: int

    def stop(self, grace: float = 5.0) -> None: ...


def start_grpc(dataplane: DataPlane, options: ServerOptions, request_log: RequestLog) -> GrpcFront:
    """Start the gRPC front-end `--grpc_frontend` names; grpcio when a `--grpc_channel_arguments`
    key means nothing to ours (one log line says which). OSError when it cannot bind."""
    from mlserve.server.frontends.grpc.grpcio.server import GrpcServer
    from mlserve.server.frontends.grpc.h2front import serve_grpc_h2, unmapped_arguments

    if options.grpc_frontend == "h2":
        unmapped = unmapped_arguments(options)
        if not unmapped:
            return serve_grpc_h2(dataplane, options, request_log)
        log.info("gRPC on grpcio: --grpc_channel_arguments %s not mapped by the HTTP/2 front-end",
                 ",".join(unmapped))
    server = GrpcServer(dataplane, options, request_log)
    server.start()
    return server

"""grpc.health.v1 Health for the HTTP/2 gRPC front-end: `Check`, and `Watch` (server streaming:
the current status, then each change, until the client cancels or the server stops).

The status of "" (the whole server) and of both TF Serving services is SERVING while every
model has an AVAILABLE version, NOT_SERVING otherwise, and NOT_SERVING once the server stops
(as grpcio's `HealthServicer.enter_graceful_shutdown`). Runs on the event loop; data-plane
changes arrive from the manager's thread through `post`.
"""
from __future__ import annotations

from typing import Any, Callable

from grpc_health.v1 import health_pb2

from mlserve.server.frontends.grpc import wire
from mlserve.server.frontends.grpc.methods import MODEL_SERVICE, PREDICTION_SERVICE
from mlserve.server.transport.http2 import H2Connection, Stream

SERVICE = "grpc.health.v1.Health"
CHECK, WATCH = f"/{SERVICE}/Check", f"/{SERVICE}/Watch"
_SERVING, _NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


class Health:
    def __init__(self, dataplane: Any, post: Callable[..., None]) -> None:
        self.dataplane, self.post = dataplane, post
        self.status: dict[str, int] = {}
        self.watchers: dict[str, set[tuple[H2Connection, Stream]]] = {}
        self.stopped = False
        self._set(self._current())
        dataplane.on_change(lambda *_: self.post(self._changed))

    def _current(self) -> int:
        return _SERVING if self.dataplane.ready() else _NOT_SERVING

    def _set(self, status: int) -> None:
        for name in ("", PREDICTION_SERVICE, MODEL_SERVICE):
            if self.status.get(name) != status:
                self.status[name] = status
                for conn, stream in list(self.watchers.get(name, ())):
                    conn.send_data(stream, _message(status))

    def _changed(self) -> None:
        if not self.stopped:
            self._set(self._current())

    def check(self, request: Any) -> tuple[bytes | None, str]:
        """(response bytes, "OK"), or (None, "NOT_FOUND") for a service we do not know."""
        status = self.status.get(request.service)
        if status is None:
            return None, "NOT_FOUND"
        return health_pb2.HealthCheckResponse(status=status).SerializeToString(), "OK"

    def watch(self, conn: H2Connection, stream: Stream, request: Any) -> None:
        """Start a Watch: headers and the current status now, each change later."""
        service = request.service
        watchers = self.watchers.setdefault(service, set())
        entry = (conn, stream)
        watchers.add(entry)
        stream.on_cancel = lambda: watchers.discard(entry)
        conn.send_headers(stream, wire.RESPONSE_HEADERS)
        conn.send_data(stream, _message(self.status.get(service, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)))

    def shutdown(self) -> None:
        """NOT_SERVING to every watcher, then end each Watch (status UNAVAILABLE)."""
        self._set(_NOT_SERVING)
        self.stopped = True
        for watchers in self.watchers.values():
            for conn, stream in list(watchers):
                conn.send_trailers(stream, wire.trailers("UNAVAILABLE", "Server shutting down"))
            watchers.clear()


def _message(status: int) -> bytes:
    return wire.pack(health_pb2.HealthCheckResponse(status=status).SerializeToString())

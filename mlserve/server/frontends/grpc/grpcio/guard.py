"""An unparsable gRPC request is INVALID_ARGUMENT, not INTERNAL.

grpcio answers INTERNAL ("Exception deserializing request!") when a request's bytes are not the
method's message, before any servicer runs. `GuardedServer` stands in for the `grpc.Server` that
the generated `add_*Servicer_to_server` functions register with: it wraps each method's
deserializer so that a bad message becomes a marker, and the method answers it with
INVALID_ARGUMENT. Nothing changes per call for a good message but one identity test.
"""
from __future__ import annotations

from typing import Any, Callable

import grpc
from google.protobuf.message import DecodeError

_UNPARSABLE = object()


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError, RuntimeError):
            return _UNPARSABLE

    return deserialize


def _guarded(behaviour: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        if request is _UNPARSABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Could not parse the request message")
        return behaviour(request, context)

    return call


def guard_handler(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a deserializer that cannot raise (unary-unary methods; others unchanged)."""
    if handler.unary_unary is None or not hasattr(handler, "_replace"):
        return handler
    return handler._replace(request_deserializer=_safe(handler.request_deserializer),
                            unary_unary=_guarded(handler.unary_unary))


class GuardedServer:
    """Passes registrations on to `server`, every method handler guarded."""

    def __init__(self, server: grpc.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        guarded = []
        for h in handlers:
            methods = getattr(h, "_method_handlers", None)
            if isinstance(methods, dict):  # keyed by full method path: guard in place
                h._method_handlers = {path: guard_handler(m) for path, m in methods.items()}
            guarded.append(h)
        self._server.add_generic_rpc_handlers(tuple(guarded))

    def add_registered_method_handlers(self, service_name: str, method_handlers: dict) -> None:
        self._server.add_registered_method_handlers(
            service_name, {name: guard_handler(m) for name, m in method_handlers.items()})

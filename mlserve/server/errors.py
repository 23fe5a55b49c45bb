"""The one error type of the embedded model server.

Every failure a request can meet inside the server is a `ServingError` carrying a gRPC status code
name and a message worded like TensorFlow Serving's where TF Serving has a wording, so a client
sees the same status (and, through the REST layer, the same HTTP status) from either server.
"""
from __future__ import annotations

from typing import Any

# TF Serving's mapping of a status code to an HTTP status (its http_server.cc, read for facts).
HTTP_STATUS: dict[str, int] = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """A request failed with a gRPC status `code` (its name, e.g. "NOT_FOUND") and a message."""

    def __init__(self, code: str, message: str) -> None:
        if code not in HTTP_STATUS:
            raise ValueError(f"not a gRPC status code name: {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def grpc_code(self) -> Any:
        """The `grpc.StatusCode` member of this error's code."""
        import grpc

        return getattr(grpc.StatusCode, self.code)

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers for this code."""
        return HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"ServingError({self.code!r}, {self.message!r})"

    def __str__(self) -> str:
        return self.message


"""The one error type of the embedded model server, and its one vocabulary of status codes.

Every failure a request can meet inside the server is a `ServingError` carrying a gRPC status code
name and a message worded like TensorFlow Serving's where TF Serving has a wording, so a client
sees the same status (and, through the REST layer, the same HTTP status) from either server.
`StatusCode` is the only list of codes: its values are the gRPC spec's numbers (the same as
`tf.errors` codes and `grpc.StatusCode`), and `http` is TF Serving's HTTP status for each.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any


class StatusCode(IntEnum):
    """gRPC status codes, numbered as the gRPC spec (and TensorFlow's error codes) number them."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16

    @property
    def http(self) -> int:
        """The HTTP status TF Serving's REST API answers for this code (its http_server.cc)."""
        return _HTTP[self]

    @classmethod
    def number(cls, name: str) -> int:
        """The number of the code called `name`; UNKNOWN's for a name that is no code."""
        member = cls.__members__.get(name)
        return int(member if member is not None else cls.UNKNOWN)

    @classmethod
    def name_of(cls, number: int) -> str:
        """The name of code `number`; "UNKNOWN" for a number that is no code (or OK, which is
        never an error)."""
        return cls(number).name if 0 < number <= cls.UNAUTHENTICATED else "UNKNOWN"


_HTTP = {
    StatusCode.OK: 200, StatusCode.CANCELLED: 499, StatusCode.UNKNOWN: 500,
    StatusCode.INVALID_ARGUMENT: 400, StatusCode.DEADLINE_EXCEEDED: 504, StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409, StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429, StatusCode.FAILED_PRECONDITION: 400, StatusCode.ABORTED: 409,
    StatusCode.OUT_OF_RANGE: 400, StatusCode.UNIMPLEMENTED: 501, StatusCode.INTERNAL: 500,
    StatusCode.UNAVAILABLE: 503, StatusCode.DATA_LOSS: 500, StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: str) -> int:
    """TF Serving's HTTP status for the code called `code` (500 for a name that is no code)."""
    member = StatusCode.__members__.get(code)
    return member.http if member is not None else 500


class ServingError(Exception):
    """A request failed with a gRPC status `code` (its name, e.g. "NOT_FOUND") and a message."""

    def __init__(self, code: str, message: str) -> None:
        if code not in StatusCode.__members__:
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
    def number(self) -> int:
        """The gRPC spec's number of this error's code (the `grpc-status` trailer)."""
        return int(StatusCode[self.code])

    @property
    def http_status(self) -> int:
        """The HTTP status TF Serving's REST API answers for this code."""
        return StatusCode[self.code].http

    def __repr__(self) -> str:
        return f"ServingError({self.code!r}, {self.message!r})"

    def __str__(self) -> str:
        return self.message

"""The error vocabulary of mlserve and its stable exit codes.

Library code raises an `MlserveError` subclass; the CLI's single error boundary
(`mlserve.cli.app.main`) prints `Error: <message>` and `Hint: <hint>` on stderr and exits with the
subclass's `exit_code`. The codes are part of the public interface (docs/exit-codes.md).
"""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1  # an unexpected failure (a bug): the traceback is shown with MLSERVE_DEBUG=1
    USAGE = 2  # bad flag or argument value (Typer/Click use 2 as well)
    SERVER_START_FAILED = 3  # the server exited or did not become ready (uvicorn's code too)
    NOT_FOUND = 4  # a model, version, file, server record or executable that does not exist
    DATA_ERROR = 5  # unreadable, corrupt or wrong-shaped data or model files
    CONFLICT = 6  # something already exists or is in the way: a model version, a bound port
    UNREACHABLE = 7  # no server answers at the address given
    SERVER_ERROR = 8  # the server answered with an error
    UNAVAILABLE = 9  # a runtime, tool or device that this machine lacks (docker, GPU, apt)
    TIMEOUT = 10  # a bounded wait ran out
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class MlserveError(Exception):
    """Base of every error that the CLI reports as a one-line message plus a hint."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, hint: str | None = None, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # Extra lines shown under the message, e.g. the last lines of a crashed server's log.
        self.details = details


class UsageError(MlserveError):
    exit_code = ExitCode.USAGE


class NotFoundError(MlserveError):
    exit_code = ExitCode.NOT_FOUND


class DataError(MlserveError):
    exit_code = ExitCode.DATA_ERROR


class ConflictError(MlserveError):
    exit_code = ExitCode.CONFLICT


class ServerStartError(MlserveError):
    exit_code = ExitCode.SERVER_START_FAILED


class ServerUnreachableError(MlserveError):
    exit_code = ExitCode.UNREACHABLE


class ServerResponseError(MlserveError):
    exit_code = ExitCode.SERVER_ERROR


class UnavailableError(MlserveError):
    exit_code = ExitCode.UNAVAILABLE


class WaitTimeoutError(MlserveError):
    exit_code = ExitCode.TIMEOUT

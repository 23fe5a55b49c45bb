"""Options that several commands share, declared once (Typer reads `Annotated` aliases).

Short flags mean one thing in every command (`SHORT_FLAGS`); a new command reuses a letter only
with the meaning given here, and a long option without an entry here gets no short flag.
Values are checked when the command line is parsed, before any work (bad ones exit 2 with
`Error:` and `Hint:`).
"""
from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

# The one meaning of each short flag, across all commands, as the long options that spell it
# (tests/cli/test_cli_errors.py holds every command to it).
SHORT_FLAGS: dict[str, tuple[str, ...]] = {
    "-b": ("--batch-size",),
    "-c": ("--concurrency",),
    "-d": ("--detach",),
    "-f": ("--follow",),
    "-h": ("--help",),
    "-n": ("--lines",),
    "-o": ("--output", "--out"),  # where a command writes (train: a model; deploy: manifests)
    "-v": ("--version",),  # a model version
}


def positive_seconds(value: Optional[float]) -> Optional[float]:
    """A timeout or duration: more than 0 seconds (0 would mean "fail at once", not "no limit")."""
    if value is not None and not value > 0:
        raise typer.BadParameter(f"must be more than 0 seconds, got {value:g}")
    return value


# Which server and model a client command talks to (predict, bench).
Url = Annotated[Optional[str], typer.Option(
    "--url", help="REST address (env MLSERVE_URL, default http://127.0.0.1:8501).")]
Grpc = Annotated[bool, typer.Option("--grpc", help="Use gRPC instead of REST.")]
GrpcServer = Annotated[Optional[str], typer.Option(
    "--grpc-server", help="gRPC address (env MLSERVE_GRPC_SERVER, default 127.0.0.1:8500).")]
Model = Annotated[Optional[str], typer.Option(
    "--model", help="Served model name (env MLSERVE_MODEL_NAME).")]
Version = Annotated[Optional[int], typer.Option(
    "--version", "-v", metavar="N", help="Ask for this version.")]
Label = Annotated[Optional[str], typer.Option(
    "--label", help="Ask for this version label (e.g. stable).")]
Signature = Annotated[str, typer.Option("--signature", help="Signature to run.")]
Columnar = Annotated[bool, typer.Option(
    "--columnar", help="REST columnar format ({'inputs': ...}).")]
Timeout = Annotated[Optional[float], typer.Option(
    "--timeout", metavar="SECONDS", callback=positive_seconds,
    help="Seconds per request, more than 0 (env MLSERVE_TIMEOUT, default 30).")]
Data = Annotated[Optional[str], typer.Option(
    "--data", help="MNIST data for the images sent (env MLSERVE_DATA).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (and nothing else) on stdout.")]
Protocol = Annotated[str, typer.Option(
    "--protocol", help="v1 (TF Serving's API) or v2 (the Open Inference Protocol: KServe, Triton).")]
Binary = Annotated[bool, typer.Option(
    "--binary", help="v2 over REST: tensors as raw bytes after the JSON header (binary tensor extension).")]

# mlserve bench's load shape. -d and -n belong to serve's --detach and logs' --lines (SHORT_FLAGS),
# so --duration and --requests have no short flag.
Duration = Annotated[Optional[float], typer.Option(
    "--duration", metavar="SECONDS", callback=positive_seconds,
    help="Seconds per level (default: 5; at most 600).")]
Requests = Annotated[Optional[int], typer.Option(
    "--requests", metavar="N", min=1,
    help="Requests per level instead of a duration (still capped at 600 s).")]

"""Options that several commands share, declared once (Typer reads `Annotated` aliases)."""
from __future__ import annotations

from typing import Optional

import typer
from typing_extensions import Annotated

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
    "--timeout", help="Seconds per request (env MLSERVE_TIMEOUT).")]
Data = Annotated[Optional[str], typer.Option(
    "--data", help="MNIST data for the images sent (env MLSERVE_DATA).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (and nothing else) on stdout.")]

"""`mlserve ui`: a local web page to draw a digit, see the served model answer, and watch the server."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from mlserve import settings
from mlserve.cli import options, output

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def ui(
    url: options.Url = None,
    grpc_server: Optional[str] = typer.Option(
        None, "--grpc-server", help="Send predictions over gRPC to this address (status and metrics stay REST)."),
    model: options.Model = None,
    port: int = typer.Option(8080, "--port", min=0, max=65535, help="Port of the page (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind; anything but loopback shows the page to your network."),
    config: Optional[Path] = typer.Option(
        None, "--config", metavar="PATH",
        help="The server's model config file: its labels and `mlserve history` (default: the running "
             "`mlserve serve` server's)."),
    metrics_path: str = typer.Option(
        "/monitoring/prometheus/metrics", "--metrics-path", metavar="PATH",
        help="The server's Prometheus page (the path of its monitoring config)."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open a browser tab."),
    max_upload: int = typer.Option(4 << 20, "--max-upload", metavar="BYTES", min=1024,
                                   help="Largest image the page may send."),
    timeout: options.Timeout = None,
) -> None:
    """Open a web page: draw or upload a digit, see each version's answer, and the server live.

    The page talks only to the app, and the app only to the model server given by --url (any
    TF Serving-compatible server). Stop it with Ctrl-C.
    """
    import socket

    import uvicorn

    from mlserve.errors import ConflictError, MlserveError, UsageError
    from mlserve.ui.app import UiConfig, create_app
    from mlserve.ui.backend import Backend

    backend = Backend(url=settings.get("url", url), model=settings.get("model_name", model),
                      grpc_server=grpc_server, timeout=settings.get("timeout", timeout) or 10.0,
                      config_file=config.expanduser().resolve() if config else _recorded_config())
    try:  # say at once when nothing answers; the page says it too, and recovers when a server starts
        backend.versions()
    except MlserveError as e:
        output.say(f"Warning: {e.message}")
        output.say("Hint: start one with `mlserve serve --detach --monitoring`, or point --url at a running "
                   "server; the page picks it up when it answers")
    allowed = ("127.0.0.1", "localhost", "[::1]", "::1") if host in LOOPBACK else ("*",)
    if not metrics_path.startswith("/"):
        raise UsageError(f"--metrics-path must be a path on the server, starting with /: {metrics_path!r}",
                         hint="e.g. --metrics-path /monitoring/prometheus/metrics")
    app = create_app(UiConfig(backend, metrics_path=metrics_path, max_upload=max_upload, allowed_hosts=allowed))

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConflictError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                            hint="pick another with --port N (or --port 0 for any free port)") from e
    sock.listen(128)  # connections made before uvicorn starts wait in the backlog, none is refused
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    page = f"http://{shown}:{bound}/"
    if host not in LOOPBACK:
        output.say(f"Warning: --host {host}: anyone who can reach this machine can use the page")
    output.say(f"mlserve ui: {page} -> model '{backend.model}' at {backend.url}"
                + (f" (predict over gRPC {grpc_server})" if grpc_server else "") + "; Ctrl-C stops it")
    # stdout: the address, alone on its line, for scripts (and tests) that start the page
    print(page, flush=True)
    if not no_browser:
        import threading
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(page,)).start()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=3))
    server.run(sockets=[sock])


def _recorded_config() -> Path | None:
    """The model config file of the one running `mlserve serve` server, if there is one."""
    from mlserve.errors import MlserveError
    from mlserve.rollout import target

    try:
        return target.resolve(grpc_server="127.0.0.1:0").config_file
    except (MlserveError, OSError, ValueError, KeyError):  # none, or a damaged record: labels then
        return None                                          # come from the server alone


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)

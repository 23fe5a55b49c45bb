"""The `mlserve` command: the Typer app, every command group wired in one place, one error boundary.

Each command module exposes `register(app)`. Modules here must not import TensorFlow or
matplotlib at import time: `mlserve --help` stays fast (tests/test_startup.py proves it).
"""
from __future__ import annotations

import os
import sys
import traceback
from typing import Optional, Sequence

import typer

from mlserve import __version__

# TensorFlow's C++ INFO/WARNING lines are noise on a terminal; users can still set their own level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from mlserve.errors import ExitCode, MlserveError

app = typer.Typer(
    name="mlserve",
    help="Train, export, serve and query TensorFlow models: the whole TF Serving loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"mlserve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Train, export, serve and query TensorFlow models: the whole TF Serving loop."""


def _register_commands() -> None:
    # The order here is the order of `mlserve --help`: the workflow first, then the tools around it.
    import importlib

    for name in ("train", "export", "serve", "predict", "bench", "compare", "plan", "deploy", "server",
                 "config"):
        try:
            module = importlib.import_module(f"mlserve.cli.{name}")
        except ModuleNotFoundError as e:  # a command group still being built
            if e.name != f"mlserve.cli.{name}":
                raise
            continue
        module.register(app)


_register_commands()


def _debug() -> bool:
    return os.environ.get("MLSERVE_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def report(error: MlserveError) -> None:
    """Print an MlserveError the way every command does: Error, optional details, Hint."""
    from rich.markup import escape

    from mlserve.cli.output import err

    # soft_wrap: each stays one line however narrow the terminal (grep-able, as promised)
    err.print(f"[bold red]Error:[/bold red] {escape(error.message)}", soft_wrap=True)
    if error.details:
        err.print(error.details, markup=False, highlight=False, soft_wrap=True)
    if error.hint:
        err.print(f"[bold]Hint:[/bold] {escape(error.hint)}", soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script: the single error boundary of the CLI.

    Typer itself reports usage errors (exit 2) and turns Ctrl-C into exit 130; everything mlserve
    raises arrives here as an MlserveError and leaves as `Error:` + `Hint:` and its exit code.
    """
    try:
        app(args=list(argv) if argv is not None else None, prog_name="mlserve")
    except MlserveError as e:
        if _debug():
            traceback.print_exc()
        report(e)
        sys.exit(int(e.exit_code))
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as e:  # a bug: say so plainly, show the traceback only when asked
        if _debug():
            raise
        report(MlserveError(f"unexpected {type(e).__name__}: {e}",
                            hint="rerun with MLSERVE_DEBUG=1 to see the traceback, and report it"))
        sys.exit(int(ExitCode.ERROR))


if __name__ == "__main__":
    main()

"""The `mlserve` command: the Typer app, every command group wired in one place, one error boundary.

Each command module exposes `register(app)` and is listed in `COMMAND_MODULES`. Modules here must
not import TensorFlow or matplotlib at import time: `mlserve --help` stays fast
(tests/cli/test_startup.py proves it).
"""
from __future__ import annotations

import os
import sys
import traceback
from types import ModuleType
from typing import Optional, Sequence

import typer
import typer.core

from mlserve import __version__, settings, tfquiet
from mlserve.cli import bench, compare, config, deploy, export, plan, predict, rollout, score, serve, server, train, ui
from mlserve.errors import ExitCode, MlserveError, UsageError

# TensorFlow's C++ lines are noise on a terminal; children (the embedded server) inherit the level.
for _name, _value in tfquiet.quiet_environment().items():
    os.environ.setdefault(_name, _value)

try:  # Typer 0.24+ carries its own copy of Click; its usage errors are that copy's classes
    from typer._click import exceptions as _click_errors
except ImportError:  # pragma: no cover - an older Typer on the real Click
    from click import exceptions as _click_errors  # type: ignore[no-redef]

# The order here is the order of `mlserve --help`: the workflow first, then the tools around it.
# A new command group is one more module in this tuple (and in the import above).
COMMAND_MODULES: tuple[ModuleType, ...] = (
    train, export, serve, predict, score, ui, bench, compare, rollout, plan, deploy, server, config)

# Help shows a value's kind as a plain word (`--count N`, `--npy PATH`), not Typer's `<int range>`.
_METAVARS = {"int": "N", "int range": "N", "integer": "N", "integer range": "N", "float": "NUMBER",
             "float range": "NUMBER", "path": "PATH", "Path": "PATH", "list[Path]": "PATH",
             "str": "TEXT", "text": "TEXT", "list[str]": "TEXT"}


def _kind(param) -> str:
    try:  # Typer 0.24+: `<int range>`; older Typer on Click: the Click type's name
        return param.display_type(None).strip("<>") if hasattr(param, "display_type") \
            else getattr(param.type, "name", "")
    except Exception:  # noqa: BLE001 - choices need a context: keep Typer's own rendering
        return ""


def _plain_metavars(command) -> None:
    for param in getattr(command, "params", []):
        if param.metavar is None and not getattr(param, "is_flag", False):
            word = _METAVARS.get(_kind(param))
            if word and getattr(param, "param_type_name", "") == "option":
                param.metavar = word
    for sub in (getattr(command, "commands", None) or {}).values():
        _plain_metavars(sub)


class _Group(typer.core.TyperGroup):
    """`mlserve --help` lists each command with its whole first sentence, wrapped, not cut at '...'."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _plain_metavars(self)

    def format_commands(self, ctx: typer.Context, formatter) -> None:  # type: ignore[override]
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=200)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    cls=_Group,
    name="mlserve",
    help="Train, export, serve and query TensorFlow models: the whole TF Serving loop.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's plain help: paragraphs re-wrapped to the terminal, no type labels on boolean flags.
    rich_markup_mode=None,
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
    verbose: bool = typer.Option(
        False, "--verbose", help="Show TensorFlow's own log lines (env MLSERVE_VERBOSE)."),
) -> None:
    """Train, export, serve and query TensorFlow models: the whole TF Serving loop."""
    if verbose:
        # An environment variable, so that servers started from here are verbose as well.
        os.environ[settings.SETTINGS["verbose"].env] = "1"
        if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == tfquiet.QUIET_LEVEL:
            del os.environ["TF_CPP_MIN_LOG_LEVEL"]


for _module in COMMAND_MODULES:
    _module.register(app)
for _group in app.registered_groups:  # sub-apps (mlserve server ...) render help the same way
    if _group.typer_instance is not None:
        _group.typer_instance.rich_markup_mode = None


def _debug() -> bool:
    return settings.debug()


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

    Every failure leaves as `Error:` + `Hint:` on stderr and a stable exit code: a bad option or
    value (Click's usage errors) exits 2, an MlserveError its own code, Ctrl-C 130.
    """
    try:
        code = app(args=list(argv) if argv is not None else None, prog_name="mlserve",
                   standalone_mode=False)
    except MlserveError as e:
        if _debug():
            traceback.print_exc()
        report(e)
        sys.exit(int(e.exit_code))
    except _click_errors.UsageError as e:  # checked before any work: bad flags and values
        command = e.ctx.command_path if e.ctx is not None else "mlserve"
        report(UsageError(e.format_message(), hint=f"see `{command} --help`"))
        sys.exit(int(ExitCode.USAGE))
    except _click_errors.ClickException as e:  # e.g. a file option that cannot be opened
        report(MlserveError(e.format_message()))
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        print("Interrupted.", file=sys.stderr)
        sys.exit(int(ExitCode.INTERRUPTED))
    except Exception as e:  # a bug: say so plainly, show the traceback only when asked
        if _debug():
            raise
        report(MlserveError(f"unexpected {type(e).__name__}: {e}",
                            hint="rerun with MLSERVE_DEBUG=1 to see the traceback, and report it"))
        sys.exit(int(ExitCode.ERROR))
    # Without standalone mode Click returns the exit code of `typer.Exit(code)` / `--help`, or the
    # command's own return value (None: success).
    sys.exit(code if isinstance(code, int) else int(ExitCode.OK))


if __name__ == "__main__":
    main()

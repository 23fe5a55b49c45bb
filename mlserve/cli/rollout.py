"""`mlserve promote`, `canary`, `rollback`, `history`: move version labels of a running server."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer
from typing_extensions import Annotated

from mlserve.cli import output

if TYPE_CHECKING:
    from mlserve.rollout.actions import Outcome, Target

Server = Annotated[Optional[str], typer.Option(
    "--server", help="Recorded server to change (default: the only one running).")]
Config = Annotated[Optional[Path], typer.Option(
    "--config", help="Model config file of a server started elsewhere (use with --grpc-server).")]
GrpcServer = Annotated[Optional[str], typer.Option(
    "--grpc-server", help="gRPC address of that server (env MLSERVE_GRPC_SERVER).")]
KeepNewest = Annotated[bool, typer.Option(
    "--keep-newest", help="Keep the newest exported version loaded too, labelled or not.")]
Wait = Annotated[float, typer.Option(
    "--wait", help="Seconds to wait for a version to be AVAILABLE.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _say(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _split(args: List[str], command: str) -> tuple[Optional[str], int]:
    from mlserve.errors import UsageError

    if len(args) not in (1, 2):
        raise UsageError(f"`mlserve {command}` takes [MODEL] VERSION", hint=f"e.g. `mlserve {command} 2`")
    model, version = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    try:
        return model, int(version)
    except ValueError:
        raise UsageError(f"version {version!r} is not a number",
                         hint=f"give the version folder's number, e.g. `mlserve {command} 2`") from None


def _target(server: Optional[str], config: Optional[Path], grpc_server: Optional[str],
            model: Optional[str]) -> "tuple[Target, str]":
    from mlserve.rollout import target as target_mod

    target = target_mod.resolve(server=server, config_file=config, grpc_server=grpc_server)
    return target, model or target_mod.single_model(target.config_file)


def _report(outcome: "Outcome", json_: bool) -> None:
    for warning in outcome.warnings:
        _say(f"Warning: {warning}")
    if json_:
        output.print_json(outcome.as_dict())
        return
    old = "(none)" if outcome.from_version is None else outcome.from_version
    if not outcome.changed:
        sys.stdout.write(f"{outcome.model}: {outcome.label} already names version {outcome.to_version}\n")
        return
    labels = ", ".join(f"{k}={v}" for k, v in sorted(outcome.labels.items()))
    sys.stdout.write(f"{outcome.model}: {outcome.label} {old} -> {outcome.to_version} "
                     f"(labels {labels}; loaded versions {', '.join(map(str, outcome.loaded))})\n")


def promote(
    args: List[str] = typer.Argument(..., metavar="[MODEL] VERSION", help="Model (optional) and version."),
    label: str = typer.Option("stable", "--label", help="The label to move."),
    check: Optional[int] = typer.Option(
        None, "--check", metavar="N", help="Gate: N held-out test digits through the server first."),
    max_drop: float = typer.Option(
        0.0, "--max-drop", help="Gate: largest allowed accuracy drop below the current stable (0.01 = 1 point)."),
    force: bool = typer.Option(False, "--force", help="Promote even when the gate fails."),
    data: Optional[str] = typer.Option(None, "--data", help="MNIST data for the gate (env MLSERVE_DATA)."),
    keep_newest: KeepNewest = False,
    wait: Wait = 120.0,
    server: Server = None,
    config: Config = None,
    grpc_server: GrpcServer = None,
    json_: Json = False,
) -> None:
    """Point a label (default stable) at a version: load it, check it, move the label, unload the old one.

    Applied with HandleReloadConfigRequest; requests through the label never fail during the
    change. If loading, the gate or the server's reload fails, nothing changes.
    """
    from mlserve.rollout import actions

    from mlserve.errors import UsageError

    if max_drop and not check:
        raise UsageError("--max-drop is the gate's limit and needs --check N",
                         hint="e.g. `mlserve promote 2 --check 200 --max-drop 0.01`")
    model, version = _split(args, "promote")
    target, model = _target(server, config, grpc_server, model)
    outcome = actions.move_label(target, model, version, label=label, check=check, max_drop=max_drop,
                                 force=force, keep_newest=keep_newest, wait=wait, data=data, notify=_say)
    _report(outcome, json_)


def canary(
    args: List[str] = typer.Argument(..., metavar="[MODEL] VERSION", help="Model (optional) and version."),
    keep_newest: KeepNewest = False,
    wait: Wait = 120.0,
    server: Server = None,
    config: Config = None,
    grpc_server: GrpcServer = None,
    json_: Json = False,
) -> None:
    """Point the canary label at a version; stable stays where it is, both stay loaded."""
    from mlserve.rollout import actions

    model, version = _split(args, "canary")
    target, model = _target(server, config, grpc_server, model)
    outcome = actions.move_label(target, model, version, label="canary", action="canary",
                                 keep_newest=keep_newest, wait=wait, notify=_say)
    _report(outcome, json_)


def rollback(
    model: Optional[str] = typer.Argument(None, help="Model (default: the config's only model)."),
    label: str = typer.Option("stable", "--label", help="The label to move back."),
    keep_newest: KeepNewest = False,
    wait: Wait = 120.0,
    server: Server = None,
    config: Config = None,
    grpc_server: GrpcServer = None,
    json_: Json = False,
) -> None:
    """Move stable back to the version it named before its last promote (from the history)."""
    from mlserve.rollout import actions

    target, model = _target(server, config, grpc_server, model)
    outcome = actions.rollback(target, model, label=label, keep_newest=keep_newest, wait=wait, notify=_say)
    _report(outcome, json_)


def history(
    model: Optional[str] = typer.Argument(None, help="Model (default: every model of the config)."),
    server: Server = None,
    config: Config = None,
    json_: Json = False,
) -> None:
    """List every label move: time, label, from, to, what was done, who or what gate decided, accuracy."""
    from rich.table import Table

    from mlserve.rollout import history as history_mod, target as target_mod

    config_file = target_mod.history_file(server=server, config_file=config, model=model)
    moves = history_mod.read(config_file, model)
    if json_:
        output.print_json([m.as_dict() for m in moves])
        return
    if not moves:
        _say(f"No label has moved yet ({history_mod.history_path(config_file)}).")
        return
    table = Table("time", "model", "label", "from", "to", "action", "by", "accuracy")
    for m in moves:
        acc = m.accuracy or {}
        accuracy = "-" if not acc else f"{acc.get('to', 0):.4f}" + (
            f" (was {acc['from']:.4f})" if acc.get("from") is not None else "")
        table.add_row(m.time.replace("T", " ")[:19], m.model, m.label, "-" if m.from_version is None
                      else str(m.from_version), str(m.to_version), m.action, m.by, accuracy)
    output.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("promote")(promote)
    app.command("canary")(canary)
    app.command("rollback")(rollback)
    app.command("history")(history)

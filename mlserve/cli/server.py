"""`mlserve server install|info`: get TF Serving onto this machine; see which runtimes it has."""
from __future__ import annotations

import sys

import typer
from rich.table import Table

from mlserve.cli import output

server_app = typer.Typer(help="Install TF Serving (apt or Docker) and show the runtimes available here.",
                         no_args_is_help=True)


_say = output.say


@server_app.command("install")
def install(
    method: str = typer.Option(..., "--method", help="apt (tensorflow_model_server) or docker (the image)."),
    gpu: bool = typer.Option(False, "--gpu", help="Docker: pull the -gpu image."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the steps, run nothing."),
) -> None:
    """Install TF Serving: Google's apt package (AVX build or -universal) or the tensorflow/serving image."""
    from mlserve.runtimes import install as installer

    plan = installer.plan_install(method, gpu)
    _say(f"Installing {plan.target} with {plan.method} ({plan.reason})")
    if dry_run:
        for step in plan.steps:
            sys.stdout.write(step.command + "\n")
        for missing in plan.missing:
            _say(f"Missing here: {missing}")
        return
    installer.run_install(plan, _say)
    _say(f"Installed {plan.target}. Check with: mlserve server info")


@server_app.command("info")
def info(json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """Which runtimes this machine has (binary + version, Docker client/engine, embedded + TF) and GPUs."""
    from mlserve.runtimes import lifecycle
    from mlserve.runtimes.gpu import check_gpus

    runtimes = [cls().describe() for cls in lifecycle.RUNTIMES.values()]
    chosen, why = lifecycle.select_runtime("auto", require=False)
    gpu = check_gpus()
    if json_:
        output.print_json({"runtimes": runtimes, "auto": {"runtime": chosen.name, "reason": why},
                           "gpu": gpu.as_dict()})
        return
    table = Table("runtime", "available", "detail")
    for r in runtimes:
        extra = ""
        if r["runtime"] == "binary" and r.get("version"):
            extra = f" ({r['version']})"
        elif r["runtime"] == "docker":
            extra = f"; client {r.get('client') or 'missing'}; image {r.get('image')}"
        table.add_row(str(r["runtime"]), "yes" if r["available"] else "no", f"{r['detail']}{extra}")
    output.out.print(table)
    output.out.print(f"auto picks: {chosen.name} ({why})", markup=False)
    output.out.print("GPU: " + (", ".join(gpu.devices) if gpu.visible else "none visible")
                     + f" ({gpu.method})", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(server_app, name="server")

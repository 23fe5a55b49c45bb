"""`mlserve config`: every setting, its value and where the value came from."""
from __future__ import annotations

import typer
from rich.table import Table

from mlserve import settings
from mlserve.cli import output


def config(
    json_: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show every setting: value, source (flag, env or default) and its MLSERVE_* variable."""
    rows = settings.resolve_all()
    if json_:
        output.print_json([
            {"name": r.name, "env": r.env, "value": r.value, "source": r.source,
             "description": r.description}
            for r in rows
        ])
        return
    table = Table("setting", "value", "source", "variable", "description")
    for r in rows:
        table.add_row(r.name, str(r.value), r.source, r.env, r.description)
    output.out.print(table)


def register(app: typer.Typer) -> None:
    app.command("config")(config)

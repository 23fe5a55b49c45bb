"""`mlserve config`: every setting, its value and where the value came from."""
from __future__ import annotations

import textwrap

import typer

from mlserve import settings
from mlserve.cli import options, output


def config(json_: options.Json = False) -> None:
    """Show every setting: its MLSERVE_* variable, value, source (flag, env or default) and meaning.

    One setting per paragraph: `VARIABLE = value  (source)` on one line that is never cut, however
    long the value, then what the setting does, indented.
    """
    rows = settings.resolve_all()
    if json_:
        output.print_json([
            {"name": r.name, "env": r.env, "value": r.value, "source": r.source,
             "description": r.description}
            for r in rows
        ])
        return
    width = max(40, min(output.out.width, 100))
    for r in rows:
        value = "(empty)" if r.value in ("", None) else str(r.value)
        output.out.print(f"{r.env} = {value}  ({r.source})", markup=False, soft_wrap=True)
        output.out.print(textwrap.fill(r.description, width=width, initial_indent="    ",
                                       subsequent_indent="    "), markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("config")(config)

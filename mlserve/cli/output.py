"""Where output goes: results on stdout; progress, hints and errors on stderr. The one output module.

- `out`: results (tables, lines) on stdout; `print_json` for `--json`.
- `say`: a plain progress/status line on stderr, written as is (paths and commands stay whole and
  copy-pastable, never re-wrapped or styled).
- `info`: a progress line with rich markup (e.g. `[dim]`) on stderr.
- `err`: the stderr console itself, for progress bars and spinners.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

# Results (tables, JSON) only. Anything a script piping stdout would not want goes to `err`.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def print_json(value: Any) -> None:
    """Write one JSON document to stdout, nothing else (safe for `| jq`)."""
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """One plain line on stderr, never re-wrapped or styled (log lines, commands, paths)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def info(message: str) -> None:
    """A progress or status line for the user (stderr), with rich markup."""
    err.print(message, soft_wrap=True)  # paths and commands stay whole

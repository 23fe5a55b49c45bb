"""Where output goes: results on stdout, progress, hints and errors on stderr."""
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


def info(message: str) -> None:
    """A progress or status line for the user (stderr)."""
    err.print(message)


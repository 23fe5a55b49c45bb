from __future__ import annotations

from mlserve.cli.app import main

main()

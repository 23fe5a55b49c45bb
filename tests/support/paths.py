"""The repository's folders, from wherever a test sits."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
DOCS = ROOT / "docs"
STANDINS = TESTS / "standins"

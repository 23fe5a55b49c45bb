"""What `pip install mlserve` brings: the runtime set, and no test tool (those are the `test` extra
that `make test` and CI install). Read from pyproject.toml and the package's own imports."""
from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_TOOLS = {"pytest", "hypothesis", "jsonschema", "kubernetes-validate", "ruff", "import-linter", "h2",
              "tritonclient", "selenium", "kserve"}
TEST_MODULES = {"pytest", "hypothesis", "jsonschema", "kubernetes_validate", "h2", "tritonclient", "selenium"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower()


def test_runtime_dependencies_hold_no_test_tool() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & TEST_TOOLS, sorted(runtime & TEST_TOOLS)
    test_extra = {_name(r) for r in project["optional-dependencies"]["test"]}
    assert {"pytest", "hypothesis", "jsonschema", "kubernetes-validate"} <= test_extra


def test_no_module_of_the_package_imports_a_test_tool() -> None:
    found = []
    for path in (ROOT / "mlserve").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in TEST_MODULES]
    assert not found, found

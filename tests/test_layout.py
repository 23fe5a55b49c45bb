"""The package's shape, held: layers are folders of a dozen modules at most, and no module
imports itself back through others (an import circle). The layers contract itself is
import-linter's (pyproject.toml, run by `make test`)."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mlserve"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The mlserve modules `path` imports at module level (TYPE_CHECKING blocks included)."""
    def owner(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    deps: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        for n in (node.body if isinstance(node, ast.If) else [node]):
            if isinstance(n, ast.Import):
                deps.update(owner(a.name) for a in n.names if a.name.startswith("mlserve"))
            elif isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("mlserve"):
                for a in n.names:
                    full = f"{n.module}.{a.name}"
                    deps.add(full if full in modules else owner(n.module))
    return deps - {""}


def import_circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    modules = _modules()
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circles() -> None:
    assert import_circles() == []


def test_server_folders_hold_a_dozen_modules_at_most() -> None:
    for folder in [PACKAGE, *(p for p in (PACKAGE / "server").rglob("*") if p.is_dir())]:
        if folder.name == "__pycache__":
            continue
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, (folder, sorted(p.name for p in modules))


def test_architecture_names_every_module() -> None:
    """docs/architecture.md's module map names every module by its path under mlserve/ (a package's
    __init__.py only where it holds code: functions or classes)."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py":
            continue
        if path.name == "__init__.py":
            tree = ast.parse(path.read_text())
            if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in tree.body):
                continue
        rel = path.relative_to(PACKAGE).as_posix()
        if f"`{rel}`" not in text:
            missing.append(rel)
    assert not missing, f"docs/architecture.md does not name: {missing}"
TESTS = Path(__file__).resolve().parent
OLD_HELPERS = {"servers", "ports", "probes", "predict_helpers", "tflite_helpers", "h2client", "half_plus_two"}


def _bad_test_imports(path: Path) -> list[str]:
    """The imports of a test module that bypass tests/support/: from a conftest (which holds
    fixtures only), from another test module, or from a helper module by its old bare name."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            last = name.rpartition(".")[2]
            if (last == "conftest" or last.startswith("test_") or name in OLD_HELPERS
                    or (isinstance(node, ast.ImportFrom) and node.level and name == "")):
                bad.append(f"{path.relative_to(TESTS)}:{node.lineno}: {'.' * getattr(node, 'level', 0)}{name}")
    return bad


def test_tests_share_helpers_through_support_only() -> None:
    modules = [p for p in TESTS.rglob("*.py") if "standins" not in p.parts and "support" not in p.parts]
    assert len(modules) > 50
    assert [bad for p in modules for bad in _bad_test_imports(p)] == []

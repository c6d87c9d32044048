"""The package's layers and its import graph.

- `lint-imports` (import-linter, the contract in pyproject.toml): labkit.tools above the course layer (claims, ...)
  above the lessons (features, ...) above the core (train, data, metrics, ...) above the private leaves (labkit._io).
- No import cycle among labkit's modules, found by an AST walk of every import statement, at module level or
  deferred inside a function: a deferred import only hides a cycle (as runner.run() once hid
  batch_report -> runner -> batch_report).
- No lesson, core or leaf module imports the claims (`labkit.claims`, `labkit.claim_tables`), even deferred.
- No module is longer than MAX_LINES: a longer one is split by what it does.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "labkit"
MAX_LINES = 600
CLAIMS = {"labkit.claims", "labkit.claim_tables"}


def module_files(package_dir: Path) -> dict[str, Path]:
    """Every module of the package under `package_dir`: dotted name -> file (read from disk, not sys.modules)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes anywhere in the tree (functions included), except under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (the package's root __init__ left out: it imports nothing)."""
    modules = module_files(package_dir)
    root = package_dir.name
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        wanted = set()
        for node in _imports(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
                continue
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # `from pkg import module` imports the module
                wanted.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        edges = set()
        for target in wanted:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target not in (name, root):
                edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_every_module_imports():
    modules = module_files(PACKAGE)
    assert {"labkit.tools.runner", "labkit.tools.bands", "labkit._torchutil", "labkit.__main__"} <= set(modules)
    # the tools moved to labkit/tools/ for good: no compatibility module is left on the top floor
    assert not {"labkit.cli", "labkit.runner", "labkit.batch", "labkit.batch_report", "labkit.release",
                "labkit.envcheck"} & set(modules)
    for name in modules:
        importlib.import_module(name)


def test_no_import_cycle_in_labkit():
    graph = import_graph(PACKAGE)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in labkit: " + " -> ".join(cycle)


def test_cycle_check_sees_a_deferred_import(tmp_path):
    """The old batch_report <-> runner pair: one import at module level, the other inside a function."""
    pkg = tmp_path / "labkit"
    (pkg / "tools").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tools" / "__init__.py").write_text("")
    (pkg / "tools" / "batch_report.py").write_text("from labkit.tools.runner import markdown_table\n")
    (pkg / "tools" / "runner.py").write_text(
        "def markdown_table():\n    pass\n\n\ndef run():\n    from labkit.tools.batch_report import load_bands\n")
    (pkg / "typed.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from labkit import tools\n")
    cycle = find_cycle(import_graph(pkg))
    assert cycle is not None and set(cycle) == {"labkit.tools.batch_report", "labkit.tools.runner"}


def _lint_imports() -> str | None:
    script = Path(sys.executable).with_name("lint-imports")
    return str(script) if script.exists() else shutil.which("lint-imports")


@pytest.mark.skipif(importlib.util.find_spec("importlinter") is None or _lint_imports() is None,
                    reason="import-linter is not installed (it comes with the dev extras: pip install -e '.[dev]')")
def test_layer_contract_holds():
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}  # the labkit of this checkout, installed or not
    proc = subprocess.run([_lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, f"lint-imports found a broken layer contract:\n{proc.stdout}{proc.stderr}"
    assert "1 kept, 0 broken" in proc.stdout


def contract_layers() -> list[list[str]]:
    """The layers of the contract in pyproject.toml, top first, each a list of module (or package) names."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomli is the same parser
        tomllib = pytest.importorskip("tomli")
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[name.strip() for name in layer.split(":")] for layer in contract["layers"]]


def test_every_module_is_in_a_layer_of_the_contract():
    layers = contract_layers()
    assert len(layers) == 6  # tools, the active parts (exercises, predictions), course, lessons, core, private leaves
    named = {name for layer in layers for name in layer}
    unplaced = [m for m in module_files(PACKAGE) if m != "labkit" and not any(
        m == n or m.startswith(n + ".") for n in named)]
    assert not unplaced, f"modules in no layer of the contract (pyproject.toml): {unplaced}"


def test_no_lesson_or_core_module_imports_the_claims():
    layers = contract_layers()
    course = next(i for i, layer in enumerate(layers) if "labkit.claims" in layer)
    below_course = [name for layer in layers[course + 1:] for name in layer]
    graph = import_graph(PACKAGE)
    offenders = {m: sorted(graph[m] & CLAIMS) for m in graph
                 if any(m == n or m.startswith(n + ".") for n in below_course) and graph[m] & CLAIMS}
    assert not offenders, f"lesson/core modules importing the claims: {offenders}"


def test_no_module_is_longer_than_the_limit():
    lengths = {name: len(path.read_text().splitlines()) for name, path in module_files(PACKAGE).items()}
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by what they do): {too_long}"

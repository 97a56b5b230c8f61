"""The engine's import graph at import time has no cycles: modules can be read (and loaded) bottom-up.

Imports inside functions (lazy, for start-up time or optional packages) are not counted."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"


def _modules() -> dict[str, Path]:
    found = {}
    for file in ENGINE.rglob("*.py"):
        parts = file.relative_to(ENGINE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = file
    return found


def _top_level_imports(file: Path, modules: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.parse(file.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            submodules = {f"{node.module}.{a.name}" for a in node.names} & modules.keys()
            out |= submodules or {node.module}  # `from pkg import submodule` depends on the submodule
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
    return out


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _top_level_imports(file, modules) - {name} for name, file in modules.items()}
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for dependency in sorted(graph[name]):
            visit(dependency, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
    assert len(graph) > 50  # the walk saw the whole package

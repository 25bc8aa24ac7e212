"""The layers: every module imports only from its own stage or earlier ones, and nothing is circular.

The stages are listed in :data:`STAGES`, in the order data flows through them (``docs/architecture.md``
draws the picture).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hierbayes"

#: Stage of each module prefix; a module may import from stages <= its own.
STAGES: tuple[tuple[str, int], ...] = (
    ("hierbayes._version", 0),
    ("hierbayes.exceptions", 0),
    ("hierbayes.datasets", 0),
    ("hierbayes.families", 1),
    ("hierbayes.spec", 2),
    ("hierbayes.statistics", 3),
    ("hierbayes.design", 3),
    ("hierbayes.design_dask", 3),
    ("hierbayes.aggregate", 3),
    ("hierbayes.builders", 4),
    ("hierbayes.inference", 5),
    ("hierbayes.io", 6),
    ("hierbayes.summaries", 7),
    ("hierbayes.report", 8),
    ("hierbayes.cards", 9),
    ("hierbayes.cli", 10),
    ("hierbayes", 11),
)


def stage(module: str) -> int:
    for prefix, rank in STAGES:
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"module {module} belongs to no stage; add it to STAGES")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _target(node: ast.ImportFrom, alias: ast.alias) -> str:
    base = node.module or ""
    full = f"{base}.{alias.name}"
    return full if importlib.util.find_spec(base) and _is_module(full) else base


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def imports_of(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a hierbayes module, at any depth (functions included)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "hierbayes"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "hierbayes":
            out += [(node.lineno, _target(node, a)) for a in node.names]
    return out


def upward_imports(module: str, source: str) -> list[str]:
    """The imports in ``source`` (of ``module``) that reach a later stage."""
    own = stage(module)
    return [f"{module}:{line} imports {target} (stage {stage(target)} > {own})"
            for line, target in imports_of(source) if stage(target) > own]


def _modules() -> dict[str, str]:
    return {module_name(p): p.read_text() for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_module_imports_from_a_later_stage():
    problems = [msg for mod, src in _modules().items() for msg in upward_imports(mod, src)]
    assert not problems, "imports against the flow:\n" + "\n".join(problems)


def test_the_check_catches_an_upward_import():
    src = "from hierbayes.exceptions import SpecError\n\ndef f():\n    from hierbayes.report.page import report\n"
    assert upward_imports("hierbayes.spec.model", src) == [
        "hierbayes.spec.model:4 imports hierbayes.report.page (stage 8 > 2)"
    ]
    assert upward_imports("hierbayes.cli", src) == []


def test_no_import_cycles():
    graph = {mod: {t for _, t in imports_of(src) if t != mod} for mod, src in _modules().items()}
    # A package imports its own submodules to re-export them; that is not a cycle.
    for mod in graph:
        graph[mod] = {t for t in graph[mod] if not t.startswith(mod + ".")}
    seen: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        seen[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if seen.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(nxt):], nxt]))
            if nxt not in seen:
                visit(nxt)
        path.pop()
        seen[node] = 2

    for mod in sorted(graph):
        if mod not in seen:
            visit(mod)


def test_every_module_has_a_stage():
    for mod in _modules():
        stage(mod)

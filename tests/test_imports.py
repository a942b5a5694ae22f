"""The package's modules import each other without a circle, counting imports inside functions too
(a lazy import is still a dependency: it only moves the circle to run time)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import graphtrace

ROOT = Path(graphtrace.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> nx.DiGraph:
    """Module -> the graphtrace modules it imports (a package's ``__init__`` is the package's name)."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # "from . import x" / "from .pkg import mod": the submodule when there is one
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("graphtrace"):
                    g.add_edge(name, t)
    return g


def _is_package(name: str) -> bool:
    return (ROOT.parent / name.replace(".", "/") / "__init__.py").is_file()


def test_no_module_imports_itself_through_others() -> None:
    g = import_graph()
    # a package's __init__ re-exporting its submodules is how Python packages work: leave those edges out
    g.remove_edges_from([(a, b) for a, b in list(g.edges) if _is_package(a) and b.startswith(a + ".")])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import circles: {cycles[:5]}"


def test_the_graph_sees_the_run_stores_parts() -> None:
    """The check reads the imports it should: the runs package's parts and who uses them."""
    g = import_graph()
    assert g.has_edge("graphtrace.runs.recorder", "graphtrace.runs.layout")
    assert g.has_edge("graphtrace.runs.tensorboard", "graphtrace.runs.read")
    assert g.has_edge("graphtrace.report", "graphtrace.runs.read")
    assert not g.has_edge("graphtrace.runs.read", "graphtrace.runs.tensorboard")

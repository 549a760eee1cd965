"""The house rule on dependencies: the kernel (``runtime/``, but for the command line in ``runtime/cli``, the
composition root) never imports ``policies/``; what it needs from there is injected
(:class:`runtime.topology.PolicyProvider`). So ``policies`` may build on the kernel without a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "config", "policies", "replay", "runtime")
KERNEL_EXEMPT = "runtime.cli"


def _modules() -> dict[str, Path]:
    """Every module of the project's packages: dotted name -> file."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _kernel(name: str) -> bool:
    return _in(name, "runtime") and not _in(name, KERNEL_EXEMPT)


def _imported(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """``(module name, line)`` of every import statement in the file, wherever it stands (at the top, in a function,
    under ``TYPE_CHECKING``); ``from X import Y`` names ``X.Y`` too where that is a module."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*parent, *([base] if base else [])])
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _graph() -> dict[str, set[str]]:
    """module -> the project modules it imports, with the packages above each (importing ``a.b`` runs ``a``)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        edges = graph.setdefault(module, set())
        for name, _ in _imported(module, path):
            parts = name.split(".")
            edges.update(p for p in (".".join(parts[:k]) for k in range(1, len(parts) + 1)) if p in MODULES)
        edges.discard(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_no_kernel_module_has_an_import_statement_naming_policies():
    """Not at the top, not in a function, not under TYPE_CHECKING: in runtime/ outside runtime/cli, and in the
    replay engine, every import of policies is gone (they are injected)."""
    checked = [m for m in MODULES if _kernel(m)] + ["replay.verify"]
    found = [f"{MODULES[m].relative_to(ROOT)}:{line}: imports {name}" for m in checked
             for name, line in _imported(m, MODULES[m]) if _in(name, "policies")]
    assert len(checked) > 20
    assert found == []


def test_importing_every_kernel_module_loads_no_policies_module():
    """In a fresh interpreter, importing every module under runtime/ (runtime/cli aside) leaves sys.modules without
    any policies module."""
    kernel = sorted(m for m in MODULES if _kernel(m))
    script = ("import importlib, sys\n"
              f"for name in {kernel!r}:\n"
              "    importlib.import_module(name)\n"
              "print(sorted(m for m in sys.modules if m == 'policies' or m.startswith('policies.')))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3_000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_no_import_cycle_joins_the_kernel_and_policies():
    """No chain of imports (any statement, anywhere in a module) leads from runtime/ to policies/ and back, the
    circle there was (runtime.topology -> policies.registry -> policies.env -> policies.episode -> runtime.topology);
    the command line included."""
    graph = _graph()
    assert "runtime.topology" in graph["policies.episode"]  # policies builds on the kernel...
    joined = [sorted(c) for c in _cycles(graph)
              if any(_in(m, "runtime") for m in c) and any(_in(m, "policies") for m in c)]
    assert joined == []  # ...and the kernel never comes back to it

"""The package's shape: imports run one way, from the commands down to the models, with no cycle.

Every import counts, including those inside function bodies (kept there only so that `--help` stays instant):
a lazy import is still a dependency. DEVELOPERS.md ("Layout") says what each floor holds.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cnnlab"

# Bottom to top: a module may import from its own floor or the floors below it, never from a floor above.
FLOORS = [
    ("foundation", ["cnnlab", "cnnlab.errors", "cnnlab.schedules", "cnnlab.hardware", "cnnlab.text",
                    "cnnlab.scratch", "cnnlab.data", "cnnlab.models"]),
    ("inspection", ["cnnlab.viz"]),
    ("tasks", ["cnnlab.tasks"]),
    ("training", ["cnnlab.train"]),
    ("workflows", ["cnnlab.transfer", "cnnlab.report", "cnnlab.export", "cnnlab.experiments"]),
    ("web", ["cnnlab.web"]),
    ("commands", ["cnnlab.commands", "cnnlab.cli", "cnnlab.__main__"]),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> set[str]:
    """The package's own modules that `path` imports, anywhere in the file."""
    found = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from its package upwards
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from cnnlab.x import y` imports the module cnnlab.x.y when there is one, else a name of cnnlab.x
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    found.discard(module_name(path))
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, set(known)) for name, path in known.items()}


def floor_of(module: str) -> int:
    best, floor = -1, None
    for index, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, floor = len(prefix), index
    if floor is None:
        raise AssertionError(f"{module} is on no floor: add its package to FLOORS (and to DEVELOPERS.md)")
    return floor


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} -> {b}" for a in sorted(edges) for b in sorted(edges[a]) if floor_of(b) > floor_of(a)]


def test_every_module_is_on_a_floor():
    for name in modules():
        floor_of(name)


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_no_import_runs_upward():
    assert upward(graph()) == []


def test_the_numpy_engine_stands_alone():
    # cnnlab.scratch is the from-scratch engine: NumPy and its own modules (and the package's error base) only.
    outside = {f"{a} -> {b}" for a, bs in graph().items() if a.startswith("cnnlab.scratch")
               for b in bs if not b.startswith("cnnlab.scratch") and b != "cnnlab.errors"}
    assert outside == set()


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_the_floor_check_sees_an_upward_import():
    assert upward({"cnnlab.tasks.task": {"cnnlab.commands.train"}, "cnnlab.commands.train": set()}) == [
        "cnnlab.tasks.task -> cnnlab.commands.train"]

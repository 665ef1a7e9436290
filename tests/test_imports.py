"""The package's import graph, read from the source with `ast`: no cycles, and imports only point down the layers.

Every import counts, at module level or inside a function, except those under `if TYPE_CHECKING:` (never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "charlstm"

# Lowest first. A module may import from its own layer and the layers before it, never from a later one.
# Entries are module names or subpackage prefixes (a prefix covers every module inside it).
LAYERS: list[tuple[str, ...]] = [
    ("charlstm.errors", "charlstm.resources", "charlstm.config", "charlstm.events"),
    ("charlstm.data",),
    ("charlstm.perf",),
    ("charlstm.nn",),
    ("charlstm.evaluation",),
    ("charlstm.training",),
    ("charlstm.analysis",),
    ("charlstm.bench",),
    ("charlstm.api", "charlstm.ui", "charlstm.serve", "charlstm.cli", "charlstm", "charlstm.__main__"),
]
STANDALONE = {"charlstm.charlstm_torch"}  # copied out by the export; imports nothing from charlstm


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _resolve(name: str) -> str | None:
    """The charlstm module that `import name` loads last (`charlstm.nn.model`, or the package for `charlstm.nn`)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str) -> set[str]:
    """The charlstm modules `module` imports, anywhere in its body."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    resolved = {_resolve(n) for n in found if n == "charlstm" or n.startswith("charlstm.")}
    return {m for m in resolved if m is not None and m != module}


GRAPH = {m: imports_of(m) for m in MODULES}


def layer_of(module: str) -> int:
    best, index = "", -1
    for i, layer in enumerate(LAYERS):
        for entry in layer:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > len(best):
                best, index = entry, i
    return index


def test_every_module_has_a_layer():
    missing = [m for m in MODULES if m not in STANDALONE and layer_of(m) < 0]
    assert not missing, f"add these modules to LAYERS: {missing}"


def test_the_graph_is_read():
    assert "charlstm.nn.model" in GRAPH["charlstm.training.loop"]
    assert "charlstm.nn.sampling" in GRAPH["charlstm.api"]  # imported inside a function
    assert "charlstm.analysis.compare" not in GRAPH["charlstm.analysis.plots"]  # only under TYPE_CHECKING


def test_standalone_modules_import_nothing_from_charlstm():
    for m in STANDALONE:
        assert not GRAPH[m], f"{m} imports {sorted(GRAPH[m])}"


@pytest.mark.parametrize("module", [m for m in MODULES if m not in STANDALONE])
def test_imports_point_down(module):
    mine = layer_of(module)
    up = sorted(dep for dep in GRAPH[module] if dep != "charlstm" and layer_of(dep) > mine)
    assert not up, f"{module} (layer {mine}) imports from higher layers: {up}"


def test_no_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for dep in sorted(GRAPH[m]):
            if dep == "charlstm":  # every module's parent package; its own imports are checked as a node
                continue
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                walk(dep)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            walk(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)

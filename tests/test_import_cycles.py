"""No import cycles inside the package.

A cycle makes the import order matter (the module that happens to be
imported first sees the other half-initialised) and usually means two
modules share a job. The graph counts every import a module can run: at
the top, inside functions (a lazy import only hides a cycle until the
function runs), and the packages an import initialises on the way
(`from .catchup.config import X` runs catchup/__init__.py). Imports under
`if TYPE_CHECKING:` are left out: they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import asterisk_miitel

PACKAGE = "asterisk_miitel"
ROOT = Path(asterisk_miitel.__file__).parent


def module_files(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> its file, for every .py under the package."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([package, *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node`, except in `if TYPE_CHECKING:` blocks."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:  # `else:` runs
                yield from _imports_in(other)
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _imports(child)


def _imports_in(stmt: ast.stmt) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
        yield stmt
    yield from _imports(stmt)


def _ancestors(name: str, is_package: bool) -> set[str]:
    """The packages that are initialised (or being so) before `name` runs."""
    parts = name.split(".")
    top = len(parts) if is_package else len(parts) - 1
    return {".".join(parts[:n]) for n in range(1, top + 1)}


def _initialised(target: str, modules: dict[str, Path], ready: set[str]) -> set[str]:
    """The module `target` and each package importing it initialises, inside ours,
    except those already initialised before the importing module runs."""
    parts = target.split(".")
    names = {".".join(parts[:n]) for n in range(1, len(parts) + 1)}
    return {n for n in names if n in modules and n not in ready}


def imports_of(name: str, path: Path, modules: dict[str, Path],
               package: str = PACKAGE) -> set[str]:
    """The package's modules that importing `name` may run."""
    is_package = path.name == "__init__.py"
    here = name if is_package else name.rpartition(".")[0]
    ready = _ancestors(name, is_package)
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _initialised(alias.name, modules, ready)
            continue
        if node.level:
            base = ".".join(here.split(".")[: len(here.split(".")) - (node.level - 1)])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in modules:  # `from pkg import mod`: the submodule
                found |= _initialised(sub, modules, ready)
            else:  # a name from target's namespace: target must be done, even a parent
                found |= _initialised(target, modules, ready)
                if target in modules:
                    found.add(target)
    found.discard(name)
    return {m for m in found if m == package or m.startswith(package + ".")}


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    modules = module_files(root, package)
    return {name: imports_of(name, path, modules, package) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a -> b -> ... -> a) per strongly connected group (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group: set[str] = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, group) for group in groups]


def _one_cycle(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A shortest cycle through the group's first module, for the message."""
    start = min(group)
    paths: dict[str, list[str]] = {start: [start]}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {group}")  # a strongly connected group has one


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50 and f"{PACKAGE}.service" in graph  # the walk found the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


# -- the checker itself ---------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(root / "pkg", "pkg")


@pytest.mark.parametrize(("files", "cycle"), [
    # a relative import inside a function closes the circle
    ({"__init__.py": "", "a.py": "from . import b\n",
      "b.py": "def f():\n    from .a import x\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
    # importing a submodule runs its package's __init__, which imports back
    ({"__init__.py": "", "conf.py": "from .sub.cfg import C\n",
      "sub/__init__.py": "from .run import R\n", "sub/cfg.py": "",
      "sub/run.py": "from ..conf import X\n"},
     ["pkg.conf", "pkg.sub", "pkg.sub.run", "pkg.conf"]),
    # absolute imports, two levels up
    ({"__init__.py": "", "x/__init__.py": "", "x/y.py": "import pkg.z\n",
      "z.py": "from pkg.x.y import q\n"}, ["pkg.x.y", "pkg.z", "pkg.x.y"]),
])
def test_a_cycle_is_found_and_named(tmp_path: Path, files: dict[str, str],
                                    cycle: list[str]) -> None:
    assert find_cycles(_write(tmp_path, files)) == [cycle]


def test_type_checking_imports_and_one_way_imports_are_no_cycle(tmp_path: Path) -> None:
    graph = _write(tmp_path, {
        "__init__.py": "", "a.py": "from . import b\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        "c.py": "from .b import y\nfrom .a import z\n",
    })
    assert graph["pkg.c"] == {"pkg.a", "pkg.b"}
    assert find_cycles(graph) == []

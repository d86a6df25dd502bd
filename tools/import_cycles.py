"""Count import cycles in the project, function-local and TYPE_CHECKING imports included.

    python tools/import_cycles.py [ROOT]     prints every cycle, then the counts;
                                             exit 1 if there is any

Read: every package under ROOT (default: this file's project) except tests/ and tools/.
Every `import` and `from ... import` statement counts, wherever it stands (inside a
function, under `if TYPE_CHECKING:`), because a cycle hidden in a function still ties
the two modules together. Two kinds of cycle are reported:

- module cycles: strongly connected groups of modules (A imports B ... imports A);
- package cycles: for each package, its children (subpackages and modules) as a graph,
  an edge wherever something inside one imports something inside another; a group of
  children that reach each other, at least one of them a package (`mmc` and
  `parse_correlate` importing each other; `gateway.edge` and `gateway.stores`).

import-linter's contracts (.importlinter) say which way the arrows may point; this
script says there are no circles at all, at any level.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

SKIPPED_FOLDERS = frozenset({"tests", "tools"})


def find_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every package folder under `root`."""
    modules: dict[str, Path] = {}
    for top in sorted(root.iterdir()):
        if top.name in SKIPPED_FOLDERS or not (top / "__init__.py").is_file():
            continue
        for path in sorted(top.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            folders = (root.joinpath(*parts[:i]) for i in range(1, len(parts)))
            if not all((folder / "__init__.py").is_file() for folder in folders):
                continue  # a folder without __init__.py is not part of the package
            name = ".".join(parts).removesuffix(".__init__")
            modules[name] = path
    return modules


def imported_modules(tree: ast.AST, package: str, modules: Mapping[str, Path]) -> set[str]:
    """The project modules the import statements anywhere in `tree` import.

    `from pkg import name` imports the module `pkg.name` when there is one (as grimp
    reads it), else `pkg` itself; a name outside the project is ignored.
    """

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(resolve(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else resolve(base))
    return {name for name in found if name is not None}


def import_graph(modules: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        graph[name] = imported_modules(tree, package, modules) - {name}
    return graph


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Groups of more than one node that all reach each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, todo = work[-1]
            if todo:
                nxt = todo.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(graph.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def package_cycles(graph: Mapping[str, set[str]], packages: set[str]) -> list[list[str]]:
    """For each package (and the root), cycles among its children with a package in them."""
    children: dict[str, dict[str, set[str]]] = {}
    for source, targets in graph.items():
        for target in targets:
            a, b = source.split("."), target.split(".")
            common = 0
            while common < min(len(a), len(b)) and a[common] == b[common]:
                common += 1
            if common >= len(a) or common >= len(b):
                continue  # one contains the other: a package and its own member
            parent = ".".join(a[:common])
            child_a, child_b = ".".join(a[: common + 1]), ".".join(b[: common + 1])
            level = children.setdefault(parent, {})
            level.setdefault(child_a, set()).add(child_b)
            level.setdefault(child_b, set())
    cycles = []
    for level in children.values():
        for group in strongly_connected(level):
            if any(member in packages for member in group):
                cycles.append(group)
    return sorted(cycles)


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    modules = find_modules(root)
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    graph = import_graph(modules)
    module_groups = strongly_connected(graph)
    package_groups = package_cycles(graph, packages)
    for group in module_groups:
        print("module cycle:", " <-> ".join(group))
    for group in package_groups:
        print("package cycle:", " <-> ".join(group))
    print(
        f"{len(module_groups)} module cycles, {len(package_groups)} package cycles"
        f" over {len(modules)} modules"
    )
    return 1 if module_groups or package_groups else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

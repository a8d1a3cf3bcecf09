"""The import graph of `loyalty`: `python -m tools.imports` prints what each package imports, and any cycle.

Built with grimp, as import-linter builds it, so it sees every import: at the top of a module, inside a function
(a lazy import is still a dependency) and under TYPE_CHECKING. Cycles between modules fail the build
(`--check`, and tests/test_layers.py); cycles between packages are shown for information, since a package's
models sit below another package's services (the layers in pyproject.toml are drawn per module).
"""

from __future__ import annotations

import argparse
import sys
from collections import deque

import grimp

PACKAGE = "loyalty"
Graph = dict[str, set[str]]


def module_graph(package: str = PACKAGE) -> Graph:
    """Each module of `package`, with the modules of `package` it imports."""
    graph = grimp.build_graph(package, cache_dir=None)
    return {module: set(graph.find_modules_directly_imported_by(module)) for module in graph.modules}


def package_graph(graph: Graph, depth: int = 2) -> Graph:
    """The graph with every module folded into its package `depth` names deep (`loyalty.members`)."""
    def fold(module: str) -> str:
        return ".".join(module.split(".")[:depth])

    folded: Graph = {}
    for importer, imported in graph.items():
        edges = folded.setdefault(fold(importer), set())
        edges.update(fold(module) for module in imported if fold(module) != fold(importer))
    return folded


def tangles(graph: Graph) -> list[list[str]]:
    """The sets of nodes that import one another, however indirectly (strongly connected), each sorted."""
    return sorted(sorted(component) for component in _components(graph)
                  if len(component) > 1 or next(iter(component)) in graph.get(next(iter(component)), ()))


def cycles(graph: Graph) -> list[list[str]]:
    """One path around each cycle (`[a, b, a]`), the shortest from the first node of each tangle."""
    return [_path_around(graph, set(tangle)) for tangle in tangles(graph)]


def _components(graph: Graph) -> list[set[str]]:
    """Tarjan's strongly connected components, without recursion."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    found.append(component)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return found


def _path_around(graph: Graph, component: set[str]) -> list[str]:
    """The shortest way from the component's first module back to itself, inside the component."""
    start = min(component)
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [start, *reversed(path[:-1]), start] if node != start else [start, start]
            if child in component and child not in came_from:
                came_from[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def describe(cycle: list[str]) -> str:
    return " -> ".join(cycle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.imports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="print only module cycles; exit 1 if there is one")
    args = parser.parse_args(argv)
    graph = module_graph()
    module_cycles = cycles(graph)
    if not args.check:
        packages = package_graph(graph)
        print(f"Packages of {PACKAGE} and the packages they import:")
        for package in sorted(packages):
            print(f"  {package} -> {', '.join(sorted(packages[package])) or '-'}")
        print("\nPackages that import one another (a package's models sit below another's services):")
        for tangle in tangles(packages):
            print(f"  {', '.join(tangle)}")
        print()
    if module_cycles:
        print("Import cycles between modules:")
        for cycle in module_cycles:
            print(f"  {describe(cycle)}")
        return 1
    print("No import cycle between modules.")
    return 0


if __name__ == "__main__":
    sys.exit(main())

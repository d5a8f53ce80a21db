"""No two modules of `inferpool` import each other, directly or transitively.

The graph is grimp's (import-linter's own), with the imports under `if TYPE_CHECKING:` and
those inside functions: a type-only or lazy import is still a circle a reader has to hold in
mind, and the first one a refactoring turns into an ImportError.
"""

from __future__ import annotations

import itertools

import grimp
import pytest


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """One shortest cycle per strongly connected group of modules, each as
    [a, b, ..., a], sorted; empty when the graph has no circle."""
    modules = sorted(graph.modules)
    imports = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    cycles = []
    for group in _strongly_connected(modules, imports):
        start = min(group)
        if len(group) == 1 and start not in imports[start]:
            continue
        cycles.append([start, *_shortest_path(imports, start, group)])
    return sorted(cycles)


def _shortest_path(imports: dict[str, list[str]], start: str, group: set[str]) -> list[str]:
    """The fewest imports from `start` back to itself inside its group (breadth first)."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in imports[node]:
                if nxt == start:
                    chain = [node]
                    while chain[-1] != start:
                        chain.append(came_from[chain[-1]])
                    return [*reversed(chain[:-1]), start]
                if nxt in group and nxt not in came_from:
                    came_from[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"{start} is in a group but on no cycle")


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (no recursion limit to meet on a deep package)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(edges[root]))]
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    steps = []
    for importer, imported in itertools.pairwise(cycle):
        lines = graph.get_import_details(importer=importer, imported=imported)
        where = f" (line {lines[0]['line_number']}: {lines[0]['line_contents']})" if lines else ""
        steps.append(f"  {importer} -> {imported}{where}")
    return "\n".join(steps)


def test_inferpool_has_no_import_cycle() -> None:
    graph = grimp.build_graph("inferpool", exclude_type_checking_imports=False, cache_dir=None)
    cycles = import_cycles(graph)
    assert not cycles, "import cycles in inferpool:\n" + "\n\n".join(
        _describe(graph, cycle) for cycle in cycles)


def _graph(*imports: tuple[str, str]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported)
    return graph


@pytest.mark.parametrize(("imports", "expected"), [
    pytest.param([("p.a", "p.b"), ("p.b", "p.c")], [], id="a chain"),
    pytest.param([("p.a", "p.b"), ("p.b", "p.a")], [["p.a", "p.b", "p.a"]], id="direct"),
    pytest.param([("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.c", "p.d")],
                 [["p.a", "p.b", "p.c", "p.a"]], id="transitive"),
    pytest.param([("p.a", "p.a")], [["p.a", "p.a"]], id="itself"),
    pytest.param([("p.a", "p.b"), ("p.b", "p.a"), ("p.c", "p.d"), ("p.d", "p.c"),
                  ("p.b", "p.c")],
                 [["p.a", "p.b", "p.a"], ["p.c", "p.d", "p.c"]], id="two circles"),
    pytest.param([("p.a", "p.b"), ("p.b", "p.c"), ("p.c", "p.a"), ("p.a", "p.c")],
                 [["p.a", "p.c", "p.a"]], id="the shortest of a group"),
])
def test_cycles_found_and_named(imports: list[tuple[str, str]],
                                expected: list[list[str]]) -> None:
    assert import_cycles(_graph(*imports)) == expected


def test_type_checking_imports_are_in_the_graph() -> None:
    # The circle this test was written for was type-only; a graph without those would miss it.
    graph = grimp.build_graph("inferpool", exclude_type_checking_imports=False, cache_dir=None)
    without = grimp.build_graph("inferpool", exclude_type_checking_imports=True, cache_dir=None)
    assert graph.count_imports() > without.count_imports()

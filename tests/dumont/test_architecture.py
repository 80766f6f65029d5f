"""The layout stays easy to see: no import cycles anywhere (imports inside functions included, as
grimp reads every import statement), and no module of apps/ past 400 lines (DESIGN.md). The
layers themselves are import-linter contracts (pyproject.toml), run by `make test`."""

from __future__ import annotations

from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("apps", "dumont", "agent", "devcloud")
MAX_MODULE_LINES = 400


def import_cycles(graph) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(root: str) -> None:
        # Iterative, so deep import chains cannot hit the recursion limit.
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph.find_modules_directly_imported_by(successor)))))
                    break
                if successor in on_stack:
                    low[module] = min(low[module], index[successor])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[module])
                if low[module] == index[module]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == module:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def one_cycle(graph, group: list[str]) -> list[str]:
    """A readable path through a cycle of the group: a -> b -> ... -> a."""
    members = set(group)
    start = group[0]
    for successor in sorted(graph.find_modules_directly_imported_by(start) & members):
        path = graph.find_shortest_chain(importer=successor, imported=start)
        if path:
            return [start, *path]
    return group


def test_the_project_has_no_import_cycles():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = import_cycles(graph)
    described = ["\n    " + " -> ".join(one_cycle(graph, group)) for group in cycles]
    assert not cycles, f"{len(cycles)} import cycle(s):{''.join(described)}"


def test_the_cycle_finder_finds_a_cycle():
    """It must be able to fail: a graph with a cycle through a function-level import."""
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.c")
    graph.add_import(importer="pkg.c", imported="pkg.a")  # e.g. `def f(): from . import a`
    assert import_cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert one_cycle(graph, ["pkg.a", "pkg.b", "pkg.c"]) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_no_module_of_the_apps_passes_400_lines():
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "apps").rglob("*.py")
        if "migrations" not in path.parts and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"past {MAX_MODULE_LINES} lines, make these packages: {long}"

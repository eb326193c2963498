"""No import cycles: no module of service/, training/, loadtests/ or tests/ imports itself through
others, whether at the top of a file or lazily inside a function.

The rules between subpackages (layers, transports apart, no framework in the core) are the
import-linter contracts in pyproject.toml, checked by `make lint`; import-linter sees cycles only
between siblings of one package, so cycles across packages (`service.cli` ↔ `training.cli`, say)
are caught here.
"""

from __future__ import annotations

from collections.abc import Iterable

import grimp

PACKAGES = ("service", "training", "loadtests", "tests")


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Each group of modules that import one another in a circle (Tarjan's strongly connected
    components of more than one module), sorted."""
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                lowest[module] = min(lowest[module], lowest[imported])
            elif imported in on_stack:
                lowest[module] = min(lowest[module], index[imported])
        if lowest[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(found)


def graph_of(imports: Iterable[tuple[str, str]]) -> grimp.ImportGraph:
    graph = grimp.ImportGraph()
    for importer, imported in imports:
        graph.add_import(importer=importer, imported=imported)
    return graph


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)

    assert cycles(graph) == []


def test_a_cycle_across_packages_is_found():
    graph = graph_of([("service.cli", "training.cli"), ("training.cli", "service.cli"),
                      ("loadtests.bench", "loadtests.harness")])  # fmt: skip

    assert cycles(graph) == [["service.cli", "training.cli"]]


def test_a_longer_cycle_is_found_whole():
    graph = graph_of([("loadtests.bench", "loadtests.bench_grpc"),
                      ("loadtests.bench_grpc", "loadtests.bench_overload"),
                      ("loadtests.bench_overload", "loadtests.bench")])  # fmt: skip

    assert cycles(graph) == [
        ["loadtests.bench", "loadtests.bench_grpc", "loadtests.bench_overload"]
    ]

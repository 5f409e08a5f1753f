"""The rooms of ``service/`` keep their walls: no import circle, storage free of the web
framework, the reference model out of reach, and functions short enough to read.

Everything is read from the source with ``ast`` (imports inside functions included), so a
violation is found without importing anything. Each checker is also shown a small bad
example, so that it cannot pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import service

ROOT = Path(service.__file__).parent.parent
FRAMEWORK_FREE = ("service.problems", "service.auth", "service.transfer", "service.store")
"""Modules (and packages) below the HTTP layer: they must not import aiohttp."""
LONGEST_FUNCTION = 30


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def service_modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "service").rglob("*.py"))
    }


def imports_of(tree: ast.AST, known: Iterable[str] = ()) -> set[str]:
    """Every module ``tree`` imports, wherever it does.

    ``from pkg import mod`` counts as importing ``pkg.mod`` alone when that is one of
    ``known`` (like ``from pkg.mod import x``): a submodule's parent package is initialized
    first, by Python, whoever imports it, so that edge is no circle of ours.
    """
    modules = set(known)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = {f"{node.module}.{a.name}" for a in node.names}
            found |= names & modules or {node.module}
            found |= {node.module} if names - modules else set()
    return found


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Each import circle of ``graph`` once, as the path that closes it."""
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(graph.get(node, set())):
            visit(target, [*path, node])
        done.add(node)

    for start in sorted(graph):
        visit(start, [])
    return found


def import_graph(modules: Mapping[str, ast.Module]) -> dict[str, set[str]]:
    return {
        name: {m for m in imports_of(tree, modules) if m in modules and m != name}
        for name, tree in modules.items()
    }


def long_functions(tree: ast.AST, limit: int) -> list[str]:
    return [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_no_module_of_the_service_imports_itself_through_a_circle() -> None:
    assert cycles(import_graph(service_modules())) == []


def test_the_circle_check_finds_a_circle_through_a_package_and_a_lazy_import() -> None:
    modules = {
        "pkg": ast.parse("from pkg import a\n"),
        "pkg.a": ast.parse("def f() -> None:\n    from pkg.b import x\n"),
        "pkg.b": ast.parse("import json\n"),
    }
    assert cycles(import_graph(modules)) == []
    modules["pkg.b"] = ast.parse("from pkg import thing\n")
    assert cycles(import_graph(modules)) == [["pkg", "pkg.a", "pkg.b", "pkg"]]


def test_storage_errors_and_keys_import_no_web_framework() -> None:
    offenders = {
        name: sorted(m for m in imports_of(tree) if m.split(".")[0] == "aiohttp")
        for name, tree in service_modules().items()
        if name.startswith(FRAMEWORK_FREE)
    }
    assert set(offenders) >= {"service.problems", "service.store", "service.store.sqlite"}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_service_never_imports_the_reference_model() -> None:
    offenders = {
        name: sorted(m for m in imports_of(tree) if m.startswith("model.reference"))
        for name, tree in service_modules().items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_import_reader_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f() -> None:\n    from model.reference import apply\n")
    assert "model.reference" in imports_of(tree)


def test_no_function_of_the_service_is_longer_than_30_lines() -> None:
    offenders = {
        name: found
        for name, tree in service_modules().items()
        if (found := long_functions(tree, LONGEST_FUNCTION))
    }
    assert offenders == {}


def test_the_length_check_counts_a_function_from_its_first_to_its_last_line() -> None:
    source = "def f() -> None:\n" + "    x = 1\n" * 30
    assert long_functions(ast.parse(source), 30) == ["f: 31 lines"]
    assert long_functions(ast.parse(source), 31) == []

"""The package's shape, proven on every CI run from the source's import statements:
- the engine (tables, rules, transforms, the lakehouse, the Spark runtime, Kafka, streaming,
  serving, ...) imports nothing of Dagster's wiring (`defs/`, `lib/`, `definitions`, `cli`) and no
  `dagster` module; only resource classes (`resources/`) may stand between them;
- the shipped package imports nothing of the evaluation harness (`funnelpulse_evaluation`, which
  the tests and the benchmarks share);
- no import cycle between the package's modules (imports inside functions included);
- no module outside the tests imports a test module, and no test reaches into benchmarks/.
"""

from __future__ import annotations

import ast
from pathlib import Path

from funnelpulse_dagster_tests.conftest import REPO

PACKAGE = "funnelpulse_dagster"
WIRING = ("defs", "lib", "definitions", "cli")
RESOURCES = ("resources",)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((REPO / PACKAGE).rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every module this file imports, anywhere in it (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from package import module` imports the module
            found |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules}
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in WIRING:
        return "wiring"
    if parts[1] in RESOURCES:
        return "resources"
    return "engine"


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def test_the_engine_imports_no_wiring_and_no_dagster():
    offences = []
    for module, imported in _graph().items():
        if _layer(module) != "engine":
            continue
        for target in imported:
            if (
                target == "dagster"
                or target.startswith(("dagster.", "dagster_"))
                or target.startswith(PACKAGE + ".")
                and _layer(target) == "wiring"
            ):
                offences.append(f"{module} imports {target}")
    assert not offences, "\n".join(sorted(offences))


def test_resources_import_no_wiring():
    offences = [
        f"{module} imports {target}"
        for module, imported in _graph().items()
        if _layer(module) == "resources"
        for target in imported
        if target.startswith(PACKAGE + ".") and _layer(target) == "wiring"
    ]
    assert not offences, "\n".join(sorted(offences))


def test_no_import_cycles():
    graph = {m: {t for t in imports if t in _modules() and t != m} for m, imports in _graph().items()}
    # packages import their __init__ implicitly; an empty __init__ adds no edge
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_no_test_module_is_imported_outside_the_tests():
    offences = []
    for folder in (PACKAGE, "benchmarks", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            if "funnelpulse_dagster_tests" in path.read_text():
                offences.append(str(path.relative_to(REPO)))
    for path in (REPO / "funnelpulse_dagster_tests").rglob("*.py"):
        text = path.read_text()
        if path.name != Path(__file__).name and ('"benchmarks"' in text or "'benchmarks'" in text):
            offences.append(f"{path.relative_to(REPO)} reaches into benchmarks/")
    assert not offences, offences


def test_the_layers_are_what_this_test_believes():
    """A guard on the guard: each layer has members, so a rename cannot empty a rule."""
    layers = {_layer(m) for m in _modules()}
    assert {"engine", "wiring", "resources"} <= layers
    assert _layer("funnelpulse_dagster.defs.lakehouse.bronze") == "wiring"
    assert _layer("funnelpulse_dagster.transforms.gold") == "engine"


def test_the_package_ships_without_the_evaluation_harness():
    offences = [
        f"{module} imports {target}"
        for module, imported in _graph().items()
        for target in imported
        if target == "funnelpulse_evaluation" or target.startswith("funnelpulse_evaluation.")
    ]
    assert not offences, offences

"""The layers of DESIGN.md, read from the source (every import, also inside functions):

- the core (`harness/` but its composition root, `runner` and `cli`) imports nothing from tasks/, baselines/ or
  reports/;
- tasks/, baselines/ and reports/ import the core and themselves, not each other;
- only the composition root imports everything; no import cycle between modules anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "tasks", "baselines", "reports")
ROOTS = {"harness.runner", "harness.cli", "harness.__main__"}  # the composition root
ALLOWED = {"core": {"core"}, "tasks": {"core", "tasks"}, "baselines": {"core", "baselines"},
           "reports": {"core", "reports"}, "root": {"core", "tasks", "baselines", "reports", "root"}}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def resolve(name: str, known) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, known) -> set[str]:
    """The project modules `path` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {r for r in (resolve(t, known) for t in targets) if r}
    return found


def layer(module: str) -> str:
    if module in ROOTS:
        return "root"
    package = module.split(".")[0]
    return "core" if package == "harness" else package


def violations(graph: dict[str, set[str]], module: str) -> list[str]:
    return sorted(t for t in graph[module] if layer(t) not in ALLOWED[layer(module)])


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """The modules that can reach themselves."""
    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return sorted(m for m in graph if m in reach(m))


GRAPH = {name: imports(path, modules()) - {name} for name, path in modules().items()}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_module_imports_only_the_layers_below_it(module):
    assert not violations(GRAPH, module), f"{module} ({layer(module)}) imports {violations(GRAPH, module)}"


def test_no_import_cycle():
    assert not cycles(GRAPH), f"modules on an import cycle: {cycles(GRAPH)}"


def test_the_rules_catch_what_they_forbid():
    bad = {"harness.store": {"baselines.kd"}, "baselines.kd": {"reports.figures"}, "reports.figures": set(),
           "tasks": {"tasks.bigbench"}, "tasks.bigbench": {"tasks"}}
    assert violations(bad, "harness.store") == ["baselines.kd"]
    assert violations(bad, "baselines.kd") == ["reports.figures"]
    assert violations(bad, "reports.figures") == []
    assert cycles(bad) == ["tasks", "tasks.bigbench"]
    assert "harness.plots" in GRAPH["reports.figures"] and "harness.plots" in GRAPH["baselines.first"]

"""The layers of DESIGN.md, read from the source (every import, also inside functions):

- the core (`trustbench.harness`, the folder harness/) imports nothing above it;
- `trustbench.tasks`, `trustbench.baselines` and `trustbench.reports` import the core and themselves, not each other;
- the app on top (the `trustbench` package itself: trustbench/, its runner, CLI and `__main__`) may import everything;
- no import cycle between modules anywhere, and no module of the repository imports a bare `harness`, `tasks`,
  `baselines` or `reports`: everything is one import root, `trustbench`.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"harness": "core", "tasks": "tasks", "baselines": "baselines", "reports": "reports"}  # folder -> layer
ALLOWED = {"core": {"core"}, "tasks": {"core", "tasks"}, "baselines": {"core", "baselines"},
           "reports": {"core", "reports"}, "app": {"core", "tasks", "baselines", "reports", "app"}}
BARE = set(LAYERS)  # names that must never be imported at the top level
SOURCES = ("trustbench", *LAYERS, "tests", "benchmarks")  # every folder of Python the repository holds


def modules() -> dict[str, Path]:
    """Every module of the installed package by its import name (harness/x.py is trustbench.harness.x)."""
    found = {}
    for folder in ("trustbench", *LAYERS):
        prefix = () if folder == "trustbench" else ("trustbench",)
        for path in (ROOT / folder).rglob("*.py"):
            name = ".".join(prefix + path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def resolve(name: str, known) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(path: Path) -> list[str]:
    """The absolute module names `path` imports; `from p import m` names `p.m` when m is a module, else `p`."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def imports(path: Path, known) -> set[str]:
    """The project modules `path` imports, at module level or inside functions."""
    return {r for r in (resolve(name, known) for name in imported_names(path)) if r}


def layer(module: str) -> str:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 and parts[1] in LAYERS else "app"


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


def bare_imports(path: Path) -> list[str]:
    return sorted({name for name in imported_names(path) if name.split(".")[0] in BARE})


GRAPH = {name: imports(path, modules()) - {name} for name, path in modules().items()}
PYTHON_FILES = sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py") if "fixtures" not in p.parts)


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_module_imports_only_the_layers_below_it(module):
    assert not violations(GRAPH, module), f"{module} ({layer(module)}) imports {violations(GRAPH, module)}"


def test_no_import_cycle():
    assert not cycles(GRAPH), f"modules on an import cycle: {cycles(GRAPH)}"


def test_nothing_imports_a_bare_layer_name():
    found = {str(p.relative_to(ROOT)): bare_imports(p) for p in PYTHON_FILES}
    assert not {f: names for f, names in found.items() if names}


def test_the_rules_catch_what_they_forbid(tmp_path):
    bad = {"trustbench.harness.store": {"trustbench.baselines.kd"}, "trustbench.baselines.kd": {"trustbench.reports.figures"},
           "trustbench.reports.figures": set(), "trustbench.harness.plots": {"trustbench.runner"},
           "trustbench.tasks": {"trustbench.tasks.bigbench"}, "trustbench.tasks.bigbench": {"trustbench.tasks"}}
    assert violations(bad, "trustbench.harness.store") == ["trustbench.baselines.kd"]
    assert violations(bad, "trustbench.baselines.kd") == ["trustbench.reports.figures"]
    assert violations(bad, "trustbench.harness.plots") == ["trustbench.runner"]  # the app is above the core
    assert violations(bad, "trustbench.reports.figures") == []
    assert cycles(bad) == ["trustbench.tasks", "trustbench.tasks.bigbench"]
    assert "trustbench.harness.plots" in GRAPH["trustbench.reports.figures"]
    assert "trustbench.harness.plots" in GRAPH["trustbench.baselines.first"]
    assert layer("trustbench") == layer("trustbench.runner") == layer("trustbench.cli") == "app"
    (tmp_path / "old.py").write_text("import tasks\nfrom harness.store import RunDir\nfrom trustbench import tasks\n"
                                     "def f():\n    import reports.gate\n")
    assert bare_imports(tmp_path / "old.py") == ["harness.store.RunDir", "reports.gate", "tasks"]

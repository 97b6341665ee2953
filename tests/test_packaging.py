"""One import root: the wheel installs everything under `trustbench` (the folders harness/, tasks/, baselines/ and
reports/ become its subpackages) and nothing at the top level that a user's own `tasks.py` or `reports/` could
shadow or be shadowed by."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    return next(out.glob("trustbench-*.whl"))


def test_the_wheel_holds_one_package_with_its_data_and_commands(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"trustbench", wheel.name.split("-py3")[0] + ".dist-info"}
    for module in ("trustbench/__init__.py", "trustbench/cli.py", "trustbench/runner.py", "trustbench/__main__.py",
                   "trustbench/harness/store.py", "trustbench/tasks/countryinfo.py", "trustbench/baselines/kd.py",
                   "trustbench/reports/gate.py", "trustbench/harness/suites/demo.yaml",
                   "trustbench/tasks/cards/provinces_europe.yaml"):
        assert module in names, module
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "trustbench = trustbench.cli:main" in entry_points
    assert "trustbench-lm-eval = trustbench.harness.lmeval:cli" in entry_points


def test_the_installed_wheel_imports_as_trustbench_and_nothing_else(wheel, tmp_path):
    """Installed alone into an empty folder, run by an interpreter that sees nothing else (no site-packages, not
    this checkout): `import trustbench` and its layers work, and no bare `harness`, `tasks`, `baselines` or
    `reports` exists."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in target.iterdir() if not p.name.endswith(".dist-info")) == ["bin", "trustbench"]
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "import importlib.util, trustbench, trustbench.harness.registry, trustbench.harness.errors\n"
              "from importlib.resources import files\n"
              "assert all(importlib.util.find_spec(n) is None for n in ('harness', 'tasks', 'baselines', 'reports'))\n"
              "assert files('trustbench.harness').joinpath('suites', 'demo.yaml').is_file()\n"
              "print(trustbench.__version__, trustbench.harness.registry.__file__)")
    result = subprocess.run([sys.executable, "-S", "-c", script, str(target)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    version, where = result.stdout.split()
    assert version == "0.1.0" and Path(where) == target / "trustbench" / "harness" / "registry.py"


def test_the_public_plugin_api_is_at_the_top():
    import trustbench
    from trustbench.baselines import Context, Method, StudentArtifact, register_method
    from trustbench.harness.plots import RunView, register_figure, register_table

    assert (trustbench.Method, trustbench.Context, trustbench.StudentArtifact) == (Method, Context, StudentArtifact)
    assert (trustbench.register_method, trustbench.RunView) == (register_method, RunView)
    assert (trustbench.register_figure, trustbench.register_table) == (register_figure, register_table)
    with pytest.raises(AttributeError, match="no attribute 'Methd'"):
        trustbench.Methd  # noqa: B018


def test_a_method_installed_under_the_entry_point_group_is_found_by_name(tmp_path, monkeypatch):
    """A package of the user's registers its method under `trustbench.methods`; a suite names it like a built-in."""
    from trustbench import baselines
    from trustbench.harness.config import MethodSpec

    (tmp_path / "my_recipes.py").write_text(
        "from trustbench import Method, StudentArtifact\n\n"
        "class Untrained(Method):\n    name = 'untrained'\n    trains = False\n")
    dist = tmp_path / "my_recipes-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-recipes\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[trustbench.methods]\nuntrained = my_recipes:Untrained\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "untrained" in baselines.available()
    method = baselines.build(MethodSpec("mine", "untrained"))
    assert type(method).__module__ == "my_recipes" and type(method).__name__ == "Untrained"

"""The extending page's method example (docs/extending.md), run as written: its files and commands, smoke suite, report, gate,
from a folder that holds its own `tasks.py`, `harness.py`, `reports/` and `baselines/`."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def readme_section() -> str:
    return (ROOT / "docs" / "extending.md").read_text()


def example_files(section: str) -> dict[str, str]:
    """The code blocks announced by `<!-- plugin-example: NAME -->`."""
    return dict(re.findall(r"<!-- plugin-example: (\S+) -->\n```\w+\n(.*?)```", section, flags=re.S))


def example_commands(section: str) -> list[str]:
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_plugin_example_runs_through_run_report_and_gate(tmp_path):
    section = readme_section()
    files = example_files(section)
    assert set(files) == {"my_methods.py", "mine.yaml"}
    assert len(files["my_methods.py"].splitlines()) <= 45
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    # a research repository's own files, named like trustbench's folders once were: on PYTHONPATH=. they must
    # neither shadow trustbench nor be imported by it
    for name in ("tasks.py", "harness.py", "reports/__init__.py", "baselines/__init__.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(f"raise ImportError('the user\'s own {name} was imported')\n")
    commands = example_commands(section)
    assert [c.split()[1 if c.startswith("trustbench") else 2] for c in commands] == ["run", "run", "report", "gate"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    codes = []
    for command in commands:
        words = shlex.split(command)
        assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
        words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
        result = subprocess.run(words, cwd=tmp_path, env={**env, **assignments}, capture_output=True, text=True)
        codes.append(result.returncode)
        if words[1] == "gate":
            assert result.returncode in (0, 1), result.stderr  # comparable: a verdict, not "not comparable"
            assert "smoothed" in result.stdout and "smoke_id" in result.stdout
        else:
            assert result.returncode == 0, result.stderr[-2000:]
    merged = pd.read_csv(tmp_path / "runs" / "smoke-vs-mine" / "results.csv")
    assert {"smoothed", "finetune", "smoothed+ts"} <= set(merged.method)
    assert (tmp_path / "runs" / "mine" / "figures" / "reliability_smoothed_smoke_ood.png").exists()
    assert (tmp_path / "runs" / "mine" / "figures" / "smoothing_vs_accuracy.png").exists()  # the plugin's own figure
    assert (tmp_path / "runs" / "smoke-vs-mine" / "figures" / "smoothing_vs_accuracy.png").exists()
    # without the plugin on the path, the report says so on one line and draws everything else
    (tmp_path / "runs" / "mine" / "figures" / "smoothing_vs_accuracy.png").unlink()
    result = subprocess.run(["trustbench", "figures", "runs/mine"], cwd=tmp_path, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0 and "warning: figures of module my_methods are not drawn" in result.stderr
    assert not (tmp_path / "runs" / "mine" / "figures" / "smoothing_vs_accuracy.png").exists()

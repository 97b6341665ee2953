"""`trustbench figures` and the generic paper figures, drawn from a small synthetic run directory (no models)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from trustbench.cli import app
from trustbench.harness.plots import DPI, FIGSIZE, RunView, matplotlib_style, save_figure
from trustbench.harness.registry import FIGURES
from trustbench.harness.store import RunDir
from trustbench.reports.figures import write_figures
from trustbench.reports.paper_figures import acc_vs_ece, domain_averages, id_to_ood, reliability_grid
from trustbench.reports.results import compute_results
from synthetic_runs import manifest_dict, write_run

METHODS = {"kd": (1.0, 3.0), "finetune": (2.0, 1.0)}  # name: (skill, sharpness)
TASKS = {"nli_b": {"domain": "id"}, "a_senti": {"domain": "ood"}, "c_para": {"domain": "ood"}}
SEEDS = (0, 1)
GENERIC = ("reliability_grid", "acc_vs_ece", "id_to_ood")
FIRST_RECORD = {"k": 5, "c": 1.5, "c_mode": "search", "ece_curve": [[0.5, 0.12], [1.0, 0.06], [1.5, 0.03], [2.0, 0.07]],
                "topk_mass_mean": 0.82, "topk_mass_hist": [0] * 10 + [1, 2, 3, 5, 8, 13, 21, 34, 55, 89],
                "teacher_cache": {"hits": 3, "misses": 1, "bytes": 4096}}


def make_run(root):
    rng = np.random.default_rng(7)
    manifest = manifest_dict(TASKS, METHODS, suite_hash="feedbeef", n_boot=50)
    return write_run(root, manifest, METHODS, TASKS, SEEDS, rng, ood_skill=1 / 3, n=60)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def view(pristine):
    return RunView(RunDir(pristine), RunDir(pristine).load(), compute_results(pristine))


@pytest.fixture(scope="module")
def drawn(pristine, tmp_path_factory):
    """A copy of the run after `trustbench figures RUN --format png,pdf`, with the command's output."""
    run = tmp_path_factory.mktemp("drawn") / "run"
    shutil.copytree(pristine, run)
    result = CliRunner().invoke(app, ["figures", str(run), "--format", "png,pdf"])
    assert result.exit_code == 0, result.output
    return run, result.stdout


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_figures_command_writes_every_figure_in_each_format(drawn):
    run, stdout = drawn
    names = {p.name for p in (run / "figures").iterdir()}
    methods = [m + fix for m in METHODS for fix in ("", "+ts", "+iso")]
    stems = [*GENERIC, *(f"reliability_{m}_{t}" for m in methods for t in TASKS),
             *(f"smooth_{m}_{t}" for m in METHODS for t in TASKS)]
    assert names == {f"{stem}.{fmt}" for stem in stems for fmt in ("png", "pdf")}
    assert f"figures: {len(names)} files (png, pdf) in {run / 'figures'}" in stdout
    for name in GENERIC:
        assert (run / "figures" / f"{name}.pdf").read_bytes().startswith(b"%PDF")
    assert not (run / "results.csv").exists()  # the figures command writes figures only


def test_single_figures_fit_a_paper_column(drawn):
    run, _ = drawn
    for name in ("acc_vs_ece", "id_to_ood"):
        width, _ = _png_size(run / "figures" / f"{name}.png")
        assert width == round(FIGSIZE[0] * DPI)
    grid_width, grid_height = _png_size(run / "figures" / "reliability_grid.png")
    assert grid_width > 2 * FIGSIZE[0] * DPI / 2 * len(TASKS) / 2 and grid_height > grid_width / 2


def test_rebuild_is_byte_identical(drawn):
    run, _ = drawn
    before = {p.name: p.read_bytes() for p in (run / "figures").iterdir()}
    assert all(b"CreationDate" not in data for name, data in before.items() if name.endswith(".pdf"))
    result = CliRunner().invoke(app, ["figures", str(run), "--format", "pdf,png"])
    assert result.exit_code == 0, result.output
    after = {p.name: p.read_bytes() for p in (run / "figures").iterdir()}
    assert after == before


def test_svg_redraws_identically(view, tmp_path):
    for name in GENERIC:
        with matplotlib_style():
            paths = [save_figure(FIGURES.get(name)(view), tmp_path / f"{name}{i}.svg") for i in range(2)]
        assert paths[0].read_bytes() == paths[1].read_bytes(), name


def test_unknown_format_is_one_line_exit_2(pristine, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    result = subprocess.run([sys.executable, "-m", "trustbench", "figures", str(run), "--format", "png,gif"],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --format 'png,gif'") and "gif" in lines[0]
    assert "png, pdf, svg" in lines[0]
    assert not (run / "figures").exists()


def test_grid_has_one_reliability_cell_per_raw_method_and_task(view):
    fig = reliability_grid(view)
    cells = [ax for ax in fig.axes if "ECE" in ax.get_title()]
    assert len(cells) == len(METHODS) * len(TASKS) and len(fig.axes) == 2 * len(cells)  # + a counts axis each
    headers = [ax.get_title().splitlines()[0] for ax in cells[: len(TASKS)]]
    assert headers == ["nli_b (ID)", "a_senti (OOD)", "c_para (OOD)"]  # ID first, then manifest order
    rows = [ax.get_ylabel().splitlines()[0] for ax in cells[:: len(TASKS)]]
    assert rows == ["finetune", "kd"]  # raw methods only, leaderboard order
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)  # the legend once
    n = 60 * len(SEEDS)
    assert all(ax.get_title().endswith(f"n = {n}") for ax in cells)  # seeds pooled


def test_averages_weight_tasks_equally_and_skip_ts(view):
    averages = domain_averages(view.results)
    assert set(averages.index.get_level_values(0)) == set(METHODS)
    r = view.results
    per_task = [r[(r.method == "kd") & (r.task == t)]["ece"].mean() for t in ("a_senti", "c_para")]
    assert averages.loc[("kd", "ood"), "ece"] == pytest.approx(np.mean(per_task))
    assert averages.loc[("kd", "id"), "acc_lo"] == pytest.approx(r[(r.method == "kd") & (r.task == "nli_b")]
                                                                 ["acc_lo"].mean())


def test_acc_vs_ece_places_one_marker_per_method_and_domain(view):
    ax = acc_vs_ece(view).axes[0]
    points = {(round(float(line.get_xdata()[0]), 6), round(float(line.get_ydata()[0]), 6))
              for line in ax.lines if line.get_marker() in ("o", "^")}
    averages = domain_averages(view.results)
    want = {(round(100 * row["ece"], 6), round(100 * row["acc"], 6)) for _, row in averages.iterrows()}
    assert points == want and len(want) == len(METHODS) * 2
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "*"] == [(0, 100)]
    assert "ideal (0, 100)" in [t.get_text() for t in ax.figure.legends[0].get_texts()]


def test_id_to_ood_writes_each_change(view):
    fig = id_to_ood(view)
    averages = domain_averages(view.results)
    for ax, metric in zip(fig.axes, ("acc", "ece")):
        texts = {t.get_text() for t in ax.texts}
        for method in METHODS:
            change = 100 * (averages.loc[(method, "ood"), metric] - averages.loc[(method, "id"), metric])
            assert f"{change:+.1f}" in texts
    id_only = view.results[view.results["domain"] == "id"]
    assert id_to_ood(RunView(view.run, view.manifest, id_only)) is None  # nothing to compare
    assert acc_vs_ece(RunView(view.run, view.manifest, id_only)) is not None


def test_first_figures_only_when_the_manifest_has_first_records(drawn, pristine, tmp_path):
    run, _ = drawn
    assert not list((run / "figures").glob("first_*"))
    with_first = tmp_path / "run"
    shutil.copytree(pristine, with_first)
    manifest = json.loads((with_first / "manifest.json").read_text())
    manifest["methods"]["first"] = {"method": "first", "module": "trustbench.baselines.first",
                                    "runs": {"0": {"checkpoint": "first-checkpoint", "records": {"first": FIRST_RECORD}}}}
    (with_first / "manifest.json").write_text(json.dumps(manifest))
    write_figures(with_first, compute_results(with_first), formats=("png",))
    drawn_first = sorted(p.name for p in (with_first / "figures").glob("first_*"))
    assert drawn_first == ["first_ece_vs_c.png", "first_topk_mass.png"]  # no `first` predictions: no side-by-side
    assert {"first_ece_vs_c", "first_topk_mass", *GENERIC} <= set(FIGURES)


def test_grid_legend_survives_a_method_that_skipped_the_first_task(pristine, tmp_path):
    """The first cell (finetune on the first ID task) is empty: the legend comes from a cell that has plots."""
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    for path in run.glob("predictions/*/finetune__nli_b__s*.parquet"):
        path.unlink()
    fig = reliability_grid(RunView(RunDir(run), RunDir(run).load(), compute_results(run)))
    assert len(fig.legends) == 1 and fig.legends[0].get_texts()

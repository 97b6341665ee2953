"""Published results and the pages generated from them: every page is what its data gives (a number edited by hand
fails here), every published table's point estimates are what its predictions give, and results/ keeps its budget."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trustbench.harness.calibration import is_recalibrated
from trustbench.harness.metrics import ece
from trustbench.harness.store import RunDir, read_cell
from trustbench.reports.pages import DERIVED, HEADLINE, pages, published

ROOT = Path(__file__).resolve().parents[1]
BUDGET_MB = 30  # all of results/: manifests, predictions and the derived tables (no figures, no report.html)
RUNS = published(ROOT / "results") if (ROOT / "results").is_dir() else []


def test_results_are_published():
    assert {run.name for run in RUNS} >= {"demo", "first-ablations", "counter-baselines"}


def test_every_generated_page_is_what_its_data_gives():
    stale = [str(path.relative_to(ROOT)) for path, text in pages(ROOT).items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"out of date (run `trustbench pages`): {stale}"


def test_the_readme_carries_the_generated_headline_table():
    readme = (ROOT / "README.md").read_text()
    begin, end = HEADLINE
    assert readme.count(begin) == readme.count(end) == 1
    assert "results/demo" in readme.split(begin)[1].split(end)[0]


def test_a_number_edited_by_hand_fails_the_check(tmp_path):
    """The test of the test: a copy of the repository's generated files, one number changed, is out of date."""
    for part in ("results", "benchmarks/results", "docs", "README.md"):
        source, target = ROOT / part, tmp_path / part
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    check = [sys.executable, "-m", "trustbench", "pages", "--root", str(tmp_path), "--check"]
    assert subprocess.run(check, capture_output=True).returncode == 0
    page = tmp_path / "docs" / "results" / "demo.md"
    text = page.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| finetune |"))
    digit = next(i for i, ch in enumerate(row) if ch.isdigit())
    edited = row[:digit] + str((int(row[digit]) + 1) % 10) + row[digit + 1:]
    page.write_text(text.replace(row, edited, 1))
    done = subprocess.run(check, capture_output=True, text=True)
    assert done.returncode == 1 and "docs/results/demo.md" in done.stdout


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_a_published_run_has_its_predictions_and_derived_tables(run):
    RunDir(run).check_cells(RunDir(run).load())  # every cell the manifest names is there
    assert all((run / name).is_file() for name in DERIVED)
    for rebuilt in ("figures/reliability.png", "report.html", "leaderboard.tex"):  # redrawn, never committed
        assert subprocess.run(["git", "check-ignore", "-q", str(run / rebuilt)], cwd=ROOT).returncode == 0


@pytest.mark.parametrize("run", RUNS, ids=[r.name for r in RUNS])
def test_published_point_estimates_are_what_the_predictions_give(run):
    manifest = RunDir(run).load()
    results = pd.read_csv(run / "results.csv")
    raw = results[~results["method"].map(is_recalibrated)]
    assert len(raw) == len(RunDir(run).cells("test"))
    for row in raw.itertuples(index=False):
        frame = read_cell(RunDir(run).cell_path("test", row.method, row.task, row.seed))
        correct = frame["correct"].to_numpy(float)
        assert row.n == len(frame) and row.acc == pytest.approx(correct.mean(), abs=1e-9)  # results.csv: 10 digits
        assert row.ece == pytest.approx(ece(frame["confidence"].to_numpy(float), correct, manifest.metrics.bins,
                                            manifest.metrics.equal_mass), abs=1e-9)


def test_results_keep_their_size_budget():
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    size = sum((ROOT / path).stat().st_size for path in tracked if (ROOT / path).is_file())
    assert 0 < size < BUDGET_MB * 2 ** 20, f"results/ holds {size / 2 ** 20:.1f} MB, over its {BUDGET_MB} MB budget"


def test_a_published_run_without_its_derived_tables_is_a_one_line_error(tmp_path):
    source = RUNS[0]
    (tmp_path / "results" / source.name).mkdir(parents=True)
    shutil.copy(source / "manifest.json", tmp_path / "results" / source.name / "manifest.json")
    done = subprocess.run([sys.executable, "-m", "trustbench", "pages", "--root", str(tmp_path)], capture_output=True,
                          text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert f"trustbench report {tmp_path / 'results' / source.name}" in done.stderr
    assert not (tmp_path / "docs").exists()  # nothing half-written


@pytest.mark.parametrize("kind", ["file", "folder"])
def test_publish_never_replaces_what_is_not_a_run(tmp_path, kind):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("keep me")
    else:
        target.mkdir()
        (target / "notes.md").write_text("keep me")
    done = subprocess.run([sys.executable, "-m", "trustbench", "publish", str(RUNS[0]), "--out", str(target)],
                          capture_output=True, text=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "not a run directory" in done.stderr
    assert (target.read_text() if kind == "file" else (target / "notes.md").read_text()) == "keep me"

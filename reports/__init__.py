"""Reports: pure functions from stored predictions to results, leaderboards, figures and report.html.

`build_report(run_dirs, out)` redoes all of it for one run, or for several comparable runs merged; no model and
no GPU are needed. Results and tables are computed before any report file is written (a report into another
folder first links the runs' predictions into a temporary staging run there, removed at the end), and every file
is written atomically; figures are written (into `figures/`) before the tables and report.html.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from trustbench.harness.cache import write_text
from trustbench.harness.errors import UserError
from trustbench.harness.store import SPLITS, Manifest, RunDir


def _run_list(run_dirs) -> list[Path]:
    return [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(d) for d in run_dirs]


def _out_dir(run_dirs: list[Path], out) -> Path:
    """Where the report goes: the run itself by default; a separate, new place when merging."""
    if not run_dirs:
        raise UserError("no run directory given: `trustbench report RUN_DIR [RUN_DIR ...]`")
    if out is None:
        if len(run_dirs) > 1:
            raise UserError(f"merging {len(run_dirs)} runs needs --out DIR: the merged report gets its own folder")
        return run_dirs[0]
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder for the report")
    if len(run_dirs) > 1 and any(out.resolve() == d.resolve() for d in run_dirs):
        raise UserError(f"--out {out} is one of the runs being merged: give the merged report a folder of its own")
    return out


@contextmanager
def _readable(run_dirs: list[Path], out: Path, manifest: Manifest):
    """One run directory with every cell of `run_dirs`, for registered figures and tables to read: the run itself,
    or for a merge (or an --out elsewhere) a temporary one inside `out`: the merged manifest and links to every
    run's predictions."""
    if len(run_dirs) == 1 and out.resolve() == run_dirs[0].resolve():
        yield RunDir(out)
        return
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".staging-") as tmp:
        stage = RunDir(tmp)
        stage.save(manifest)
        for run in map(RunDir, run_dirs):
            for split in SPLITS:
                for cell, src in run.cells(split).items():
                    link = stage.cell_path(split, *cell)
                    if not link.exists():  # a cell in two runs is the same in both (checked by the merge)
                        link.parent.mkdir(parents=True, exist_ok=True)
                        link.symlink_to(src.resolve())
        yield stage


def _figures(source: RunDir, out: Path, manifest: Manifest, results) -> list[Path]:
    """`write_figures` of `source` (see `_readable`), moved into `out/figures`."""
    from trustbench.reports.figures import write_figures

    figures = []
    for path in write_figures(source, results, manifest=manifest):
        dest = out / Path(path).relative_to(source.path)
        if dest != Path(path):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
        figures.append(dest)
    return figures


def _frames(run_dirs: list[Path], results):
    """`frame_of(method, task, seed)`: a results row's test predictions (with its temperature for an `X+ts` row),
    from whichever run holds the cell (a cell two merged runs hold is the same in both: the merge checked)."""
    from trustbench.harness.calibration import base_method, fit_recalibrations, recalibrated
    from trustbench.harness.store import read_cell

    cells = {}
    for run in map(RunDir, run_dirs):
        for key, path in run.cells("test").items():
            cells.setdefault(key, path)
    fits = {}
    for run in map(RunDir, reversed(run_dirs)):  # a cell's fit from the run its predictions come from
        fits.update(fit_recalibrations(run, run.load()))

    def frame_of(method: str, task: str, seed: int):
        base = base_method(method)
        return recalibrated(read_cell(cells[base, task, seed]), method, fits.get((base, seed)))

    return frame_of


def build_report(run_dirs, out: str | Path | None = None, reference: str | None = None) -> Path:
    """Write results.csv, leaderboard.{md,csv,tex}, costs.csv, comparison.csv, figures/*.png, report.html.

    `run_dirs` is one run directory (the report goes into it unless `out` is given) or several comparable ones,
    merged (see `reports.merge`) into `out`, which is then required. `reference` is the method every other is
    compared with in comparison.csv (finetune when not given).
    """
    from trustbench.reports.compare import compare_to
    from trustbench.reports.costs import cost_table
    from trustbench.reports.html import render_html
    from trustbench.harness.statistics import bootstrap
    from trustbench.reports.leaderboard import leaderboard_frame, render_csv, render_latex, render_markdown
    from trustbench.reports.merge import load_runs
    from trustbench.reports.tables import method_tables, table_csv

    run_dirs = _run_list(run_dirs)
    out = _out_dir(run_dirs, out)
    manifest, results = load_runs(run_dirs)
    metrics = manifest.metrics
    draws = bootstrap(results, _frames(run_dirs, results), metrics.n_boot, metrics.bins, metrics.equal_mass)
    references = {name for name, entry in manifest.methods.items() if entry.reference}
    if reference is not None and reference not in set(results["method"]):
        raise UserError(f"--reference {reference}: the run has no such method; use one of "
                        f"{', '.join(sorted(set(results['method'])))}")
    frame = leaderboard_frame(results, manifest.tasks, draws, references)
    comparison = compare_to(results, draws, reference=reference or "finetune", references=references)
    scoring, settings = manifest.scoring.model_dump(), metrics.model_dump()
    files = {
        "results.csv": results_csv(results),
        "leaderboard.md": render_markdown(frame, results, scoring, settings),
        "leaderboard.csv": render_csv(frame),
        "leaderboard.tex": render_latex(frame, results, scoring, settings),
        "costs.csv": cost_table(manifest).to_csv(index=False, lineterminator="\n", float_format="%.10g"),
        "comparison.csv": comparison.to_csv(index=False, lineterminator="\n", float_format="%.10g"),
    }
    with _readable(run_dirs, out, manifest) as source:
        tables = method_tables(source, manifest, results)
        files.update({f"tables/{name}.csv": table_csv(table) for name, table in tables.items()})
        figures = _figures(source, out, manifest, results)
    files["report.html"] = render_html(manifest, results, frame, comparison, figures, tables)
    for name, text in files.items():
        write_text(out / name, text)
    return out / "report.html"


def chance_warnings(run_dir) -> list[str]:
    """One line per results row of a (non-reference, not temperature-scaled) method whose accuracy does not clear
    the task's majority rate, or whose predictions are mostly one answer: numbers that carry no signal."""
    import pandas as pd

    from trustbench.harness.calibration import is_recalibrated

    manifest = RunDir(run_dir).load()
    references = {name for name, entry in manifest.methods.items() if entry.reference}
    results = pd.read_csv(Path(run_dir) / "results.csv")
    flagged = results[~results["method"].map(is_recalibrated) & ~results["method"].isin(references)
                      & (results["at_chance"] | results["collapsed"])]
    lines = []
    for row in flagged.itertuples(index=False):
        reasons = []
        if row.at_chance:
            reasons.append(f"accuracy {100 * row.acc:.1f}% (95% lower bound {100 * row.acc_lo:.1f}%) does not clear "
                           f"the majority rate {100 * row.majority:.1f}%")
        if row.collapsed:
            reasons.append(f"{100 * row.top_share:.0f}% of its predictions are one answer")
        lines.append(f"{row.method} on {row.task} (seed {row.seed}): {'; '.join(reasons)}")
    return lines


def results_csv(results) -> str:
    """The results table as CSV text (full float precision, `\\n` line ends), identical across rebuilds."""
    return results.to_csv(index=False, lineterminator="\n", float_format="%.10g")


__all__ = ["build_report", "chance_warnings", "results_csv"]

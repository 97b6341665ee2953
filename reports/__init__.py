"""Reports: pure functions from stored predictions to results, leaderboards, figures and report.html.

`build_report(run_dirs, out)` redoes all of it for one run, or for several comparable runs merged; no model and
no GPU are needed. Results and tables are computed before anything is written, and every file is written
atomically; figures are written (into `figures/`) before the tables and report.html.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from harness.cache import write_text
from harness.errors import UserError
from harness.store import SPLITS, Manifest, RunDir


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


def _figures(run_dirs: list[Path], out: Path, manifest: Manifest, results) -> list[Path]:
    """`write_figures` into `out/figures`. It reads one run directory, so for a merge (or an --out elsewhere) it
    reads a temporary one inside `out`: the merged manifest and links to every run's predictions."""
    from reports.figures import write_figures

    if len(run_dirs) == 1 and out.resolve() == run_dirs[0].resolve():
        return write_figures(out, results, manifest=manifest)
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
        figures = []
        for path in write_figures(stage, results, manifest=manifest):
            dest = out / Path(path).relative_to(stage.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
            figures.append(dest)
    return figures


def build_report(run_dirs, out: str | Path | None = None) -> Path:
    """Write results.csv, leaderboard.{md,csv,tex}, costs.csv, comparison.csv, figures/*.png, report.html.

    `run_dirs` is one run directory (the report goes into it unless `out` is given) or several comparable ones,
    merged (see `reports.merge`) into `out`, which is then required.
    """
    from reports.compare import compare_to
    from reports.costs import cost_table
    from reports.html import render_html
    from reports.leaderboard import leaderboard_frame, render_csv, render_latex, render_markdown
    from reports.merge import load_runs

    run_dirs = _run_list(run_dirs)
    out = _out_dir(run_dirs, out)
    manifest, results = load_runs(run_dirs)
    frame = leaderboard_frame(results, manifest.tasks)
    scoring, metrics = manifest.scoring.model_dump(), manifest.metrics.model_dump()
    md = render_markdown(frame, results, scoring, metrics)
    files = {
        "results.csv": results_csv(results),
        "leaderboard.md": md,
        "leaderboard.csv": render_csv(frame),
        "leaderboard.tex": render_latex(frame, results, scoring, metrics),
        "costs.csv": cost_table(manifest).to_csv(index=False, lineterminator="\n", float_format="%.10g"),
        "comparison.csv": compare_to(results).to_csv(index=False, lineterminator="\n", float_format="%.10g"),
    }
    figures = _figures(run_dirs, out, manifest, results)
    files["report.html"] = render_html(manifest, results, frame, figures)
    for name, text in files.items():
        write_text(out / name, text)
    return out / "report.html"


def results_csv(results) -> str:
    """The results table as CSV text (full float precision, `\\n` line ends), identical across rebuilds."""
    return results.to_csv(index=False, lineterminator="\n", float_format="%.10g")


__all__ = ["build_report", "results_csv"]

"""Reports: pure functions from a run directory's stored predictions to results, leaderboard, figures, HTML.

`build_report(run_dir)` redoes all of it; no model and no GPU are needed, and every file is written atomically.
"""
from __future__ import annotations

from pathlib import Path

from harness.cache import write_text


def build_report(run_dir: str | Path) -> Path:
    """Write results.csv, leaderboard.md, figures/*.png and report.html into `run_dir`; return report.html."""
    from reports.figures import write_figures
    from reports.html import render_html
    from reports.leaderboard import leaderboard_markdown
    from reports.results import compute_results, load_manifest

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    results = compute_results(run_dir)
    write_text(run_dir / "results.csv", results_csv(results))
    md = leaderboard_markdown(results, manifest.get("tasks") or {}, manifest.get("scoring"), manifest.get("metrics"))
    write_text(run_dir / "leaderboard.md", md)
    figures = write_figures(run_dir, results)
    path = run_dir / "report.html"
    write_text(path, render_html(run_dir, results, md, figures))
    return path


def results_csv(results) -> str:
    """The results table as CSV text (full float precision, `\\n` line ends), identical across rebuilds."""
    return results.to_csv(index=False, lineterminator="\n", float_format="%.10g")


__all__ = ["build_report", "results_csv"]

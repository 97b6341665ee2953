"""Figures: a reliability diagram per method x task, and every registered figure the run has data for.

Registered figures (`harness.plots.register_figure`) come from the generic paper figures (`reports.paper_figures`)
and from the recipe modules the run's manifest names, built-in or plugin: importing a recipe registers its
figures, and nothing else of `baselines/` is imported (nor torch).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandas as pd

from trustbench.harness.plots import (FIGSIZE, RunView, draw_reliability, draw_smooth_reliability, matplotlib_style,
                                      save_figure)
from trustbench.harness.calibration import is_recalibrated
from trustbench.harness.registry import FIGURES
from trustbench.harness.store import Manifest, RunDir


def reliability_diagram(predictions: pd.DataFrame, title: str, path: str | Path, bins: int = 10,
                        equal_mass: bool = False) -> Path:
    """Draw one reliability diagram of `predictions` (confidence, correct) to `path`; return the path."""
    with matplotlib_style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=FIGSIZE)
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        axc = fig.add_subplot(grid[1], sharex=ax)
        draw_reliability(ax, axc, predictions, title, bins, equal_mass)
        fig.subplots_adjust(left=0.17, right=0.96, top=0.86, bottom=0.12)
        return save_figure(fig, Path(path))


def smooth_reliability_diagram(predictions: pd.DataFrame, title: str, path: str | Path) -> Path:
    """Draw one smooth reliability diagram (with its bootstrap band) of `predictions` to `path`; return the path."""
    with matplotlib_style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=FIGSIZE)
        draw_smooth_reliability(fig.add_subplot(), predictions, title)
        fig.subplots_adjust(left=0.17, right=0.96, top=0.86, bottom=0.12)
        return save_figure(fig, Path(path))


def figure_name(method: str, task: str, kind: str = "reliability") -> str:
    """`reliability_<method>_<task>.png`, or `smooth_...` for the smooth diagram."""
    return f"{kind}_{method}_{task}.png"


def import_recipes(manifest: Manifest, log=None) -> list[str]:
    """Import the module of every method the run holds, so their figures register; a module that cannot be
    imported here (a plugin not on PYTHONPATH) is skipped with a warning line, and its figures are not drawn."""
    import trustbench.reports.agreement  # noqa: F401  (the teacher-agreement table and figure)
    import trustbench.reports.paper_figures  # noqa: F401  (the generic figures: reliability grid, acc vs ECE, ID -> OOD)

    log = log or (lambda line: print(line, file=sys.stderr))
    imported = []
    for module in sorted({entry.module for entry in manifest.methods.values() if entry.module}):
        try:
            importlib.import_module(module)
            imported.append(module)
        except Exception as error:  # a plugin's import can fail in any way; the report goes on without it
            log(f"warning: figures of module {module} are not drawn ({type(error).__name__}: {error}); "
                "put it on PYTHONPATH to draw them")
    return imported


def write_figures(run_dir: str | Path | RunDir, results: pd.DataFrame, formats: tuple[str, ...] = ("png",),
                  manifest: Manifest | None = None) -> list[Path]:
    """`figures/reliability_<method>_<task>.png` for every method x task in `results` and
    `figures/smooth_<method>_<task>.png` for every raw (not recalibrated) one, seeds pooled, and every registered
    figure the run has data for, in each of `formats`."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    manifest = manifest or run.load()
    import_recipes(manifest)
    view = RunView(run, manifest, results)
    settings = view.settings
    out = []
    for name, function in FIGURES.items():
        with matplotlib_style():
            fig = function(view)
            if fig is not None:
                out += [save_figure(fig, run.figures_dir / f"{name}.{fmt}") for fmt in formats]
    for method, task in sorted(set(zip(results["method"], results["task"]))):
        predictions = view.predictions(method, task)
        if predictions.empty:
            continue
        seeds = sorted(set(results[(results["method"] == method) & (results["task"] == task)]["seed"]))
        title = f"{method} on {task}" + (f" ({len(seeds)} seeds pooled)" if len(seeds) > 1 else "")
        for fmt in formats:
            path = run.figures_dir / figure_name(method, task).replace(".png", f".{fmt}")
            out.append(reliability_diagram(predictions, title, path, bins=settings["bins"],
                                           equal_mass=settings["equal_mass"]))
            if not is_recalibrated(method):  # a post-hoc row keeps its binned diagram: figures cost test time
                smooth = run.figures_dir / figure_name(method, task, "smooth").replace(".png", f".{fmt}")
                out.append(smooth_reliability_diagram(predictions, title, smooth))
    return out

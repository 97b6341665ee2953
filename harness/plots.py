"""What every figure is drawn with: one style, atomic saving, the reliability diagram, and `RunView`.

Figures register by decorator (`@register_figure("name")`, a function of a `RunView` that returns a matplotlib
Figure, or None when the run has nothing to show), in the module that knows what to draw: the generic ones in
`reports/`, a method's own in its recipe file. This module is in the core, so recipes draw without importing
`reports/`, and nothing here imports torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from trustbench.harness.cache import atomic_path
from trustbench.harness.calibration import base_method, fit_recalibrations, recalibrated
from trustbench.harness.registry import FIGURES, TABLES
from trustbench.harness.store import Manifest, RunDir, read_cell

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FIGSIZE = (3.3, 3.3)  # inches: one paper column
DPI = 150
STYLE = {
    "font.size": 7,
    "axes.titlesize": 7.5,
    "axes.labelsize": 7,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6,
    "axes.linewidth": 0.6,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "svg.hashsalt": "trustbench",
}
BAR_COLOR = "#4C72B0"
GAP_COLOR = "#DD8452"
CONF_COLOR = "#C44E52"


def matplotlib_style():
    """The one style every trustbench figure is drawn in (Agg backend, paper-column font sizes)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    return matplotlib.rc_context(STYLE)


def save_figure(fig, path: Path) -> Path:
    """Write `fig` atomically, in the format of `path`'s suffix, with no timestamps (identical rebuilds)."""
    fmt = path.suffix.lstrip(".")
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Producer": None},
                "svg": {"Date": None}}.get(fmt, {})
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=DPI, metadata=metadata)
    return path


def draw_reliability(ax, axc, predictions: pd.DataFrame, title: str, bins: int = 10, equal_mass: bool = False,
                     legend: bool = True) -> None:
    """Per-bin accuracy bars, the gap to the diagonal and mean confidence on `ax`; bin counts on `axc`."""
    from trustbench.harness.metrics import ece as ece_of, reliability_table

    conf = predictions["confidence"].to_numpy(dtype=float)
    correct = predictions["correct"].to_numpy(dtype=bool)
    table = reliability_table(conf, correct, bins=bins, equal_mass=equal_mass)
    ece = ece_of(conf, correct, bins=bins, equal_mass=equal_mass)
    lo, hi = table["lo"].to_numpy(dtype=float), table["hi"].to_numpy(dtype=float)
    width, center = hi - lo, (lo + hi) / 2
    count = table["count"].to_numpy(dtype=float)
    acc = table["accuracy"].to_numpy(dtype=float)
    mean_conf = table["confidence"].to_numpy(dtype=float)
    filled = count > 0

    ax.plot([0, 1], [0, 1], linestyle="--", color="0.45", linewidth=0.8, label="perfect calibration")
    ax.bar(lo[filled], acc[filled], width=width[filled], align="edge", color=BAR_COLOR,
           edgecolor="white", linewidth=0.5, label="accuracy")
    gap_bottom = np.minimum(acc, mean_conf)[filled]
    ax.bar(lo[filled], np.abs(acc - mean_conf)[filled], bottom=gap_bottom, width=width[filled], align="edge",
           color=GAP_COLOR, alpha=0.35, edgecolor=GAP_COLOR, linewidth=0.4, hatch="///", label="gap")
    ax.plot(center[filled], mean_conf[filled], marker="o", markersize=2.8, linewidth=0.9, color=CONF_COLOR,
            label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.tick_params(labelbottom=False)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    if legend:
        ax.legend(loc="upper left", frameon=False, handlelength=1.6)
    ece_text = "n/a" if not math.isfinite(ece) else f"{100 * ece:.1f}%"
    ax.set_title(f"{title}\nECE = {ece_text}  (n = {len(predictions)}, {bins} "
                 f"{'equal-mass' if equal_mass else 'equal-width'} bins)", linespacing=1.5, pad=4)

    axc.bar(lo, count, width=width, align="edge", color="0.55", edgecolor="white", linewidth=0.5)
    axc.set_xlabel("confidence")
    axc.set_ylabel("count")
    axc.set_xlim(0, 1)
    axc.grid(True, axis="y", linewidth=0.3, alpha=0.5)


def draw_smooth_reliability(ax, predictions: pd.DataFrame, title: str, n_boot: int = 200) -> None:
    """The smooth reliability diagram on `ax` (`statistics.smooth_reliability_band`): the kernel-smoothed accuracy
    with its 95% bootstrap band, the diagonal, the density of the confidences along the bottom, and the sample
    size, smooth ECE and bandwidth in the corner. The kernel is relplot's, cut at distance 1/2, so a wide bandwidth
    shows a step where the bulk of the confidences enters the window, as relplot's own diagrams do."""
    from trustbench.harness.statistics import smooth_reliability_band

    smooth = smooth_reliability_band(predictions["confidence"].to_numpy(dtype=float),
                                     predictions["correct"].to_numpy(dtype=float), n_boot=n_boot)
    curve = smooth["curve"]
    # where almost no confidence falls the curve is the kernel's extrapolation, not data: it is left out there
    curve = curve.where(curve["density"] >= 0.05 * curve["density"].max()).assign(
        confidence=curve["confidence"], density=curve["density"])
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.45", linewidth=0.8, label="perfect calibration")
    ax.fill_between(curve["confidence"], curve["lo"], curve["hi"], color=BAR_COLOR, alpha=0.25, linewidth=0,
                    label="95% bootstrap band")
    ax.plot(curve["confidence"], curve["accuracy"], color=BAR_COLOR, linewidth=1.2, label="smoothed accuracy")
    density = curve["density"] / curve["density"].max() * 0.2  # the bottom fifth of the axes
    ax.fill_between(curve["confidence"], 0, density, color="0.55", alpha=0.5, linewidth=0, label="confidence density")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="upper left", frameon=False, handlelength=1.6)
    ax.text(0.97, 0.24, f"n = {smooth['n']}\nsmECE = {100 * smooth['smece']:.1f}%\nbandwidth {smooth['sigma']:.3f}",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=6.5)
    ax.set_title(f"{title}\nsmooth reliability (Blasiok & Nakkiran 2023)", linespacing=1.5, pad=4)


def pooled_predictions(run: RunDir, results: pd.DataFrame, method: str, task: str, fits=None) -> pd.DataFrame:
    """All seeds' test predictions of one method x task; `X+ts` and `X+iso` apply each seed's recalibration
    (`fits`, from `fit_recalibrations`: fitted here when not given)."""
    files = run.cells("test")
    base = base_method(method)
    if fits is None and base != method:
        fits = fit_recalibrations(run, run.load())
    rows = results[(results["method"] == method) & (results["task"] == task)].sort_values("seed")
    frames = []
    for _, row in rows.iterrows():
        path = files.get((base, task, int(row["seed"])))
        if path is None:
            continue
        frames.append(recalibrated(read_cell(path), method, (fits or {}).get((base, int(row["seed"])))))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class RunView:
    """What a registered figure is drawn from: one run's manifest, results and stored predictions."""

    run: RunDir
    manifest: Manifest
    results: pd.DataFrame

    def predictions(self, method: str, task: str) -> pd.DataFrame:
        return pooled_predictions(self.run, self.results, method, task, self.fits)

    @cached_property
    def fits(self) -> dict:
        """The run's recalibrations, fitted once per view."""
        return fit_recalibrations(self.run, self.manifest)

    def records(self, key: str) -> dict[str, dict]:
        """Per method, the record `key` its first seed stored (`ctx.record(key, value)` in its recipe)."""
        return self.manifest.records(key)

    @property
    def settings(self) -> dict:
        return self.manifest.metrics.model_dump()


FigureFunction = Callable[[RunView], "Figure | None"]


def register_figure(name: str) -> Callable[[FigureFunction], FigureFunction]:
    """Register `figures/<name>.<format>` (see the module docstring)."""
    return FIGURES.register(name)


def register_table(name: str):
    """Register `tables/<name>.csv` (and a section of report.html): a function of a `RunView` returning a pandas
    DataFrame, or None when the run has nothing to show. Methods register theirs beside their figures."""
    return TABLES.register(name)


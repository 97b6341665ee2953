"""Figures: reliability diagrams per method x task, and a registry of the other figures a run can draw."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

from harness.cache import atomic_path
from reports.results import TS_SUFFIX, load_manifest, metric_settings, prediction_files, read_predictions

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


def reliability_diagram(
    predictions: pd.DataFrame,
    title: str,
    path: str | Path,
    bins: int = 10,
    equal_mass: bool = False,
) -> Path:
    """Draw one reliability diagram of `predictions` (confidence, correct) to a PNG at `path`; return the path."""
    with matplotlib_style():
        from matplotlib.figure import Figure

        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
        ax = fig.add_subplot(grid[0])
        axc = fig.add_subplot(grid[1], sharex=ax)
        draw_reliability(ax, axc, predictions, title, bins, equal_mass)
        fig.subplots_adjust(left=0.17, right=0.96, top=0.86, bottom=0.12)
        return save_figure(fig, Path(path))


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
    from harness.metrics import ece as ece_of, reliability_table

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


def figure_name(method: str, task: str) -> str:
    return f"reliability_{method}_{task}.png"


def pooled_predictions(run_dir: str | Path, results: pd.DataFrame, method: str, task: str) -> pd.DataFrame:
    """All seeds' test predictions of one method x task; `X+ts` applies each seed's fitted temperature."""
    from harness.calibration import apply_temperature

    manifest = load_manifest(run_dir)
    files = prediction_files(run_dir, "test", manifest)
    base = method[: -len(TS_SUFFIX)] if method.endswith(TS_SUFFIX) else method
    rows = results[(results["method"] == method) & (results["task"] == task)].sort_values("seed")
    frames = []
    for _, row in rows.iterrows():
        path = files.get((base, task, int(row["seed"])))
        if path is None:
            continue
        df = read_predictions(path, manifest)
        if method.endswith(TS_SUFFIX):
            df = apply_temperature(df, float(row["temperature"]))
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class RunView:
    """What a registered figure is drawn from: one run's manifest, results and stored predictions."""

    run_dir: Path
    manifest: dict
    results: pd.DataFrame

    def predictions(self, method: str, task: str) -> pd.DataFrame:
        return pooled_predictions(self.run_dir, self.results, method, task)

    def method_records(self, key: str) -> dict[str, dict]:
        """Per method, the record `key` its first seed's run stored in its cost (e.g. FIRST's `first`)."""
        records = {}
        for name, entry in (self.manifest.get("methods") or {}).items():
            runs = entry.get("runs") or {}
            for seed in sorted(runs, key=int):
                if key in (runs[seed].get("cost") or {}):
                    records[name] = runs[seed]["cost"][key]
                    break
        return records

    @property
    def settings(self) -> dict:
        return metric_settings(self.manifest)


FigureFunction = Callable[[RunView], "Figure | None"]
FIGURES: dict[str, FigureFunction] = {}


def register_figure(name: str) -> Callable[[FigureFunction], FigureFunction]:
    """Register `figures/<name>.<format>`: a function of a `RunView` returning a matplotlib Figure, or None when
    the run has nothing to show. Methods register theirs in their own recipe file, so reports/ need not change."""

    def register(function: FigureFunction) -> FigureFunction:
        FIGURES[name] = function
        return function

    return register


def write_figures(run_dir: str | Path, results: pd.DataFrame, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """`figures/reliability_<method>_<task>.png` for every method x task in `results`, seeds pooled, and every
    registered figure the run has data for, in each of `formats`."""
    import baselines  # noqa: F401  (importing the recipes registers their figures)
    import reports.paper_figures  # noqa: F401  (the generic figures: reliability grid, acc vs ECE, ID -> OOD)

    run_dir = Path(run_dir)
    view = RunView(run_dir, load_manifest(run_dir), results)
    settings = view.settings
    out = []
    for name, function in sorted(FIGURES.items()):
        with matplotlib_style():
            fig = function(view)
            if fig is not None:
                out += [save_figure(fig, run_dir / "figures" / f"{name}.{fmt}") for fmt in formats]
    pairs = sorted(set(zip(results["method"], results["task"])))
    for method, task in pairs:
        preds = pooled_predictions(run_dir, results, method, task)
        if preds.empty:
            continue
        seeds = sorted(set(results[(results["method"] == method) & (results["task"] == task)]["seed"]))
        title = f"{method} on {task}" + (f" ({len(seeds)} seeds pooled)" if len(seeds) > 1 else "")
        for fmt in formats:
            path = run_dir / "figures" / figure_name(method, task).replace(".png", f".{fmt}")
            out.append(reliability_diagram(preds, title, path, bins=settings["bins"],
                                           equal_mass=settings["equal_mass"]))
    return out

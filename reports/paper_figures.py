"""The generic paper figures every run can draw: a reliability grid, accuracy vs ECE, and the ID -> OOD change.

Registered like any method's figure (`register_figure`), so `trustbench report` and `trustbench figures` draw
them from the manifest, the results table and the stored predictions only. They show the raw methods; the
temperature-scaled `X+ts` rows have their own reliability diagrams (`reliability_X+ts_<task>.png`).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from trustbench.harness.calibration import is_recalibrated
from trustbench.harness.plots import FIGSIZE, RunView, draw_reliability, register_figure
from trustbench.reports.leaderboard import method_order, task_columns

CELL = (FIGSIZE[0] / 2, FIGSIZE[1] * 0.62)  # inches per reliability cell: half a column wide, still legible
MARGIN = {"left": 0.62, "right": 0.12, "top": 0.85, "bottom": 0.38}  # inches around the grid
AVERAGED = ("acc", "acc_lo", "acc_hi", "ece", "ece_lo", "ece_hi")
DOMAIN_STYLE = {"id": ("o", "ID avg"), "ood": ("^", "OOD avg")}


def raw_methods(results: pd.DataFrame) -> list[str]:
    """Methods without recalibration, in the leaderboard's order (teacher first)."""
    return [m for m in method_order(results["method"]) if not is_recalibrated(m)]


def method_colors(results: pd.DataFrame) -> dict[str, str]:
    """One colour per method, the same in every figure of a run."""
    return {m: f"C{i % 10}" for i, m in enumerate(raw_methods(results))}


def domain_averages(results: pd.DataFrame) -> pd.DataFrame:
    """Per (raw method, domain): the mean over tasks of each task's seed-mean acc, ece and their CI bounds."""
    raw = results[~results["method"].map(is_recalibrated)]
    per_task = raw.groupby(["method", "domain", "task"])[list(AVERAGED)].mean()
    return per_task.groupby(["method", "domain"]).mean()


# ------------------------------------------------------------------------------------------ reliability grid


@register_figure("reliability_grid")
def reliability_grid(view: RunView):
    """Every raw method (rows) on every task (columns, ID then OOD), seeds pooled, with bin counts under each."""
    from matplotlib.figure import Figure

    methods = raw_methods(view.results)
    id_tasks, ood_tasks = task_columns(view.results, view.manifest.tasks)
    tasks = [(t, "ID") for t in id_tasks] + [(t, "OOD") for t in ood_tasks]
    if not methods or not tasks:
        return None
    width = max(FIGSIZE[0], MARGIN["left"] + MARGIN["right"] + CELL[0] * len(tasks))  # room for the legend
    height = MARGIN["top"] + MARGIN["bottom"] + CELL[1] * len(methods)
    fig = Figure(figsize=(width, height))
    outer = fig.add_gridspec(len(methods), len(tasks), wspace=0.3, hspace=0.45,
                             left=MARGIN["left"] / width, right=1 - MARGIN["right"] / width,
                             top=1 - MARGIN["top"] / height, bottom=MARGIN["bottom"] / height)
    for row, method in enumerate(methods):
        for col, (task, domain) in enumerate(tasks):
            inner = outer[row, col].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.1)
            ax = fig.add_subplot(inner[0])
            axc = fig.add_subplot(inner[1], sharex=ax)
            _grid_cell(view, ax, axc, method, task, header=f"{task} ({domain})" if row == 0 else None)
            _grid_labels(ax, axc, method if col == 0 else None, bottom=row == len(methods) - 1)
    seeds = view.results["seed"].nunique()
    fig.suptitle(f"Reliability per method (rows) and task (columns); {seeds} seed{'s' * (seeds > 1)} pooled",
                 y=1 - 0.08 / height, fontsize=7.5)
    # the legend of the first cell with plots (a method may not have scored the first task)
    handles, labels = next((h for h in (ax.get_legend_handles_labels() for ax in fig.axes) if h[1]), ([], []))
    if labels:
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.24 / height), ncol=len(labels),
                   frameon=False, handlelength=1.6, columnspacing=1.2)
    return fig


def _grid_cell(view: RunView, ax, axc, method: str, task: str, header: str | None) -> None:
    """One reliability diagram with a short title (ECE, n): the method and task are the row and column labels."""
    from trustbench.harness.metrics import ece as ece_of

    preds = view.predictions(method, task)
    if preds.empty:  # this method did not score this task
        ax.text(0.5, 0.5, "not scored", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_axis_off()
        axc.set_axis_off()
        ax.set_title(header or "", pad=3)
        return
    bins, equal_mass = view.settings["bins"], view.settings["equal_mass"]
    draw_reliability(ax, axc, preds, "", bins, equal_mass, legend=False)
    ece = ece_of(preds["confidence"].to_numpy(dtype=float), preds["correct"].to_numpy(dtype=bool), bins=bins,
                 equal_mass=equal_mass)
    ece_text = f"{100 * ece:.1f}%" if math.isfinite(ece) else "n/a"
    short = f"ECE {ece_text}, n = {len(preds)}"
    ax.set_title(f"{header}\n{short}" if header else short, pad=3, linespacing=1.3)


def _grid_labels(ax, axc, method: str | None, bottom: bool) -> None:
    """Axis labels only where they are needed: the method on the left column, `confidence` on the bottom row."""
    from matplotlib.ticker import MaxNLocator

    if not ax.axison:
        return
    ax.set_yticks([0, 0.5, 1])
    axc.set_xticks([0, 0.5, 1])
    axc.yaxis.set_major_locator(MaxNLocator(2, integer=True))
    ax.set_ylabel(f"{method}\naccuracy" if method else "", linespacing=1.4)
    axc.set_ylabel("count" if method else "")
    axc.set_xlabel("confidence" if bottom else "")


# ------------------------------------------------------------------------------------------ accuracy vs ECE


@register_figure("acc_vs_ece")
def acc_vs_ece(view: RunView):
    """Accuracy against ECE per raw method, ID and OOD averages joined, 95% CI bounds averaged as error bars."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    averages = domain_averages(view.results)
    if averages.empty:
        return None
    colors = method_colors(view.results)
    fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] * 1.12))
    ax = fig.add_subplot()
    for method, color in colors.items():
        rows = averages.loc[method]
        domains = [d for d in DOMAIN_STYLE if d in rows.index]
        ax.plot([100 * rows.loc[d, "ece"] for d in domains], [100 * rows.loc[d, "acc"] for d in domains],
                color=color, linewidth=0.6, alpha=0.6)
        for domain in domains:
            _point(ax, rows.loc[domain], color, DOMAIN_STYLE[domain][0], filled=domain == "id")
    ax.margins(0.1)
    ax.set_xlim(left=0)
    ax.set_ylim(top=100)
    ax.set_xlabel("ECE (%), lower is better")
    ax.set_ylabel("accuracy (%), higher is better")
    ax.set_title("Accuracy vs calibration (task averages)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ideal = {"marker": "*", "markersize": 8, "color": "0.35", "linestyle": "none"}
    ax.plot([0], [100], clip_on=False, zorder=5, **ideal)
    handles = [Line2D([], [], color="0.3", marker=marker, linestyle="none", markersize=4, label=label,
                      markerfacecolor="0.3" if d == "id" else "white") for d, (marker, label) in DOMAIN_STYLE.items()]
    handles += [Line2D([], [], label="ideal (0, 100)", **ideal)]
    handles += [Line2D([], [], color=c, marker="s", linestyle="none", markersize=4, label=m) for m, c in colors.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, handlelength=1, columnspacing=1)
    rows_of_legend = math.ceil(len(handles) / 4)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.93, bottom=0.12 + 0.045 * rows_of_legend)
    return fig


def _point(ax, row: pd.Series, color: str, marker: str, filled: bool) -> None:
    """One (ECE, accuracy) marker with the averaged CI bounds as error bars (clipped: ECE's CI may miss it)."""
    x, y = 100 * row["ece"], 100 * row["acc"]
    xerr = np.maximum(0, [[x - 100 * row["ece_lo"]], [100 * row["ece_hi"] - x]])
    yerr = np.maximum(0, [[y - 100 * row["acc_lo"]], [100 * row["acc_hi"] - y]])
    ax.errorbar([x], [y], xerr=np.nan_to_num(xerr), yerr=np.nan_to_num(yerr), fmt=marker, color=color,
                markersize=4, markerfacecolor=color if filled else "white", markeredgewidth=0.8,
                elinewidth=0.5, capsize=1.5, capthick=0.5)


# ------------------------------------------------------------------------------------------ ID -> OOD change


@register_figure("id_to_ood")
def id_to_ood(view: RunView):
    """Per raw method, an arrow from its ID average to its OOD average: accuracy (left) and ECE (right)."""
    from matplotlib.figure import Figure

    averages = domain_averages(view.results)
    colors = method_colors(view.results)
    pairs = {m: averages.loc[m] for m in colors if {"id", "ood"} <= set(averages.loc[m].index)}
    if not pairs:
        return None
    fig = Figure(figsize=(FIGSIZE[0], 0.95 + 0.27 * len(pairs)))
    axes = fig.subplots(1, 2, sharey=True)
    for ax, metric, label, title in zip(axes, ("acc", "ece"), ("accuracy (%)", "ECE (%)"), ("Accuracy", "ECE")):
        for y, (method, rows) in enumerate(pairs.items()):
            _arrow(ax, y, 100 * rows.loc["id", metric], 100 * rows.loc["ood", metric], colors[method])
        ax.set_xlabel(label)
        ax.set_title(f"{title}: ID \u2192 OOD")
        ax.margins(x=0.3, y=0.5 / len(pairs))
        ax.grid(True, axis="x", linewidth=0.3, alpha=0.5)
    axes[0].set_yticks(range(len(pairs)), list(pairs))
    axes[0].invert_yaxis()  # first method on top, as in the leaderboard
    fig.text(0.99, 0.01, "dot: ID avg, arrow head: OOD avg, number: change in points", ha="right", va="bottom",
             fontsize=6, color="0.35")
    fig.subplots_adjust(left=0.24, right=0.97, top=1 - 0.28 / fig.get_figheight(),
                        bottom=0.55 / fig.get_figheight(), wspace=0.12)
    return fig


def _arrow(ax, y: float, start: float, end: float, color: str) -> None:
    """A dot at the ID value, an arrow to the OOD value, and the change written above the arrow."""
    ax.plot([start], [y], marker="o", markersize=3.5, color=color)
    ax.plot([end], [y], alpha=0)  # annotations do not count for autoscaling; this point does
    ax.annotate("", xy=(end, y), xytext=(start, y),
                arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1, "shrinkA": 0, "shrinkB": 0,
                            "mutation_scale": 7})
    ax.annotate(f"{end - start:+.1f}", ((start + end) / 2, y), textcoords="offset points", xytext=(0, 2.5),
                ha="center", va="bottom", fontsize=6, color=color)

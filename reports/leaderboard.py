"""The leaderboard: accuracy and ECE per method x task, ID then OOD, with averages and 95% CIs, as markdown."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.results import TS_SUFFIX

MISSING = "–"
BOUNDS = {"acc": (0.0, 1.0), "ece": (0.0, 1.0), "mce": (0.0, 1.0), "auroc": (0.0, 1.0), "aurc": (0.0, 1.0)}


def method_order(methods) -> list[str]:
    """`teacher` first, then the others alphabetically, each `X+ts` right after `X`."""

    def key(m: str):
        base = m[: -len(TS_SUFFIX)] if m.endswith(TS_SUFFIX) else m
        return (base != "teacher", base, m.endswith(TS_SUFFIX))

    return sorted(set(methods), key=key)


def task_columns(results: pd.DataFrame, tasks_meta: dict) -> tuple[list[str], list[str]]:
    """(ID tasks, OOD tasks) present in `results`, in manifest order (then alphabetical for any others)."""
    present = list(dict.fromkeys(results["task"]))
    ordered = [t for t in tasks_meta if t in present] + sorted(t for t in present if t not in tasks_meta)
    by_row = dict(zip(results["task"], results["domain"]))

    def domain(t):
        meta = tasks_meta.get(t)
        return meta.get("domain") if isinstance(meta, dict) and meta.get("domain") else by_row.get(t)

    return [t for t in ordered if domain(t) == "id"], [t for t in ordered if domain(t) == "ood"]


def t_interval(values, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval for the mean of `values` (needs at least two)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    half = float(stats.t.ppf(1 - alpha / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _cell_stats(rows: pd.DataFrame, metric: str) -> dict | None:
    """Mean over seeds and its 95% CI for one method x task: t over seeds, or the bootstrap CI for one seed."""
    rows = rows.dropna(subset=[metric])
    if rows.empty:
        return None
    per_seed = rows.groupby("seed")[metric].mean()
    if len(per_seed) >= 2:
        mean, lo, hi = t_interval(per_seed.to_numpy())
    else:
        row = rows.iloc[0]
        mean, lo, hi = float(row[metric]), float(row[f"{metric}_lo"]), float(row[f"{metric}_hi"])
    return {"mean": mean, "lo": lo, "hi": hi, "per_seed": per_seed}


def _average_stats(cells: list[dict | None]) -> dict | None:
    """Unweighted mean over tasks of the per-task means, with a 95% CI.

    When every task has the same >= 2 seeds: t-interval over the per-seed averages across tasks. Otherwise: a
    normal approximation that combines the per-task CI half-widths as independent errors.
    """
    if not cells or any(c is None for c in cells):
        return None
    mean = float(np.mean([c["mean"] for c in cells]))
    seeds = [tuple(sorted(c["per_seed"].index)) for c in cells]
    if len(set(seeds)) == 1 and len(seeds[0]) >= 2:
        per_seed_avg = np.mean([c["per_seed"].loc[list(seeds[0])].to_numpy() for c in cells], axis=0)
        _, lo, hi = t_interval(per_seed_avg)
        return {"mean": mean, "lo": lo, "hi": hi}
    halves = [(c["hi"] - c["lo"]) / 2 for c in cells]
    if any(not math.isfinite(h) for h in halves):
        return {"mean": mean, "lo": math.nan, "hi": math.nan}
    half = math.sqrt(sum(h * h for h in halves)) / len(cells)
    return {"mean": mean, "lo": mean - half, "hi": mean + half}


def format_cell(stats: dict | None, bounds: tuple[float, float] | None = None) -> str:
    """`71.3 [68.0, 74.6]` in percent, one decimal, the CI clipped to `bounds`; `–` when there is nothing to show."""
    if stats is None or not math.isfinite(stats["mean"]):
        return MISSING
    text = f"{100 * stats['mean']:.1f}"
    lo, hi = stats["lo"], stats["hi"]
    if math.isfinite(lo) and math.isfinite(hi):
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
        text += f" [{100 * lo:.1f}, {100 * hi:.1f}]"
    return text


def leaderboard_table(results: pd.DataFrame, tasks_meta: dict, metric: str) -> pd.DataFrame:
    """Formatted cells: index = methods (leaderboard order), columns = ID tasks, ID avg, OOD tasks, OOD avg."""
    id_tasks, ood_tasks = task_columns(results, tasks_meta)
    methods = method_order(results["method"])
    columns = id_tasks + (["ID avg"] if id_tasks else []) + ood_tasks + (["OOD avg"] if ood_tasks else [])
    table = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for method in methods:
        mrows = results[results["method"] == method]
        for tasks, avg_name in ((id_tasks, "ID avg"), (ood_tasks, "OOD avg")):
            cells = [_cell_stats(mrows[mrows["task"] == t], metric) for t in tasks]
            for task, cell in zip(tasks, cells):
                table.loc[method, task] = format_cell(cell, BOUNDS.get(metric))
            if tasks:
                table.loc[method, avg_name] = format_cell(_average_stats(cells), BOUNDS.get(metric))
    table.index.name = "method"
    return table


def _markdown_table(table: pd.DataFrame) -> str:
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([str(method)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def leaderboard_markdown(
    results: pd.DataFrame,
    tasks_meta: dict,
    scoring: dict | None = None,
    metrics: dict | None = None,
) -> str:
    """Markdown: a header line, an accuracy table and an ECE table, and footnotes on averages and CIs.

    `scoring` and `metrics` are the manifest's blocks of the same name (for the header and the ECE binning);
    without them the header says what is unknown and the ECE title assumes 10 equal-width bins.
    """
    suite = str(results["suite"].iloc[0]) if len(results) and "suite" in results else "?"
    scoring = scoring or {}
    metrics = metrics or {}
    bins = int(metrics.get("bins", 10))
    binning = "equal-mass" if metrics.get("equal_mass") else "equal-width"
    seeds = sorted(set(results["seed"])) if len(results) else []
    lines = [
        f"# Leaderboard: suite `{suite}`",
        "",
        f"Scoring: {scoring.get('mode', '?')}; confidence: {scoring.get('confidence', '?')}; "
        f"seeds: {', '.join(str(s) for s in seeds) or '?'}.",
        "",
        "## Accuracy (%)",
        "",
        _markdown_table(leaderboard_table(results, tasks_meta, "acc")),
        "",
        f"## ECE (%, {bins} {binning} bins; lower is better)",
        "",
        _markdown_table(leaderboard_table(results, tasks_meta, "ece")),
        "",
        "Each cell is the mean over seeds with its 95% CI in brackets: with several seeds, a Student-t interval "
        "over the per-seed values (clipped to [0, 100]; with few seeds it is wide); with one seed, the 95% bootstrap interval over test examples. "
        "`ID avg` and `OOD avg` are unweighted means over tasks of the per-task means; their CI is a t-interval "
        "over the per-seed averages when every task has the same seeds, otherwise the per-task CI half-widths "
        f"combined as independent errors. `+ts`: after temperature scaling fitted on the ID validation split. "
        f"`{MISSING}`: not evaluated.",
        "",
    ]
    return "\n".join(lines)

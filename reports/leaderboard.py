"""The leaderboard: accuracy, ECE and Brier score per method x task, with ID and OOD averages and 95% CIs.

`leaderboard_frame` is the one place the numbers are computed: a tidy table (one row per method x column x
metric). Markdown, CSV and LaTeX (here) and HTML (`reports.html`) are small pure renderers of that frame.

Ranking rule (`RANKING`): rows are ordered by the Brier score averaged over the ID average and the OOD average
(lower first), ties broken by the same average of accuracy (higher first). The Brier score is a proper scoring
rule: it rewards accuracy and calibration together, so neither a sharp but over-confident model nor a calibrated
but near-chance one comes first, and ID and OOD count equally however many tasks each has.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from harness.calibration import TS_SUFFIX

MISSING = "–"
BOUNDS = {"acc": (0.0, 1.0), "ece": (0.0, 1.0), "mce": (0.0, 1.0), "auroc": (0.0, 1.0), "aurc": (0.0, 1.0),
          "brier": (0.0, 2.0)}
SHOWN = ("acc", "ece", "brier")  # the leaderboard's metrics, in table order
HIGHER_IS_BETTER = {"acc": True, "ece": False, "brier": False}
AVERAGES = {"id": "ID avg", "ood": "OOD avg"}
FRAME_COLUMNS = ["rank", "method", "task", "domain", "metric", "mean", "lo", "hi", "n_seeds", "best"]
RANKING = ("Rows are ranked by the Brier score averaged over `ID avg` and `OOD avg` (lower first; a proper "
           "scoring rule, so accuracy and calibration both count), ties broken by the same average of accuracy.")


def method_order(methods) -> list[str]:
    """`teacher` first, then the others alphabetically, each `X+ts` right after `X` (the ranking's last tie-break)."""

    def key(m: str):
        base = m[: -len(TS_SUFFIX)] if m.endswith(TS_SUFFIX) else m
        return (base != "teacher", base, m.endswith(TS_SUFFIX))

    return sorted(set(methods), key=key)


def task_columns(results: pd.DataFrame, tasks: dict) -> tuple[list[str], list[str]]:
    """(ID tasks, OOD tasks) present in `results`, in the order of `tasks` (the manifest's), then alphabetical."""
    present = list(dict.fromkeys(results["task"]))
    ordered = [t for t in tasks if t in present] + sorted(t for t in present if t not in tasks)
    domain = dict(zip(results["task"], results["domain"]))
    return [t for t in ordered if domain[t] == "id"], [t for t in ordered if domain[t] == "ood"]


def t_interval(values, alpha: float = 0.05) -> tuple[float, float, float]:
    """(mean, lo, hi): Student-t interval for the mean of `values` (needs at least two)."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    half = float(stats.t.ppf(1 - alpha / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return mean, mean - half, mean + half


def _cell_stats(rows: pd.DataFrame, metric: str) -> dict | None:
    """Mean over seeds and its 95% CI for one method x task: t over seeds, or the bootstrap CI for one seed."""
    rows = rows.dropna(subset=[metric]) if metric in rows else rows.iloc[:0]
    if rows.empty:
        return None
    per_seed = rows.groupby("seed")[metric].mean()
    if len(per_seed) >= 2:
        mean, lo, hi = t_interval(per_seed.to_numpy())
    else:
        row = rows.iloc[0]
        mean, lo, hi = float(row[metric]), float(row[f"{metric}_lo"]), float(row[f"{metric}_hi"])
    return {"mean": mean, "lo": lo, "hi": hi, "per_seed": per_seed, "n_seeds": len(per_seed)}


def _average_stats(cells: list[dict | None]) -> dict | None:
    """Unweighted mean over tasks of the per-task means, with a 95% CI.

    When every task has the same >= 2 seeds: t-interval over the per-seed averages across tasks. Otherwise: a
    normal approximation that combines the per-task CI half-widths as independent errors.
    """
    if not cells or any(c is None for c in cells):
        return None
    mean = float(np.mean([c["mean"] for c in cells]))
    n_seeds = min(c["n_seeds"] for c in cells)
    seeds = [tuple(sorted(c["per_seed"].index)) for c in cells]
    if len(set(seeds)) == 1 and len(seeds[0]) >= 2:
        per_seed_avg = np.mean([c["per_seed"].loc[list(seeds[0])].to_numpy() for c in cells], axis=0)
        _, lo, hi = t_interval(per_seed_avg)
        return {"mean": mean, "lo": lo, "hi": hi, "n_seeds": n_seeds}
    halves = [(c["hi"] - c["lo"]) / 2 for c in cells]
    if any(not math.isfinite(h) for h in halves):
        return {"mean": mean, "lo": math.nan, "hi": math.nan, "n_seeds": n_seeds}
    half = math.sqrt(sum(h * h for h in halves)) / len(cells)
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "n_seeds": n_seeds}


def _numbers(stats: dict | None, metric: str) -> dict:
    """mean, lo, hi (the CI clipped to the metric's range) and n_seeds of one cell; NaN when not evaluated."""
    if stats is None:
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan, "n_seeds": 0}
    lo, hi = stats["lo"], stats["hi"]
    if metric in BOUNDS and math.isfinite(lo) and math.isfinite(hi):
        lo, hi = max(lo, BOUNDS[metric][0]), min(hi, BOUNDS[metric][1])
    return {"mean": stats["mean"], "lo": lo, "hi": hi, "n_seeds": stats["n_seeds"]}


def _ranked_methods(frame: pd.DataFrame) -> list[str]:
    """Methods in `RANKING` order; methods lacking an average (a domain's average where other methods have one) go
    last, then `method_order` breaks ties."""
    averages = frame[frame["task"].isin(AVERAGES.values())]
    domains = averages.dropna(subset=["mean"])["task"].unique()

    def domain_mean(method: str, metric: str) -> float:
        rows = averages[(averages["method"] == method) & (averages["metric"] == metric)]
        values = rows.set_index("task")["mean"].reindex(domains)
        return float(values.mean()) if len(values) and values.notna().all() else math.nan

    def key(item):
        index, method = item
        brier, acc = domain_mean(method, "brier"), domain_mean(method, "acc")
        return (math.isnan(brier), 0.0 if math.isnan(brier) else brier, math.isnan(acc),
                0.0 if math.isnan(acc) else -acc, index)

    return [m for _, m in sorted(enumerate(method_order(frame["method"])), key=key)]


def _shown(value: float) -> float:
    """The value as a table prints it (percent, one decimal), so ties in print are ties for `best`."""
    return float(f"{100 * value:.1f}")


def _best(frame: pd.DataFrame) -> pd.Series:
    """True where a cell is the best of its (metric, column) as printed (max accuracy, min ECE and Brier)."""
    shown = frame["mean"].map(lambda v: _shown(v) if math.isfinite(v) else math.nan)
    groups = shown.groupby([frame["metric"], frame["task"]])
    target = groups.transform("max").where(frame["metric"].map(HIGHER_IS_BETTER), groups.transform("min"))
    return shown.eq(target) & shown.notna()


def leaderboard_frame(results: pd.DataFrame, tasks: dict) -> pd.DataFrame:
    """The leaderboard as a tidy table: `FRAME_COLUMNS`, one row per metric x method x column.

    Columns (`task`) are the ID tasks, `ID avg`, the OOD tasks, `OOD avg`; values are fractions; rows are in
    metric order, then rank, then column order. Every renderer reads this frame and nothing else.
    """
    id_tasks, ood_tasks = task_columns(results, tasks)
    rows = []
    for method in method_order(results["method"]):
        mrows = results[results["method"] == method]
        for metric in SHOWN:
            for domain, tasks in (("id", id_tasks), ("ood", ood_tasks)):
                cells = [_cell_stats(mrows[mrows["task"] == t], metric) for t in tasks]
                named = list(zip(tasks, cells)) + ([(AVERAGES[domain], _average_stats(cells))] if tasks else [])
                for column, cell in named:
                    rows.append({"method": method, "task": column, "domain": domain, "metric": metric,
                                 **_numbers(cell, metric)})
    frame = pd.DataFrame(rows, columns=[c for c in FRAME_COLUMNS if c not in ("rank", "best")])
    rank = {m: i + 1 for i, m in enumerate(_ranked_methods(frame))}
    frame.insert(0, "rank", frame["method"].map(rank).astype(int))
    frame["best"] = _best(frame)
    frame["n_seeds"] = frame["n_seeds"].astype(int)
    order = frame["metric"].map({m: i for i, m in enumerate(SHOWN)})
    return frame.assign(_order=order).sort_values(["_order", "rank"], kind="mergesort").drop(columns="_order") \
        .reset_index(drop=True)


def format_cell(stats, bounds: tuple[float, float] | None = None) -> str:
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


def wide(frame: pd.DataFrame, metric: str, cell=format_cell) -> pd.DataFrame:
    """One metric of the frame as methods (rank order) x columns, each cell rendered by `cell(row)`."""
    part = frame[frame["metric"] == metric]
    columns = list(dict.fromkeys(part["task"]))
    table = pd.DataFrame(index=list(dict.fromkeys(part["method"])), columns=columns, dtype=object)
    for row in part.itertuples(index=False):
        table.loc[row.method, row.task] = cell(row._asdict())
    table.index.name = "method"
    return table


def leaderboard_table(results: pd.DataFrame, tasks: dict, metric: str) -> pd.DataFrame:
    """Formatted cells: index = methods (rank order), columns = ID tasks, ID avg, OOD tasks, OOD avg."""
    return wide(leaderboard_frame(results, tasks), metric)


def titles(metrics: dict | None = None) -> dict[str, str]:
    """Each shown metric's table title (the ECE title says how it bins)."""
    metrics = metrics or {}
    binning = "equal-mass" if metrics.get("equal_mass") else "equal-width"
    return {"acc": "Accuracy (%)",
            "ece": f"ECE (%, {int(metrics.get('bins', 10))} {binning} bins; lower is better)",
            "brier": "Brier score (x100; lower is better; ranks the rows)"}


def header_line(results: pd.DataFrame, scoring: dict | None) -> str:
    """`Scoring: ...; confidence: ...; seeds: ...` for the top of every format."""
    scoring = scoring or {}
    seeds = sorted(set(results["seed"])) if len(results) else []
    return (f"Scoring: {scoring.get('mode', '?')}; confidence: {scoring.get('confidence', '?')}; "
            f"seeds: {', '.join(str(s) for s in seeds) or '?'}.")


def suite_name(results: pd.DataFrame) -> str:
    """The suite's name; merged runs of differently named (but comparable) suites show every name."""
    names = list(dict.fromkeys(str(s) for s in results["suite"])) if len(results) and "suite" in results else []
    return " + ".join(names) or "?"


FOOTNOTE = (
    "Each cell is the mean over seeds with its 95% CI in brackets: with several seeds, a Student-t interval "
    "over the per-seed values (clipped to the metric's range; with few seeds it is wide); with one seed, the 95% "
    "bootstrap interval over test examples. `ID avg` and `OOD avg` are unweighted means over tasks of the per-task "
    "means; their CI is a t-interval over the per-seed averages when every task has the same seeds, otherwise the "
    "per-task CI half-widths combined as independent errors. `+ts`: after temperature scaling fitted on the ID "
    f"validation split. `{MISSING}`: not evaluated."
)


def _markdown_table(table: pd.DataFrame) -> str:
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for method, row in table.iterrows():
        lines.append("| " + " | ".join([str(method)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def render_markdown(frame: pd.DataFrame, results: pd.DataFrame, scoring: dict | None = None,
                    metrics: dict | None = None) -> str:
    """Markdown: a header line, one table per shown metric, the ranking rule and the CI footnote."""
    lines = [f"# Leaderboard: suite `{suite_name(results)}`", "", header_line(results, scoring), ""]
    for metric, title in titles(metrics).items():
        lines += [f"## {title}", "", _markdown_table(wide(frame, metric)), ""]
    lines += [RANKING + " " + FOOTNOTE, ""]
    return "\n".join(lines)


def leaderboard_markdown(
    results: pd.DataFrame,
    tasks: dict,
    scoring: dict | None = None,
    metrics: dict | None = None,
) -> str:
    """Markdown of `results` (see `render_markdown`); `scoring` and `metrics` are the manifest's blocks."""
    return render_markdown(leaderboard_frame(results, tasks), results, scoring, metrics)


def render_csv(frame: pd.DataFrame) -> str:
    """The frame as tidy CSV (fractions at full precision, empty where not evaluated), identical across rebuilds."""
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.10g")


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in a name (method and task names may hold `_`, `+`, ...)."""
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def _tex_cell(row: dict) -> str:
    text = format_cell(row)
    if text == MISSING:
        return "--"
    mean, _, ci = text.partition(" ")
    mean = rf"\textbf{{{mean}}}" if row["best"] else mean
    return mean + (rf" {{\scriptsize {ci}}}" if ci else "")


def _tex_prose(text: str) -> str:
    """Footnote prose: escaped, with `code` spans as \\texttt and the missing mark as the cells show it."""
    parts = str(text).replace(MISSING, "--").split("`")
    return "".join(rf"\texttt{{{tex_escape(p)}}}" if i % 2 else tex_escape(p) for i, p in enumerate(parts))


def render_latex(frame: pd.DataFrame, results: pd.DataFrame, scoring: dict | None = None,
                 metrics: dict | None = None) -> str:
    """A booktabs table (needs \\usepackage{booktabs}): one panel per metric, ID and OOD column groups, the best
    value of each column in bold, and the ranking rule and CI definition in the caption."""
    columns = list(dict.fromkeys(frame["task"]))
    domains = dict(zip(frame["task"], frame["domain"]))
    n_id = sum(domains[c] == "id" for c in columns)
    width = len(columns) + 1
    groups, rules, start = [], [], 2
    for domain, label in (("id", "In domain"), ("ood", "Out of domain")):
        k = sum(domains[c] == domain for c in columns)
        if k:
            groups.append(rf"\multicolumn{{{k}}}{{c}}{{{label}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + k - 1}}}")
            start += k
    lines = [
        f"% trustbench leaderboard, suite {suite_name(results)}: generated by `trustbench report`; "
        r"needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{l" + "r" * n_id + "r" * (len(columns) - n_id) + "}",
        r"\toprule",
        " & ".join([""] + groups) + r" \\",
        " ".join(rules),
        " & ".join(["Method"] + [tex_escape(c) for c in columns]) + r" \\",
    ]
    for metric, title in titles(metrics).items():
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{tex_escape(title)}}}}} \\"]
        for method, row in wide(frame, metric, _tex_cell).iterrows():
            lines.append(" & ".join([tex_escape(method)] + [str(v) for v in row]) + r" \\")
    caption = _tex_prose(f"{header_line(results, scoring)} {RANKING} Bold: best in its column. {FOOTNOTE}")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\label{tab:trustbench}",
              r"\end{table}", ""]
    return "\n".join(lines)

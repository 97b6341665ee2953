"""The leaderboard: accuracy, ECE, Brier score and over-confidence per method x task, with ID and OOD averages.

`leaderboard_frame` is the one place the numbers are computed: a tidy table (one row per method x column x
metric). Markdown, CSV and LaTeX (here) and HTML (`reports.html`) are small pure renderers of that frame.

Intervals come from `harness.statistics`: a bootstrap over test examples and seeds whose resamples every method
shares, so a difference between two rows is paired, and ID and OOD averages are resampled as averages.

Cells that carry no signal are marked: `MARKS["at_chance"]` where the accuracy's 95% lower bound does not clear
the task's majority rate, `MARKS["collapsed"]` where 90% or more of the predictions are one answer, and
`MARKS["oracle"]` on a reference row whose prior comes from the scored split itself; `MARKS["small_sample"]` on a
calibration estimate from fewer than 300 predictions per seed. Reference rows (the prior)
are ranked with the others, labelled as references, and never marked best.

Ranking rule (`RANKING`): rows are ordered by the Brier score averaged over the ID average and the OOD average
(lower first), ties broken by the same average of accuracy (higher first). The Brier score is a proper scoring
rule: it rewards accuracy and calibration together, so neither a sharp but over-confident model nor a calibrated
but near-chance one comes first, and ID and OOD count equally however many tasks each has.
"""
from __future__ import annotations

import math

import pandas as pd

from trustbench.harness.calibration import SUFFIXES, base_method
from trustbench.harness.statistics import SAMPLE_SENSITIVE, SMALL_SAMPLE, Draws, at_chance, collapsed, interval, \
    small_sample

MISSING = "–"
BOUNDS = {"acc": (0.0, 1.0), "ece": (0.0, 1.0), "mce": (0.0, 1.0), "auroc": (0.0, 1.0), "aurc": (0.0, 1.0),
          "brier": (0.0, 2.0), "conf_gap": (-1.0, 1.0), "macro_f1": (0.0, 1.0), "smece": (0.0, 1.0)}
SHOWN = ("acc", "ece", "smece", "brier", "conf_gap", "macro_f1")  # the leaderboard's metrics, in table order
BEST = {"acc": max, "ece": min, "smece": min, "brier": min, "conf_gap": lambda values: min(values, key=abs),
        "macro_f1": max}
AVERAGES = {"id": "ID avg", "ood": "OOD avg"}
MARKS = {"at_chance": "†", "collapsed": "‡", "oracle": "°", "small_sample": "§"}
REFERENCE = " (reference)"  # after a reference row's name
FRAME_COLUMNS = ["rank", "method", "task", "domain", "metric", "mean", "lo", "hi", "n_seeds", "best", "reference",
                 "at_chance", "collapsed", "oracle", "small_sample"]
RANKING = ("Rows are ranked by the Brier score averaged over `ID avg` and `OOD avg` (lower first; a proper "
           "scoring rule, so accuracy and calibration both count), ties broken by the same average of accuracy.")


def method_order(methods) -> list[str]:
    """`teacher` first, then the others alphabetically, each `X+ts` and `X+iso` right after `X` (the ranking's last
    tie-break)."""

    def key(m: str):
        base = base_method(m)
        return (base != "teacher", base, ("", *SUFFIXES).index(m[len(base):]))

    return sorted(set(methods), key=key)


def task_columns(results: pd.DataFrame, tasks: dict) -> tuple[list[str], list[str]]:
    """(ID tasks, OOD tasks) present in `results`, in the order of `tasks` (the manifest's), then alphabetical."""
    present = list(dict.fromkeys(results["task"]))
    ordered = [t for t in tasks if t in present] + sorted(t for t in present if t not in tasks)
    domain = dict(zip(results["task"], results["domain"]))
    return [t for t in ordered if domain[t] == "id"], [t for t in ordered if domain[t] == "ood"]


def _flags(rows: pd.DataFrame, acc_lo: float) -> dict:
    """A method x task's marks, over its seeds: at chance by the cell's accuracy interval against the majority rate,
    collapsed by the mean share of the most frequent prediction, oracle when any seed's row is one."""
    small = {"small_sample": small_sample(int(rows["n"].min())) if len(rows) and "n" in rows else False}
    if rows.empty or "majority" not in rows:
        return {"at_chance": False, "collapsed": False, "oracle": False, **small}
    return {"at_chance": at_chance(acc_lo, rows["majority"].max()) if math.isfinite(acc_lo) else False,
            "collapsed": collapsed(rows["top_share"].mean()),
            "oracle": bool(rows["oracle"].any()), **small}


def _numbers(point: float, values, metric: str) -> dict:
    """mean, lo, hi (the interval clipped to the metric's range); NaN when not evaluated."""
    if values is None or not math.isfinite(point):
        return {"mean": math.nan, "lo": math.nan, "hi": math.nan}
    lo, hi = interval(point, values)
    if metric in BOUNDS and math.isfinite(lo):
        lo, hi = max(lo, BOUNDS[metric][0]), min(hi, BOUNDS[metric][1])
    return {"mean": point, "lo": lo, "hi": hi}


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
    """True where a cell is the best of its (metric, column) as printed, reference rows left out."""
    best = pd.Series(False, index=frame.index)
    candidates = frame[~frame["reference"] & frame["mean"].notna()]
    for (metric, _), group in candidates.groupby(["metric", "task"], sort=False):
        shown = group["mean"].map(_shown)
        best[shown.index[shown == BEST[metric](list(shown))]] = True
    return best


def leaderboard_frame(results: pd.DataFrame, tasks: dict, draws: Draws, references=()) -> pd.DataFrame:
    """The leaderboard as a tidy table: `FRAME_COLUMNS`, one row per metric x method x column.

    Columns (`task`) are the ID tasks, `ID avg`, the OOD tasks, `OOD avg`; values are fractions; rows are in
    metric order, then rank, then column order. Every renderer reads this frame and nothing else.
    """
    id_tasks, ood_tasks = task_columns(results, tasks)
    rows = []
    for method in method_order(results["method"]):
        mine = results[results["method"] == method]
        reference = base_method(method) in set(references)
        for domain, names in (("id", id_tasks), ("ood", ood_tasks)):
            flags = {}
            for task in names:
                cell = draws.values.get((method, task))
                acc = _numbers(draws.point[method, task]["acc"], cell["acc"], "acc") if cell else {"lo": math.nan}
                flags[task] = _flags(mine[mine["task"] == task], acc["lo"])
            for metric in SHOWN:
                for task in names:
                    cell = draws.values.get((method, task))
                    numbers = _numbers(draws.point[method, task][metric], cell[metric], metric) if cell else \
                        _numbers(math.nan, None, metric)
                    rows.append({"method": method, "task": task, "domain": domain, "metric": metric, **numbers,
                                 "n_seeds": int(mine.loc[mine["task"] == task, "seed"].nunique()),
                                 "reference": reference, **flags[task]})
                if names:
                    average = draws.average(method, names, metric)
                    numbers = _numbers(*average, metric) if average else _numbers(math.nan, None, metric)
                    rows.append({"method": method, "task": AVERAGES[domain], "domain": domain, "metric": metric,
                                 **numbers, "n_seeds": int(mine.loc[mine["task"].isin(names), "seed"].nunique()),
                                 "reference": reference, "at_chance": False, "collapsed": False, "oracle": False,
                                 "small_sample": any(flags[task]["small_sample"] for task in names)})
    frame = pd.DataFrame(rows, columns=[c for c in FRAME_COLUMNS if c not in ("rank", "best")])
    # a metric no cell has (macro-F1 on open answers only) gets no table
    frame = frame[frame.groupby("metric")["mean"].transform(lambda v: v.notna().any())]
    rank = {m: i + 1 for i, m in enumerate(_ranked_methods(frame))}
    frame.insert(0, "rank", frame["method"].map(rank).astype(int))
    frame.insert(FRAME_COLUMNS.index("best"), "best", _best(frame))
    frame["n_seeds"] = frame["n_seeds"].astype(int)
    order = frame["metric"].map({m: i for i, m in enumerate(SHOWN)})
    return frame.assign(_order=order).sort_values(["_order", "rank"], kind="mergesort").drop(columns="_order") \
        .reset_index(drop=True)


def marks(row: dict) -> str:
    """The marks of a cell: at chance and collapsed (not for reference rows: they are the chance), oracle, and
    small sample on a calibration estimate (on a results row, which holds every metric, always)."""
    kinds = ["oracle"] if row.get("reference") else ["at_chance", "collapsed", "oracle"]
    if row.get("metric", "ece") in SAMPLE_SENSITIVE:
        kinds.append("small_sample")
    return "".join(MARKS[k] for k in kinds if row.get(k))


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


def wide(frame: pd.DataFrame, metric: str, cell=None) -> pd.DataFrame:
    """One metric of the frame as methods (rank order) x columns, each cell rendered by `cell(row)` (by default
    `format_cell` and the cell's marks); reference rows are labelled as such."""
    cell = cell or (lambda row: format_cell(row) + marks(row))
    part = frame[frame["metric"] == metric]
    columns = list(dict.fromkeys(part["task"]))
    labels = {m: m + REFERENCE if ref else m for m, ref in zip(part["method"], part["reference"])}
    table = pd.DataFrame(index=[labels[m] for m in dict.fromkeys(part["method"])], columns=columns, dtype=object)
    for row in part.itertuples(index=False):
        table.loc[labels[row.method], row.task] = cell(row._asdict())
    table.index.name = "method"
    return table


def titles(metrics: dict | None = None, frame: pd.DataFrame | None = None) -> dict[str, str]:
    """Each shown metric's table title (the ECE title says how it bins); with `frame`, only the metrics it has."""
    metrics = metrics or {}
    binning = "equal-mass" if metrics.get("equal_mass") else "equal-width"
    named = {"acc": "Accuracy (%)",
             "ece": f"ECE (%, {int(metrics.get('bins', 10))} {binning} bins; lower is better)",
             "smece": "Smooth ECE (%, Blasiok & Nakkiran 2023, bandwidth chosen per cell; lower is better)",
             "brier": "Brier score (x100; lower is better; ranks the rows)",
             "conf_gap": "Mean confidence minus accuracy (points; above 0: over-confident)",
             "macro_f1": "Macro-F1 (%, classification tasks; not defined for open answers)"}
    return {m: t for m, t in named.items() if frame is None or m in set(frame["metric"])}


def header_line(results: pd.DataFrame, scoring: dict | None) -> str:
    """`Scoring: <format> (confidence: ...); ...; seeds: ...` for the top of every format: the formats the run's tasks
    are scored in (an all-`cot` run is not described by the suite's multiple-choice mode), the mode's first."""
    scoring = scoring or {}
    mode = scoring.get("mode", "?")
    formats = scoring.get("formats") or {mode: scoring.get("confidence", "?")}
    ordered = sorted(formats.items(), key=lambda item: item[0] != mode)
    seeds = sorted(set(results["seed"])) if len(results) else []
    return (f"Scoring: {'; '.join(f'{name} (confidence: {text})' for name, text in ordered)}; "
            f"seeds: {', '.join(str(s) for s in seeds) or '?'}.")


def suite_name(results: pd.DataFrame) -> str:
    """The suite's name; merged runs of differently named (but comparable) suites show every name."""
    names = list(dict.fromkeys(str(s) for s in results["suite"])) if len(results) and "suite" in results else []
    return " + ".join(names) or "?"


FOOTNOTE = (
    "Each cell is the mean over seeds with its 95% CI in brackets: a bootstrap over test examples and seeds (the "
    "same resamples for every method, so differences are paired; with one seed, over examples alone), clipped to "
    "the metric's range. `ID avg` and `OOD avg` are unweighted means over tasks, resampled as means. "
    f"`{MARKS['at_chance']}`: the accuracy's 95% lower bound does not clear the task's majority rate; "
    f"`{MARKS['collapsed']}`: 90% or more of the predictions are one answer; such a cell carries no signal. "
    f"`{MARKS['small_sample']}`: a calibration estimate from fewer than {SMALL_SAMPLE} predictions per seed, where "
    "binned ECE's upward bias is as large as the differences usually reported; read it through its interval. "
    f"`{REFERENCE.strip()}`: the prior, always the most frequent answer with the class frequencies as "
    f"probabilities; `{MARKS['oracle']}`: its frequencies come from the scored split itself (an oracle). "
    f"`+ts`, `+iso`: after temperature scaling, or isotonic regression, fitted on the ID validation split. "
    f"`{MISSING}`: not evaluated."
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
    for metric, title in titles(metrics, frame).items():
        lines += [f"## {title}", "", _markdown_table(wide(frame, metric)), ""]
    lines += [RANKING + " " + FOOTNOTE, ""]
    return "\n".join(lines)


def render_csv(frame: pd.DataFrame) -> str:
    """The frame as tidy CSV (fractions at full precision, empty where not evaluated), identical across rebuilds."""
    return frame.to_csv(index=False, lineterminator="\n", float_format="%.10g")


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                "†": r"$^\dagger$", "‡": r"$^\ddagger$", "°": r"$^\circ$"}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in a name (method and task names may hold `_`, `+`, ...)."""
    return "".join(_TEX_ESCAPES.get(c, c) for c in str(text))


def _tex_cell(row: dict) -> str:
    text = format_cell(row)
    if text == MISSING:
        return "--"
    mean, _, ci = text.partition(" ")
    mean = rf"\textbf{{{mean}}}" if row["best"] else mean
    return mean + tex_escape(marks(row)) + (rf" {{\scriptsize {ci}}}" if ci else "")


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
    for metric, title in titles(metrics, frame).items():
        lines += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{\textit{{{tex_escape(title)}}}}} \\"]
        for method, row in wide(frame, metric, _tex_cell).iterrows():
            lines.append(" & ".join([tex_escape(method)] + [str(v) for v in row]) + r" \\")
    caption = _tex_prose(f"{header_line(results, scoring)} {RANKING} Bold: best in its column. {FOOTNOTE}")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{caption}}}", r"\label{tab:trustbench}",
              r"\end{table}", ""]
    return "\n".join(lines)

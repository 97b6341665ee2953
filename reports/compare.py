"""Each method against a reference method (finetune by default): the paper-claim view of a run.

For every method, domain (ID average, OOD average, and both together: the mean over all tasks) and metric (every one
of `harness.metrics.METRICS`: accuracy, the calibration battery, macro-F1 where the tasks are classifications), the
difference method - reference over the tasks both scored,
with a 95% interval from the paired bootstrap over test examples and seeds of `harness.statistics` (the same
resamples for both methods, as the gate pairs them).
It is given absolute (points) and relative (% of the reference), because papers quote both ("+2.3% accuracy,
-10% ECE") without always saying which. Raw methods only: `+ts` and `+iso` rows are post-hoc and not what a
distillation method claims, and reference rows (the prior) are not methods. `small_sample` marks a calibration
estimate whose tasks have fewer than 300 test predictions per seed (`harness.statistics.small_sample`).
"""
from __future__ import annotations

import pandas as pd

from trustbench.harness.calibration import is_recalibrated
from trustbench.harness.metrics import METRICS
from trustbench.harness.statistics import SAMPLE_SENSITIVE, Draws, interval, small_sample

DOMAINS = {"ID": ("id",), "OOD": ("ood",), "ID+OOD": ("id", "ood")}
HEADLINE = ("acc", "ece", "debiased_ce", "smece", "brier", "mcb", "dsc", "macro_f1")  # what report.html shows
COLUMNS = ["method", "reference", "domain", "metric", "tasks", "seeds", "method_mean", "reference_mean", "diff",
           "diff_lo", "diff_hi", "relative_pct", "small_sample"]


def compare_to(results: pd.DataFrame, draws: Draws, reference: str = "finetune", references=()) -> pd.DataFrame:
    """One row per (method, domain, metric): means, the paired difference with its interval, the relative change."""
    methods = sorted(m for m in results["method"].unique()
                     if m != reference and not is_recalibrated(m) and m not in set(references))
    drawn = set.intersection(*(set(cell) for cell in draws.point.values())) if draws.point else set()
    rows = []
    for domain, domains in DOMAINS.items():
        scope = results[results["domain"].isin(domains)]
        for metric in (m for m in METRICS if m in drawn):
            for method in methods:
                tasks = sorted(set(scope.loc[scope["method"] == method, "task"])
                               & set(scope.loc[scope["method"] == reference, "task"]))
                if not tasks:
                    continue
                (mine, mine_values), (theirs, their_values) = (draws.average(m, tasks, metric)
                                                               for m in (method, reference))
                if pd.isna(mine) or pd.isna(theirs):
                    continue  # macro-F1 of open answers: not defined
                diff = mine - theirs
                lo, hi = interval(diff, mine_values - their_values)
                seeds = scope.loc[scope["method"] == method, "seed"].nunique()
                both = scope["method"].isin([method, reference]) & scope["task"].isin(tasks)
                fewest = scope.loc[both, "n"].min() if "n" in scope else None
                rows.append({"method": method, "reference": reference, "domain": domain, "metric": metric,
                             "tasks": len(tasks), "seeds": int(seeds), "method_mean": mine,
                             "reference_mean": theirs, "diff": diff, "diff_lo": lo, "diff_hi": hi,
                             "relative_pct": 100 * diff / theirs if theirs else float("nan"),
                             "small_sample": metric in SAMPLE_SENSITIVE and fewest is not None
                                             and small_sample(int(fewest))})
    return pd.DataFrame(rows, columns=COLUMNS)

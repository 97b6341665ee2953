"""Each method against a reference method (finetune by default): the paper-claim view of a run.

For every method, domain (ID average, OOD average, and both together: the mean over all tasks) and metric (accuracy,
ECE), the difference method - reference is computed per seed (both averaged over the same tasks) and then averaged
over the seeds the two share, with a t-interval across seeds (none with one seed). It is given absolute (points)
and relative (% of the reference), because papers quote both ("+2.3% accuracy, -10% ECE") without always saying
which. Raw methods only: `+ts` rows are post-hoc and not what a distillation method claims.
"""
from __future__ import annotations

import pandas as pd

from reports.leaderboard import t_interval
from reports.results import TS_SUFFIX

DOMAINS = {"ID": ("id",), "OOD": ("ood",), "ID+OOD": ("id", "ood")}
METRICS = ("acc", "ece")


def paired_seed_averages(results: pd.DataFrame, method: str, reference: str, domains: tuple[str, ...],
                         metric: str) -> pd.DataFrame:
    """Per seed both scored: `metric` of `method` and of `reference` averaged over the same tasks of `domains`
    (those both scored in that seed). Columns: method, reference; index: seed."""
    rows = results[results["domain"].isin(domains)]

    def values(name: str) -> pd.Series:
        return rows[rows["method"] == name].set_index(["seed", "task"])[metric]

    both = pd.concat({"method": values(method), "reference": values(reference)}, axis=1, join="inner")
    return both.groupby(level="seed").mean()


def compare_to(results: pd.DataFrame, reference: str = "finetune") -> pd.DataFrame:
    """One row per (method, domain, metric): means, the paired difference with its CI, and the relative change."""
    methods = sorted(m for m in results["method"].unique() if m != reference and not m.endswith(TS_SUFFIX))
    rows = []
    for domain, domains in DOMAINS.items():
        for metric in METRICS:
            for method in methods:
                paired = paired_seed_averages(results, method, reference, domains, metric)
                if paired.empty:
                    continue
                diff = (paired["method"] - paired["reference"]).to_numpy()
                mean, lo, hi = t_interval(diff) if len(diff) > 1 else (float(diff.mean()), float("nan"), float("nan"))
                ref_mean = float(paired["reference"].mean())
                rows.append({"method": method, "reference": reference, "domain": domain, "metric": metric,
                             "seeds": len(paired), "method_mean": float(paired["method"].mean()),
                             "reference_mean": ref_mean, "diff": mean, "diff_lo": lo, "diff_hi": hi,
                             "relative_pct": 100 * mean / ref_mean if ref_mean else float("nan")})
    return pd.DataFrame(rows)

"""Methods against finetune: per-seed domain averages, paired differences, CIs across seeds, relative change."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from reports.compare import compare_to

# acc by (method, task, seed); ECE is 1 - acc so both metrics are checked with one table
ACC = {("finetune", "a", 0): 0.50, ("finetune", "b", 0): 0.40, ("finetune", "c", 0): 0.30,
       ("finetune", "a", 1): 0.60, ("finetune", "b", 1): 0.50, ("finetune", "c", 1): 0.20,
       ("first", "a", 0): 0.55, ("first", "b", 0): 0.50, ("first", "c", 0): 0.30,
       ("first", "a", 1): 0.60, ("first", "b", 1): 0.40, ("first", "c", 1): 0.40,
       ("first+ts", "a", 0): 0.99, ("first+ts", "a", 1): 0.99, ("kd", "a", 2): 0.9}
DOMAIN = {"a": "id", "b": "ood", "c": "ood"}
RESULTS = pd.DataFrame([{"method": m, "task": t, "domain": DOMAIN[t], "seed": s, "acc": v, "ece": 1 - v}
                        for (m, t, s), v in ACC.items()])


def row(domain, metric, method="first"):
    table = compare_to(RESULTS)
    return table[(table.method == method) & (table.domain == domain) & (table.metric == metric)].iloc[0]


@pytest.mark.parametrize("domain, diffs", [
    ("ID", [0.05, 0.0]),                      # a only
    ("OOD", [0.05, 0.05]),                    # mean of b and c per seed: (0.40 - 0.35), (0.40 - 0.35)
    ("ID+OOD", [0.05, 1 / 30]),               # mean of a, b, c per seed
])
def test_accuracy_differences_are_paired_by_seed_with_a_t_interval(domain, diffs):
    r = row(domain, "acc")
    mean = sum(diffs) / 2
    assert r.seeds == 2 and r["diff"] == pytest.approx(mean)
    half = stats.t.ppf(0.975, 1) * pd.Series(diffs).std(ddof=1) / math.sqrt(2)
    assert r.diff_lo == pytest.approx(mean - half) and r.diff_hi == pytest.approx(mean + half)
    assert r.relative_pct == pytest.approx(100 * mean / r.reference_mean)


def test_ece_difference_has_the_opposite_sign_here():
    assert row("OOD", "ece")["diff"] == pytest.approx(-row("OOD", "acc")["diff"])


def test_ts_rows_are_left_out_and_a_method_with_no_shared_seed_is_skipped():
    table = compare_to(RESULTS)
    assert set(table.method) == {"first"}  # first+ts excluded; kd's only seed (2) is not finetune's


def test_one_seed_gives_no_interval():
    one = compare_to(RESULTS[RESULTS.seed == 0])
    r = one[(one.domain == "ID") & (one.metric == "acc")].iloc[0]
    assert r["diff"] == pytest.approx(0.05) and math.isnan(r.diff_lo) and r.seeds == 1


def test_no_reference_no_rows():
    assert compare_to(RESULTS[RESULTS.method != "finetune"]).empty


def test_a_method_is_compared_on_the_tasks_both_scored():
    """kd scored task a only: its difference is against finetune on a, not against finetune's mean over a and b."""
    results = pd.DataFrame([{"method": m, "task": t, "domain": "ood", "seed": 0, "acc": v, "ece": 1 - v}
                            for m, t, v in (("finetune", "a", 0.5), ("finetune", "b", 0.1), ("kd", "a", 0.7))])
    table = compare_to(results)
    r = table[(table.method == "kd") & (table.domain == "OOD") & (table.metric == "acc")].iloc[0]
    assert r["diff"] == pytest.approx(0.2) and r.reference_mean == pytest.approx(0.5)

"""Methods against finetune: domain averages over the tasks both scored, paired bootstrap intervals over examples
and seeds, relative change."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustbench.reports.compare import compare_to
from trustbench.harness.statistics import Draws

# acc by (method, task); ECE is 1 - acc so both metrics are checked with one table
ACC = {("finetune", "a"): 0.50, ("finetune", "b"): 0.40, ("finetune", "c"): 0.30,
       ("first", "a"): 0.55, ("first", "b"): 0.50, ("first", "c"): 0.30,
       ("first+ts", "a"): 0.99, ("prior", "a"): 0.25, ("kd", "a"): 0.9}
DOMAIN = {"a": "id", "b": "ood", "c": "ood"}
RESULTS = pd.DataFrame([{"method": m, "task": t, "domain": DOMAIN[t], "seed": 0, "acc": v, "ece": 1 - v}
                        for (m, t), v in ACC.items()])
SPREAD = np.linspace(-0.05, 0.05, 101)  # resampled values around each point: the same for every method


def draws(shift: dict | None = None) -> Draws:
    """Each cell's resamples: its value plus SPREAD (and `shift[method]` for that method's resamples only)."""
    shift = shift or {}
    point = {k: {"acc": v, "ece": 1 - v, "macro_f1": v if k[1] != "c" else np.nan} for k, v in ACC.items()}
    values = {k: {"acc": v + SPREAD + shift.get(k[0], 0), "ece": 1 - v - SPREAD,
                  "macro_f1": v + SPREAD if k[1] != "c" else np.full(len(SPREAD), np.nan)} for k, v in ACC.items()}
    return Draws(point, values, len(SPREAD))


def test_macro_f1_is_compared_where_every_task_has_it():
    """Task c has no macro-F1 (an open-answer task): the OOD and ID+OOD averages, which include it, are left out."""
    table = compare_to(RESULTS, draws())
    f1 = table[(table.method == "first") & (table.metric == "macro_f1")]
    assert list(f1.domain) == ["ID"] and f1.iloc[0]["diff"] == pytest.approx(0.05)


def row(table, domain, metric, method="first"):
    return table[(table.method == method) & (table.domain == domain) & (table.metric == metric)].iloc[0]


@pytest.mark.parametrize("domain, diff, tasks", [("ID", 0.05, 1), ("OOD", 0.05, 2), ("ID+OOD", 0.05, 3)])
def test_differences_over_the_tasks_of_each_domain(domain, diff, tasks):
    got = row(compare_to(RESULTS, draws()), domain, "acc")
    assert got["diff"] == pytest.approx(diff) and got.tasks == tasks
    # paired: the shared resamples cancel, so the interval is the point difference itself
    assert (got.diff_lo, got.diff_hi) == pytest.approx((diff, diff))
    assert got.relative_pct == pytest.approx(100 * diff / got["reference_mean"])


def test_an_interval_comes_from_the_resampled_differences():
    shifted = compare_to(RESULTS, draws({"first": np.linspace(-0.1, 0.1, 101)}))
    got = row(shifted, "ID", "acc")
    assert got.diff_lo == pytest.approx(0.05 - 0.095) and got.diff_hi == pytest.approx(0.05 + 0.095)


def test_ece_difference_has_the_opposite_sign_here():
    assert row(compare_to(RESULTS, draws()), "OOD", "ece")["diff"] == pytest.approx(-0.05)


def test_ts_rows_and_references_are_left_out_and_a_method_is_compared_on_the_tasks_both_scored():
    table = compare_to(RESULTS, draws(), references={"prior"})
    assert set(table.method) == {"first", "kd"}
    kd = table[table.method == "kd"]
    assert set(kd.domain) == {"ID", "ID+OOD"} and (kd.tasks == 1).all()  # kd scored task a only


def test_no_reference_no_rows():
    assert compare_to(RESULTS[RESULTS.method != "finetune"], draws()).empty

"""Agreement with the teacher: the three measures (hand-worked, and scipy for the correlation), and the report's
table and figure on a hand-built run (a student that copies the teacher agrees fully, one that answers otherwise
on a known share of the questions agrees on the rest)."""
from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import pearsonr

from trustbench.harness import metrics as M
from trustbench.harness.errors import UserError
from trustbench.harness.plots import RunView
from trustbench.harness.store import RunDir
from trustbench.reports.agreement import ece_vs_agreement, teacher_agreement_table
from trustbench.reports.results import compute_results
from synthetic_runs import manifest_dict, write_run


def test_agreement_and_kl_by_hand():
    assert M.teacher_agreement([0, 1, 2, 2], [0, 1, 1, 2]) == pytest.approx(0.75)
    # 0.5 log(0.5/0.25) + 0.5 log(0.5/0.75) and 0.9 log(0.9/0.6) + 0.1 log(0.1/0.2) + 0 (a zero teacher term)
    expected = (0.5 * math.log(2) + 0.5 * math.log(2 / 3) + 0.9 * math.log(1.5) + 0.1 * math.log(0.5)) / 2
    assert M.teacher_kl([[0.5, 0.5], [0.9, 0.1, 0.0]], [[0.25, 0.75], [0.6, 0.2, 0.2]]) == pytest.approx(expected)
    assert M.teacher_kl([[0.2, 0.8]], [[0.2, 0.8]]) == 0.0


def test_confidence_correlation_is_pearsons():
    rng = np.random.default_rng(0)
    teacher = rng.random(80)
    student = teacher + rng.random(80)
    assert M.confidence_correlation(student, teacher) == pytest.approx(pearsonr(student, teacher)[0], abs=1e-12)
    assert math.isnan(M.confidence_correlation([0.5, 0.5, 0.5], [0.2, 0.4, 0.9]))


@pytest.mark.parametrize("call", [
    lambda: M.teacher_agreement([0, 1], [0]),
    lambda: M.teacher_kl([[0.5, 0.5]], [[0.2, 0.3, 0.5]]),
    lambda: M.confidence_correlation([0.5], [0.5, 0.6]),
])
def test_mismatched_inputs_are_user_errors(call):
    with pytest.raises(UserError):
        call()


@pytest.fixture
def run(tmp_path):
    tasks = {"t_id": {"domain": "id"}, "t_ood": {"domain": "ood"}}
    methods = {"teacher": (2.0, 1.0), "copy": (1.0, 1.0), "other": (1.0, 1.0), "prior": (0.0, 1.0)}
    manifest = manifest_dict(tasks, {"teacher": {}, "copy": {}, "other": {}, "prior": {"reference": True}},
                             n_boot=50, temperature_scaling=False)
    root = write_run(tmp_path / "run", manifest, methods, tasks, (0, 1), np.random.default_rng(0), 0.5, n=40)
    test = root / "predictions" / "test"
    for task in tasks:
        for seed in (0, 1):
            shutil.copy(test / f"teacher__{task}__s{seed}.parquet", test / f"copy__{task}__s{seed}.parquet")
            teacher = pd.read_parquet(test / f"teacher__{task}__s{seed}.parquet")
            other = teacher.copy()
            other.loc[:9, "pred"] = (other.loc[:9, "pred"] + 1) % 4  # another answer on the first 10 of 40
            other.to_parquet(test / f"other__{task}__s{seed}.parquet")
    return RunDir(root)


def test_the_table_holds_each_student_against_the_teacher(run):
    view = RunView(run, run.load(), compute_results(run.path))
    table = teacher_agreement_table(view).set_index(["method", "task"])
    assert set(table.index.get_level_values(0)) == {"copy", "other"}  # not the teacher, not the reference row
    copy = table.loc[("copy", "t_id")]
    assert (copy.agreement, copy.agreement_lo, copy.agreement_hi) == (1.0, 1.0, 1.0)
    assert copy.kl == pytest.approx(0.0, abs=1e-12) and copy.conf_corr == pytest.approx(1.0)
    other = table.loc[("other", "t_ood")]
    assert other.agreement == pytest.approx(0.75) and other.agreement_lo < 0.75 < other.agreement_hi
    assert other.seeds == 2 and other.n == 40 and other.domain == "ood"
    assert ece_vs_agreement(view) is not None


def test_a_run_without_a_teacher_has_no_table(run):
    for path in (run.path / "predictions" / "test").glob("teacher__*"):
        path.unlink()
    assert teacher_agreement_table(RunView(run, run.load(), pd.DataFrame())) is None

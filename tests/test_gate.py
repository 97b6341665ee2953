"""The regression gate on small hand-built run directories (manifest.json + prediction parquets): no model needed."""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from trustbench.harness.errors import UserError
from trustbench.harness.metrics import accuracy, ece
from trustbench.reports import gate
from trustbench.reports.gate import compare_runs, format_gate, parse_method_pairs
from synthetic_runs import manifest_dict

N = 200
TASKS = ("task_a", "task_b")


def predictions(n: int = N, acc: float = 0.7, seed: int = 0) -> pd.DataFrame:
    """Deterministic, roughly calibrated 4-choice predictions over ids ex000..; about `acc` of them correct.

    The gold answers are the same for every seed (they belong to the task's examples, not to a model).
    """
    gold = np.random.default_rng(12345).integers(0, 4, size=n)
    rng = np.random.default_rng(seed)
    correct = rng.random(n) < acc
    confidence = np.clip(np.where(correct, 0.75, 0.55) + rng.normal(0, 0.1, size=n), 0.3, 0.98)
    return _frame([f"ex{i:03d}" for i in range(n)], gold, correct, confidence)


def _frame(ids, gold, correct, confidence) -> pd.DataFrame:
    gold, correct, confidence = np.asarray(gold), np.asarray(correct, dtype=bool), np.asarray(confidence, dtype=float)
    pred = np.where(correct, gold, (gold + 1) % 4)
    probs = []
    for p, c in zip(pred, confidence):
        row = [(1 - c) / 3] * 4
        row[p] = c
        probs.append(row)
    return pd.DataFrame({"example_id": list(ids), "gold": gold, "pred": pred, "confidence": confidence,
                         "probs": probs, "correct": correct})


def degrade(df: pd.DataFrame, flips: int = 60, seed: int = 1) -> pd.DataFrame:
    """Turn `flips` correct answers wrong and make those answers over-confident (0.95)."""
    out = df.copy()
    rows = np.random.default_rng(seed).choice(np.flatnonzero(out.correct.to_numpy()), size=flips, replace=False)
    return _frame(out.example_id, out.gold, out.correct.to_numpy() & ~np.isin(np.arange(len(out)), rows),
                  np.where(np.isin(np.arange(len(out)), rows), 0.95, out.confidence))


def improve(df: pd.DataFrame, fixes: int) -> pd.DataFrame:
    """Turn the first `fixes` wrong answers right, at their old confidence."""
    wrong = np.flatnonzero(~df.correct.to_numpy())[:fixes]
    correct = df.correct.to_numpy().copy()
    correct[wrong] = True
    return _frame(df.example_id, df.gold, correct, df.confidence)


def write_run(path: Path, cells: dict, suite_hash: str = "h-suite", mode: str = "letter",
              test_hashes: dict | None = None, bins: int = 10, equal_mass: bool = False) -> Path:
    """A run directory as `trustbench run` writes it: {(method, task, seed): predictions frame}."""
    tasks = sorted({task for _, task, _ in cells})
    methods = sorted({method for method, _, _ in cells})
    tasks = {t: {"domain": "id", "sizes": {"train": 0, "val": 0, "test": N},
                 "test_hash": (test_hashes or {}).get(t, f"h-{t}")} for t in tasks}
    manifest = manifest_dict(tasks, methods, suite="fake", suite_hash=suite_hash, mode=mode, bins=bins,
                             equal_mass=equal_mass, n_boot=200, temperature_scaling=False)
    (path / "predictions" / "test").mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps(manifest))
    for (method, task, seed), frame in cells.items():
        frame.to_parquet(path / "predictions" / "test" / f"{method}__{task}__s{seed}.parquet", index=False)
    return path


def base_cells(methods=("finetune", "kd"), seeds=(0, 1)) -> dict:
    return {(m, t, s): predictions(seed=100 * i + 10 * j + s)
            for i, m in enumerate(methods) for j, t in enumerate(TASKS) for s in seeds}


@pytest.fixture
def base(tmp_path) -> Path:
    return write_run(tmp_path / "base", base_cells())


# ------------------------------------------------------------------------------------------------ verdicts


def test_a_run_gated_against_itself_passes_with_zero_differences(base):
    result = compare_runs(base, base, max_acc_drop=0.0, max_cal_rise=0.0)  # even with no tolerance at all
    assert result.exit_code == 0 and result.reason == ""
    assert {(r.method, r.task) for r in result.rows} == {(m, t) for m in ("finetune", "kd") for t in TASKS}
    for row in result.rows:
        assert row.seeds == (0, 1) and row.n == N
        assert row.acc_drop == row.cal_rise == row.acc_drop_lb == row.cal_rise_lb == 0.0
        assert not row.regression
    assert "PASS" in format_gate(result)


def test_examples_are_paired_by_id_not_by_row_order(tmp_path, base):
    shuffled = {key: df.sample(frac=1.0, random_state=7) for key, df in base_cells().items()}
    result = compare_runs(base, write_run(tmp_path / "cand", shuffled))
    assert result.exit_code == 0
    assert all(r.acc_drop == r.cal_rise == r.acc_drop_lb == r.cal_rise_lb == 0.0 for r in result.rows)


def test_degraded_predictions_fail_naming_the_regressing_cell(tmp_path, base):
    cells = base_cells()
    for seed in (0, 1):
        cells["kd", "task_b", seed] = degrade(cells["kd", "task_b", seed], seed=seed)
    result = compare_runs(base, write_run(tmp_path / "cand", cells))
    assert result.exit_code == 1
    assert [(r.method, r.task) for r in result.regressions] == [("kd", "task_b")]
    (row,) = result.regressions
    assert row.acc_regression and row.cal_regression and row.acc_drop > 0.2 and row.acc_drop_lb > 0.01
    text = format_gate(result)
    assert "FAIL: 1 of 4 cells regress: kd/task_b (acc, ece)" in text and "REGRESSION (acc, ece)" in text


def test_a_calibration_only_regression_fails_on_ece(tmp_path, base):
    cells = base_cells()
    for seed in (0, 1):
        df = cells["finetune", "task_a", seed]
        cells["finetune", "task_a", seed] = _frame(df.example_id, df.gold, df.correct, np.full(N, 0.99))
    result = compare_runs(base, write_run(tmp_path / "cand", cells))
    assert result.exit_code == 1
    (row,) = result.regressions
    assert (row.method, row.task, row.failed) == ("finetune", "task_a", "ece")
    assert row.acc_drop == 0.0 and row.cal_rise_lb > 0.01


def test_a_small_improvement_passes(tmp_path, base):
    cells = {key: improve(df, fixes=4) for key, df in base_cells().items()}
    result = compare_runs(base, write_run(tmp_path / "cand", cells))
    assert result.exit_code == 0
    assert all(r.acc_drop < 0 and r.acc_drop_lb < 0 for r in result.rows)


def test_the_tolerances_decide_how_big_a_drop_fails(tmp_path, base):
    cells = {key: degrade(df, flips=12) for key, df in base_cells().items()}  # 6 points of accuracy
    cand = write_run(tmp_path / "cand", cells)
    assert compare_runs(base, cand).exit_code == 1
    assert compare_runs(base, cand, max_acc_drop=0.1, max_cal_rise=0.1).exit_code == 0
    one = {key: degrade(df, flips=1) for key, df in base_cells().items()}  # half a point: within noise
    assert compare_runs(base, write_run(tmp_path / "one", one), max_cal_rise=0.1).exit_code == 0


# ------------------------------------------------------------------------------------- the bootstrap itself


def test_the_bound_matches_a_plain_loop_over_resamples(tmp_path):
    seeds = (0, 3)
    base_frames = {s: predictions(seed=s) for s in seeds}
    cand_frames = {s: degrade(base_frames[s], flips=8, seed=s) for s in seeds}
    base = write_run(tmp_path / "base", {("m", "task_a", s): df for s, df in base_frames.items()}, bins=7)
    cand = write_run(tmp_path / "cand", {("m", "task_a", s): df for s, df in cand_frames.items()}, bins=7)
    (row,) = compare_runs(base, cand, n_boot=300, alpha=0.1, seed=5).rows

    rng = gate.bootstrap_rng(5, "m", "m", "task_a")
    drops, rises = [], []
    for _ in range(300):  # one draw of example indices serves both runs and both seeds
        idx = rng.integers(0, N, size=N)
        b = [base_frames[s].iloc[idx] for s in seeds]
        c = [cand_frames[s].iloc[idx] for s in seeds]
        drops.append(np.mean([accuracy(x.correct) - accuracy(y.correct) for x, y in zip(b, c)]))
        rises.append(np.mean([ece(y.confidence, y.correct, bins=7) - ece(x.confidence, x.correct, bins=7)
                              for x, y in zip(b, c)]))
    assert row.acc_drop_lb == pytest.approx(np.quantile(drops, 0.1), abs=1e-12)
    assert row.cal_rise_lb == pytest.approx(np.quantile(rises, 0.1), abs=1e-12)
    assert row.cal_rise == pytest.approx(np.mean([ece(cand_frames[s].confidence, cand_frames[s].correct, bins=7)
                                                  - ece(base_frames[s].confidence, base_frames[s].correct, bins=7)
                                                  for s in seeds]), abs=1e-12)


def test_the_accuracy_bound_agrees_with_the_normal_approximation_of_a_paired_difference(tmp_path):
    base_df = predictions(seed=11)
    cand_df = degrade(improve(base_df, fixes=15), flips=30, seed=4)  # mixed changes: the pairing matters
    (row,) = compare_runs(write_run(tmp_path / "b", {("m", "task_a", 0): base_df}),
                          write_run(tmp_path / "c", {("m", "task_a", 0): cand_df}), n_boot=20000).rows
    d = base_df.correct.to_numpy(dtype=float) - cand_df.correct.to_numpy(dtype=float)
    normal_lb = d.mean() - 1.6449 * d.std() / np.sqrt(N)  # one-sided 95%, paired
    assert d.mean() == pytest.approx(row.acc_drop)
    assert row.acc_drop_lb == pytest.approx(normal_lb, abs=0.01)
    unpaired_se = np.sqrt(base_df.correct.var(ddof=0) / N + cand_df.correct.var(ddof=0) / N)
    assert row.acc_drop - row.acc_drop_lb < 1.6449 * unpaired_se  # tighter than treating the runs as independent


def test_equal_mass_binning_is_taken_from_the_run(tmp_path):
    base_df = predictions(seed=2)
    cand_df = degrade(base_df, flips=5)
    base = write_run(tmp_path / "b", {("m", "task_a", 0): base_df}, equal_mass=True)
    (row,) = compare_runs(base, write_run(tmp_path / "c", {("m", "task_a", 0): cand_df}, equal_mass=True),
                          n_boot=50).rows

    def rise(**binning):
        return ece(cand_df.confidence, cand_df.correct, **binning) - ece(base_df.confidence, base_df.correct, **binning)

    assert row.cal_rise == pytest.approx(rise(equal_mass=True), abs=1e-12)
    assert rise(equal_mass=True) != pytest.approx(rise(equal_mass=False))  # so the test can tell them apart


def test_the_verdict_is_deterministic_and_the_seed_matters(tmp_path, base):
    cells = {key: degrade(df, flips=6) for key, df in base_cells().items()}
    cand = write_run(tmp_path / "cand", cells)
    first, again, other = (compare_runs(base, cand, n_boot=500, seed=s) for s in (0, 0, 1))
    assert first.rows == again.rows
    assert [r.acc_drop for r in first.rows] == [r.acc_drop for r in other.rows]
    assert [r.acc_drop_lb for r in first.rows] != [r.acc_drop_lb for r in other.rows]


# ------------------------------------------------------------------------ what is gated, and what is not


def test_only_shared_seeds_and_cells_are_gated(tmp_path, base):
    cells = {key: df for key, df in base_cells(seeds=(0,)).items() if key[1] == "task_a"}
    result = compare_runs(base, write_run(tmp_path / "cand", cells))
    assert result.exit_code == 0
    assert [(r.method, r.task, r.seeds) for r in result.rows] == [("finetune", "task_a", (0,)), ("kd", "task_a", (0,))]
    assert result.skipped == ["finetune/task_b (only in the baseline)", "kd/task_b (only in the baseline)"]
    assert "not gated: finetune/task_b (only in the baseline)" in format_gate(result)


def test_a_candidate_method_is_gated_against_a_baseline_method_of_another_name(tmp_path, base):
    cells = {("mine", t, s): degrade(df, seed=s) for (m, t, s), df in base_cells().items() if m == "kd"}
    cand = write_run(tmp_path / "cand", cells)
    result = compare_runs(base, cand, methods=[("finetune", "mine"), ("kd", "mine")])
    assert result.exit_code == 1
    assert {(r.method, r.task) for r in result.regressions} >= {("kd->mine", "task_a"), ("kd->mine", "task_b")}
    assert compare_runs(base, cand).exit_code == 2  # no method name in common without --methods
    with pytest.raises(UserError, match="'kdd' has no test predictions"):
        compare_runs(base, cand, methods=[("kdd", "mine")])


def test_method_pairs_parse():
    assert parse_method_pairs("kd=mykd, finetune") == [("kd", "mykd"), ("finetune", "finetune")]
    assert parse_method_pairs(None) is None
    for bad in ("kd=", "=mykd", "a=b=c", "kd,,x"):
        with pytest.raises(UserError, match="BASE=CAND"):
            parse_method_pairs(bad)


# --------------------------------------------------------------------------------------- not comparable


@pytest.mark.parametrize("change, reason", [
    ({"suite_hash": "h-other"}, "different suite settings"),
    ({"mode": "choice"}, "different scoring modes (baseline letter, candidate choice)"),
    ({"test_hashes": {"task_b": "h-changed"}}, "task task_b has different test examples"),
])
def test_runs_that_differ_in_settings_are_not_comparable(tmp_path, base, change, reason):
    result = compare_runs(base, write_run(tmp_path / "cand", base_cells(), **change))
    assert result.exit_code == 2 and reason in result.reason and result.rows == []
    assert format_gate(result).startswith("NOT COMPARABLE: ")


def test_runs_with_nothing_in_common_are_not_comparable(tmp_path, base):
    other_methods = write_run(tmp_path / "m", {("dualchecker", "task_a", 0): predictions()})
    assert "no method shared (baseline has finetune, kd, candidate has dualchecker)" in \
        compare_runs(base, other_methods).reason
    other_task = write_run(tmp_path / "t", {("kd", "task_c", 0): predictions()})
    assert "no (method, task, seed) shared" in compare_runs(base, other_task).reason
    other_seed = write_run(tmp_path / "s", {("kd", "task_a", 5): predictions()})
    assert "kd/task_a (no seed in common)" in compare_runs(base, other_seed).reason
    df = predictions(seed=1)
    other_ids = write_run(tmp_path / "i", {("kd", "task_a", 0): df.assign(example_id="x" + df.example_id)})
    result = compare_runs(base, other_ids)
    assert result.exit_code == 2 and "kd/task_a: the two runs' predictions share no example id" in result.reason
    other_gold = write_run(tmp_path / "g", {("kd", "task_a", 0): _frame(df.example_id, (df.gold + 1) % 4,
                                                                        df.correct, df.confidence)})
    assert "kd/task_a: the same example ids have different gold answers" in compare_runs(base, other_gold).reason


def test_a_missing_run_directory_is_a_user_error(tmp_path, base):
    with pytest.raises(UserError, match="no run manifest"):
        compare_runs(base, tmp_path / "nowhere")
    with pytest.raises(UserError, match="--alpha"):
        compare_runs(base, base, alpha=0.9)


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_exit_codes(tmp_path, base):
    from trustbench.cli import app

    cells = base_cells()
    cells["kd", "task_a", 0] = degrade(cells["kd", "task_a", 0])
    cand = write_run(tmp_path / "cand", cells)
    other = write_run(tmp_path / "other", base_cells(), suite_hash="h-other")
    runner = CliRunner()

    same = runner.invoke(app, ["gate", str(base), str(base)])
    assert same.exit_code == 0 and "PASS: no regression in 4 cells" in same.stdout
    worse = runner.invoke(app, ["gate", str(base), str(cand)])
    assert worse.exit_code == 1 and "kd/task_a (acc, ece)" in worse.stdout
    lenient = runner.invoke(app, ["gate", str(base), str(cand), "--max-acc-drop", "0.5", "--max-ece-rise", "0.5"])
    assert lenient.exit_code == 0
    refused = runner.invoke(app, ["gate", str(base), str(other)])
    assert refused.exit_code == 2 and refused.stderr.startswith("not comparable: different suite settings")
    assert len(refused.stderr.strip().splitlines()) == 1 and refused.stdout == ""
    mapped = runner.invoke(app, ["gate", str(base), str(cand), "--methods", "finetune"])
    assert mapped.exit_code == 0 and "kd" not in mapped.stdout.split("rise lb")[1]


def test_cli_help_states_the_rule_and_defaults_match_the_module():
    from trustbench import cli

    result = CliRunner().invoke(cli.app, ["gate", "--help"])
    text = " ".join(result.stdout.split())  # rich wraps the help to the terminal's width
    assert result.exit_code == 0 and "Exit 0: no regression, 1: regression, 2: not comparable" in text
    assert "Holm's step-down over all cells keeps the chance of any false flag in the run at alpha" in text
    params = inspect.signature(cli.gate).parameters
    defaults = dataclasses.asdict(gate.DEFAULTS)
    assert {k: params[k].default.default for k in defaults} == defaults


def test_bad_input_through_the_real_command_is_one_line_exit_2(tmp_path, base):
    result = subprocess.run([sys.executable, "-m", "trustbench", "gate", str(base), str(tmp_path / "nowhere")],
                            capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no run manifest at ") and "nowhere" in lines[0]


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_a_bad_bootstrap_seed_is_a_user_error(seed):
    with pytest.raises(UserError, match="--seed must be a non-negative integer"):
        gate.GateSettings(seed=seed).checked()


# ------------------------------------------------------------------------------- many cells: the run-level rate


def test_holm_holds_the_chance_of_failing_an_unchanged_candidate_near_alpha_where_per_cell_tests_do_not():
    """100 synthetic gate runs of 20 cells whose candidate is drawn from the same model as the baseline, gated
    at tolerance 0 (the edge of the null, where a per-cell test flags about alpha of the cells)."""
    rng = np.random.default_rng(7)
    settings = {"max_acc_drop": 0.0}
    failed = {"none": 0, "holm": 0}
    for _ in range(100):
        rows = []
        for _ in range(20):
            base, cand = (rng.random(N) < 0.7 for _ in range(2))
            idx = rng.integers(0, N, size=(400, N))
            drops = base[idx].mean(axis=1) - cand[idx].mean(axis=1)
            rows.append(gate.GateRow("m", "m", "t", (0,), N, base.mean(), cand.mean(), 0.1, 0.1,
                                     float(np.quantile(drops, 0.05)), -1.0, acc_p=float(np.mean(drops <= 1e-12)),
                                     cal_p=1.0, calibration_metric="ece"))
        for correction in failed:
            decided = gate.decide(rows, gate.GateSettings(correction=correction, **settings))
            failed[correction] += any(row.regression for row in decided)
    assert failed["none"] > 40  # 1 - 0.95^20 = 64% expected
    assert failed["holm"] <= 10  # at most 5% expected; P(more than 10 of 100 | 5%) < 1.2%


def test_the_calibration_metric_is_the_one_named(tmp_path):
    from trustbench.harness.metrics import smooth_ece

    base_df = predictions(seed=2)
    cand_df = degrade(base_df, flips=20)
    base = write_run(tmp_path / "b", {("m", "task_a", 0): base_df})
    cand = write_run(tmp_path / "c", {("m", "task_a", 0): cand_df})
    (row,) = compare_runs(base, cand, n_boot=50, calibration_metric="smece").rows
    assert row.cal_rise == pytest.approx(smooth_ece(cand_df.confidence, cand_df.correct)[0]
                                         - smooth_ece(base_df.confidence, base_df.correct)[0], abs=1e-12)
    assert row.cal_rise != pytest.approx(compare_runs(base, cand, n_boot=50).rows[0].cal_rise)
    text = format_gate(compare_runs(base, cand, n_boot=50, calibration_metric="classwise_ece"))
    assert "classwise_ece base" in text and "classwise_ece cand" in text
    with pytest.raises(UserError, match="--calibration-metric 'acc' is not a calibration error"):
        compare_runs(base, cand, calibration_metric="acc")
    with pytest.raises(UserError, match="--correction 'bonferroni'"):
        compare_runs(base, cand, correction="bonferroni")


def test_the_table_says_when_a_cell_sits_at_chance_in_both_runs(tmp_path):
    """Near-chance predictions (25% on 4 options, majority about 27%) in both runs: the verdict row says so; the
    calibrated 70%-accurate cells of `base_cells` do not."""
    chance = {("kd", "task_a", s): predictions(acc=0.25, seed=s) for s in (0, 1)}
    sharp = {("kd", "task_b", s): predictions(seed=10 + s) for s in (0, 1)}
    run = write_run(tmp_path / "run", {**chance, **sharp})
    result = compare_runs(run, run)
    rows = {row.task: row for row in result.rows}
    assert rows["task_a"].at_chance == (True, True) and rows["task_b"].at_chance == (False, False)
    lines = {line.split()[1]: line for line in format_gate(result).splitlines() if line.startswith("kd ")}
    assert lines["task_a"].endswith("ok (at chance in both runs)") and lines["task_b"].endswith("ok")

"""`harness.statistics`: the example x seed bootstrap of the leaderboard and the comparison, against a plain loop;
pairing; the diagnostics (majority rate, collapse) every results row carries; and the shared pieces (the
percentile interval, the draws, the chance rules) that every report, the gate and the method tables use."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustbench.harness import metrics as M
from trustbench.harness import statistics as S
from trustbench.harness.statistics import CELL_METRICS as METRICS, _rng, bootstrap, interval
from trustbench.reports.results import diagnostics
from metric_loop import every_metric
from synthetic_runs import synthetic_predictions

SEEDS = (0, 1, 2)


def frames(skill: float, seed0: int = 0) -> dict:
    rng = np.random.default_rng(seed0)
    return {s: synthetic_predictions(rng, skill, 2.0, 40).sample(frac=1, random_state=s) for s in SEEDS}


CELLS = {("kd", "t"): frames(1.0), ("finetune", "t"): frames(1.5, seed0=9)}
RESULTS = pd.DataFrame([{"method": m, "task": t, "seed": s} for (m, t) in CELLS for s in SEEDS])


def frame_of(method, task, seed):
    return CELLS[method, task][seed]


def test_the_vectorised_bootstrap_equals_a_plain_loop():
    n_boot = 30
    draws = bootstrap(RESULTS, frame_of, n_boot, bins=5, equal_mass=False)
    for method in ("kd", "finetune"):
        ordered = [CELLS[method, "t"][s].sort_values("example_id") for s in SEEDS]
        examples = _rng("examples", "t", 40).integers(0, 40, size=(n_boot, 40))
        picks = _rng("seeds", *SEEDS).integers(0, 3, size=(n_boot, 3))

        loops = [[every_metric(ordered[j].iloc[examples[b]], bins=5, equal_mass=False) for j in picks[b]]
                 for b in range(n_boot)]
        points = [every_metric(f, bins=5, equal_mass=False) for f in ordered]
        for metric in METRICS:
            loop = [np.mean([got[metric] for got in loops[b]]) for b in range(n_boot)]
            np.testing.assert_allclose(draws.values[method, "t"][metric], loop, atol=1e-12)
            assert draws.point[method, "t"][metric] == pytest.approx(np.mean([p[metric] for p in points]))

def test_every_method_shares_the_resamples_so_a_difference_with_itself_is_exactly_zero():
    twin = {**CELLS, ("kd_copy", "t"): CELLS["kd", "t"]}
    results = pd.DataFrame([{"method": m, "task": t, "seed": s} for (m, t) in twin for s in SEEDS])
    draws = bootstrap(results, lambda m, t, s: twin[m, t][s], 50, bins=10, equal_mass=False)
    diff = draws.values["kd", "t"]["acc"] - draws.values["kd_copy", "t"]["acc"]
    assert not diff.any()
    point, values = draws.average("kd", ["t"], "ece")
    assert point == draws.point["kd", "t"]["ece"] and draws.average("kd", ["t", "missing"], "ece") is None


def test_a_method_that_never_changes_across_seeds_still_has_example_noise():
    """Three seeds with identical predictions: a t-interval over seed means is [x, x]; this one is not."""
    same = {s: CELLS["kd", "t"][0] for s in SEEDS}
    draws = bootstrap(RESULTS[RESULTS.method == "kd"], lambda m, t, s: same[s], 200, bins=10, equal_mass=False)
    lo, hi = interval(draws.point["kd", "t"]["acc"], draws.values["kd", "t"]["acc"])
    assert hi - lo > 0.1


@pytest.mark.parametrize("point, values, expected", [(0.5, np.linspace(0.4, 0.6, 1001), (0.405, 0.595)),
                                                     (0.1, np.linspace(0.2, 0.3, 11), (0.1, 0.2975)),
                                                     (0.3, np.array([np.nan, 0.3]), (0.3, 0.3))])
def test_interval_is_the_percentile_range_widened_to_hold_the_point(point, values, expected):
    assert interval(point, values) == pytest.approx(expected)


@pytest.mark.parametrize("gold, pred, acc_lo, expected", [
    ([0, 0, 0, 1], [0, 0, 0, 0], 0.7, {"majority": 0.75, "top_share": 1.0, "at_chance": True, "collapsed": True}),
    ([0, 1, 2, 3], [0, 1, 2, 2], 0.5, {"majority": 0.25, "top_share": 0.5, "at_chance": False, "collapsed": False}),
    ([0, 1, 1, 1, 1, 1, 1, 1, 1, 0], [1] * 9 + [0], 0.81, {"majority": 0.8, "top_share": 0.9, "at_chance": False,
                                                          "collapsed": True}),
])
def test_diagnostics_of_hand_made_predictions(gold, pred, acc_lo, expected):
    frame = pd.DataFrame({"gold": gold, "pred": pred})
    got = diagnostics(frame, acc=acc_lo, acc_lo=acc_lo)
    assert {k: got[k] for k in expected} == pytest.approx(expected) and got["oracle"] is False


def test_diagnostics_of_open_answers_count_answers_not_correctness():
    frame = pd.DataFrame({"gold": [0, 1, 1], "pred": [0, 0, 0], "answer": ["7", "5", "5"],
                          "gold_answer": ["7", "4", "9"], "oracle": [True] * 3})
    got = diagnostics(frame, acc=1 / 3, acc_lo=0.0)
    assert got["majority"] == pytest.approx(1 / 3) and got["top_share"] == pytest.approx(2 / 3)
    assert got["at_chance"] and not got["collapsed"] and got["oracle"]


# ---------------------------------------------------------------------------------------------- the shared pieces


@pytest.mark.parametrize("point, values, expected", [
    (0.5, [0.4, 0.5, 0.6], (0.405, 0.595)),              # the 2.5 and 97.5 percentiles
    (0.9, [0.4, 0.5, 0.6], (0.405, 0.9)),                # widened to contain the point (a biased ECE)
    (0.1, [0.4, 0.5, 0.6], (0.1, 0.595)),
    (float("nan"), [0.4, 0.5, 0.6], (0.405, 0.595)),     # no point: not widened
    (0.5, [0.4, float("nan"), 0.6], (0.405, 0.595)),     # an undefined resample (AUROC of one class) is left out
    (0.5, [float("nan")] * 3, (float("nan"), float("nan"))),
])
def test_percentile_interval(point, values, expected):
    got = S.percentile_interval(point, np.array(values))
    assert np.allclose(got, expected, equal_nan=True)


def test_interval_of_an_undefined_point_is_undefined():
    assert np.isnan(S.interval(float("nan"), np.array([0.4, 0.5]))).all()
    assert S.interval(0.5, np.array([0.4, 0.6])) == S.percentile_interval(0.5, np.array([0.4, 0.6]))


@pytest.mark.parametrize("lower, majority, expected", [(0.30, 0.25, False), (0.25, 0.25, True), (0.2, 0.25, True)])
def test_at_chance_is_a_lower_bound_that_does_not_clear_the_majority_rate(lower, majority, expected):
    assert S.at_chance(lower, majority) is expected


@pytest.mark.parametrize("share, expected", [(0.89, False), (0.9, True), (1.0, True)])
def test_collapsed_is_nine_answers_in_ten(share, expected):
    assert S.collapsed(share) is expected


def test_draws_do_not_depend_on_the_block_size(monkeypatch):
    whole = np.concatenate([idx for _, idx in S.resample_blocks(np.random.default_rng(3), 50, 40)])
    monkeypatch.setattr(S, "BLOCK_CELLS", 50 * 7)  # 7 resamples a block
    blocks = list(S.resample_blocks(np.random.default_rng(3), 50, 40))
    assert [lo for lo, _ in blocks] == [0, 7, 14, 21, 28, 35]
    assert np.array_equal(np.concatenate([idx for _, idx in blocks]), whole)
    assert np.array_equal(whole, np.random.default_rng(3).integers(0, 50, size=(40, 50)))


def test_a_cell_is_at_chance_pooled_over_seeds_not_seed_by_seed():
    """Seed 0 alone is at chance (its lower bound 0.28 under the majority 0.3), the cell over both seeds is not."""
    values = {("m", "t"): {"acc": np.linspace(0.32, 0.42, 101)}}
    draws = S.Draws(point={("m", "t"): {"acc": 0.37}}, values=values, n_boot=101)
    results = pd.DataFrame({"method": ["m", "m"], "task": ["t", "t"], "seed": [0, 1], "majority": [0.3, 0.3],
                            "acc_lo": [0.28, 0.40]})
    assert S.majority_rates(results, "m") == {"t": 0.3}
    assert not S.cell_at_chance(draws, "m", ["t"], S.majority_rates(results, "m"))
    assert results["acc_lo"].le(results["majority"]).any()  # the per-seed reading would have said "at chance"
    assert S.cell_at_chance(draws, "m", ["t"], {"t": 0.33})
    assert not S.cell_at_chance(draws, "m", ["t"], {})  # no majority rate: not judged


HOLM_CASES = [
    # sorted: .005 <= .05/4, .01 <= .05/3, .03 > .05/2: the step-down stops there, .04 is not reached
    ([0.01, 0.04, 0.03, 0.005], [True, False, False, True]),
    ([0.06], [False]),
    ([0.049], [True]),
    # a NaN p-value counts in the family and is never rejected: .02 <= .05/2
    ([0.02, float("nan")], [True, False]),
    ([0.0, 0.0, 0.0], [True, True, True]),
    ([], []),
]


@pytest.mark.parametrize("p_values, rejected", HOLM_CASES)
def test_holm_step_down_table(p_values, rejected):
    assert S.holm(p_values, 0.05).tolist() == rejected

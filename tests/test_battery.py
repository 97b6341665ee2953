"""The calibration battery of `harness.metrics`: hand-worked tables, and each estimator held to an independent
implementation (torchmetrics, uncertainty-calibration, relplot, netcal, sklearn) on random data."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from calibration import lower_bound_scaling_ce
from netcal.metrics import ECE
from relplot import smECE
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error

from trustbench.harness import metrics as M
from trustbench.harness.errors import UserError

FOUR = ([0.95, 0.95, 0.55, 0.15], [1, 0, 1, 0])

# ------------------------------------------------------------------------------------------ hand-worked tables

# (confidence, correct, kwargs, value); the working is in the comment above each case.
RMS_CASES = [
    # gaps .45 (2 of 4), .45, .15: sqrt(.5 * .2025 + .25 * .2025 + .25 * .0225) = sqrt(.1575)
    (*FOUR, {}, math.sqrt(0.1575)),
    # one bin each way: conf .5, acc .5
    ([0.5, 0.5], [1, 0], {}, 0.0),
]
DEBIASED_CASES = [
    # one bin: conf .9, acc .25: .65^2 - .25 * .75 / 3 = .4225 - .0625 = .36 -> .6
    ([0.9, 0.9, 0.9, 0.9], [1, 0, 0, 0], {"bins": 1}, 0.6),
    # two bins cut at (.4 + .6) / 2: (.3 - .5)^2 - .25 / 1 = -.21 and (.7 - 1)^2 - 0 = .09; mean -.06 -> 0
    ([0.2, 0.4, 0.6, 0.8], [0, 1, 1, 1], {"bins": 2}, 0.0),
    # a bin of one example adds nothing: bins {.2, .3} (cut at .55; conf .25, acc 0: .0625 - 0) and {.8}
    ([0.2, 0.3, 0.8], [0, 0, 0], {"bins": 2}, math.sqrt(2 / 3 * 0.0625)),
    # a tie on the cut goes to the lower bin (bisect_left): the cut (.8 + .8) / 2 puts all three in one bin
    ([0.2, 0.8, 0.8], [0, 0, 0], {"bins": 2}, 0.6),
]
SWEEP_CASES = [
    # 1 bin: |2.4 - 2| / 4 = .1; 2 bins {.4,.5} acc 0, {.6,.9} acc 1, monotone: (.9 + .5) / 4 = .35; 3 and 4 bins
    # stay monotone and give (.9 + .4 + .1) / 4 and (.4 + .5 + .4 + .1) / 4 = .35
    ([0.4, 0.5, 0.6, 0.9], [0, 0, 1, 1], .35),
    # 2 bins: acc .5, .5 (monotone): (.1 + .5) / 4 = .15; 3 bins: acc .5, 0, 1 breaks it, so 2 bins stand
    ([0.4, 0.5, 0.6, 0.9], [0, 1, 0, 1], .15),
    # input order does not matter
    ([0.9, 0.6, 0.5, 0.4], [1, 0, 1, 0], .15),
]
CORP_CASES = [
    # PAV of y = 0, 1, 0, 1 on c = .2, .4, .6, .8 is 0, .5, .5, 1: BS(c) = .2, BS(c_hat) = .125, UNC = .25
    ([0.2, 0.4, 0.6, 0.8], [0, 1, 0, 1], {"mcb": 0.075, "dsc": 0.125, "unc": 0.25}),
    # tied confidences are pooled first: (.5, .5) -> .5 whatever their order; c_hat = .5, 1
    ([0.5, 0.5, 0.9], [1, 0, 1], {"mcb": (0.0 + 0.0 + 0.01) / 3, "dsc": 2 / 9 - 1 / 6, "unc": 2 / 9}),
    # a perfectly calibrated confidence has no miscalibration
    ([0.0, 1.0, 1.0], [0, 1, 1], {"mcb": 0.0, "dsc": 2 / 9, "unc": 2 / 9}),
]
# (confidence, correct): errors among the top k are 0, 1, 1, 2
RANKED = ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])


@pytest.mark.parametrize("conf, correct, kwargs, expected", RMS_CASES)
def test_rms_table(conf, correct, kwargs, expected):
    assert M.rms_ce(conf, correct, **kwargs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("conf, correct, kwargs, expected", DEBIASED_CASES)
def test_debiased_table(conf, correct, kwargs, expected):
    assert M.debiased_ce(conf, correct, **kwargs) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("conf, correct, expected", SWEEP_CASES)
def test_sweep_table(conf, correct, expected):
    assert M.ece_sweep(conf, correct) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("conf, correct, expected", CORP_CASES)
def test_corp_table(conf, correct, expected):
    got = M.brier_decomposition(conf, correct)
    assert got == pytest.approx(expected, abs=1e-12)
    brier = np.mean((np.asarray(conf) - np.asarray(correct)) ** 2)
    assert got["mcb"] - got["dsc"] + got["unc"] == pytest.approx(brier, abs=1e-12)


def test_selective_table():
    assert M.augrc(*RANKED) == pytest.approx((0 + 1 + 1 + 2) / 4 / 4)
    assert [M.selective_accuracy(*RANKED, c) for c in (0.25, 0.5, 0.75, 0.8, 1.0)] == pytest.approx(
        [1.0, 0.5, 2 / 3, 0.5, 0.5])
    # a tie at the cut counts at its average: the top two are tied, one right
    assert M.selective_accuracy([0.9, 0.9, 0.5, 0.5], [1, 0, 1, 1], 0.25) == pytest.approx(0.5)


def test_classwise_table():
    # two examples, two options; class 0: p = .8 (gold), .4 (not) -> bins [.8,.9): gap .2, [.4,.5): gap .4 -> .3
    # class 1: p = .2 (not), .6 (gold) -> gaps .2 and .4 -> .3; mean .3
    assert M.classwise_ece([[0.8, 0.2], [0.4, 0.6]], [0, 1]) == pytest.approx(0.3)
    # ragged: option 2 exists in the second example only: |.5 - 0| = .5 there; class 0: .8 gold (.2), .3 not
    # (.3) -> .25; class 1: .2 not and .2 gold share a bin: |.4 - 1| / 2 = .3; mean (.25 + .3 + .5) / 3
    assert M.classwise_ece([[0.8, 0.2], [0.3, 0.2, 0.5]], [0, 1]) == pytest.approx(1.05 / 3)


def test_smooth_ece_of_a_calibrated_constant_is_zero():
    value, sigma = M.smooth_ece([0.5] * 6, [1, 0, 1, 0, 1, 0])
    assert value == pytest.approx(0.0, abs=1e-12) and sigma < 2e-3


@pytest.mark.parametrize("call", [
    lambda: M.selective_accuracy(*RANKED, 0.0),
    lambda: M.selective_accuracy(*RANKED, 1.5),
    lambda: M.debiased_ce(*RANKED, bins=0),
    lambda: M.smooth_ece([0.5, 1.2], [1, 0]),
    lambda: M.classwise_ece([[0.5, 0.5]], [2]),
])
def test_bad_input_is_a_user_error(call):
    with pytest.raises(UserError):
        call()


# ------------------------------------------------------------------------------- independent implementations


def _random(seed: int, n: int, k: int = 4, ties: bool = True):
    """Predictions of a model over-confident by a seed-dependent amount; with `ties`, a third of them rounded to
    one decimal (so exactly tied, some on bin edges; their vectors then sum to about 1)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.6), size=n)
    if ties:
        probs[: n // 3] = np.round(probs[: n // 3], 1)
    gold = np.array([rng.choice(k, p=p ** (1 + seed % 3) / (p ** (1 + seed % 3)).sum()) for p in probs])
    conf = probs.max(axis=1)
    return probs, gold, conf, (probs.argmax(axis=1) == gold).astype(float)


SEEDS = [(0, 50), (1, 300), (2, 1000), (3, 2500)]


@pytest.mark.parametrize("seed, n", SEEDS)
def test_rms_equals_torchmetrics_l2(seed, n):
    """torchmetrics gives a confidence of exactly 1.0 a bin of its own and places its edges in torch's float
    arithmetic, so the check keeps off exact bin edges (no ties)."""
    _, _, conf, correct = _random(seed, n, ties=False)
    theirs = binary_calibration_error(torch.tensor(conf), torch.tensor(correct.astype(int)), n_bins=15, norm="l2")
    assert M.rms_ce(conf, correct, bins=15) == pytest.approx(float(theirs), abs=1e-9)


@pytest.mark.parametrize("seed, n", SEEDS)
@pytest.mark.parametrize("bins", [5, 15])
def test_debiased_equals_uncertainty_calibration(seed, n, bins):
    _, _, conf, correct = _random(seed, n)
    theirs = lower_bound_scaling_ce(conf, correct.astype(int), p=2, debias=True, num_bins=bins, mode="top-label")
    assert M.debiased_ce(conf, correct, bins=bins) == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed, n", SEEDS)
def test_smooth_ece_and_bandwidth_equal_relplot(seed, n):
    _, _, conf, correct = _random(seed, n)
    value, sigma = smECE(conf, correct, return_width=True)
    assert M.smooth_ece(conf, correct) == pytest.approx((value, sigma), abs=1e-12)


@pytest.mark.parametrize("seed, n", SEEDS)
def test_classwise_equals_netcal_per_class(seed, n):
    probs, gold, _, _ = _random(seed, n)
    theirs = np.mean([ECE(bins=10).measure(probs[:, j], (gold == j).astype(int)) for j in range(probs.shape[1])])
    assert M.classwise_ece(probs, gold) == pytest.approx(theirs, abs=1e-12)


@pytest.mark.parametrize("seed, n", SEEDS)
def test_corp_equals_sklearn_isotonic(seed, n):
    _, _, conf, correct = _random(seed, n)
    fitted = IsotonicRegression().fit_transform(conf, correct)
    score, recalibrated, base = (np.mean((x - correct) ** 2) for x in (conf, fitted, correct.mean()))
    got = M.brier_decomposition(conf, correct)
    assert (got["mcb"], got["dsc"], got["unc"]) == pytest.approx((score - recalibrated, base - recalibrated, base),
                                                                 abs=1e-12)


@pytest.mark.parametrize("seed, n", SEEDS)
def test_augrc_is_the_auroc_identity(seed, n):
    """Sum over k of the errors among the top k counts each (right, wrong) pair ranked the wrong way round, so
    AUGRC = (1 - AUROC) acc err + err^2 / 2 + err / 2n exactly, ties counted half on both sides."""
    _, _, conf, correct = _random(seed, n)
    acc, err = correct.mean(), 1 - correct.mean()
    auroc = roc_auc_score(correct, conf)
    assert M.augrc(conf, correct) == pytest.approx((1 - auroc) * acc * err + err ** 2 / 2 + err / (2 * n), abs=1e-12)


@pytest.mark.parametrize("seed, n", SEEDS)
def test_selective_accuracy_equals_averaging_over_tie_orders(seed, n):
    _, _, conf, correct = _random(seed, n)
    k = math.ceil(0.8 * n)
    cut = np.sort(conf)[::-1][k - 1]
    above, tied = correct[conf > cut], correct[conf == cut]
    expected = (above.sum() + (k - above.size) * tied.mean()) / k
    assert M.selective_accuracy(conf, correct, 0.8) == pytest.approx(expected, abs=1e-12)


def _sweep_by_loop(conf, correct) -> float:
    """Roelofs et al.'s sweep written plainly: grow the bin count until the bins' accuracies stop rising."""
    order = np.argsort(conf, kind="stable")
    conf, correct = np.asarray(conf)[order], np.asarray(correct)[order]
    best = abs(conf.sum() - correct.sum()) / len(conf)
    for bins in range(2, len(conf) + 1):
        chunks = np.array_split(np.arange(len(conf)), bins)
        accs = [correct[c].mean() for c in chunks]
        if any(b < a for a, b in zip(accs, accs[1:])):
            break
        best = sum(abs(conf[c].sum() - correct[c].sum()) for c in chunks) / len(conf)
    return best


@pytest.mark.parametrize("seed, n", SEEDS[:3])
def test_sweep_equals_a_plain_loop(seed, n):
    _, _, conf, correct = _random(seed, n)
    assert M.ece_sweep(conf, correct) == pytest.approx(_sweep_by_loop(conf, correct), abs=1e-12)


def test_sweep_and_debiasing_remove_most_of_the_bias_binned_ece_has_on_a_calibrated_model():
    """The estimators exist for this: on a perfectly calibrated model with 150 predictions (the README's old test
    size), 10-bin ECE reads several points; the debiased and sweep estimates read far less."""
    rng = np.random.default_rng(0)
    reads = {"ece": [], "debiased_ce": [], "ece_sweep": []}
    for _ in range(200):
        conf = rng.uniform(0.25, 1.0, 150)
        correct = (rng.uniform(size=150) < conf).astype(float)
        reads["ece"].append(M.ece(conf, correct))
        reads["debiased_ce"].append(M.debiased_ce(conf, correct))
        reads["ece_sweep"].append(M.ece_sweep(conf, correct))
    mean = {k: float(np.mean(v)) for k, v in reads.items()}
    assert mean["ece"] > 0.05
    assert mean["debiased_ce"] < mean["ece"] / 2 and mean["ece_sweep"] < mean["ece"] * 0.75


@pytest.mark.parametrize("seed, n", SEEDS[:3])
def test_the_smooth_diagram_is_relplots_kernel_smoother(seed, n):
    from relplot.kernels import ReflectedGaussianKernel

    _, _, conf, correct = _random(seed, n)
    curve = M.smooth_reliability(conf, correct)
    sigma = M.smooth_ece(conf, correct)[1]
    accuracy, density = ReflectedGaussianKernel(sigma).smooth(conf, correct, curve["confidence"].to_numpy())
    np.testing.assert_allclose(curve["accuracy"], accuracy, atol=1e-8)  # a ratio: FFT noise grows where density is ~0
    np.testing.assert_allclose(curve["density"], density / n, rtol=1e-6)  # FFT against direct convolution
    assert curve["density"].mean() == pytest.approx(1.0, abs=0.05)  # a density over [0, 1]


def test_the_smooth_diagrams_band_is_a_bootstrap_around_the_curve():
    from trustbench.harness.statistics import smooth_reliability_band

    _, _, conf, correct = _random(1, 600)
    band = smooth_reliability_band(conf, correct, n_boot=100, seed=3)
    curve = band["curve"]
    dense = curve["density"] > 0.5  # where the data are, the curve lies inside its band and the band is narrow
    assert ((curve["lo"] <= curve["accuracy"] + 1e-12) & (curve["accuracy"] <= curve["hi"] + 1e-12))[dense].all()
    assert (curve["hi"] - curve["lo"])[dense].max() < 0.35
    assert band["n"] == 600 and (band["smece"], band["sigma"]) == M.smooth_ece(conf, correct)
    assert smooth_reliability_band(conf, correct, n_boot=100, seed=3)["curve"].equals(curve)


@pytest.mark.parametrize("extra", [0, 1, 2])
def test_a_near_constant_predictor_takes_the_capped_grid_and_still_agrees_with_relplot(extra):
    """Two tied confidences, right almost exactly as often as they say: the bandwidth falls under 0.005, where
    relplot's grid keeps growing and ours stops (metrics.SMOOTH_GRID_MAX)."""
    conf = np.repeat([0.25, 0.5], 400)
    correct = np.zeros(800)
    correct[:100 + extra] = 1  # a quarter of the first 400 right, and `extra` more
    correct[400:600] = 1  # half of the others
    value, sigma = smECE(conf, correct, return_width=True)
    ours = M.smooth_ece(conf, correct)
    assert sigma < 0.005 and ours[1] == sigma and ours[0] == pytest.approx(value, abs=1e-4)


def test_a_resample_that_misses_a_rare_option_position_leaves_it_out_of_classwise_ece():
    """On a ragged task a resample can hold no example with a fifth option: that class is left out of the mean
    (it used to make the resample NaN, silently dropped from the interval)."""
    probs = [[0.7, 0.3]] * 30 + [[0.1, 0.2, 0.3, 0.2, 0.2]]
    gold = [0] * 20 + [1] * 10 + [4]
    frame = pd.DataFrame({"example_id": range(31), "gold": gold, "pred": [int(np.argmax(p)) for p in probs],
                          "confidence": [max(p) for p in probs], "probs": probs,
                          "correct": [int(np.argmax(p)) == g for p, g in zip(probs, gold)]})
    without_the_long_one = np.array([list(range(30)) + [0]])
    got = M._block_metrics(M._columns(frame), without_the_long_one, 10, False, ("classwise_ece",))["classwise_ece"]
    assert got[0] == pytest.approx(M.classwise_ece(probs[:30] + [probs[0]], gold[:30] + [gold[0]]))

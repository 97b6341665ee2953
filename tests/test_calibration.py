"""trustbench.harness.calibration: temperature scaling recovers a known T, agrees with netcal, and keeps predictions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustbench.harness.calibration import (T_MAX, T_MIN, IsotonicMap, apply_isotonic, apply_temperature,
                                            fit_isotonic, fit_temperature)
from trustbench.harness.errors import UserError
from trustbench.harness.metrics import ece, nll


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _synthetic(t_true, n=3000, seed=0, ragged=False, scale=3.0):
    """Model probs softmax(logits); gold sampled from softmax(logits / t_true), so the best T is t_true."""
    rng = np.random.default_rng(seed)
    ks = rng.integers(2, 7, n) if ragged else np.full(n, 4)
    probs, gold = [], []
    for k in ks:
        z = rng.normal(0.0, scale, k)
        probs.append(_softmax(z))
        gold.append(int(rng.choice(k, p=_softmax(z / t_true))))
    return probs, np.array(gold)


def _frame(probs, gold):
    pred = np.array([int(np.argmax(p)) for p in probs])
    return pd.DataFrame(
        {
            "example_id": [f"q{i}" for i in range(len(gold))],
            "gold": gold,
            "pred": pred,
            "confidence": [float(np.max(p)) for p in probs],
            "probs": probs,
            "correct": pred == gold,
            "task": "synthetic",
        }
    )


@pytest.mark.parametrize(
    "t_true, ragged",
    [(0.5, False), (1.0, False), (2.0, False), (3.0, False), (0.6, True), (2.5, True)],
)
def test_recovers_known_temperature(t_true, ragged):
    probs, gold = _synthetic(t_true, ragged=ragged, seed=int(t_true * 10))
    t = fit_temperature(probs, gold)
    assert t == pytest.approx(t_true, rel=0.10)


def test_rectangular_array_and_list_give_the_same_temperature():
    probs, gold = _synthetic(1.7, n=500, seed=3)
    assert fit_temperature(np.array(probs), gold) == pytest.approx(fit_temperature(probs, gold), rel=1e-9)


def test_matches_netcal_temperature_scaling():
    from netcal.scaling import TemperatureScaling

    probs, gold = _synthetic(2.0, n=2000, seed=11)
    probs = np.array(probs)  # 4 classes: netcal's multiclass (softmax) path, not its binary one
    ts = TemperatureScaling()
    ts.fit(probs, gold, tensorboard=False)
    # netcal stores the weight that multiplies the logits, i.e. 1 / T, as a length-1 array
    weight = np.asarray(ts.temperature, dtype=float).reshape(-1)
    assert weight.shape == (1,)
    assert fit_temperature(probs, gold) == pytest.approx(1.0 / weight[0], rel=0.02)


@pytest.mark.parametrize("t_true", [0.5, 2.5])
def test_fitted_temperature_lowers_val_nll_and_ece(t_true):
    probs, gold = _synthetic(t_true, n=2000, seed=5, ragged=True)
    df = _frame(probs, gold)
    scaled = apply_temperature(df, fit_temperature(probs, gold))
    assert nll(list(scaled["probs"]), gold) < nll(probs, gold) - 0.01
    assert ece(scaled["confidence"], scaled["correct"]) < ece(df["confidence"], df["correct"])


def test_apply_keeps_argmax_and_recomputes_columns():
    probs, gold = _synthetic(2.0, n=300, seed=2, ragged=True)
    df = _frame(probs, gold)
    before = df.copy(deep=True)
    for t in (0.3, 1.0, 4.0):
        out = apply_temperature(df, t)
        assert out is not df
        assert list(out.columns) == list(df.columns)
        assert out["example_id"].tolist() == df["example_id"].tolist() and (out["task"] == "synthetic").all()
        assert out["pred"].tolist() == df["pred"].tolist()  # argmax unchanged
        assert out["correct"].tolist() == df["correct"].tolist()
        for p_old, p_new, conf in zip(df["probs"], out["probs"], out["confidence"]):
            assert len(p_new) == len(p_old)
            assert np.sum(p_new) == pytest.approx(1.0, abs=1e-12)
            assert conf == pytest.approx(np.max(p_new), abs=0)
            expected = _softmax(np.log(p_old) / t)
            np.testing.assert_allclose(p_new, expected, rtol=1e-9, atol=1e-15)
    # softening lowers confidence, sharpening raises it
    assert (apply_temperature(df, 4.0)["confidence"] < df["confidence"] + 1e-12).all()
    assert (apply_temperature(df, 0.3)["confidence"] > df["confidence"] - 1e-12).all()
    pd.testing.assert_frame_equal(df, before)  # the input frame is untouched


def test_apply_recomputes_correct_from_gold():
    # a stored `pred` that disagrees with argmax (e.g. a tie broken elsewhere) is recomputed from probs
    df = pd.DataFrame(
        {"gold": [0, 1], "pred": [1, 1], "confidence": [0.5, 0.9], "probs": [[0.6, 0.4], [0.1, 0.9]],
         "correct": [True, True]}
    )
    out = apply_temperature(df, 2.0)
    assert out["pred"].tolist() == [0, 1]
    assert out["correct"].tolist() == [True, True]
    # p = [.6, .4] at T = 2: sqrt(.6) / (sqrt(.6) + sqrt(.4)) = 0.5505102572
    assert out["confidence"].iloc[0] == pytest.approx(0.5505102572168219, abs=1e-12)


def test_zero_probabilities_stay_zero():
    df = _frame([np.array([0.0, 0.3, 0.7]), np.array([0.5, 0.5])], np.array([2, 0]))
    out = apply_temperature(df, T_MAX)
    assert out["probs"].iloc[0][0] < 1e-15
    assert np.isfinite(fit_temperature(list(df["probs"]), df["gold"]))


def test_fit_stays_within_bounds():
    # a model that is always right with confidence .6 wants T -> 0; the fit stops at the bound
    probs = [np.array([0.6, 0.4])] * 50
    t = fit_temperature(probs, np.zeros(50, dtype=int))
    assert T_MIN <= t <= T_MIN * 1.01
    # a model that is right half the time at confidence .99 wants T -> large
    t = fit_temperature([np.array([0.99, 0.01])] * 50, np.array([0, 1] * 25))
    assert T_MAX * 0.99 <= t <= T_MAX


@pytest.mark.parametrize(
    "call, needle",
    [
        (lambda: fit_temperature([], []), "empty"),
        (lambda: fit_temperature([[0.5, 0.5]], [3]), "out of range"),
        (lambda: fit_temperature([[0.5, float("nan")]], [0]), "NaN"),
        (lambda: apply_temperature(_frame([np.array([0.5, 0.5])], np.array([0])), 0.0), "temperature"),
        (lambda: apply_temperature(_frame([np.array([0.5, 0.5])], np.array([0])), float("nan")), "temperature"),
        (lambda: apply_temperature(_frame([np.array([0.5, 0.5])], np.array([5])), 2.0), "out of range"),
    ],
)
def test_user_errors(call, needle):
    with pytest.raises(UserError) as err:
        call()
    assert needle in str(err.value) and "\n" not in str(err.value)


# ------------------------------------------------------------------------------------------- isotonic regression
ISO_CASES = [
    # (probs, pred, mapped confidence): the chosen option takes the mapped confidence, the others share the rest
    # in their old proportions, or evenly when they had none
    ([0.6, 0.3, 0.1], 0, 0.8, [0.8, 0.15, 0.05]),
    ([0.2, 0.5, 0.3], 1, 0.25, [0.3, 0.25, 0.45]),
    ([1.0, 0.0, 0.0, 0.0], 0, 0.7, [0.7, 0.1, 0.1, 0.1]),
]


@pytest.mark.parametrize("probs, pred, mapped, expected", ISO_CASES)
def test_apply_isotonic_replaces_the_answers_confidence_and_keeps_the_answer(probs, pred, mapped, expected):
    frame = pd.DataFrame({"gold": [pred], "pred": [pred], "confidence": [max(probs)], "probs": [probs],
                          "correct": [True]})
    out = apply_isotonic(frame, IsotonicMap(np.array([0.0, 1.0]), np.array([mapped, mapped])))
    assert out["probs"][0] == pytest.approx(expected) and out["confidence"][0] == pytest.approx(mapped)
    assert out["pred"][0] == pred and bool(out["correct"][0])


def test_the_isotonic_map_is_sklearns_fitted_on_val_and_clipped_outside_it():
    from sklearn.isotonic import IsotonicRegression

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 300)
    correct = rng.random(300) < conf ** 2
    mapping = fit_isotonic(conf, correct)
    theirs = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(conf, correct)
    grid = np.linspace(0.0, 1.0, 101)  # inside and outside the fitted range
    np.testing.assert_allclose(mapping(grid), theirs.predict(grid), atol=1e-12)
    assert np.all(np.diff(mapping(grid)) >= 0)

"""Accuracy and calibration metrics over per-example predictions (their intervals: `harness.statistics`).

Every metric is a pure function of numpy-like inputs (no model, no files). `confidence` is the probability the
model gave to its own prediction, `correct` whether that prediction was right, `probs` one probability vector per
example (vectors may have different lengths: tasks with different numbers of choices), `gold` the index of the
right answer in that vector.

The binned metrics (`ece`, `mce`, `reliability_table`) place bins exactly like netcal's `ECE`/`MCE`
(`equal_intervals=True/False`): equal-width edges are `np.linspace(0, 1, bins + 1)`; equal-mass edges are
`np.quantile(confidence, np.linspace(0, 1, bins + 1))` with the outer edges set to 0 and 1. Bins are half-open
`[lo, hi)`; a confidence of exactly 1.0 falls in the last bin. Bin *placement* uses confidences clipped to
`[eps, 1 - eps]` (as netcal does); bin *means* use the confidences as given.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from trustbench.harness.errors import UserError

OPEN_ANSWER = "gold_answer"  # the column that marks open-answer predictions (see harness.scoring)
METRICS = ("acc", "ece", "mce", "brier", "nll", "auroc", "aurc", "conf_gap", "macro_f1")

_EPS = np.finfo(np.float64).eps
_NLL_FLOOR = 1e-12


# --------------------------------------------------------------------------------------------- input checks


def _vector(values, name: str, *, allow_empty: bool = False) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise UserError(f"{name} must be one value per example (1-D), got shape {arr.shape}: pass a flat list")
    if arr.size == 0 and not allow_empty:
        raise UserError(f"no examples to score ({name} is empty): check that the split has examples")
    if np.isnan(arr).any():
        first = int(np.flatnonzero(np.isnan(arr))[0])
        raise UserError(
            f"{name} has {int(np.isnan(arr).sum())} NaN value(s) (first at example {first}): "
            "fix the scorer so every example gets a finite score"
        )
    return arr


def _pair(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = _vector(confidence, "confidence")
    corr = _vector(correct, "correct")
    if conf.shape != corr.shape:
        raise UserError(
            f"confidence has {conf.size} values but correct has {corr.size}: pass one of each per example"
        )
    if ((conf < 0) | (conf > 1)).any():
        bad = conf[(conf < 0) | (conf > 1)][0]
        raise UserError(f"confidence {bad!r} is outside [0, 1]: pass probabilities, not logits or log-probs")
    if not np.isin(corr, (0.0, 1.0)).all():
        raise UserError("correct must be 0/1 (or bool) per example: pass whether each prediction was right")
    return conf, corr


def _check_bins(bins) -> int:
    if isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or bins < 1:
        raise UserError(f"bins must be a positive integer, got {bins!r}: use e.g. bins=10")
    return int(bins)


def _ragged(probs, gold) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flatten per-example probability vectors: (flat values, start offsets, lengths, flat index of gold)."""
    gold_arr = np.asarray(gold)
    if gold_arr.ndim != 1:
        raise UserError(f"gold must be one index per example (1-D), got shape {gold_arr.shape}")
    if isinstance(probs, np.ndarray) and probs.ndim == 2 and probs.dtype != object:
        n, k = probs.shape
        flat = np.asarray(probs, dtype=float).reshape(-1)
        lengths = np.full(n, k, dtype=np.int64)
    else:
        rows = [np.asarray(p, dtype=float).reshape(-1) for p in probs]
        n = len(rows)
        lengths = np.array([r.size for r in rows], dtype=np.int64)
        flat = np.concatenate(rows) if rows else np.zeros(0)
    if n == 0:
        raise UserError("no examples to score (probs is empty): check that the split has examples")
    if gold_arr.size != n:
        raise UserError(f"probs has {n} examples but gold has {gold_arr.size}: pass one gold index per example")
    if (lengths == 0).any():
        first = int(np.flatnonzero(lengths == 0)[0])
        raise UserError(f"example {first} has an empty probability vector: every example needs its choices scored")
    if np.isnan(flat).any():
        raise UserError("probs contain NaN: fix the scorer so every choice gets a finite probability")
    if gold_arr.dtype.kind == "f":
        if np.isnan(gold_arr).any() or (gold_arr != np.round(gold_arr)).any():
            raise UserError("gold must hold integer choice indices: map answers to the index of the right choice")
    elif gold_arr.dtype.kind not in "iub":
        raise UserError(f"gold must hold integer choice indices, got dtype {gold_arr.dtype}")
    gold_int = gold_arr.astype(np.int64)
    bad = (gold_int < 0) | (gold_int >= lengths)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(
            f"gold index {int(gold_int[i])} is out of range for example {i}, which has {int(lengths[i])} choice "
            "probabilities: check the task's gold labels against its choices"
        )
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, starts, lengths, starts + gold_int


def _brier_terms(probs, gold) -> np.ndarray:
    flat, starts, _, gpos = _ragged(probs, gold)
    diff = flat.copy()
    diff[gpos] -= 1.0
    return np.add.reduceat(diff * diff, starts)


def _nll_terms(probs, gold) -> np.ndarray:
    flat, _, _, gpos = _ragged(probs, gold)
    return -np.log(np.clip(flat[gpos], _NLL_FLOOR, None))


# ------------------------------------------------------------------ row-wise kernels (one row = one sample)


def _edges(conf_rows: np.ndarray, bins: int, equal_mass: bool) -> np.ndarray:
    """Bin edges, shape (rows, bins + 1), placed as netcal places them."""
    rows = conf_rows.shape[0]
    if not equal_mass:
        return np.broadcast_to(np.linspace(0.0, 1.0, bins + 1), (rows, bins + 1))
    clipped = np.clip(conf_rows, _EPS, 1.0 - _EPS)
    edges = np.quantile(clipped, np.linspace(0.0, 1.0, bins + 1), axis=1).T.copy()
    edges[:, 0] = 0.0
    edges[:, -1] = 1.0
    return edges


def _bin_index(conf_rows: np.ndarray, edges: np.ndarray, equal_mass: bool) -> np.ndarray:
    """Bin of each confidence: the number of interior edges <= it (half-open bins, 1.0 in the last bin).

    Equal to netcal's `np.digitize(x, edges) - 1` on clipped x. With tied confidences, equal-mass edges can
    coincide; a tie then goes to the last of the coinciding bins and the zero-width ones stay empty (netcal
    raises on such inputs).
    """
    clipped = np.clip(conf_rows, _EPS, 1.0 - _EPS)
    if not equal_mass:
        return np.searchsorted(edges[0, 1:-1], clipped, side="right")
    return (clipped[:, :, None] >= edges[:, None, 1:-1]).sum(axis=2)


def _binned(conf_rows, corr_rows, bins: int, equal_mass: bool):
    """Per row and bin: edges, count, mean confidence, accuracy (NaN means in empty bins)."""
    rows, n = conf_rows.shape
    edges = _edges(conf_rows, bins, equal_mass)
    idx = _bin_index(conf_rows, edges, equal_mass)
    flat = (idx + (np.arange(rows) * bins)[:, None]).reshape(-1)
    size = rows * bins
    count = np.bincount(flat, minlength=size).reshape(rows, bins).astype(float)
    conf_sum = np.bincount(flat, weights=conf_rows.reshape(-1), minlength=size).reshape(rows, bins)
    acc_sum = np.bincount(flat, weights=corr_rows.reshape(-1), minlength=size).reshape(rows, bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = conf_sum / count
        mean_acc = acc_sum / count
    return edges, count, mean_conf, mean_acc


def _ece_mce_rows(conf_rows, corr_rows, bins: int, equal_mass: bool) -> tuple[np.ndarray, np.ndarray]:
    _, count, mean_conf, mean_acc = _binned(conf_rows, corr_rows, bins, equal_mass)
    gap = np.where(count > 0, np.abs(mean_acc - mean_conf), 0.0)
    ece = (gap * count).sum(axis=1) / count.sum(axis=1)
    return ece, gap.max(axis=1)


def _ranking_rows(conf_rows, corr_rows) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AURC per row from one ascending sort (tied confidences handled as blocks)."""
    rows, n = conf_rows.shape
    order = np.argsort(conf_rows, axis=1)
    c = np.take_along_axis(conf_rows, order, axis=1)
    y = np.take_along_axis(corr_rows, order, axis=1)
    pos = np.arange(n)
    first = np.ones((rows, n), dtype=bool)
    first[:, 1:] = c[:, 1:] != c[:, :-1]
    last = np.ones((rows, n), dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)  # first index of each tie block
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]  # last index

    # AUROC (Mann-Whitney U): a tie block shares the average of its 1-based ranks, so ties count half.
    n_pos = y.sum(axis=1)
    n_neg = n - n_pos
    u = (((start + end) / 2 + 1) * y).sum(axis=1) - n_pos * (n_pos + 1) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc_r = np.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), np.nan)

    # AURC: walk from the most confident end; inside a tie block the block's errors are spread evenly.
    err = 1.0 - y[:, ::-1]
    d_start, d_end = (n - 1 - end)[:, ::-1], (n - 1 - start)[:, ::-1]
    cum = np.cumsum(err, axis=1)  # errors among the top k, k = 1..n
    before = np.where(d_start > 0, np.take_along_axis(cum, np.maximum(d_start - 1, 0), axis=1), 0.0)
    block_err = np.take_along_axis(cum, d_end, axis=1) - before
    expected = before + (pos - d_start + 1) * block_err / (d_end - d_start + 1)
    aurc_r = (expected / (pos + 1)).mean(axis=1)
    return auroc_r, aurc_r


# ----------------------------------------------------------------------------------------- public metrics


def accuracy(correct) -> float:
    """Accuracy: the fraction of examples answered correctly. Range [0, 1], higher is better."""
    corr = _vector(correct, "correct")
    return float(corr.mean())


def ece(confidence, correct, bins: int = 10, equal_mass: bool = False) -> float:
    """Expected calibration error (top-label): sum over bins of (n_b / n) * |accuracy_b - mean confidence_b|.

    Range [0, 1], lower is better. Equal-width bins by default, equal-mass bins with `equal_mass=True`
    (binning as in netcal; see the module docstring). References: Naeini et al. 2015 (AAAI),
    Guo et al. 2017 "On Calibration of Modern Neural Networks" (ICML).
    """
    conf, corr = _pair(confidence, correct)
    return float(_ece_mce_rows(conf[None], corr[None], _check_bins(bins), bool(equal_mass))[0][0])


def mce(confidence, correct, bins: int = 10, equal_mass: bool = False) -> float:
    """Maximum calibration error: the largest |accuracy_b - mean confidence_b| over non-empty bins.

    Range [0, 1], lower is better. Binning as in `ece`. Reference: Naeini et al. 2015 (AAAI).
    """
    conf, corr = _pair(confidence, correct)
    return float(_ece_mce_rows(conf[None], corr[None], _check_bins(bins), bool(equal_mass))[1][0])


def conf_gap(confidence, correct) -> float:
    """Over-confidence: mean confidence minus accuracy. Range [-1, 1]; > 0 over-confident, < 0 under-confident, 0
    for a model whose confidence matches its accuracy on average (it can still be mis-calibrated per bin: see
    `ece`). FIRST's premise, tuning-induced mis-calibration, is a fine-tuned model with conf_gap > 0."""
    conf, corr = _pair(confidence, correct)
    return float(conf.mean() - corr.mean())


def macro_f1(pred, gold) -> float:
    """Macro-averaged F1: the unweighted mean over classes of 2TP / (2TP + FP + FN), over the classes that appear
    in `gold` or `pred` (sklearn's `f1_score(average="macro")`); a class never predicted scores 0. Range [0, 1],
    higher is better. Unlike accuracy it is not carried by the majority class: a constant predictor on k classes
    scores at most 1/k. The DualChecker paper reports it."""
    pred_v, gold_v = _vector(pred, "pred"), _vector(gold, "gold")
    if pred_v.shape != gold_v.shape:
        raise UserError(f"pred has {pred_v.size} values but gold has {gold_v.size}: pass one of each per example")
    return float(_macro_f1_rows(pred_v.astype(np.int64)[None], gold_v.astype(np.int64)[None])[0])


def most_frequent_share(values) -> float:
    """The share of the most frequent value. Range (0, 1]. Of the gold labels, it is the majority rate: what always
    guessing the commonest answer scores, the chance level an accuracy must clear to mean anything. Of a model's
    predictions, near 1 means it answers (almost) one thing whatever the question: a collapsed predictor."""
    counts = pd.Series(list(values)).value_counts()
    if counts.empty:
        raise UserError("no values to count: check that the split has examples")
    return float(counts.iloc[0] / counts.sum())


def brier(probs: Sequence, gold) -> float:
    """Multiclass Brier score: mean over examples of sum_k (p_k - onehot(gold)_k)^2.

    Range [0, 2], lower is better. `probs` may be ragged (a different number of choices per example).
    Reference: Brier 1950, "Verification of forecasts expressed in terms of probability".
    """
    return float(_brier_terms(probs, gold).mean())


def nll(probs: Sequence, gold) -> float:
    """Negative log-likelihood: mean of -log p_gold, with p_gold clipped below at 1e-12.

    Range [0, ~27.6], lower is better. `probs` may be ragged. Reference: the log score (Good 1952).
    """
    return float(_nll_terms(probs, gold).mean())


def auroc(confidence, correct) -> float:
    """AUROC of confidence for telling correct from wrong predictions (ties count half).

    The probability that a random correct example has higher confidence than a random wrong one.
    Range [0, 1], 0.5 is chance, higher is better; NaN when all examples are correct or all wrong.
    Reference: Hanley & McNeil 1982 (Mann-Whitney U); Hendrycks & Gimpel 2017 for misclassification detection.
    """
    conf, corr = _pair(confidence, correct)
    return float(_ranking_rows(conf[None], corr[None])[0][0])


def aurc(confidence, correct) -> float:
    """Area under the risk-coverage curve of selective prediction by confidence.

    Sort by confidence descending; the risk at coverage k/n is the error rate among the k most confident
    examples; AURC is the mean risk over k = 1..n. Tied confidences form a block whose order is undefined, so
    inside a block the errors are spread evenly (the expected risk under a random order of the tied examples);
    with all confidences equal AURC is the error rate. Range [0, 1], lower is better.
    Reference: Geifman, Uziel & El-Yaniv 2019, "Bias-Reduced Uncertainty Estimation for Deep Neural
    Classifiers" (ICLR).
    """
    conf, corr = _pair(confidence, correct)
    return float(_ranking_rows(conf[None], corr[None])[1][0])


def reliability_table(confidence, correct, bins: int = 10, equal_mass: bool = False) -> pd.DataFrame:
    """One row per bin (`lo`, `hi`, `count`, mean `confidence`, `accuracy`) for reliability diagrams.

    Empty bins are kept with count 0 and NaN means. Binning as in `ece`, so
    `sum(count / n * |accuracy - confidence|)` over non-empty rows equals `ece(...)`.
    """
    conf, corr = _pair(confidence, correct)
    edges, count, mean_conf, mean_acc = _binned(conf[None], corr[None], _check_bins(bins), bool(equal_mass))
    return pd.DataFrame(
        {
            "lo": edges[0, :-1],
            "hi": edges[0, 1:],
            "count": count[0].astype(np.int64),
            "confidence": mean_conf[0],
            "accuracy": mean_acc[0],
        }
    )


# ------------------------------------------------------------------------------------- summary + bootstrap


@dataclass(frozen=True)
class Columns:
    """A validated predictions frame as arrays: confidence, correctness, per-example Brier and NLL terms, and the
    predicted and gold class of each example (None for open-answer rows, where classes are not labels)."""

    conf: np.ndarray
    corr: np.ndarray
    brier: np.ndarray
    nll: np.ndarray
    pred: np.ndarray | None
    gold: np.ndarray | None


def _columns(predictions: pd.DataFrame) -> Columns:
    """Validate a predictions frame and return its arrays."""
    if not isinstance(predictions, pd.DataFrame):
        raise UserError(f"predictions must be a pandas DataFrame, got {type(predictions).__name__}")
    missing = [c for c in ("gold", "confidence", "probs", "correct") if c not in predictions.columns]
    if missing:
        raise UserError(
            f"predictions lack column(s) {', '.join(missing)}: "
            "write predictions with example_id, gold, pred, confidence, probs, correct"
        )
    if len(predictions) == 0:
        raise UserError("no predictions to score (the table is empty): check that the task's test split has examples")
    if predictions["correct"].isna().any():
        raise UserError("some predictions have no `correct` value: rescore them so each is True or False")
    conf = predictions["confidence"].to_numpy(dtype=float)
    if np.isnan(conf).any():
        bad = np.flatnonzero(np.isnan(conf))
        raise UserError(
            f"{bad.size} of {conf.size} predictions have a NaN confidence (first at row {int(bad[0])}): "
            "fix the scorer (e.g. all-(-inf) log-probs) and rescore"
        )
    conf, corr = _pair(conf, predictions["correct"].to_numpy(dtype=float))
    gold = predictions["gold"].to_numpy()
    probs = list(predictions["probs"])
    labelled = "pred" in predictions and OPEN_ANSWER not in predictions
    return Columns(conf, corr, _brier_terms(probs, gold), _nll_terms(probs, gold),
                   predictions["pred"].to_numpy(dtype=np.int64) if labelled else None,
                   gold.astype(np.int64) if labelled else None)


def _macro_f1_rows(pred_rows: np.ndarray, gold_rows: np.ndarray) -> np.ndarray:
    """Macro-F1 per row over the classes present in that row's gold or predicted labels (as sklearn's
    `f1_score(average="macro")` chooses its labels); a class never predicted has F1 0."""
    scores, present = [], []
    for label in np.union1d(np.unique(pred_rows), np.unique(gold_rows)):
        predicted, actual = pred_rows == label, gold_rows == label
        tp = (predicted & actual).sum(axis=1)
        wrong = (predicted ^ actual).sum(axis=1)  # false positives + false negatives
        with np.errstate(invalid="ignore", divide="ignore"):
            scores.append(np.where(tp + wrong > 0, 2 * tp / (2 * tp + wrong), 0.0))
        present.append(tp + wrong > 0)
    scores, present = np.array(scores), np.array(present)
    return (scores * present).sum(axis=0) / present.sum(axis=0)


def _block_metrics(cols: Columns, index: np.ndarray, bins: int, equal_mass: bool) -> dict:
    """Every metric on each row of `index` (resamples of example indices, one per row)."""
    conf_rows, corr_rows = cols.conf[index], cols.corr[index]
    ece_r, mce_r = _ece_mce_rows(conf_rows, corr_rows, bins, equal_mass)
    auroc_r, aurc_r = _ranking_rows(conf_rows, corr_rows)
    return {
        "acc": corr_rows.mean(axis=1),
        "ece": ece_r,
        "mce": mce_r,
        "brier": cols.brier[index].mean(axis=1),
        "nll": cols.nll[index].mean(axis=1),
        "auroc": auroc_r,
        "aurc": aurc_r,
        "conf_gap": conf_rows.mean(axis=1) - corr_rows.mean(axis=1),
        "macro_f1": (np.full(len(index), np.nan) if cols.pred is None
                     else _macro_f1_rows(cols.pred[index], cols.gold[index])),
    }

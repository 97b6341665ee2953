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

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import isotonic_regression

from trustbench.harness.errors import UserError

OPEN_ANSWER = "gold_answer"  # the column that marks open-answer predictions (see harness.scoring)
METRICS = ("acc", "ece", "mce", "brier", "nll", "auroc", "aurc", "conf_gap", "macro_f1",
           # the calibration battery (issue 23): one estimator each, defined in its function's docstring
           "rms_ce", "debiased_ce", "ece_sweep", "smece", "smece_sigma", "classwise_ece", "mcb", "dsc", "unc",
           "augrc", "acc_cov80", "acc_cov50")
CALIBRATION_ERRORS = ("ece", "mce", "rms_ce", "debiased_ce", "ece_sweep", "smece", "classwise_ece", "mcb", "brier",
                      "nll")  # the estimators of mis-calibration (lower is better) a gate can hold a candidate to

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


def _padded(flat: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Ragged probability vectors as an (n, longest) matrix, NaN where an example has no such option."""
    out = np.full((lengths.size, int(lengths.max())), np.nan)
    out[np.repeat(np.arange(lengths.size), lengths), np.arange(flat.size) - np.repeat(starts, lengths)] = flat
    return out


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


def _ranking_rows(conf_rows, corr_rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROC, AURC and the expected errors among the k most confident (k = 1..n) per row, from one ascending sort
    (tied confidences handled as blocks)."""
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
    return auroc_r, aurc_r, expected


def _selective_rows(expected: np.ndarray) -> dict[str, np.ndarray]:
    """AUGRC and accuracy at 80% and 50% coverage from `expected[:, k-1]`, the (expected) errors among the k most
    confident examples (`_ranking_rows`)."""
    n = expected.shape[1]

    def acc_at(coverage: float) -> np.ndarray:
        k = max(1, math.ceil(coverage * n))
        return 1.0 - expected[:, k - 1] / k

    return {"augrc": expected.mean(axis=1) / n, "acc_cov80": acc_at(0.8), "acc_cov50": acc_at(0.5)}


def _rms_rows(conf_rows, corr_rows, bins: int, equal_mass: bool) -> np.ndarray:
    _, count, mean_conf, mean_acc = _binned(conf_rows, corr_rows, bins, equal_mass)
    sq = np.where(count > 0, (mean_acc - mean_conf) ** 2, 0.0)
    return np.sqrt((sq * count).sum(axis=1) / count.sum(axis=1))


def _mass_split(n: int, bins: int) -> np.ndarray:
    """Chunk boundaries of n sorted examples in `bins` chunks, sizes as `np.array_split` gives them."""
    i = np.arange(bins + 1)
    return i * (n // bins) + np.minimum(i, n % bins)


def _debiased_rows(conf_rows, corr_rows, bins: int) -> np.ndarray:
    rows, n = conf_rows.shape
    bins = min(bins, n)
    ends = _mass_split(n, bins)[1:-1]
    ordered = np.sort(conf_rows, axis=1)
    bounds = np.concatenate([(ordered[:, ends - 1] + ordered[:, ends]) / 2, np.ones((rows, 1))], axis=1)
    idx = (conf_rows[:, :, None] > bounds[:, None, :]).sum(axis=2)  # bisect_left: a tie goes to the lower bin
    flat = (idx + (np.arange(rows) * bins)[:, None]).reshape(-1)
    sums = [np.bincount(flat, weights=w, minlength=rows * bins).reshape(rows, bins)
            for w in (None, conf_rows.reshape(-1), corr_rows.reshape(-1))]
    count, conf_sum, acc_sum = sums
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, mean_acc = conf_sum / count, acc_sum / count
        term = (mean_conf - mean_acc) ** 2 - mean_acc * (1 - mean_acc) / (count - 1)
    term = np.where(count >= 2, term, 0.0)
    return np.sqrt(np.maximum((term * count).sum(axis=1) / n, 0.0))


def _sweep_rows(conf_rows, corr_rows) -> np.ndarray:
    rows, n = conf_rows.shape
    order = np.argsort(conf_rows, axis=1, kind="stable")
    cum_conf = np.zeros((rows, n + 1))
    cum_acc = np.zeros((rows, n + 1))
    np.cumsum(np.take_along_axis(conf_rows, order, axis=1), axis=1, out=cum_conf[:, 1:])
    np.cumsum(np.take_along_axis(corr_rows, order, axis=1), axis=1, out=cum_acc[:, 1:])
    result = np.abs(cum_conf[:, -1] - cum_acc[:, -1]) / n  # one bin
    alive = np.ones(rows, dtype=bool)
    for bins in range(2, n + 1):
        edges = _mass_split(n, bins)
        acc_sum = cum_acc[alive][:, edges[1:]] - cum_acc[alive][:, edges[:-1]]
        monotone = (np.diff(acc_sum / np.diff(edges), axis=1) >= 0).all(axis=1)
        conf_sum = cum_conf[alive][:, edges[1:]] - cum_conf[alive][:, edges[:-1]]
        live = np.flatnonzero(alive)
        result[live[monotone]] = np.abs(conf_sum - acc_sum)[monotone].sum(axis=1) / n
        alive[live[~monotone]] = False
        if not alive.any():
            break
    return result


# Smooth ECE is discretised as relplot's: residuals are spread linearly onto a grid of at least SMOOTH_GRID_MIN
# points (finer for narrow kernels), smoothed there, and read by linear interpolation at max(SMOOTH_MESH, 10 / sigma)
# points; the bandwidth comes from SMOOTH_STEPS bisection steps. Unlike relplot, the grid and the mesh stop growing
# at bandwidths under 0.005 (a smooth ECE under half a point: a constant or near-constant predictor, where relplot
# would spread 40,000 points per resample); the tests hold the value there to relplot's within 1e-4.
SMOOTH_GRID_MIN, SMOOTH_GRID_MAX, SMOOTH_MESH, SMOOTH_MESH_MAX = 1001, 2001, 200, 2000
SMOOTH_STEPS, SMOOTH_EPS = 10, 1e-4


def _to_grid(values_rows, weights_rows, points: int) -> np.ndarray:
    """Each row's weights spread linearly onto `points` equally spaced points of [0, 1], shape (rows, points)."""
    rows = values_rows.shape[0]
    pos = values_rows * (points - 1)
    left = np.clip(pos.astype(np.int64), 0, points - 2)
    frac = pos - left
    base = (np.arange(rows) * points)[:, None]
    out = np.bincount((left + base).reshape(-1), weights=((1 - frac) * weights_rows).reshape(-1),
                      minlength=rows * points)
    out += np.bincount((left + 1 + base).reshape(-1), weights=(frac * weights_rows).reshape(-1),
                       minlength=rows * points)
    return out.reshape(rows, points)


def _grid_points(sigma: float) -> int:
    return min(max(SMOOTH_GRID_MIN, round(20 / sigma) // 2 + 1), SMOOTH_GRID_MAX)


def _mesh_size(sigma: float) -> int:
    return min(max(round(10 / sigma), SMOOTH_MESH), SMOOTH_MESH_MAX)


def _mirrored_spectrum(grid_rows: np.ndarray) -> np.ndarray:
    """The spectrum of each row mirrored at 0 and 1 into one period of length 2 (points - 1).

    A Gaussian cut at distance 1/2 (relplot convolves with a kernel spanning half the unit interval each way)
    reaches at most one mirror image of a point, so a circular convolution over this period is relplot's
    reflected convolution, done by FFT for every row at once."""
    return np.fft.rfft(np.concatenate([grid_rows, grid_rows[:, -2:0:-1]], axis=1), axis=1)


def _kernel_spectrum(sigma: float, points: int) -> np.ndarray:
    period = 2 * (points - 1)
    offset = np.minimum(np.arange(period), period - np.arange(period)) / (points - 1)
    kernel = np.where(offset <= 0.5, np.exp(-offset * offset / (2 * sigma * sigma)), 0.0)
    return np.fft.rfft(kernel / (math.sqrt(2 * math.pi) * sigma))


def _smoothed_at(spectra: np.ndarray, kernels: np.ndarray, points: int, mesh: np.ndarray) -> np.ndarray:
    """Mirrored grid spectra (`_mirrored_spectrum`) convolved with kernel spectra (one per row, or one for all) and
    read at `mesh` (points of [0, 1]) by linear interpolation between grid points, as relplot's `interpolate`."""
    smooth = np.fft.irfft(spectra * kernels, n=2 * (points - 1), axis=1)
    pos = mesh * (points - 1)
    left = np.clip(pos.astype(np.int64), 0, points - 2)
    frac = pos - left
    return smooth[:, left] * (1 - frac) + smooth[:, left + 1] * frac


def _smooth_rows(conf_rows, corr_rows) -> tuple[np.ndarray, np.ndarray]:
    """Smooth ECE and its bandwidth per row: relplot's bisection for the fixed point sigma = smECE_sigma. Each step
    reads every row at its own bandwidth in one batched FFT (rows whose bandwidth needs a finer grid or mesh are
    read with the others of the same sizes)."""
    rows = conf_rows.shape[0]
    spectra: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # grid size -> (residual, density) spectra of every row

    def at(sigmas: np.ndarray) -> np.ndarray:
        out = np.empty(rows)
        sizes = np.array([(_grid_points(s), _mesh_size(s)) for s in sigmas])
        for points, mesh_size in np.unique(sizes, axis=0):
            pick = np.flatnonzero((sizes[:, 0] == points) & (sizes[:, 1] == mesh_size))
            if points not in spectra:
                spectra[points] = (_mirrored_spectrum(_to_grid(conf_rows, conf_rows - corr_rows, points)),
                                   _mirrored_spectrum(_to_grid(conf_rows, np.ones_like(conf_rows), points)))
            unique, which = np.unique(sigmas[pick], return_inverse=True)
            kernels = np.stack([_kernel_spectrum(float(s), points) for s in unique])[which]
            mesh = np.linspace(0.0, 1.0, mesh_size)
            residual, density = (_smoothed_at(s[pick], kernels, points, mesh) for s in spectra[points])
            out[pick] = np.abs(residual).sum(axis=1) / (density + SMOOTH_EPS).sum(axis=1)
        return out

    def wide_enough(sigmas: np.ndarray) -> np.ndarray:
        return (sigmas < 1e-3) | (sigmas < at(sigmas))

    start, end = np.ones(rows), np.zeros(rows)
    done = wide_enough(start)
    for _ in range(SMOOTH_STEPS):
        mid = (start + end) / 2
        ok = wide_enough(mid)
        end, start = np.where(ok, mid, end), np.where(ok, start, mid)
    sigma = np.where(done, 1.0, start)
    return at(sigma), sigma


def _smooth_curves(conf_rows, corr_rows, sigma: float, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the kernel-smoothed accuracy and the confidence density at `mesh`, relplot's way (its `smooth`)."""
    points = _grid_points(sigma)
    kernel = _kernel_spectrum(sigma, points)

    def read(weights: np.ndarray) -> np.ndarray:
        return _smoothed_at(_mirrored_spectrum(_to_grid(conf_rows, weights, points)), kernel, points, mesh)

    density = read(np.ones_like(conf_rows)) + SMOOTH_EPS
    return read(corr_rows) / density, density


def _classwise_rows(probs_rows, gold_rows, bins: int) -> np.ndarray:
    """Mean over option positions j of the equal-width ECE of p_j against [gold == j], over the examples that have
    an option j (a ragged task's short rows have NaN there)."""
    rows, n, k = probs_rows.shape
    edges = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    base = (np.arange(rows) * bins)[:, None]
    total, classes = np.zeros(rows), np.zeros(rows)
    for j in range(k):
        p = probs_rows[:, :, j]
        has = ~np.isnan(p)
        p = np.where(has, p, 0.0)
        flat = (np.searchsorted(edges, np.clip(p, _EPS, 1.0 - _EPS), side="right") + base).reshape(-1)
        sums = [np.bincount(flat, weights=w.reshape(-1), minlength=rows * bins).reshape(rows, bins)
                for w in (has * p, has * (gold_rows == j))]
        counted = has.sum(axis=1)  # a resample of a ragged task can miss a rare option position altogether
        with np.errstate(invalid="ignore", divide="ignore"):
            total += np.where(counted > 0, np.abs(sums[0] - sums[1]).sum(axis=1) / counted, 0.0)
        classes += counted > 0
    return total / classes


def _corp_rows(conf_rows, corr_rows) -> dict[str, np.ndarray]:
    """CORP's Brier split per row: the isotonic (PAV) fit of correctness on confidence, tied confidences pooled."""
    rows, n = conf_rows.shape
    order = np.argsort(conf_rows, axis=1, kind="stable")
    conf_sorted = np.take_along_axis(conf_rows, order, axis=1)
    corr_sorted = np.take_along_axis(corr_rows, order, axis=1)
    fitted = np.empty_like(conf_sorted)
    for r in range(rows):
        c, y = conf_sorted[r], corr_sorted[r]
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        counts = np.diff(np.r_[starts, n])
        fit = isotonic_regression(np.add.reduceat(y, starts) / counts, weights=counts.astype(float)).x
        fitted[r] = np.repeat(fit, counts)
    score = ((conf_sorted - corr_sorted) ** 2).mean(axis=1)
    recalibrated = ((fitted - corr_sorted) ** 2).mean(axis=1)
    base = corr_rows.mean(axis=1)
    unc = base * (1 - base)
    return {"mcb": score - recalibrated, "dsc": unc - recalibrated, "unc": unc}


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


def rms_ce(confidence, correct, bins: int = 10, equal_mass: bool = False) -> float:
    """RMS (L2) calibration error: sqrt(sum over bins of (n_b / n) * (accuracy_b - mean confidence_b)^2).

    Range [0, 1], lower is better; binning as in `ece`. It weighs large gaps more than ECE does. The plug-in
    estimate, biased upwards like ECE (`debiased_ce` removes the bias). Reference: Hendrycks et al. 2019 and
    Kumar, Liang & Ma 2019; torchmetrics' `BinaryCalibrationError(norm="l2")` is the same estimator.
    """
    conf, corr = _pair(confidence, correct)
    return float(_rms_rows(conf[None], corr[None], _check_bins(bins), bool(equal_mass))[0])


def debiased_ce(confidence, correct, bins: int = 10) -> float:
    """Debiased L2 calibration error (Kumar, Liang & Ma 2019, "Verified Uncertainty Calibration", NeurIPS).

    sqrt(max(0, sum_b (n_b / n) * [(mean confidence_b - accuracy_b)^2 - accuracy_b (1 - accuracy_b) / (n_b - 1)])):
    the plug-in squared gap of each bin minus its expected sampling noise, so a calibrated model scores near 0
    at any sample size instead of about sqrt(bins / n). Bins of one example add nothing. Bins are equal-mass as
    the authors' `uncertainty-calibration` package places them: the sorted confidences are cut into `bins`
    chunks (`np.array_split` sizes), each boundary is the midpoint between neighbouring chunks, and a confidence
    equal to a boundary belongs to the lower bin. Range [0, 1], lower is better.
    """
    conf, corr = _pair(confidence, correct)
    return float(_debiased_rows(conf[None], corr[None], _check_bins(bins))[0])


def ece_sweep(confidence, correct) -> float:
    """ECE-sweep (Roelofs, Cain, Shlens & Mozer 2022, "Mitigating Bias in Calibration Error Estimation", AISTATS).

    Equal-mass ECE (L1) at the largest bin count b for which the bins' accuracies are non-decreasing in
    confidence, found by trying b = 1, 2, ... and stopping at the first b that breaks monotonicity. Bins are
    chunks of the examples sorted by confidence (ties kept in input order), sizes as `np.array_split` gives.
    The bin count adapts to the data, which removes most of the bias a fixed count has. Range [0, 1], lower is
    better.
    """
    conf, corr = _pair(confidence, correct)
    return float(_sweep_rows(conf[None], corr[None])[0])


def smooth_ece(confidence, correct) -> tuple[float, float]:
    """Smooth ECE and its bandwidth sigma (Blasiok & Nakkiran 2023, "Smooth ECE: Principled Reliability Diagrams
    via Kernel Smoothing", ICLR 2024).

    smECE_sigma = (1/n) integral over t in [0, 1] of |sum_i K_sigma(t, f_i) (f_i - y_i)| dt with a Gaussian
    kernel reflected at 0 and 1, normalised by the smoothed density of the confidences; sigma is the fixed point
    sigma = smECE_sigma, found by bisection on [0, 1] (10 steps). Unlike binned ECE it is continuous in the
    predictions and a consistent calibration measure. Discretised as relplot 1.0.3's `smECE` (grid, mesh and
    bisection), which the tests hold it to. Range [0, 1], lower is better.
    """
    conf, corr = _pair(confidence, correct)
    value, sigma = _smooth_rows(conf[None], corr[None])
    return float(value[0]), float(sigma[0])


def smooth_reliability(confidence, correct, sigma: float | None = None, points: int = SMOOTH_MESH) -> pd.DataFrame:
    """The smooth reliability diagram (Blasiok & Nakkiran 2023; relplot's `smooth_diagram`): at `points` confidences
    t in [0, 1], the kernel-smoothed accuracy (Nadaraya-Watson with the reflected Gaussian of `smooth_ece`) and
    the density of the confidences (share of examples per unit of confidence). The bandwidth is `smooth_ece`'s
    unless given. Where the density is near 0 the curve is the kernel's extrapolation, not data (the drawn diagram
    leaves it out there)."""
    conf, corr = _pair(confidence, correct)
    sigma = smooth_ece(conf, corr)[1] if sigma is None else float(sigma)
    mesh = np.linspace(0.0, 1.0, points)
    accuracy, density = _smooth_curves(conf[None], corr[None], sigma, mesh)
    return pd.DataFrame({"confidence": mesh, "accuracy": accuracy[0], "density": density[0] / conf.size})


def classwise_ece(probs: Sequence, gold, bins: int = 10) -> float:
    """Class-wise ECE (Kull et al. 2019, "Beyond temperature scaling", NeurIPS): the mean over classes j of the
    equal-width binned ECE of p_j against [gold == j] over all examples.

    It reads every option's probability, not only the top one, so a model that is right about its answer but
    wrong about the alternatives shows. Classes are option positions; on a ragged task a position counts over
    the examples that have it. Range [0, 1], lower is better.
    """
    flat, starts, lengths, gpos = _ragged(probs, gold)
    matrix = _padded(flat, starts, lengths)
    return float(_classwise_rows(matrix[None], (gpos - starts)[None], _check_bins(bins))[0])


def brier_decomposition(confidence, correct) -> dict[str, float]:
    """The CORP split of the confidence's Brier score mean (c - y)^2 = MCB - DSC + UNC (Dimitriadis, Gneiting &
    Jordan 2021, "Stable reliability diagrams for probabilistic classifiers", PNAS).

    c_hat is the isotonic (pool-adjacent-violators) regression of correctness y on confidence c, tied
    confidences pooled. MCB = BS(c) - BS(c_hat), miscalibration: what recalibrating would save. DSC =
    UNC - BS(c_hat), discrimination: how much the confidence's ranking separates right from wrong. UNC =
    y_bar (1 - y_bar), the score of always saying the accuracy. A method that lowers the Brier score by sharper
    ranking raises DSC; one that fixes calibration lowers MCB. Each in [0, 1]; MCB lower, DSC higher is better.
    """
    conf, corr = _pair(confidence, correct)
    return {k: float(v[0]) for k, v in _corp_rows(conf[None], corr[None]).items()}


def augrc(confidence, correct) -> float:
    """Area under the generalized risk-coverage curve (Traub et al. 2024, "Overcoming Common Flaws in the
    Evaluation of Selective Classification Systems", NeurIPS).

    The mean over k = 1..n of (errors among the k most confident) / n: the rate of silent failures (accepted
    and wrong) as coverage grows, ties handled as in `aurc`. Unlike AURC it does not let a few confident
    errors at low coverage dominate. Equals (1 - AUROC) * acc * err + err^2 / 2 + err / (2n) exactly
    (err = 1 - acc). Range [0, 0.5], lower is better.
    """
    conf, corr = _pair(confidence, correct)
    return float(_selective_rows(_ranking_rows(conf[None], corr[None])[2])["augrc"][0])


def selective_accuracy(confidence, correct, coverage: float) -> float:
    """Accuracy on the ceil(coverage * n) most confident examples (the rest abstained), tied confidences at the
    cut counted at their average accuracy. HELM reports it as selective accuracy; a well-ranked confidence
    makes it rise above plain accuracy as coverage falls. Range [0, 1], higher is better."""
    conf, corr = _pair(confidence, correct)
    if not 0 < coverage <= 1:
        raise UserError(f"coverage must be in (0, 1], got {coverage!r}: use e.g. 0.8 for the top 80%")
    expected = _ranking_rows(conf[None], corr[None])[2]
    k = max(1, math.ceil(coverage * conf.size))
    return float(1.0 - expected[0, k - 1] / k)


def teacher_agreement(pred, teacher_pred) -> float:
    """Top-1 agreement: the share of examples where the student picks the teacher's answer. Range [0, 1]. A
    student can agree with a wrong teacher, so read it beside accuracy; distillation aims to raise it."""
    mine, theirs = _vector(pred, "pred"), _vector(teacher_pred, "teacher_pred")
    if mine.shape != theirs.shape:
        raise UserError(f"pred has {mine.size} values but teacher_pred has {theirs.size}: pass one of each per example")
    return float((mine == theirs).mean())


def teacher_kl(teacher_probs: Sequence, probs: Sequence) -> float:
    """Mean over examples of KL(teacher || student) over the options, sum_k t_k log(t_k / p_k), with the student's
    probabilities floored at 1e-12 as in `nll` (terms with t_k = 0 count 0). Range [0, ~27.6 + log k], 0 when the
    student's distribution over the options is the teacher's: what KD minimises, read on the test split."""
    return float(_kl_terms(teacher_probs, probs).mean())


def confidence_correlation(confidence, teacher_confidence) -> float:
    """Pearson correlation of the student's confidence with the teacher's over the examples: whether the student is
    sure where the teacher is. Range [-1, 1]; NaN when either is constant."""
    mine, theirs = _vector(confidence, "confidence"), _vector(teacher_confidence, "teacher_confidence")
    if mine.shape != theirs.shape:
        raise UserError(f"confidence has {mine.size} values but teacher_confidence has {theirs.size}: pass one of "
                        "each per example")
    return float(_correlation_rows(mine[None], theirs[None])[0])


def _kl_terms(teacher_probs, probs) -> np.ndarray:
    zeros = np.zeros(len(teacher_probs), dtype=np.int64)
    t_flat, starts, t_len, _ = _ragged(teacher_probs, zeros)
    s_flat, _, s_len, _ = _ragged(probs, zeros)
    if not np.array_equal(t_len, s_len):
        first = int(np.flatnonzero(t_len != s_len)[0])
        raise UserError(f"example {first} has {int(t_len[first])} teacher probabilities but {int(s_len[first])} "
                        "student ones: score both on the same options")
    terms = np.where(t_flat > 0, t_flat * (np.log(np.where(t_flat > 0, t_flat, 1.0))
                                           - np.log(np.clip(s_flat, _NLL_FLOOR, None))), 0.0)
    return np.add.reduceat(terms, starts)


def _correlation_rows(x_rows: np.ndarray, y_rows: np.ndarray) -> np.ndarray:
    x = x_rows - x_rows.mean(axis=1, keepdims=True)
    y = y_rows - y_rows.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * y).sum(axis=1) / np.sqrt((x * x).sum(axis=1) * (y * y).sum(axis=1))


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
    predicted and gold class of each example and the probability of every option (`_padded`; all three None for
    open-answer rows, where classes are not labels)."""

    conf: np.ndarray
    corr: np.ndarray
    brier: np.ndarray
    nll: np.ndarray
    pred: np.ndarray | None
    gold: np.ndarray | None
    probs: np.ndarray | None


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
                   gold.astype(np.int64) if labelled else None,
                   _padded(*_ragged(probs, gold)[:3]) if labelled else None)


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


def _block_metrics(cols: Columns, index: np.ndarray, bins: int, equal_mass: bool,
                   metrics: Sequence[str] = METRICS) -> dict:
    """`metrics` (every one by default) on each row of `index` (resamples of example indices, one per row);
    metrics computed together (ECE and MCE, the ranking ones, smooth ECE and its bandwidth, CORP's terms) are
    computed once."""
    conf_rows, corr_rows = cols.conf[index], cols.corr[index]
    labelled = cols.pred is not None
    groups = {
        ("acc",): lambda: (corr_rows.mean(axis=1),),
        ("ece", "mce"): lambda: _ece_mce_rows(conf_rows, corr_rows, bins, equal_mass),
        ("brier",): lambda: (cols.brier[index].mean(axis=1),),
        ("nll",): lambda: (cols.nll[index].mean(axis=1),),
        ("auroc", "aurc", "augrc", "acc_cov80", "acc_cov50"): lambda: _ranking_metrics(conf_rows, corr_rows),
        ("conf_gap",): lambda: (conf_rows.mean(axis=1) - corr_rows.mean(axis=1),),
        ("macro_f1",): lambda: (_macro_f1_rows(cols.pred[index], cols.gold[index]) if labelled else None,),
        ("rms_ce",): lambda: (_rms_rows(conf_rows, corr_rows, bins, equal_mass),),
        ("debiased_ce",): lambda: (_debiased_rows(conf_rows, corr_rows, bins),),
        ("ece_sweep",): lambda: (_sweep_rows(conf_rows, corr_rows),),
        ("smece", "smece_sigma"): lambda: _smooth_rows(conf_rows, corr_rows),
        ("classwise_ece",): lambda: (_classwise_rows(cols.probs[index], cols.gold[index], bins) if labelled else None,),
        ("mcb", "dsc", "unc"): lambda: tuple(_corp_rows(conf_rows, corr_rows).values()),
    }
    out = {}
    for names, compute in groups.items():
        if any(name in metrics for name in names):
            for name, values in zip(names, compute()):
                out[name] = np.full(len(index), np.nan) if values is None else values
    return {name: out[name] for name in metrics}


def _ranking_metrics(conf_rows, corr_rows) -> tuple[np.ndarray, ...]:
    auroc_r, aurc_r, expected = _ranking_rows(conf_rows, corr_rows)
    return (auroc_r, aurc_r, *_selective_rows(expected).values())

"""Held-out recalibration, fitted on a validation split and applied to test predictions: the two standard answers
to "would a post-hoc fix have done as well?". A results row `<method>+ts` is temperature scaling, `<method>+iso`
isotonic regression; `fit_recalibrations` fits both per (method, seed) on the val predictions pooled over the ID
tasks, never on test.

**Temperature scaling** (Guo et al. 2017).

Stored predictions hold probabilities, not logits, so the logits are taken as log p (any per-example constant
cancels in the softmax): scaled probabilities are softmax(log(p) / T). T > 1 softens, T < 1 sharpens, and the
argmax never changes. Probabilities of exactly 0 are floored at the smallest positive double before the log, so
they stay (numerically) 0 at any T in the fitted range. Ragged probability vectors are allowed.

**Isotonic regression** (Zadrozny & Elkan 2002), top-label: the non-decreasing map from confidence to the rate of
being right that fits the val predictions best (pool adjacent violators; sklearn's `IsotonicRegression`, clipped
outside the fitted range). Applied to a test prediction, it replaces the confidence in the predicted answer and
scales the other options' probabilities to fill the rest, so the answer, its correctness and accuracy stay as
they were (the map is a step function: it can tie confidences, so AUROC may move). A map can reach 0 or 1, which
NLL punishes without mercy: that is isotonic regression's known weakness, and shown as it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from sklearn.isotonic import IsotonicRegression

from trustbench.harness.errors import UserError
from trustbench.harness.metrics import OPEN_ANSWER, _pair, _ragged
from trustbench.harness.store import Manifest, RunDir, read_cell

T_MIN, T_MAX = 0.05, 20.0
TS_SUFFIX = "+ts"  # a method's results row after temperature scaling: `finetune+ts`
ISO_SUFFIX = "+iso"  # ... after isotonic recalibration: `finetune+iso`
SUFFIXES = (TS_SUFFIX, ISO_SUFFIX)
_LOG_FLOOR = np.finfo(np.float64).tiny


def _segment_log_softmax(z: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """log softmax of every segment [starts[i], starts[i] + lengths[i]) of the flat vector z."""
    top = np.repeat(np.maximum.reduceat(z, starts), lengths)
    shifted = z - top
    log_norm = np.log(np.add.reduceat(np.exp(shifted), starts))
    return shifted - np.repeat(log_norm, lengths)


def fit_temperature(probs, gold) -> float:
    """The temperature T in [0.05, 20] minimising the mean NLL of softmax(log(p) / T) on (probs, gold).

    `probs` is one probability vector per example (ragged allowed), `gold` the right index in each.
    The NLL is convex in 1/T, so a bounded scalar search over log T finds the global minimum (or the bound).
    """
    if len(probs) == 0:
        raise UserError("cannot fit a temperature on no examples: the validation split is empty; give it examples "
                        "or turn temperature scaling off")
    flat, starts, lengths, gpos = _ragged(probs, gold)
    if ((flat < 0) | ~np.isfinite(flat)).any():
        raise UserError("probs must be finite and non-negative to fit a temperature: pass probabilities, not logits")
    logits = np.log(np.maximum(flat, _LOG_FLOOR))

    def mean_nll(log_t: float) -> float:
        logp = _segment_log_softmax(logits * math.exp(-log_t), starts, lengths)
        return float(-logp[gpos].mean())

    res = minimize_scalar(
        mean_nll, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-7}
    )
    return float(math.exp(res.x))


def apply_temperature(predictions: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """A copy of `predictions` with `probs` = softmax(log(probs) / T) and `pred`, `confidence` (the max scaled
    probability) and `correct` recomputed; every other column is kept. Open-answer rows (a `gold_answer` column)
    keep their answer: only its probability is rescaled, sigmoid(logit(p) / T)."""
    if not (isinstance(temperature, (int, float, np.integer, np.floating)) and math.isfinite(temperature)
            and temperature > 0):
        raise UserError(f"temperature must be a positive finite number, got {temperature!r}: refit it on the val split")
    missing = [c for c in ("gold", "probs") if c not in predictions.columns]
    if missing:
        raise UserError(f"predictions lack column(s) {', '.join(missing)}: write predictions with gold and probs")
    out = predictions.copy()
    if len(out) == 0:
        return out
    flat, starts, lengths, gpos = _ragged(list(predictions["probs"]), predictions["gold"].to_numpy())
    if ((flat < 0) | ~np.isfinite(flat)).any():
        raise UserError("probs must be finite and non-negative to apply a temperature: pass probabilities")
    scaled = np.exp(_segment_log_softmax(np.log(np.maximum(flat, _LOG_FLOOR)) / float(temperature), starts, lengths))
    rows = np.split(scaled, starts[1:])
    out["probs"] = pd.Series(rows, index=out.index, dtype=object)
    if OPEN_ANSWER in predictions.columns:  # probs = [p(its answer), 1 - p]: the answer stands, p is rescaled
        out["confidence"] = [float(r[0]) for r in rows]
        return out
    pred = np.array([int(np.argmax(r)) for r in rows], dtype=np.int64)
    out["pred"] = pred
    out["confidence"] = np.maximum.reduceat(scaled, starts)
    out["correct"] = pred == predictions["gold"].to_numpy().astype(np.int64)
    if "parsed" in predictions.columns:  # an answer the model never gave stays wrong
        out["correct"] &= predictions["parsed"].to_numpy(dtype=bool)
    return out


# ------------------------------------------------------------------------------------------- isotonic regression
@dataclass(frozen=True)
class IsotonicMap:
    """A fitted non-decreasing step map from confidence to accuracy: its knots (x ascending) and values."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(confidence, self.x, self.y)


def fit_isotonic(confidence, correct) -> IsotonicMap:
    """The isotonic regression of `correct` on `confidence` (the val split's), values in [0, 1]."""
    conf, corr = _pair(confidence, correct)
    fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, corr)
    return IsotonicMap(np.asarray(fitted.X_thresholds_, dtype=float), np.asarray(fitted.y_thresholds_, dtype=float))


def apply_isotonic(predictions: pd.DataFrame, mapping: IsotonicMap) -> pd.DataFrame:
    """A copy of `predictions` whose confidence is `mapping(confidence)`, the predicted option's probability set
    to it and the others scaled to fill the rest (spread evenly when they were all 0); answers stay."""
    out = predictions.copy()
    if len(out) == 0:
        return out
    open_answer = OPEN_ANSWER in predictions.columns
    new = mapping(predictions["confidence"].to_numpy(dtype=float))
    chosen = np.zeros(len(out), dtype=np.int64) if open_answer else predictions["pred"].to_numpy(dtype=np.int64)
    rows = []
    for probs, top, conf in zip(predictions["probs"], chosen, new):
        probs = np.asarray(probs, dtype=float)
        rest = probs.sum() - probs[top]
        scaled = (probs * (1 - conf) / rest if rest > 0
                  else np.full(probs.size, (1 - conf) / max(probs.size - 1, 1)))
        scaled[top] = conf
        rows.append(scaled)
    out["probs"] = pd.Series(rows, index=out.index, dtype=object)
    out["confidence"] = new
    return out


# ------------------------------------------------------------------------------------------- both, over a run
@dataclass(frozen=True)
class Recalibration:
    """One (method, seed)'s fitted recalibrations."""

    temperature: float
    isotonic: IsotonicMap


def fit_recalibrations(run: RunDir, manifest: Manifest) -> dict[tuple[str, int], Recalibration]:
    """{(method, seed): Recalibration} fitted on that (method, seed)'s val predictions pooled over all ID tasks;
    empty when the run has recalibration off."""
    if not manifest.temperature_scaling:
        return {}
    pooled: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for (method, task, seed), path in run.cells("val").items():
        if task in manifest.tasks and manifest.tasks[task].domain == "id":
            pooled.setdefault((method, seed), []).append(read_cell(path))
    fits = {}
    for key in sorted(pooled):
        frames = pooled[key]
        try:
            fits[key] = Recalibration(
                fit_temperature([np.asarray(p, dtype=float) for f in frames for p in f["probs"]],
                                np.concatenate([f["gold"].to_numpy(dtype=int) for f in frames])),
                fit_isotonic(np.concatenate([f["confidence"].to_numpy(dtype=float) for f in frames]),
                             np.concatenate([f["correct"].to_numpy(dtype=float) for f in frames])))
        except UserError as error:
            where = run.path / "predictions" / "val" / f"{key[0]}__*__s{key[1]}.parquet"
            raise UserError(f"recalibration on {where}: {error}") from None
    return fits


def base_method(method: str) -> str:
    """The method a results row belongs to: `kd` for `kd`, `kd+ts` and `kd+iso`."""
    for suffix in SUFFIXES:
        if method.endswith(suffix):
            return method.removesuffix(suffix)
    return method


def is_recalibrated(method: str) -> bool:
    return base_method(method) != method


def recalibrated(frame: pd.DataFrame, method: str, fit: Recalibration | None) -> pd.DataFrame:
    """A results row's test predictions: `frame` as stored, or with the row's recalibration applied."""
    if method.endswith(TS_SUFFIX):
        return apply_temperature(frame, fit.temperature)
    if method.endswith(ISO_SUFFIX):
        return apply_isotonic(frame, fit.isotonic)
    return frame

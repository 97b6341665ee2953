"""Post-hoc temperature scaling (Guo et al. 2017), fitted on a validation split and applied to test predictions.

Stored predictions hold probabilities, not logits, so the logits are taken as log p (any per-example constant
cancels in the softmax): scaled probabilities are softmax(log(p) / T). T > 1 softens, T < 1 sharpens, and the
argmax never changes. Probabilities of exactly 0 are floored at the smallest positive double before the log, so
they stay (numerically) 0 at any T in the fitted range. Ragged probability vectors are allowed.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from trustbench.harness.errors import UserError
from trustbench.harness.metrics import OPEN_ANSWER, _ragged

T_MIN, T_MAX = 0.05, 20.0
TS_SUFFIX = "+ts"  # a method's results row after temperature scaling: `finetune+ts`
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

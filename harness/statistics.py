"""Statistics, written once: every interval, bootstrap and chance rule that results, leaderboards, the comparison,
the gate and the methods' own tables show.

**Drawing.** Every bootstrap resamples example indices the same way, `resample_indices(rng, n, rows)`: one draw
of n indices with replacement per resample (`rng.integers(0, n, size=(rows, n))`), in blocks of about
`BLOCK_CELLS` (resample, example) cells so that memory stays bounded; the blocks continue one random stream, so
the draws do not depend on the block size.

**Reading.** A two-sided interval is `percentile_interval(point, values)`: the alpha/2 and 1 - alpha/2 percentiles
of the finite resampled values, widened when needed to contain the point estimate (ECE and MCE are biased upwards,
and for a well-calibrated model the whole bootstrap can lie above the point). A one-sided bound (the gate's) is
`lower_bound(values, alpha)`, the alpha-quantile.

**Three bootstraps.**
- `summarize(predictions)`: one results row (a method x task x seed): every metric with its interval over the
  row's examples (seeded by `seed`).
- `bootstrap(results, frame_of, ...)` -> `Draws`: a cell (method x task) over test examples *and* seeds, which the
  leaderboard, the comparison and method tables read. For one method x task scored with seeds S, a resample draws
  n example indices with replacement (the same indices for every seed) and |S| seeds with replacement, and
  computes the metric's mean over the drawn seeds on the drawn examples. The example draws depend only on the task
  (and n), the seed draws only on the set of seeds, so every method's resamples of a task are the same ones:
  differences between methods (and the ID and OOD averages, which average the resampled values over tasks) are
  paired. With one seed it is the bootstrap over examples; with several, seed-to-seed variation is in the interval
  too (a t-interval over 3 seed means is not: it said "55.0 [55.0, 55.0]" for a method that predicted the same
  answer under every seed). The point estimate is the mean over seeds of each seed's value.
- `paired_bootstrap(base, cand, ...)`: the gate's paired difference of two runs' cells, one draw of example
  indices applied to both runs and every shared seed.

**Many cells at once.** `holm(p_values, alpha)`: Holm's step-down, so that the chance of flagging any of many
unchanged cells stays at alpha (the gate's default; a per-cell rule at alpha flags some cell of 18 unchanged ones
about 60% of the time).

**Chance.** A number means something only against chance: `at_chance(lower, majority)` is an accuracy whose 95%
lower bound does not clear the task's majority rate; `cell_at_chance(draws, method, tasks, majority)` reads it for
a cell pooled over seeds (the leaderboard's mark, and every method table's), never seed by seed (a per-seed row of
150 questions is at chance more often than the cell). `collapsed(top_share)` is a predictor that gives one answer
to `COLLAPSE_SHARE` or more of the questions: its accuracy is that answer's base rate. `small_sample(n)`: a
calibration estimate (`SAMPLE_SENSITIVE`) from fewer than `SMALL_SAMPLE` predictions, marked in every report.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from trustbench.harness.errors import UserError
from trustbench.harness.metrics import (METRICS, Columns, _block_metrics, _check_bins, _columns, _pair, _smooth_curves,
                                       smooth_ece, smooth_reliability)

CELL_METRICS = METRICS  # what a cell's (examples x seeds) bootstrap reads: every estimator
ALPHA = 0.05
BLOCK_CELLS = 1 << 19  # resampled (resample, example) cells per block of work
COLLAPSE_SHARE = 0.9  # a predictor whose most frequent answer is this share or more of its answers is collapsed
SMALL_SAMPLE = 300  # fewer predictions than this and a calibration estimate is mostly its bias and noise (HELM)
SAMPLE_SENSITIVE = ("ece", "mce", "rms_ce", "debiased_ce", "ece_sweep", "smece", "smece_sigma", "classwise_ece", "mcb",
                    "dsc")  # the calibration estimators whose bias or noise the rule is about


# ---------------------------------------------------------------------------------------------- drawing, reading
def resample_blocks(rng: np.random.Generator, n: int, n_boot: int, width: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """(first resample, indices) blocks covering `n_boot` resamples of `n` example indices each; `width` is the work
    per (resample, example) cell (equal-mass and debiased binning compare each example with every bin edge:
    `bins`), which shrinks the blocks."""
    block = max(1, BLOCK_CELLS // (n * width))
    for lo in range(0, n_boot, block):
        yield lo, resample_indices(rng, n, min(block, n_boot - lo))


def resample_indices(rng: np.random.Generator, n: int, rows: int) -> np.ndarray:
    """`rows` draws of `n` example indices with replacement, shape (rows, n)."""
    return rng.integers(0, n, size=(rows, n))


def percentile_interval(point: float, values: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """The (1 - alpha) percentile interval of the finite `values`, widened to contain `point` when it is finite;
    NaN when no resampled value is finite."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    if math.isfinite(point):
        lo, hi = min(lo, point), max(hi, point)
    return float(lo), float(hi)


def interval(point: float, values: np.ndarray) -> tuple[float, float]:
    """A cell's 95% interval (`percentile_interval`); NaN for a point that is not defined."""
    return percentile_interval(point, values) if math.isfinite(point) else (math.nan, math.nan)


def lower_bound(values: np.ndarray, alpha: float) -> float:
    """The one-sided (1 - alpha) lower bound of resampled values: their alpha-quantile."""
    return float(np.quantile(values, alpha))


# ---------------------------------------------------------------------------------------------- one results row
def summarize(predictions: pd.DataFrame, bins: int = 10, equal_mass: bool = False, n_boot: int = 1000, seed: int = 0,
              alpha: float = ALPHA) -> dict:
    """Every metric in `harness.metrics.METRICS` with a (1 - alpha) percentile-bootstrap interval over the row's
    examples.

    `predictions` has columns `gold`, `pred`, `confidence`, `probs` (ragged allowed) and `correct`. Returns
    `{"n": n, "acc": .., "acc_lo": .., "acc_hi": .., ...}`. The resamples come from `numpy.random.default_rng(seed)`
    (the same resamples for every metric); resamples where a metric is undefined (AUROC with one class) are left out
    of its interval. With `n_boot=0` the bounds are NaN. Deterministic for a given seed.
    """
    bins = _check_bins(bins)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise UserError(f"n_boot must be a non-negative integer, got {n_boot!r}: use e.g. n_boot=1000")
    if not 0 < alpha < 1:
        raise UserError(f"alpha must be in (0, 1), got {alpha!r}: use alpha=0.05 for 95% intervals")
    cols = _columns(predictions)
    n = cols.conf.size
    point = _block_metrics(cols, np.arange(n)[None], bins, bool(equal_mass))
    draws = {m: np.empty(int(n_boot)) for m in METRICS}
    rng = np.random.default_rng(seed)
    for lo, idx in resample_blocks(rng, n, int(n_boot), bins):
        got = _block_metrics(cols, idx, bins, bool(equal_mass))
        for m in METRICS:
            draws[m][lo:lo + len(idx)] = got[m]
    out: dict = {"n": int(n)}
    for m in METRICS:
        out[m] = float(point[m][0])
        out[f"{m}_lo"], out[f"{m}_hi"] = percentile_interval(out[m], draws[m], alpha)
    return out


def smooth_reliability_band(confidence, correct, n_boot: int = 200, seed: int = 0, alpha: float = ALPHA) -> dict:
    """The smooth reliability diagram with its (1 - alpha) pointwise bootstrap band over examples, relplot's style:
    every resample is smoothed with the point estimate's bandwidth. Returns {"curve": frame of confidence,
    accuracy, lo, hi, density; "smece", "sigma", "n"}."""
    conf, corr = _pair(confidence, correct)
    value, sigma = smooth_ece(conf, corr)
    curve = smooth_reliability(conf, corr, sigma)
    resampled = np.concatenate([_smooth_curves(conf[idx], corr[idx], sigma, curve["confidence"].to_numpy())[0]
                                for _, idx in resample_blocks(np.random.default_rng(seed), conf.size, n_boot)])
    lo, hi = np.percentile(resampled, [100 * alpha / 2, 100 * (1 - alpha / 2)], axis=0)
    return {"curve": curve.assign(lo=lo, hi=hi), "smece": value, "sigma": sigma, "n": int(conf.size)}


# ---------------------------------------------------------------------------------------------- cells: examples x seeds
@dataclass(frozen=True)
class Draws:
    """Per (method, task): the point value and the bootstrap values of each metric."""

    point: dict[tuple[str, str], dict[str, float]]
    values: dict[tuple[str, str], dict[str, np.ndarray]]
    n_boot: int

    def average(self, method: str, tasks: list[str], metric: str) -> tuple[float, np.ndarray] | None:
        """The unweighted mean over `tasks` (point, resampled values); None when the method lacks one of them."""
        keys = [(method, task) for task in tasks]
        if not keys or any(k not in self.point for k in keys):
            return None
        return (float(np.mean([self.point[k][metric] for k in keys])),
                np.mean([self.values[k][metric] for k in keys], axis=0))


def bootstrap(results: pd.DataFrame, frame_of: Callable[[str, str, int], pd.DataFrame], n_boot: int, bins: int,
              equal_mass: bool) -> Draws:
    """Draws for every (method, task) of `results`; `frame_of(method, task, seed)` gives a results row's
    predictions (`X+ts` and `X+iso` rows recalibrated)."""
    point, values = {}, {}
    for (method, task), rows in results.groupby(["method", "task"], sort=True):
        seeds = sorted(int(s) for s in rows["seed"])
        frames = [frame_of(method, task, seed).sort_values("example_id", kind="mergesort") for seed in seeds]
        n = len(frames[0])
        examples, picks = cell_draws(task, n, seeds, n_boot)
        per_seed = [_cell_metrics(frame, examples, bins, equal_mass) for frame in frames]
        points = [_cell_metrics(frame, np.arange(n)[None], bins, equal_mass) for frame in frames]
        point[method, task] = {m: float(np.mean([p[m][0] for p in points])) for m in CELL_METRICS}
        values[method, task] = {m: over_seeds(np.stack([p[m] for p in per_seed]), picks) for m in CELL_METRICS}
    return Draws(point, values, n_boot)


def cell_draws(task: str, n: int, seeds: list[int], n_boot: int) -> tuple[np.ndarray, np.ndarray]:
    """A cell's resamples: example indices, shape (n_boot, n), that depend only on the task and n, and seed picks,
    shape (n_boot, |seeds|), that depend only on the set of seeds, so every method's cells share them."""
    return (resample_indices(_rng("examples", task, n), n, n_boot),
            _rng("seeds", *seeds).integers(0, len(seeds), size=(n_boot, len(seeds))))


def over_seeds(per_seed: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Each resample's mean over its drawn seeds: `per_seed` holds (seeds, n_boot) values on the drawn examples."""
    columns = np.arange(per_seed.shape[1])
    return np.mean([per_seed[picks[:, j], columns] for j in range(picks.shape[1])], axis=0)


def _cell_metrics(frame: pd.DataFrame, index: np.ndarray, bins: int, equal_mass: bool) -> dict[str, np.ndarray]:
    got = _block_metrics(_columns(frame), index, bins, equal_mass)
    return {m: got[m] for m in CELL_METRICS}


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))


# ---------------------------------------------------------------------------------------------- two runs, paired
def paired_bootstrap(base: list[Columns], cand: list[Columns], metrics: tuple[str, ...], bins: int, equal_mass: bool,
                     n_boot: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Resampled cand - base of each of `metrics`, averaged over seeds; shape (n_boot,) each.

    `base` and `cand` hold one `Columns` per shared seed, aligned by example. Each resample is one draw of n example
    indices, applied to both runs and to every seed.
    """
    n = base[0].conf.size
    diffs = {m: np.zeros(n_boot) for m in metrics}
    for lo, idx in resample_blocks(rng, n, n_boot, bins):
        for b, c in zip(base, cand):
            got_b = _block_metrics(b, idx, bins, equal_mass, metrics)
            got_c = _block_metrics(c, idx, bins, equal_mass, metrics)
            for m in metrics:
                diffs[m][lo:lo + len(idx)] += got_c[m] - got_b[m]
    return {m: d / len(base) for m, d in diffs.items()}


def holm(p_values, alpha: float) -> np.ndarray:
    """Holm's step-down rejections (Holm 1979): with the m p-values sorted, reject the i-th smallest (i = 0..m-1)
    while it is <= alpha / (m - i); stop at the first that is not. The chance of any false rejection over the
    whole family stays at most alpha, whatever the dependence between the tests. NaN p-values are never rejected
    (and still count in m)."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
    passed = p[order] <= alpha / (p.size - np.arange(p.size))
    rejected = np.zeros(p.size, dtype=bool)
    rejected[order] = np.cumprod(passed).astype(bool)
    return rejected


# ---------------------------------------------------------------------------------------------- chance
def at_chance(lower: float, majority: float) -> bool:
    """An accuracy whose 95% lower bound (the point when there is no interval) does not clear the majority rate."""
    return bool(lower <= majority)


def cell_at_chance(draws: Draws, method: str, tasks: list[str], majority: dict[str, float]) -> bool:
    """Whether `method`'s accuracy on any of `tasks`, pooled over seeds (its cell's interval over examples and
    seeds), does not clear that task's majority rate (`majority[task]`; a task without one is not judged)."""
    for task in tasks:
        if task in majority and math.isfinite(majority[task]):
            point, values = draws.average(method, [task], "acc")
            low, _ = interval(point, values)
            if math.isfinite(low) and at_chance(low, majority[task]):
                return True
    return False


def majority_rates(results: pd.DataFrame, method: str) -> dict[str, float]:
    """Each task's majority rate as `method`'s results rows record it (the largest over its seeds)."""
    rows = results[results["method"] == method] if "majority" in results else results.iloc[:0]
    return rows.dropna(subset=["majority"]).groupby("task")["majority"].max().to_dict() if len(rows) else {}


def collapsed(top_share: float) -> bool:
    """A predictor whose most frequent answer is `COLLAPSE_SHARE` or more of its answers."""
    return bool(top_share >= COLLAPSE_SHARE)


def small_sample(n: int) -> bool:
    """A calibration estimate from fewer than `SMALL_SAMPLE` predictions: binned ECE's upward bias at that size is
    of the order of the differences people report (HELM's calibration metrics ask for about 300 examples)."""
    return bool(n < SMALL_SAMPLE)

"""Intervals that include every source of noise: a bootstrap over test examples and over seeds.

For one method x task scored with seeds S, a resample draws n example indices with replacement (the same indices
for every seed) and |S| seeds with replacement, and computes the metric's mean over the drawn seeds on the drawn
examples. The example draws depend only on the task (and n), the seed draws only on the set of seeds, so every
method's resamples of a task are the same ones: differences between methods (and the ID and OOD averages, which
average the resampled values over tasks) are paired, as in the gate. With one seed it is the bootstrap over
examples; with several, seed-to-seed variation is in the interval too (a t-interval over 3 seed means is not: it
said "55.0 [55.0, 55.0]" for a method that predicted the same answer under every seed).

Intervals are the 2.5 and 97.5 percentiles of the resampled values, widened when needed to contain the point
estimate (the mean over seeds of each seed's value), as for `results.csv`.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from trustbench.harness.metrics import _block_metrics, _columns

METRICS = ("acc", "ece", "brier", "conf_gap", "macro_f1")
ALPHA = 0.05


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


def interval(point: float, values: np.ndarray) -> tuple[float, float]:
    """The percentile interval of `values`, widened to contain `point`; NaN without resamples."""
    finite = values[np.isfinite(values)]
    if not finite.size or not np.isfinite(point):
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(min(lo, point)), float(max(hi, point))


def bootstrap(results: pd.DataFrame, frame_of: Callable[[str, str, int], pd.DataFrame], n_boot: int, bins: int,
              equal_mass: bool) -> Draws:
    """Draws for every (method, task) of `results`; `frame_of(method, task, seed)` gives a results row's
    predictions (`X+ts` rows with their temperature applied)."""
    point, values = {}, {}
    for (method, task), rows in results.groupby(["method", "task"], sort=True):
        seeds = sorted(int(s) for s in rows["seed"])
        frames = [frame_of(method, task, seed).sort_values("example_id", kind="mergesort") for seed in seeds]
        n = len(frames[0])
        examples = _rng("examples", task, n).integers(0, n, size=(n_boot, n))
        picks = _rng("seeds", *seeds).integers(0, len(seeds), size=(n_boot, len(seeds)))
        per_seed = [_metrics(frame, examples, bins, equal_mass) for frame in frames]
        point[method, task] = {m: float(np.mean([_metrics(f, np.arange(n)[None], bins, equal_mass)[m][0]
                                                 for f in frames])) for m in METRICS}
        values[method, task] = {m: np.mean([np.stack([p[m] for p in per_seed])[picks[:, j], np.arange(n_boot)]
                                            for j in range(len(seeds))], axis=0) for m in METRICS}
    return Draws(point, values, n_boot)


def _metrics(frame: pd.DataFrame, index: np.ndarray, bins: int, equal_mass: bool) -> dict[str, np.ndarray]:
    got = _block_metrics(_columns(frame), index, bins, equal_mass)
    return {m: got[m] for m in METRICS}


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, key)).encode()))

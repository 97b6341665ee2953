"""The results table: one row per stored test cell, plus temperature-scaled (`<method>+ts`) rows.

A pure function of the run directory (its manifest and predictions, read through `harness.store`), so it can be
rebuilt at any time with no model in sight. Bootstrap seeds come from (method, task, seed), so rebuilding gives
identical numbers.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from trustbench.harness.calibration import OPEN_ANSWER, TS_SUFFIX, apply_temperature, fit_temperature
from trustbench.harness.errors import UserError
from trustbench.harness.metrics import METRICS, most_frequent_share
from trustbench.harness.statistics import at_chance, collapsed, summarize
from trustbench.harness.store import Manifest, RunDir, read_cell

ID_COLUMNS = ("suite", "method", "task", "domain", "seed", "n")
COLUMNS = (
    ID_COLUMNS
    + tuple(c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi"))
    + ("temperature", "config_hash", "n_unparsed")
    + ("majority", "top_share", "at_chance", "collapsed", "oracle")
)

__all__ = ["COLUMNS", "METRICS", "TS_SUFFIX", "bootstrap_seed", "compute_results", "fit_temperatures"]


def bootstrap_seed(method: str, task: str, seed: int) -> int:
    """A reproducible bootstrap seed for one results row."""
    return zlib.crc32(f"{method}|{task}|{seed}".encode())


def _domain(manifest: Manifest, task: str, path: Path) -> str:
    if task not in manifest.tasks:
        raise UserError(f"task {task!r} of {path} is not in the run's manifest.json: delete the file, or rerun "
                        f"`trustbench run {manifest.suite}`")
    return manifest.tasks[task].domain


def _row(manifest: Manifest, path, method, task, domain, seed, frame, temperature) -> dict:
    settings = manifest.metrics
    try:
        summary = summarize(frame, bins=settings.bins, equal_mass=settings.equal_mass, n_boot=settings.n_boot,
                            # `X+ts` uses X's resamples: paired intervals, and identical ones for accuracy
                            seed=bootstrap_seed(method.removesuffix(TS_SUFFIX), task, seed))
    except UserError as error:
        raise UserError(f"{path} ({method}): {error}") from None
    row = {"suite": manifest.suite, "method": method, "task": task, "domain": domain, "seed": int(seed),
           "n": int(summary.get("n", len(frame)))}
    for metric in METRICS:
        for column in (metric, f"{metric}_lo", f"{metric}_hi"):
            value = summary.get(column, math.nan)
            row[column] = math.nan if value is None else float(value)
    row["temperature"] = float(temperature)
    row["config_hash"] = manifest.suite_hash
    row["n_unparsed"] = int((~frame["parsed"].astype(bool)).sum()) if "parsed" in frame else 0  # cot: no "Answer:"
    return {**row, **diagnostics(frame, row["acc"], row["acc_lo"])}


def diagnostics(frame: pd.DataFrame, acc: float, acc_lo: float) -> dict:
    """Chance and collapse: the task's majority rate (of the gold answers scored), the share of the most frequent
    prediction, whether the accuracy's 95% lower bound fails to clear the majority rate (`at_chance`), whether
    the predictions are mostly one answer (`collapsed`; the rules are `harness.statistics`'), and whether the row
    is an oracle reference (a prior taken from the scored split itself)."""
    open_answer = OPEN_ANSWER in frame
    majority = most_frequent_share(frame[OPEN_ANSWER] if open_answer else frame["gold"])
    top_share = most_frequent_share(frame["answer"] if open_answer else frame["pred"])
    lower = acc if math.isnan(acc_lo) else acc_lo
    return {"majority": majority, "top_share": top_share, "at_chance": at_chance(lower, majority),
            "collapsed": collapsed(top_share),
            "oracle": bool(frame["oracle"].any()) if "oracle" in frame else False}


def fit_temperatures(run: RunDir, manifest: Manifest) -> dict[tuple[str, int], float]:
    """{(method, seed): T} fitted on that (method, seed)'s val predictions pooled over all ID tasks."""
    pooled: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for (method, task, seed), path in run.cells("val").items():
        if _domain(manifest, task, path) == "id":
            pooled.setdefault((method, seed), []).append(read_cell(path))
    temps = {}
    for key in sorted(pooled):
        frames = pooled[key]
        probs = [np.asarray(p, dtype=float) for frame in frames for p in frame["probs"]]
        gold = np.concatenate([frame["gold"].to_numpy(dtype=int) for frame in frames])
        try:
            temps[key] = float(fit_temperature(probs, gold))
        except UserError as error:
            where = run.path / "predictions" / "val" / f"{key[0]}__*__s{key[1]}.parquet"
            raise UserError(f"temperature scaling on {where}: {error}") from None
    return temps


def compute_results(run_dir: str | Path | RunDir) -> pd.DataFrame:
    """One row per test cell (plus `<method>+ts` rows when temperature scaling is on)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    manifest = run.load()
    run.check_cells(manifest)
    files = run.cells("test")
    if not files:
        raise UserError(f"no test predictions under {run.path / 'predictions' / 'test'}: rerun "
                        f"`trustbench run {manifest.suite}` (it writes them)")
    temps = fit_temperatures(run, manifest) if manifest.temperature_scaling else {}
    rows = []
    for (method, task, seed), path in sorted(files.items()):
        domain = _domain(manifest, task, path)
        frame = read_cell(path)
        rows.append(_row(manifest, path, method, task, domain, seed, frame, math.nan))
        if (method, seed) in temps:
            t = temps[(method, seed)]
            try:
                scaled = apply_temperature(frame, t)
            except UserError as error:
                raise UserError(f"temperature scaling of {path}: {error}") from None
            rows.append(_row(manifest, path, method + TS_SUFFIX, task, domain, seed, scaled, t))
    results = pd.DataFrame(rows, columns=list(COLUMNS))
    return results.sort_values(["method", "task", "seed"], kind="mergesort").reset_index(drop=True)

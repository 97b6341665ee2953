"""The results table: one row per stored test cell, plus its held-out recalibrations (`<method>+ts`, `<method>+iso`).

A pure function of the run directory (its manifest and predictions, read through `harness.store`), so it can be
rebuilt at any time with no model in sight. Bootstrap seeds come from (method, task, seed), so rebuilding gives
identical numbers.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import pandas as pd

from trustbench.harness.calibration import (ISO_SUFFIX, OPEN_ANSWER, TS_SUFFIX, base_method, fit_recalibrations,
                                            recalibrated)
from trustbench.harness.errors import UserError
from trustbench.harness.metrics import METRICS, most_frequent_share
from trustbench.harness.statistics import at_chance, collapsed, small_sample, summarize
from trustbench.harness.store import Manifest, RunDir, read_cell

ID_COLUMNS = ("suite", "method", "task", "domain", "seed", "n")
COLUMNS = (
    ID_COLUMNS
    + tuple(c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi"))
    + ("temperature", "config_hash", "n_unparsed")
    + ("majority", "top_share", "at_chance", "collapsed", "oracle", "small_sample")
)

__all__ = ["COLUMNS", "METRICS", "TS_SUFFIX", "ISO_SUFFIX", "bootstrap_seed", "compute_results"]


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
                            # `X+ts` and `X+iso` use X's resamples: paired intervals, identical ones for accuracy
                            seed=bootstrap_seed(base_method(method), task, seed))
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
    the predictions are mostly one answer (`collapsed`; the rules are `harness.statistics`'), whether the row
    is an oracle reference (a prior taken from the scored split itself), and whether its calibration estimates
    come from too few predictions (`small_sample`)."""
    open_answer = OPEN_ANSWER in frame
    majority = most_frequent_share(frame[OPEN_ANSWER] if open_answer else frame["gold"])
    top_share = most_frequent_share(frame["answer"] if open_answer else frame["pred"])
    lower = acc if math.isnan(acc_lo) else acc_lo
    return {"majority": majority, "top_share": top_share, "at_chance": at_chance(lower, majority),
            "collapsed": collapsed(top_share),
            "oracle": bool(frame["oracle"].any()) if "oracle" in frame else False,
            "small_sample": small_sample(len(frame))}


def compute_results(run_dir: str | Path | RunDir) -> pd.DataFrame:
    """One row per test cell (plus `<method>+ts` and `<method>+iso` rows when recalibration is on)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    manifest = run.load()
    run.check_cells(manifest)
    files = run.cells("test")
    if not files:
        raise UserError(f"no test predictions under {run.path / 'predictions' / 'test'}: rerun "
                        f"`trustbench run {manifest.suite}` (it writes them)")
    fits = fit_recalibrations(run, manifest)
    rows = []
    for (method, task, seed), path in sorted(files.items()):
        domain = _domain(manifest, task, path)
        frame = read_cell(path)
        rows.append(_row(manifest, path, method, task, domain, seed, frame, math.nan))
        fit = fits.get((method, seed))
        for suffix in (TS_SUFFIX, ISO_SUFFIX) if fit else ():
            try:
                fixed = recalibrated(frame, method + suffix, fit)
            except UserError as error:
                raise UserError(f"recalibration of {path}: {error}") from None
            temperature = fit.temperature if suffix == TS_SUFFIX else math.nan
            rows.append(_row(manifest, path, method + suffix, task, domain, seed, fixed, temperature))
    results = pd.DataFrame(rows, columns=list(COLUMNS))
    return results.sort_values(["method", "task", "seed"], kind="mergesort").reset_index(drop=True)

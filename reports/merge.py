"""Merging runs: several run directories of one suite configuration become one results table and one manifest.

Each run's results are computed on their own (`compute_results`: its own temperatures, fitted on its own
validation predictions) and concatenated. Runs are comparable when they share the suite settings (`suite_hash`:
models, training, scoring, metrics; not the selection of methods, tasks or seeds), the scoring mode and the data
of every task they both scored. A (method, task, seed) cell held by two runs must be the same in both.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from trustbench.harness.errors import UserError
from trustbench.harness.store import Manifest, MergedFrom, RunDir
from trustbench.reports.results import compute_results

SETTINGS = ("suite_hash", "scoring", "metrics", "temperature_scaling")  # what must match for cells to compare
KEY = ["method", "task", "seed"]


def _check_comparable(first: Path, a: Manifest, other: Path, b: Manifest) -> None:
    """A one-line UserError naming both runs and the first setting in which they differ."""
    for key in SETTINGS:
        if getattr(a, key) != getattr(b, key):
            raise UserError(f"runs {first} and {other} are not comparable: {key} differs ({getattr(a, key)!r} vs "
                            f"{getattr(b, key)!r}); merge only runs of the same suite settings")
    for task in sorted(a.tasks.keys() & b.tasks.keys()):
        data_a, data_b = a.tasks[task].test_hash, b.tasks[task].test_hash
        if data_a != data_b:
            raise UserError(f"runs {first} and {other} are not comparable: task {task}'s data differs (test_hash "
                            f"{data_a!r} vs {data_b!r}); merge only runs scored on the same examples")


def _merge_manifests(manifests: list[Manifest], run_dirs: list[Path]) -> Manifest:
    """The first manifest, with every run's tasks and method runs added and the source runs listed."""
    merged = manifests[0].model_copy(deep=True)
    for manifest in manifests[1:]:
        for task, entry in manifest.tasks.items():
            merged.tasks.setdefault(task, entry)
        for name, entry in manifest.methods.items():
            target = merged.methods.setdefault(name, entry.model_copy(deep=True))
            target.runs.update(entry.runs)
    merged.merged_from = [MergedFrom(run=str(d), suite=m.suite, created=m.created, git_revision=m.git_revision,
                                     versions=m.versions) for d, m in zip(run_dirs, manifests)]
    return merged


def _concat(frames: list[pd.DataFrame], run_dirs: list[Path]) -> pd.DataFrame:
    """All runs' rows, each cell once; a cell in two runs with different numbers is a UserError."""
    tagged = pd.concat([f.assign(_run=i) for i, f in enumerate(frames)], ignore_index=True)
    values = [c for c in tagged.columns if c not in ("suite", "_run")]
    dup = tagged[tagged.duplicated(KEY, keep=False)]
    for _, cell in dup.groupby(KEY, sort=True):
        if len(cell[values].drop_duplicates()) > 1:  # NaN equals NaN here
            method, task, seed = cell.iloc[0][KEY]
            a, b = (run_dirs[i] for i in cell["_run"].iloc[:2])
            raise UserError(f"runs {a} and {b} both hold {method} on {task} seed {seed}, with different "
                            "results (predictions or fitted temperature); report them separately, or delete that "
                            "cell's predictions from one run")
    merged = tagged.drop_duplicates(KEY, keep="first").drop(columns="_run")
    return merged.sort_values(KEY, kind="mergesort").reset_index(drop=True)


def load_runs(run_dirs: list[str | Path]) -> tuple[Manifest, pd.DataFrame]:
    """(manifest, results) of one run, or of several comparable runs merged."""
    run_dirs = [Path(d) for d in run_dirs]
    manifests = [RunDir(d).load() for d in run_dirs]
    for d, m in zip(run_dirs[1:], manifests[1:]):
        _check_comparable(run_dirs[0], manifests[0], d, m)
    frames = [compute_results(d) for d in run_dirs]
    if len(run_dirs) == 1:
        return manifests[0], frames[0]
    return _merge_manifests(manifests, run_dirs), _concat(frames, run_dirs)

"""The results table: one row per stored test-predictions file, plus temperature-scaled (`<method>+ts`) rows.

A pure function of the run directory (manifest.json and predictions/), so it can be rebuilt at any time with no
model in sight. Bootstrap seeds come from (method, task, seed), so rebuilding gives identical numbers.
"""
from __future__ import annotations

import json
import math
import re
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.metrics import METRICS

PREDICTION_COLUMNS = ("example_id", "gold", "pred", "confidence", "probs", "correct")
TS_SUFFIX = "+ts"
ID_COLUMNS = ("suite", "method", "task", "domain", "seed", "n")
COLUMNS = (
    ID_COLUMNS
    + tuple(c for m in METRICS for c in (m, f"{m}_lo", f"{m}_hi"))
    + ("temperature", "config_hash")
)

_METHOD_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_TASK_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_SEED_RE = re.compile(r"^s(\d+)$")


def _rerun_hint(manifest: dict | None) -> str:
    suite = (manifest or {}).get("suite") or "<suite>"
    return f"rerun `trustbench run {suite}` to regenerate it"


def load_manifest(run_dir: str | Path) -> dict:
    """The run's manifest.json as a dict; a UserError if it is missing or unreadable."""
    path = Path(run_dir) / "manifest.json"
    if not path.is_file():
        raise UserError(f"no run manifest at {path}: point at a run directory, or rerun `trustbench run <suite>`")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path} ({exc}): rerun `trustbench run <suite>` to rewrite it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tasks", {}), dict):
        raise UserError(f"{path} is not a trustbench manifest: rerun `trustbench run <suite>` to rewrite it")
    return manifest


def parse_stem(path: Path, manifest: dict | None = None) -> tuple[str, str, int]:
    """`<method>__<task>__s<seed>.parquet` -> (method, task, seed)."""
    parts = path.stem.split("__")
    seed = _SEED_RE.match(parts[-1]) if len(parts) == 3 else None
    if seed is None or not _METHOD_RE.match(parts[0]) or not _TASK_RE.match(parts[1]):
        raise UserError(
            f"unexpected predictions file name {path} (want <method>__<task>__s<seed>.parquet): "
            f"remove it, or {_rerun_hint(manifest)}"
        )
    return parts[0], parts[1], int(seed.group(1))


def prediction_files(run_dir: str | Path, split: str, manifest: dict | None = None) -> dict[tuple[str, str, int], Path]:
    """{(method, task, seed): path} for every parquet under predictions/<split>/ (empty if the folder is absent)."""
    folder = Path(run_dir) / "predictions" / split
    if not folder.is_dir():
        return {}
    files = {}
    for path in sorted(folder.glob("*.parquet")):
        files[parse_stem(path, manifest)] = path
    return files


def read_predictions(path: str | Path, manifest: dict | None = None) -> pd.DataFrame:
    """One predictions parquet, checked for the contract's columns and for at least one row."""
    path = Path(path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for truncated / corrupt files
        raise UserError(
            f"cannot read predictions {path} ({type(exc).__name__}): delete it and {_rerun_hint(manifest)}"
        ) from None
    missing = [c for c in PREDICTION_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"predictions {path} lack columns {missing}: delete it and {_rerun_hint(manifest)}")
    if len(df) == 0:
        raise UserError(f"predictions {path} are empty: delete it and {_rerun_hint(manifest)}")
    return df


def bootstrap_seed(method: str, task: str, seed: int) -> int:
    """A reproducible bootstrap seed for one results row."""
    return zlib.crc32(f"{method}|{task}|{seed}".encode())


def metric_settings(manifest: dict) -> dict:
    m = manifest.get("metrics") or {}
    return {
        "bins": int(m.get("bins", 10)),
        "equal_mass": bool(m.get("equal_mass", False)),
        "n_boot": int(m.get("n_boot", 1000)),
    }


def _domain(manifest: dict, task: str, path: Path) -> str:
    meta = manifest.get("tasks", {}).get(task)
    if not isinstance(meta, dict) or meta.get("domain") not in ("id", "ood"):
        raise UserError(
            f"task {task!r} of {path} has no domain (id/ood) in {Path(path).parents[2] / 'manifest.json'}: "
            f"{_rerun_hint(manifest)}"
        )
    return meta["domain"]


def _row(manifest, path, method, task, domain, seed, df, settings, temperature) -> dict:
    from harness.metrics import summarize

    try:
        summary = summarize(
            df,
            bins=settings["bins"],
            equal_mass=settings["equal_mass"],
            n_boot=settings["n_boot"],
            # `X+ts` uses X's resamples: paired intervals, and identical ones for accuracy
            seed=bootstrap_seed(method.removesuffix(TS_SUFFIX), task, seed),
        )
    except UserError as exc:
        raise UserError(f"{path} ({method}): {exc}") from None
    row = {
        "suite": manifest.get("suite", ""),
        "method": method,
        "task": task,
        "domain": domain,
        "seed": int(seed),
        "n": int(summary.get("n", len(df))),
    }
    for m in METRICS:
        for col in (m, f"{m}_lo", f"{m}_hi"):
            value = summary.get(col, math.nan)
            row[col] = math.nan if value is None else float(value)
    row["temperature"] = float(temperature)
    row["config_hash"] = str(manifest.get("suite_hash", ""))
    return row


def fit_temperatures(run_dir: str | Path, manifest: dict | None = None) -> dict[tuple[str, int], float]:
    """{(method, seed): T} fitted on that (method, seed)'s val predictions pooled over all ID tasks."""
    from harness.calibration import fit_temperature

    manifest = load_manifest(run_dir) if manifest is None else manifest
    pooled: dict[tuple[str, int], list[pd.DataFrame]] = {}
    for (method, task, seed), path in prediction_files(run_dir, "val", manifest).items():
        if _domain(manifest, task, path) != "id":
            continue
        pooled.setdefault((method, seed), []).append(read_predictions(path, manifest))
    temps = {}
    for key in sorted(pooled):
        frames = pooled[key]
        probs = [np.asarray(p, dtype=float) for df in frames for p in df["probs"]]
        gold = np.concatenate([df["gold"].to_numpy(dtype=int) for df in frames])
        try:
            temps[key] = float(fit_temperature(probs, gold))
        except UserError as exc:
            where = Path(run_dir) / "predictions" / "val" / f"{key[0]}__*__s{key[1]}.parquet"
            raise UserError(f"temperature scaling on {where}: {exc}") from None
    return temps


def expected_predictions(manifest: dict) -> list[tuple[str, str, str, int]]:
    """(split, method, task, seed) of every file the manifest says was scored.

    The runner records, per method and seed, the tasks it finished (`runs[seed]["tasks"]`); validation files
    exist for ID tasks with a val split when temperature scaling is on. Older manifests record no tasks.
    """
    tasks = manifest.get("tasks") or {}
    expected = []
    for method, entry in sorted((manifest.get("methods") or {}).items()):
        runs = entry.get("runs") if isinstance(entry, dict) else None
        for seed, run in sorted((runs or {}).items()):
            for task in (run.get("tasks") or []) if isinstance(run, dict) else []:
                expected.append(("test", method, task, int(seed)))
                meta = tasks.get(task) or {}
                if manifest.get("temperature_scaling") and meta.get("domain") == "id" \
                        and (meta.get("sizes") or {}).get("val", 1):
                    expected.append(("val", method, task, int(seed)))
    return expected


def check_predictions(run_dir: str | Path, manifest: dict) -> None:
    """A UserError naming the first predictions file the manifest lists but the run directory lacks."""
    for split, method, task, seed in expected_predictions(manifest):
        path = Path(run_dir) / "predictions" / split / f"{method}__{task}__s{seed}.parquet"
        if not path.is_file():
            raise UserError(f"predictions {path} are missing (manifest.json says {method} seed {seed} scored "
                            f"{task}): {_rerun_hint(manifest)}")


def compute_results(run_dir: str | Path) -> pd.DataFrame:
    """One row per predictions/test parquet (plus `<method>+ts` rows when temperature scaling is on)."""
    from harness.calibration import apply_temperature

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    check_predictions(run_dir, manifest)
    test_dir = run_dir / "predictions" / "test"
    files = prediction_files(run_dir, "test", manifest)
    if not files:
        raise UserError(f"no test predictions under {test_dir}: {_rerun_hint(manifest)} (it writes them)")
    settings = metric_settings(manifest)
    temps = fit_temperatures(run_dir, manifest) if manifest.get("temperature_scaling") else {}

    rows = []
    for (method, task, seed), path in sorted(files.items()):
        domain = _domain(manifest, task, path)
        df = read_predictions(path, manifest)
        rows.append(_row(manifest, path, method, task, domain, seed, df, settings, math.nan))
        if (method, seed) in temps:
            t = temps[(method, seed)]
            try:
                scaled = apply_temperature(df, t)
            except UserError as exc:
                raise UserError(f"temperature scaling of {path}: {exc}") from None
            rows.append(_row(manifest, path, method + TS_SUFFIX, task, domain, seed, scaled, settings, t))

    results = pd.DataFrame(rows, columns=list(COLUMNS))
    results = results.sort_values(["method", "task", "seed"], kind="mergesort").reset_index(drop=True)
    return results

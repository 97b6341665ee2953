"""Cost of the calibration battery: every estimator of `harness.metrics.METRICS` with bootstrap intervals
(`statistics.summarize`) on 100,000 predictions of 4 options, against the reference implementations on the same
arrays: netcal's ECE and relplot's smooth ECE (the two a user would otherwise call), each bootstrapped the same way,
and against trustbench computing only those two (the like-for-like ratio).

    .venv/bin/python benchmarks/battery.py [--n 100000] [--n-boot 200] [--peer-boot 10]

The peers are timed over `--peer-boot` resamples and their time per resample is multiplied up to `--n-boot` (relplot
takes seconds per call at this size). Prints the seconds, the ratio, and whether the point estimates agree; writes
benchmarks/results/battery.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trustbench.harness import metrics  # noqa: E402
from trustbench.harness.metrics import _block_metrics, _columns  # noqa: E402
from trustbench.harness.statistics import resample_blocks, summarize  # noqa: E402


def predictions(n: int, seed: int = 0) -> pd.DataFrame:
    """n four-option predictions of an over-confident model (gold drawn from sharpened probabilities)."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(4, 0.6), size=n)
    true = probs ** 2 / (probs ** 2).sum(axis=1, keepdims=True)
    gold = (rng.random((n, 1)) > np.cumsum(true, axis=1)).sum(axis=1)
    pred = probs.argmax(axis=1)
    return pd.DataFrame({"example_id": np.arange(n), "gold": gold, "pred": pred, "confidence": probs.max(axis=1),
                         "probs": list(probs), "correct": pred == gold})


def peers(conf: np.ndarray, correct: np.ndarray, resamples: int, seed: int = 0) -> float:
    """Seconds for `resamples` bootstrap resamples of netcal's ECE and relplot's smooth ECE."""
    from netcal.metrics import ECE
    from relplot import smECE

    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    for _ in range(resamples):
        idx = rng.integers(0, conf.size, size=conf.size)
        ECE(bins=10).measure(conf[idx], correct[idx].astype(int))
        smECE(conf[idx], correct[idx])
    return time.perf_counter() - started


def ours(frame: pd.DataFrame, resamples: int, seed: int = 0) -> float:
    """Seconds for trustbench's ECE and smooth ECE alone over `resamples` bootstrap resamples (vectorised)."""
    columns = _columns(frame)
    started = time.perf_counter()
    for _, idx in resample_blocks(np.random.default_rng(seed), len(frame), resamples, width=10):
        _block_metrics(columns, idx, 10, False, ("ece", "smece"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--n-boot", type=int, default=200)
    parser.add_argument("--peer-boot", type=int, default=10)
    args = parser.parse_args()

    frame = predictions(args.n)
    conf, correct = frame["confidence"].to_numpy(), frame["correct"].to_numpy(dtype=float)
    started = time.perf_counter()
    summary = summarize(frame, n_boot=args.n_boot)
    battery = time.perf_counter() - started
    two = ours(frame, args.n_boot)
    peer = peers(conf, correct, args.peer_boot) / args.peer_boot * args.n_boot

    from netcal.metrics import ECE
    from relplot import smECE

    agree = {"ece": bool(abs(summary["ece"] - ECE(bins=10).measure(conf, correct.astype(int))) < 1e-9),
             "smece": bool(abs(summary["smece"] - smECE(conf, correct)) < 1e-9)}
    result = {
        "n": args.n, "options": 4, "n_boot": args.n_boot, "peer_boot": args.peer_boot,
        "estimators": len(metrics.METRICS),
        "battery_with_intervals_s": round(battery, 2),
        "trustbench_ece_plus_smece_with_intervals_s": round(two, 2),
        "netcal_ece_plus_relplot_smece_with_intervals_s": round(peer, 2),
        "ratio_peer_over_trustbench_same_two": round(peer / two, 2),
        "point_estimates_agree": agree,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    print(json.dumps(result, indent=1))
    out = ROOT / "benchmarks" / "results" / "battery.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

"""The `paper` profile in one timed run, and on a GPU machine the scoring throughput of trustbench's vLLM engine
against `lm_eval --model vllm` on the same prompts.

    make setup && .venv/bin/python benchmarks/paper.py [--suite paper] [--out runs/paper] [--no-scoring]

Sized for one GPU: on a lent H200 the whole script is meant to finish within 10 minutes (`make setup` installs
the CUDA build of vLLM where `nvidia-smi` answers). On a CPU it runs too, in hours; pass `--suite` to time a smaller
profile. Writes benchmarks/results/paper.json: the machine, the wall time of `trustbench run`, each method's
training seconds (costs.csv), and the leaderboard's ID and OOD averages with their intervals; on a GPU also
benchmarks/results/scoring-vllm.json (`benchmarks/scoring.py --backend vllm`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def gpu() -> str | None:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="paper")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "paper")
    parser.add_argument("--no-scoring", action="store_true", help="skip the vLLM scoring comparison")
    parser.add_argument("--result", type=Path, default=ROOT / "benchmarks" / "results" / "paper.json")
    args = parser.parse_args()

    bin_dir = Path(sys.executable).parent
    started = time.perf_counter()
    subprocess.run([str(bin_dir / "trustbench"), "run", args.suite, "--out", str(args.out)], check=True)
    seconds = time.perf_counter() - started
    board = pd.read_csv(args.out / "leaderboard.csv")
    averages = board[board["task"].isin(["ID avg", "OOD avg"])]
    costs = pd.read_csv(args.out / "costs.csv")
    report = {
        "suite": args.suite, "date": time.strftime("%Y-%m-%d"),
        "machine": {"gpu": gpu(), "cpus": len(os.sched_getaffinity(0)), "platform": platform.platform()},
        "run_seconds": round(seconds, 1),
        "train_seconds": costs.groupby("method")["train_seconds"].sum().round(1).dropna().to_dict()
        if "train_seconds" in costs else {},
        "averages": averages[["method", "task", "metric", "mean", "lo", "hi", "n_seeds"]].to_dict("records"),
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "averages"}, indent=2))
    if report["machine"]["gpu"] and not args.no_scoring:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scoring.py"), "--backend", "vllm",
                        "--limit", "500"], check=True)


if __name__ == "__main__":
    main()

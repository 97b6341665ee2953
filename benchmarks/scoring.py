"""Scoring speed: `trustbench eval` against `lm_eval --model hf` (or, with `--backend vllm` on a GPU machine,
`lm_eval --model vllm`) on the same model, tasks and examples, in one run.

    .venv/bin/python benchmarks/scoring.py [--backend hf|vllm] [--model smollm2-135m] [--tasks ...] [--limit 100]

Both score lm-eval-style multiple choice (each option a continuation of "<question>\\nAnswer:") in float32, every
task in one command, as a user scores a suite; both timings are whole commands (start-up and model load
included). Prints both times, the ratio, and whether the per-example predictions are identical on every task;
writes benchmarks/results/scoring.json (scoring-vllm.json with `--backend vllm`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trustbench import tasks  # noqa: E402
from trustbench.harness import zoo  # noqa: E402


DEMO_TASKS = "provinces_europe,provinces_africa,provinces_asia"


def export(task: str, limit: int, folder: Path) -> Path:
    """The task's first `limit` test examples as JSONL, an lm-eval task YAML over it (`bench_<task>`), and a
    trustbench card of the same name."""
    name = f"bench_{task}"
    examples = tasks.split(tasks.get_card(task)).test[:limit]
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps({"id": e.id, "prompt": e.prompt, "choices": list(e.choices), "gold": e.gold})
                            + "\n" for e in examples))
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {data}}}}}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: \"{{prompt}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: gold\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\nmetadata: {version: 1.0}\n")
    card = folder / "cards" / f"{name}.yaml"  # apart from the lm-eval YAMLs, which lm-eval's --include_path reads
    card.parent.mkdir(exist_ok=True)
    card.write_text(f"name: {name}\ndomain: ood\nfamily: bench\nformat: mc\nsource: jsonl:{data}\n"
                    f"test: {len(examples)}\nsplit_seed: 0\n")
    return card


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    return time.perf_counter() - started


def _trustbench_predictions(run_dir: Path, model: Path, name: str) -> dict[str, int]:
    """The model's own predictions (`trustbench eval` names its row after the model folder; the run also holds the
    `prior` reference row, whose file matches `*__<task>__s*` too)."""
    frame = pd.read_parquet(run_dir / "predictions" / "test" / f"{model.name}__{name}__s0.parquet")
    return dict(zip(frame.example_id, frame.pred))


def lm_eval_predictions(out: Path, name: str) -> dict[str, int]:
    """Example id -> lm-eval's prediction: the argmax of the summed log-likelihoods (what its `acc` scores).
    On disk lm-eval writes numbers as strings (sanitize_list), hence the float()."""
    samples = sorted(out.rglob(f"samples_{name}_*.jsonl"))[-1]
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return {r["doc"]["id"]: max(range(len(r["filtered_resps"])), key=lambda i: float(r["filtered_resps"][i][0]))
            for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tasks", default=DEMO_TASKS, help="registry tasks, comma-separated")
    parser.add_argument("--limit", type=int, default=100, help="test examples per task")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf",
                        help="trustbench's engine and lm-eval's --model (vllm: the GPU build of vLLM)")
    parser.add_argument("--lm-eval-batch-sizes", default=None,
                        help="lm-eval --batch_size values to time [default: 1,16 for hf (1 is its default; trustbench "
                             "batches 16), auto for vllm]")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.lm_eval_batch_sizes = args.lm_eval_batch_sizes or ("1,16" if args.backend == "hf" else "auto")
    suffix = "" if args.backend == "hf" else f"-{args.backend}"
    args.out = args.out or ROOT / "benchmarks" / "results" / f"scoring{suffix}.json"

    model = zoo.resolve(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        task_names = args.tasks.split(",")
        cards = [export(task, args.limit, folder) for task in task_names]
        names = [f"bench_{task}" for task in task_names]
        bin_dir = Path(sys.executable).parent
        tb_seconds = timed([str(bin_dir / "trustbench"), "eval", "--model", str(model),
                            "--tasks", ",".join(map(str, cards)), "--backend", args.backend, "--scoring", "choice",
                            "--out", str(folder / "tb")])
        ours = {name: _trustbench_predictions(folder / "tb", model, name) for name in names}
        peers = []
        device = ["--device", "cpu"] if args.backend == "hf" else []
        for batch_size in args.lm_eval_batch_sizes.split(","):
            out = folder / f"lm{batch_size}"
            seconds = timed([str(bin_dir / "lm_eval"), "--model", args.backend, "--model_args",
                             f"pretrained={model},dtype=float32", *device, "--batch_size", batch_size,
                             "--tasks", ",".join(names), "--include_path", str(folder), "--log_samples",
                             "--output_path", str(out)])
            differing = {}
            for name in names:
                theirs = lm_eval_predictions(out, name)
                differing[name.removeprefix("bench_")] = sum(ours[name][i] != theirs.get(i) for i in ours[name])
            peers.append({"lm_eval_batch_size": int(batch_size) if batch_size.isdigit() else batch_size,
                          f"lm_eval_{args.backend}_seconds": round(seconds, 1),
                          "speedup": round(seconds / tb_seconds, 2),
                          "identical_predictions": not any(differing.values()), "differing_examples": differing})

    result = {
        "model": args.model, "tasks": task_names, "examples_per_task": args.limit,
        "examples": sum(len(p) for p in ours.values()), "mode": "choice (lm-eval multiple_choice)",
        "backend": args.backend, "trustbench_seconds": round(tb_seconds, 1), "lm_eval": peers,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

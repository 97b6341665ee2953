"""Teacher-cache extraction speed: the same teacher and training sequences through the vLLM and HF engines.

    .venv/bin/python benchmarks/teacher_cache.py [--model smollm2-135m] [--task provinces_europe] [--limit 64] [--k 10]

FIRST's concentrated knowledge is one teacher-forced pass keeping the top-k ids and log-probs at every response
position (`harness.teacher_cache.extract`). Times the pass on each engine (model load excluded, reported apart),
checks that both keep the same ids and log-probs within 1e-2, and writes benchmarks/results/teacher_cache.json.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trustbench import tasks  # noqa: E402
from trustbench.harness import zoo  # noqa: E402
from trustbench.harness.engines import make_engine  # noqa: E402
from trustbench.harness.scoring import training_pair  # noqa: E402
from trustbench.harness.teacher_cache import extract  # noqa: E402
from trustbench.harness.train import encode_pairs  # noqa: E402


def measure(backend: str, model: Path, sequences, starts, k) -> tuple[dict, object]:
    started = time.perf_counter()
    engine = make_engine(backend, model, **({"max_logprobs": max(20, k or 0)} if backend == "vllm" else {}))
    load = time.perf_counter() - started
    try:
        outputs = extract(engine, sequences, starts, k)
    finally:
        engine.close()
    return {"load_seconds": round(load, 1), **outputs.record()}, outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="provinces_europe")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_cache.json")
    args = parser.parse_args()

    model = zoo.resolve(args.model)
    card = tasks.get_card(args.task)
    examples = tasks.split(card).train[:args.limit]
    from transformers import AutoTokenizer

    features = encode_pairs(AutoTokenizer.from_pretrained(model), [training_pair(e, "letter") for e in examples], 384)
    sequences = [f["input_ids"] for f in features]
    starts = [len(f["input_ids"]) - f["target_len"] for f in features]
    results, outputs = {}, {}
    for name, backend, k in (("vllm_topk", "vllm", args.k), ("hf_topk", "hf", args.k), ("hf_full", "hf", None)):
        results[name], outputs[name] = measure(backend, model, sequences, starts, k)
        print(f"{name}: {results[name]['tokens_per_s']} tok/s over {results[name]['tokens']} tokens "
              f"({results[name]['seconds']} s; load {results[name]['load_seconds']} s)", flush=True)
    vllm, hf = outputs["vllm_topk"], outputs["hf_topk"]
    report = {
        "model": args.model, "task": args.task, "sequences": len(sequences), "k": args.k, "engines": results,
        "same_ids": bool((vllm.ids == hf.ids).all()),
        "max_logprob_difference": float(np.abs(vllm.logprobs - hf.logprobs).max()),
        "vllm_over_hf_speed": round(results["vllm_topk"]["tokens_per_s"] / results["hf_topk"]["tokens_per_s"], 2),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "engines"}, indent=2))


if __name__ == "__main__":
    main()

"""Greedy chain-of-thought generation: the same prompts through the HF and vLLM engines, and through the endpoint
engine against `vllm serve` with its request cache cold and warm, in one run.

    .venv/bin/python benchmarks/generation.py [--model smollm2-135m] [--task chain_sum] [--limit 64]

The prompts are a cot task's test prompts, generated greedily up to the card's `max_new_tokens` with the stop the
cot scorer uses ("Answer:"). Reports generated tokens per second of each engine (model load and server start
excluded, reported apart), the ratios, and how many texts agree with the HF engine's; writes
benchmarks/results/generation.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trustbench import tasks  # noqa: E402
from trustbench.harness import zoo  # noqa: E402
from trustbench.harness.endpoint import Endpoint, OpenAIEngine, local_vllm_server  # noqa: E402
from trustbench.harness.engines import make_engine  # noqa: E402
from trustbench.harness.scoring import ANSWER, format_for  # noqa: E402


def timed(engine, prompts, max_tokens) -> tuple[dict, list[str]]:
    started = time.perf_counter()
    generations = [g[0] for g in engine.generate(prompts, max_tokens=max_tokens, stop=[ANSWER])]
    seconds = time.perf_counter() - started
    tokens = engine.usage.completion_tokens
    return {"seconds": round(seconds, 2), "completion_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 1)}, [g.text for g in generations]


def local(backend: str, model: Path, prompts, max_tokens) -> tuple[dict, list[str]]:
    started = time.perf_counter()
    engine = make_engine(backend, model, progress=False)
    load = time.perf_counter() - started
    try:
        result, texts = timed(engine, prompts, max_tokens)
    finally:
        engine.close()
    return {"load_seconds": round(load, 1), **result}, texts


def served(model: Path, prompts, max_tokens) -> tuple[dict, list[str]]:
    started = time.perf_counter()
    with local_vllm_server(model, "teacher") as url, tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter() - started
        endpoint = Endpoint(url, "teacher", api="completions", concurrency=8)
        cold, texts = timed(OpenAIEngine(endpoint, cache_path=Path(cache) / "r.sqlite"), prompts, max_tokens)
        warm, again = timed(OpenAIEngine(endpoint, cache_path=Path(cache) / "r.sqlite"), prompts, max_tokens)
    assert again == texts
    return {"server_start_seconds": round(start, 1), "cold": cold, "warm": warm}, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--task", default="chain_sum")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generation.json")
    args = parser.parse_args()

    card = tasks.get_card(args.task)
    cot = format_for(card, "letter")
    prompts = [cot.prompt(e) for e in tasks.split(card).test[:args.limit]]
    model = zoo.resolve(args.model)
    hf, hf_texts = local("hf", model, prompts, card.max_new_tokens)
    vllm, vllm_texts = local("vllm", model, prompts, card.max_new_tokens)
    endpoint, endpoint_texts = served(model, prompts, card.max_new_tokens)
    report = {
        "what": f"greedy cot generation of {len(prompts)} {args.task} test prompts (max {card.max_new_tokens} new "
                f"tokens, stop {ANSWER!r}) with {args.model}, float32",
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "python": platform.python_version()},
        "hf": hf, "vllm": vllm, "endpoint_vllm_serve": endpoint,
        "vllm_over_hf": round(vllm["tokens_per_s"] / hf["tokens_per_s"], 2),
        "endpoint_cold_over_vllm": round(endpoint["cold"]["tokens_per_s"] / vllm["tokens_per_s"], 2),
        "endpoint_warm_over_cold": round(endpoint["warm"]["tokens_per_s"] / endpoint["cold"]["tokens_per_s"], 1),
        "same_text_as_hf": {"vllm": sum(a == b for a, b in zip(hf_texts, vllm_texts)),
                            "endpoint": sum(a == b for a, b in zip(hf_texts, endpoint_texts)), "of": len(prompts)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

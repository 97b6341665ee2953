"""lm-eval for tests: a local multiple-choice task (a YAML and its docs, no hub) and small output folders shaped as
`lm_eval --log_samples --output_path` writes them (the keys are checked against a real run's in
test_lmeval_import), for the import's unit tests and bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DOCS = [
    {"question": "Which is heaviest?", "choices": ["a feather", "a brick", "a leaf"], "answer": 1},
    {"question": "Which is lightest?", "choices": ["a truck", "a feather"], "answer": 1},
    {"question": "Which one floats?", "choices": ["a stone", "a cork", "an anvil", "a coin"], "answer": 1},
    {"question": "Which is a fruit?", "choices": ["an apple", "a chair"], "answer": 0},
]
DATE = "2026-01-01T00-00-00.000000"
MODEL = "/models/tiny"


def write_task(folder: Path) -> Path:
    """`tiny_mc`: DOCS as an lm-eval YAML task in `folder` (for --include_path), scored by acc and acc_norm."""
    data = folder / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (folder / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {data}}}}}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: \"{{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true},\n"
        "              {metric: acc_norm, aggregation: mean, higher_is_better: true}]\nmetadata: {version: 1.0}\n")
    return folder


def sample(doc_id: int, lls: list[float], gold: int, choices: list[str]) -> dict:
    """One line of a samples file, with lm-eval's own acc and acc_norm (np.argmax, lengths in characters)."""
    scores = np.array(lls)
    lengths = np.array([float(len(c)) for c in choices])
    return {"doc_id": doc_id, "doc": {"question": f"q{doc_id}", "choices": choices, "answer": gold},
            "target": str(gold),
            "arguments": {f"gen_args_{i}": {"arg_0": f"q{doc_id}\nAnswer:", "arg_1": f" {c}"}
                          for i, c in enumerate(choices)},
            "resps": [[[str(ll), "False"]] for ll in lls], "filtered_resps": [[str(ll), "False"] for ll in lls],
            "filter": "none", "metrics": ["acc", "acc_norm"], "doc_hash": f"d{doc_id}", "prompt_hash": f"p{doc_id}",
            "target_hash": f"t{gold}", "acc": float(np.argmax(scores) == gold),
            "acc_norm": float(np.argmax(scores / lengths) == gold)}


def results(task: str, samples: list[dict], model: str = MODEL, output_type: str = "multiple_choice") -> dict:
    """A results file for one task's samples."""
    n = len(samples)
    return {"results": {task: {"alias": task, "acc,none": sum(s["acc"] for s in samples) / n,
                               "acc_norm,none": sum(s["acc_norm"] for s in samples) / n}},
            "configs": {task: {"task": task, "output_type": output_type, "target_delimiter": " ", "num_fewshot": 0,
                               "doc_to_choice": "{{choices}}", "metadata": {"version": 1.0, "pretrained": model}}},
            "versions": {task: 1.0}, "n-shot": {task: 0}, "n-samples": {task: {"original": n, "effective": n}},
            "config": {"model": "hf", "model_args": {"pretrained": model}}, "date": 1767225600.0,
            "lm_eval_version": "0.4.13", "transformers_version": "5.0.0", "model_name": model,
            "model_name_sanitized": model.replace("/", "__"), "chat_template": None, "chat_template_sha": None,
            "system_instruction_sha": None, "fewshot_as_multiturn": None}


def write_output(folder: Path, samples: list[dict] | None = None, task: str = "tiny_mc", model: str = MODEL,
                 **options) -> Path:
    """An lm-eval output folder (`folder/<model>/results_<date>.json` and its samples file); returns the model
    folder. Default samples: DOCS with made-up log-likelihoods, where acc and acc_norm differ."""
    if samples is None:
        lls = [[-9.0, -14.0, -6.0], [-4.0, -4.5], [-9.0, -3.0, -9.0, -8.0], [-7.5, -7.0]]  # acc 1/4, acc_norm 3/4
        samples = [sample(i, ll, d["answer"], d["choices"]) for i, (ll, d) in enumerate(zip(lls, DOCS))]
    where = folder / model.replace("/", "__")
    where.mkdir(parents=True, exist_ok=True)
    (where / f"results_{DATE}.json").write_text(json.dumps(results(task, samples, model, **options)))
    (where / f"samples_{task}_{DATE}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return where

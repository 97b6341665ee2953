"""lm-eval's simple_evaluate drives trustbench's engines through the registered `trustbench` model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from harness.lmeval import TrustbenchLM, confidences_from_samples
from harness.scoring import score
from harness.types import Example

DOCS = [
    {"question": "Which is heaviest?", "choices": ["a feather", "a brick", "a leaf"], "answer": 1},
    {"question": "Which is lightest?", "choices": ["a truck", "a feather"], "answer": 1},
    {"question": "Which one floats?", "choices": ["a stone", "a cork", "an anvil", "a coin"], "answer": 1},
    {"question": "Which is a fruit?", "choices": ["an apple", "a chair"], "answer": 0},
]


@pytest.fixture()
def local_task(tmp_path):
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    (tmp_path / "tiny_mc.yaml").write_text(
        "task: tiny_mc\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {data}}}}}\n"
        "output_type: multiple_choice\ntest_split: test\n"
        "doc_to_text: \"{{question}}\\nAnswer:\"\ndoc_to_choice: \"{{choices}}\"\ndoc_to_target: answer\n"
        "metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]\nmetadata: {version: 1.0}\n")
    return tmp_path


def test_simple_evaluate_through_trustbench_engine(hf_engine, local_task):
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(model=TrustbenchLM(engine=hf_engine), tasks=["tiny_mc"],
                                      task_manager=TaskManager(include_path=str(local_task), include_defaults=False),
                                      log_samples=True, bootstrap_iters=0)
    samples = sorted(results["samples"]["tiny_mc"], key=lambda s: s["doc_id"])
    lm_eval_view = confidences_from_samples(samples)

    examples = [Example(id=str(i), prompt=d["question"], choices=tuple(d["choices"]), gold=d["answer"])
                for i, d in enumerate(DOCS)]
    ours = score(hf_engine, examples, "choice")
    assert [r["pred"] for r in lm_eval_view] == ours.pred.tolist()
    for row, probs in zip(lm_eval_view, ours.probs):
        np.testing.assert_allclose(row["probs"], probs, atol=1e-9)
    assert results["results"]["tiny_mc"]["acc,none"] == pytest.approx(ours.correct.mean())


def test_registered_by_name():
    from lm_eval.api.registry import get_model

    assert get_model("trustbench") is TrustbenchLM

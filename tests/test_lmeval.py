"""lm-eval's simple_evaluate drives trustbench's engines through the registered `trustbench` model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from trustbench.harness.lmeval import TrustbenchLM, confidences_from_samples
from trustbench.harness.scoring import score
from trustbench.harness.types import Example
from lmeval_outputs import DOCS


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


@pytest.mark.parametrize("shots", [0, 2])
def test_an_lmeval_card_is_scored_exactly_as_lm_evals_own_hf_backend(tiny_path, hf_engine, local_task, shots):
    """The card's contexts and continuations are lm-eval's (its description, few-shot examples and delimiter), so
    trustbench's scores equal `HFLM`'s, example by example."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from trustbench import tasks
    from trustbench.harness.scoring import format_for

    (local_task / "tiny_mc.yaml").write_text((local_task / "tiny_mc.yaml").read_text()
                                             + "description: \"Pick the right one.\"\nfewshot_split: test\n")
    card = tasks.card_from_dict({"name": "tiny", "domain": "ood", "family": "f", "format": "mc", "test": 4,
                                 "source": "lmeval:tiny_mc", "split_seed": 0,
                                 "options": {"include_path": str(local_task), "num_fewshot": shots}})
    examples = sorted(tasks.split(card).test, key=lambda e: int(e.id.rsplit("-", 1)[1]))
    ours = format_for(card, "letter").score(hf_engine, examples)

    results = lm_eval.simple_evaluate(model=HFLM(pretrained=str(tiny_path), device="cpu", dtype="float32",
                                                 batch_size=2), tasks=["tiny_mc"], num_fewshot=shots,
                                      task_manager=TaskManager(include_path=str(local_task), include_defaults=False),
                                      log_samples=True, bootstrap_iters=0)
    theirs = confidences_from_samples(sorted(results["samples"]["tiny_mc"], key=lambda s: s["doc_id"]))
    assert examples[0].prompt.startswith("Pick the right one.") and examples[0].choices[1] == " a brick"
    assert all(e.prompt.count("Answer:") == shots + 1 for e in examples)  # the few-shot examples are in
    assert [r["pred"] for r in theirs] == ours.pred.tolist()
    for row, probs in zip(theirs, ours.probs):
        np.testing.assert_allclose(row["probs"], probs, atol=1e-4)


def test_lm_evals_own_command_line_runs_the_trustbench_model(tiny_path, hf_engine, local_task, tmp_path):
    """The command the docs document (lm-eval's command line with the model registered), on a local task: its
    `acc` is the share trustbench's own scoring of the same questions gets right."""
    import subprocess
    import sys
    from pathlib import Path

    concepts = (Path(__file__).resolve().parents[1] / "docs" / "concepts.md").read_text()
    assert "trustbench-lm-eval --model trustbench --model_args pretrained=" in concepts
    command = Path(sys.executable).parent / "trustbench-lm-eval"
    result = subprocess.run([str(command), "--model", "trustbench", "--model_args",
                             f"pretrained={tiny_path},backend=hf", "--tasks", "tiny_mc", "--include_path",
                             str(local_task), "--output_path", str(tmp_path / "out"), "--batch_size", "4"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (results,) = (tmp_path / "out").rglob("results_*.json")
    examples = [Example(id=str(i), prompt=d["question"], choices=tuple(d["choices"]), gold=d["answer"])
                for i, d in enumerate(DOCS)]
    ours = score(hf_engine, examples, "choice")
    assert json.loads(results.read_text())["results"]["tiny_mc"]["acc,none"] == pytest.approx(ours.correct.mean())


def test_eval_passes_num_fewshot_to_an_lmeval_card(local_task, tmp_path):
    """`trustbench eval --num_fewshot 2` on an `lmeval:` card: lm-eval builds each context with 2 examples."""
    import subprocess
    import sys

    from trustbench.harness.store import RunDir

    (local_task / "tiny.yaml").write_text("name: tiny\ndomain: ood\nfamily: f\nformat: mc\nsource: lmeval:tiny_mc\n"
                                          f"test: 4\nsplit_seed: 0\noptions: {{include_path: {local_task}}}\n")
    (local_task / "tiny_mc.yaml").write_text((local_task / "tiny_mc.yaml").read_text() + "fewshot_split: test\n")
    result = subprocess.run([sys.executable, "-m", "trustbench", "eval", "--model", "tiny-random", "--tasks",
                             str(local_task / "tiny.yaml"), "--num_fewshot", "2", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = RunDir(tmp_path / "out").load()
    assert manifest.tasks["tiny"].card["options"]["num_fewshot"] == 2
    from trustbench import tasks
    card = tasks.card_from_dict(manifest.tasks["tiny"].card)
    assert all(e.prompt.count("Answer:") == 3 for e in tasks.split(card).test)  # two examples, then the question

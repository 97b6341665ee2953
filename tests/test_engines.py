"""The engines agree with each other and with lm-eval's own HF backend."""
from __future__ import annotations

import numpy as np
import pytest

from trustbench.harness.metrics import ece
from trustbench.harness.scoring import letter_prompt, letter_token_ids, score

REQUESTS = [
    ("Question: Which item is the heaviest?\nAnswer:", " A"),
    ("Question: Which item is the heaviest?\nAnswer:", " the stone box"),
    ("Question: Which item is the heaviest?\nAnswer: ", "B"),  # trailing space moves to the continuation
    ("the sum of 2 and 3 is", " 5"),
    ("", "a whole string scored from the prefix token"),
]


def test_hf_loglikelihood_matches_lm_eval_hflm(tiny_path, hf_engine):
    """Our KV-cache-sharing scorer against lm-eval's HFLM, which scores each full sequence independently."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    reference = HFLM(pretrained=str(tiny_path), device="cpu", dtype="float32", batch_size=4)
    instances = [Instance("loglikelihood", {}, args, i) for i, args in enumerate(REQUESTS)]
    expected = reference.loglikelihood(instances, disable_tqdm=True)
    ours = hf_engine.loglikelihood(REQUESTS)
    np.testing.assert_allclose([ll for ll, _ in ours], [ll for ll, _ in expected], atol=1e-4)
    assert [g for _, g in ours] == [g for _, g in expected]


INSTRUCTION = "Read the review below and say whether its author liked the hotel, disliked it, or neither.\n\n"
SHARED = [(INSTRUCTION + question + "\nAnswer:", continuation)
          for question in ["The room was clean and quiet.", "Noisy, dirty, overpriced.", "It was a hotel.",
                           "Breakfast was cold but the staff were kind and the view over the bay made up for it."]
          for continuation in [" liked", " disliked it", " neither"]]


@pytest.mark.parametrize("lists, expected", [
    ([], 0),
    ([[1, 2, 3]], 0),  # under MIN_SHARED_PREFIX
    ([list(range(20)), list(range(20)) + [7]], 19),  # one token of the shorter list stays out of the prefix
    ([list(range(20)) + [1], list(range(20)) + [2]], 20),
    ([list(range(20)), list(range(5)) + [99] * 15], 0),
])
def test_shared_prefix_length(lists, expected):
    from trustbench.harness.engines import _shared_prefix_length

    assert _shared_prefix_length(lists) == expected


def test_shared_instruction_prefix_runs_once_and_changes_nothing(tiny_path, hf_engine):
    """Requests sharing a task instruction (its KV cache computed once per call) against lm-eval's HFLM and plain
    full forwards, which recompute it for every sequence."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from trustbench.harness.engines import MIN_SHARED_PREFIX, _shared_prefix_length

    contexts = [hf_engine.encode(context) for context, _ in SHARED]
    assert _shared_prefix_length(contexts) >= MIN_SHARED_PREFIX  # the path under test is taken
    reference = HFLM(pretrained=str(tiny_path), device="cpu", dtype="float32", batch_size=4)
    expected = reference.loglikelihood([Instance("loglikelihood", {}, args, i) for i, args in enumerate(SHARED)],
                                       disable_tqdm=True)
    ours = hf_engine.loglikelihood(SHARED)
    np.testing.assert_allclose([ll for ll, _ in ours], [ll for ll, _ in expected], atol=1e-4)
    assert [g for _, g in ours] == [g for _, g in expected]

    prompts = sorted({context for context, _ in SHARED})
    ids = letter_token_ids(hf_engine.tokenizer, 3)
    with torch.no_grad():
        plain = [torch.log_softmax(hf_engine.model(torch.tensor([hf_engine.encode(p)])).logits[0, -1], -1)[ids]
                 for p in prompts]
    np.testing.assert_allclose(hf_engine.next_token_logprobs(prompts, ids), torch.stack(plain).numpy(), atol=1e-5)


def test_next_token_logprobs_are_full_vocabulary_logprobs(hf_engine):
    import torch

    prompt = "Question: which is heavier?\nA. stone\nB. box\nAnswer:"
    ids = letter_token_ids(hf_engine.tokenizer, 2)
    ours = hf_engine.next_token_logprobs([prompt, prompt + " A. no"], ids)[0]
    with torch.no_grad():
        logits = hf_engine.model(torch.tensor([hf_engine.encode(prompt)])).logits[0, -1]
    np.testing.assert_allclose(ours, torch.log_softmax(logits, -1)[ids].numpy(), atol=1e-5)


def test_batched_left_padding_changes_nothing(hf_engine, smoke_splits):
    prompts = [letter_prompt(e) for e in smoke_splits[1].test[:6]]
    ids = letter_token_ids(hf_engine.tokenizer, 4)
    together = hf_engine.next_token_logprobs(prompts, ids)
    alone = np.vstack([hf_engine.next_token_logprobs([p], ids) for p in prompts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


@pytest.mark.vllm
def test_vllm_matches_hf_logprobs(hf_engine, vllm_engine):
    ids = letter_token_ids(hf_engine.tokenizer, 4)
    prompts = [r[0] for r in REQUESTS[:4]]
    np.testing.assert_allclose(vllm_engine.next_token_logprobs(prompts, ids),
                               hf_engine.next_token_logprobs(prompts, ids), atol=1e-3)
    ours, theirs = hf_engine.loglikelihood(REQUESTS), vllm_engine.loglikelihood(REQUESTS)
    np.testing.assert_allclose([ll for ll, _ in theirs], [ll for ll, _ in ours], atol=1e-3)


@pytest.mark.vllm
@pytest.mark.parametrize("mode", ["letter", "choice"])
def test_vllm_and_hf_give_same_predictions_and_ece(hf_engine, vllm_engine, smoke_splits, mode):
    examples = smoke_splits[0].test
    hf, vl = score(hf_engine, examples, mode), score(vllm_engine, examples, mode)
    assert hf.pred.tolist() == vl.pred.tolist()
    assert abs(ece(hf.confidence, hf.correct) - ece(vl.confidence, vl.correct)) <= 0.01


@pytest.mark.vllm
def test_vllm_generates(vllm_engine):
    texts = vllm_engine.generate(["the sum of 2 and 3 is"], max_tokens=5, temperature=0.0, n=1)
    assert len(texts) == 1 and len(texts[0]) == 1 and isinstance(texts[0][0].text, str)


def test_a_remembered_engine_answers_a_repeat_from_disk_and_counts_it(hf_engine, tmp_path):
    """The teacher's view for methods in rounds: generations and log-likelihoods are stored as they are answered,
    a second view over the same file (a resumed run) asks the model nothing, and both count the same budget."""
    from trustbench.harness.engines import CachedGenerations

    first = CachedGenerations(hf_engine, "tiny", tmp_path / "requests.sqlite")
    texts = first.generate(["the sum of 2 and 3 is"], max_tokens=5)
    values = first.loglikelihood(REQUESTS[:2])
    assert values == hf_engine.loglikelihood(REQUESTS[:2])
    assert (first.usage.calls, first.usage.sent, first.usage.cache_hits) == (3, 3, 0)
    first.close()
    again = CachedGenerations(hf_engine, "tiny", tmp_path / "requests.sqlite")
    assert again.generate(["the sum of 2 and 3 is"], max_tokens=5) == texts
    assert again.loglikelihood(REQUESTS[:2]) == values
    assert (again.usage.calls, again.usage.sent, again.usage.cache_hits) == (3, 0, 3)
    assert again.usage.prompt_tokens == first.usage.prompt_tokens > 0
    assert again.generate(["the sum of 2 and 3 is"], max_tokens=6) != [] and again.usage.sent == 1  # new params

"""Generation on the local engines: greedy text, stop strings, per-token log-probs, chat templates and usage,
against a plain greedy loop over the model's forward (an independent implementation), and HF against vLLM."""
from __future__ import annotations

import numpy as np
import pytest

PROMPTS = ["The box weighs 3 kg. The stone weighs", "Which item is the heaviest?\nA. box\nB. stone\nAnswer:",
           "the sum of 2 and 3 is"]


def greedy_loop(engine, prompt: str, steps: int) -> tuple[list[int], list[float]]:
    """Token by token: the argmax of a full forward over everything so far, and its log-prob."""
    import torch

    ids = engine.encode(prompt)
    out, logprobs = [], []
    with torch.no_grad():
        for _ in range(steps):
            logits = engine.model(torch.tensor([ids + out])).logits[0, -1].float()
            token = int(logits.argmax())
            out.append(token)
            logprobs.append(float(torch.log_softmax(logits, -1)[token]))
            if token == engine.tokenizer.eos_token_id:
                break
    return out, logprobs


def test_hf_greedy_generation_matches_a_plain_greedy_loop(hf_engine):
    generations = hf_engine.generate(PROMPTS, max_tokens=10, logprobs=True)
    for prompt, (generation,) in zip(PROMPTS, generations):
        ids, logprobs = greedy_loop(hf_engine, prompt, 10)
        assert list(generation.token_ids) == ids
        np.testing.assert_allclose(generation.logprobs, logprobs, atol=1e-4)
        assert generation.text == hf_engine.tokenizer.decode(ids, skip_special_tokens=True)
        assert generation.finish_reason == ("length" if len(ids) == 10 else "stop")


def test_a_stop_string_ends_the_text_before_it(hf_engine):
    (free,), = hf_engine.generate(PROMPTS[:1], max_tokens=12)
    stop = free.text[3:5]  # a string the model is known to write, a few characters in
    (stopped,), = hf_engine.generate(PROMPTS[:1], max_tokens=12, stop=[stop])
    assert stopped.text == free.text[:free.text.index(stop)] and stopped.stopped_by == stop
    assert stopped.finish_reason == "stop"
    kept = hf_engine.tokenizer.decode(list(stopped.token_ids))
    assert stop in kept and stop not in hf_engine.tokenizer.decode(list(stopped.token_ids[:-1]))


def test_top_logprobs_and_usage(hf_engine):
    before = hf_engine.usage.copy()
    (generation,), = hf_engine.generate(PROMPTS[:1], max_tokens=4, logprobs=True, top_logprobs=3)
    assert len(generation.top_logprobs) == len(generation.token_ids) and all(len(t) <= 3 for t in
                                                                              generation.top_logprobs)
    assert max(generation.top_logprobs[0].values()) == pytest.approx(generation.logprobs[0], abs=1e-6)
    spent = hf_engine.usage.minus(before)
    assert spent.calls == 1 and spent.completion_tokens == len(generation.token_ids)
    assert spent.prompt_tokens == len(hf_engine.encode(PROMPTS[0]))


def test_sampling_is_seeded(hf_engine):
    first = hf_engine.generate(PROMPTS[:2], max_tokens=6, temperature=1.0, n=2, seed=3)
    assert first == hf_engine.generate(PROMPTS[:2], max_tokens=6, temperature=1.0, n=2, seed=3)
    assert all(len(row) == 2 for row in first)


def test_a_chat_prompt_needs_a_chat_template(hf_engine):
    from trustbench.harness.errors import UserError

    with pytest.raises(UserError, match="no chat template"):
        hf_engine.generate(PROMPTS[:1], chat=True)


@pytest.mark.vllm
def test_vllm_and_hf_write_the_same_greedy_text(hf_engine, vllm_engine):
    hf = hf_engine.generate(PROMPTS, max_tokens=16, logprobs=True, stop=["\n"])
    vl = vllm_engine.generate(PROMPTS, max_tokens=16, logprobs=True, stop=["\n"])
    assert [g[0].text for g in hf] == [g[0].text for g in vl]
    assert [g[0].stopped_by for g in hf] == [g[0].stopped_by for g in vl]
    assert [g[0].token_ids for g in hf] == [g[0].token_ids for g in vl]
    for a, b in zip(hf, vl):
        np.testing.assert_allclose(a[0].logprobs, b[0].logprobs, atol=1e-3)


@pytest.mark.vllm
def test_smollm2_greedy_text_is_the_same_on_hf_and_vllm():
    """The real teacher in float32, plain and through its chat template (bf16 is not compared: its rounding
    differs between the two backends' kernels)."""
    from trustbench.harness import zoo
    from trustbench.harness.engines import HFEngine, VLLMEngine

    path = zoo.resolve("smollm2-135m")
    prompts = ["What is 12 + 7? Reasoning:", "Name a fruit that is yellow.", "The capital of France is"]
    hf = HFEngine(path, progress=False)
    expected = {chat: [g[0].text for g in hf.generate(prompts, max_tokens=24, chat=chat)] for chat in (False, True)}
    hf.close()
    vl = VLLMEngine(path, progress=False)
    try:
        for chat, texts in expected.items():
            assert [g[0].text for g in vl.generate(prompts, max_tokens=24, chat=chat)] == texts
    finally:
        vl.close()

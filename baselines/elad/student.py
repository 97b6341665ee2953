"""ELAD's student side: its explanations of the pool, split into steps, and the answers read after them (what the
selectors score)."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from trustbench.harness.scoring import ANSWER, ANSWER_TOKENS, CotFormat, parse_number
from trustbench.harness.types import Example


@dataclass
class Explained:
    """The student's outputs on one pool question: what the selectors read."""

    example: Example
    steps: list[str]
    answer: str | None  # its parsed answer (None: none)
    confidence: float  # the probability of its answer tokens
    entropy: float = 0.0  # mean next-token entropy over its answer tokens (top-10)
    samples: list[str | None] = field(default_factory=list)  # answers of K sampled explanations
    step_answers: list[str | None] = field(default_factory=list)  # answers after step prefixes (or removals)
    self_confidence: float = 1.0  # its P(right)


def split_steps(text: str, splitter: str = "newline") -> list[str]:
    """An explanation's steps: its non-empty lines, or its sentences."""
    text = text.strip()
    parts = text.splitlines() if splitter == "newline" else re.split(r"(?<=[.!?])\s+", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


def reasoning_context(prompt: str, steps: list[str]) -> str:
    """The cot prompt followed by `steps` and "Answer:", as the student was trained to write them."""
    return prompt + (" " + "\n".join(steps) + "\n" if steps else "\n") + ANSWER


def read_answers(engine, contexts: list[str], top: int = 0) -> list[tuple[str | None, float, float]]:
    """Greedy answers after each context: (parsed answer, probability of its tokens, mean top-k entropy)."""
    if not contexts:
        return []
    generations = [g[0] for g in engine.generate(contexts, max_tokens=ANSWER_TOKENS, stop=["\n"], logprobs=True,
                                                 top_logprobs=top)]
    out = []
    for g in generations:
        values = list(g.logprobs or ())[:len(g.logprobs or ()) - (1 if g.finish_reason == "stop" and g.logprobs
                                                                   else 0)]
        entropy = 0.0
        if top and g.top_logprobs:
            entropies = [-sum(math.exp(v) * v for v in position.values()) for position in g.top_logprobs[:len(values)]]
            entropy = float(np.mean(entropies)) if entropies else 0.0
        out.append((parse_number(g.text), math.exp(sum(values)) if g.logprobs else 0.0, entropy))
    return out


def explain(engine, fmt: CotFormat, examples: list[Example], needs: set[str], params: dict, seed: int) -> list[Explained]:
    """The student's explanation of every question, and what the selector `needs` of it."""
    prompts = [fmt.prompt(e) for e in examples]
    greedy = [g[0] for g in engine.generate(prompts, max_tokens=fmt.max_new_tokens, stop=[ANSWER])]
    steps = [split_steps(g.text, params["step_splitter"]) for g in greedy]
    answers = read_answers(engine, [reasoning_context(p, s) for p, s in zip(prompts, steps)],
                           top=10 if "entropy" in needs else 0)
    explained = [Explained(e, s, a, c, h) for e, s, (a, c, h) in zip(examples, steps, answers)]
    if "samples" in needs:
        sampled = engine.generate(prompts, max_tokens=fmt.max_new_tokens, stop=[ANSWER], n=params["K"],
                                  temperature=params["temperature"], seed=seed)
        contexts = [reasoning_context(p, split_steps(g.text, params["step_splitter"]))
                    for p, row in zip(prompts, sampled) for g in row]
        flat = [a for a, _, _ in read_answers(engine, contexts)]
        for i, item in enumerate(explained):
            item.samples = flat[i * params["K"]:(i + 1) * params["K"]]
    if "steps" in needs:
        variants = [[s[:i] for i in range(len(s) + 1)] if params["intra"] == "prefix"
                    else [s] + [s[:i] + s[i + 1:] for i in range(len(s))] for s in steps]
        flat = [a for a, _, _ in read_answers(engine, [reasoning_context(p, v) for p, vs in zip(prompts, variants)
                                                       for v in vs])]
        cursor = 0
        for item, vs in zip(explained, variants):
            item.step_answers, cursor = flat[cursor:cursor + len(vs)], cursor + len(vs)
    if "self" in needs:
        yes_no = [engine.tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Yes", " No")]
        asks = [f"{reasoning_context(p, i.steps)} {i.answer}\nIs this answer right? Yes or No:"
                for p, i in zip(prompts, explained)]
        for item, (yes, no) in zip(explained, engine.next_token_logprobs(asks, yes_no)):
            item.self_confidence = float(1 / (1 + math.exp(no - yes)))
    return explained

"""Turn an engine's log-probs into per-example predictions (DESIGN.md, Contracts: Predictions).

Two scoring modes, recorded in the manifest:
- `letter`: the options are listed with letters and the model's next-token distribution over the letter tokens
  is read after "Answer:" (one forward per question, logits only at that position). Confidence is the
  option-renormalised probability of the chosen letter; `option_mass` keeps how much of the full-vocabulary
  probability the letters held (FIRST's raw top-1 view can be recovered from it).
- `choice`: lm-eval's multiple-choice log-likelihood: each option is a continuation of the question, the
  probabilities are the softmax of the summed (length-unnormalised) log-likelihoods, as in lm-eval's `acc`.
"""
from __future__ import annotations

import string
from typing import Sequence

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.types import Example

MODES = ("letter", "choice")
LETTERS = string.ascii_uppercase
CONFIDENCE = {
    "letter": "probability of the chosen option, renormalised over the option letters' next-token probabilities",
    "choice": "probability of the chosen option, softmax over the options' summed log-likelihoods (lm-eval acc)",
}


def letter_prompt(example: Example) -> str:
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(example.choices))
    return f"{example.prompt}\n{options}\nAnswer:"


def choice_context(example: Example) -> str:
    return f"{example.prompt}\nAnswer:"


def training_pair(example: Example, mode: str) -> tuple[str, str]:
    """The (prompt, target) a student is fine-tuned on, in the same format it is scored in."""
    if mode == "letter":
        return letter_prompt(example), f" {LETTERS[example.gold]}"
    return choice_context(example), f" {example.choices[example.gold]}"


def letter_token_ids(tokenizer, count: int) -> list[int]:
    ids = []
    for letter in LETTERS[:count]:
        encoded = tokenizer.encode(f" {letter}", add_special_tokens=False)
        if len(encoded) != 1:
            raise UserError(f"the tokenizer splits ' {letter}' into {len(encoded)} tokens, so letter scoring "
                            "cannot read it in one step; use `scoring: choice` in the suite")
        ids.append(encoded[0])
    return ids


def score(engine, examples: Sequence[Example], mode: str) -> pd.DataFrame:
    """Score `examples` with `engine`; one row per example with probs over its choices."""
    if not examples:
        raise UserError("nothing to score: the split is empty; give the task card a larger test/val size")
    if mode == "letter":
        most = max(len(e.choices) for e in examples)
        if most > len(LETTERS):
            raise UserError(f"an example has {most} choices; letter scoring supports {len(LETTERS)}: use choice mode")
        logprobs = engine.next_token_logprobs([letter_prompt(e) for e in examples],
                                              letter_token_ids(engine.tokenizer, most))
        option_logprobs = [row[:len(e.choices)] for row, e in zip(logprobs, examples)]
    elif mode == "choice":
        requests = [(choice_context(e), f" {c}") for e in examples for c in e.choices]
        lls = np.array([ll for ll, _ in engine.loglikelihood(requests)])
        bounds = np.cumsum([0] + [len(e.choices) for e in examples])
        option_logprobs = [lls[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    else:
        raise UserError(f"unknown scoring mode {mode!r}: use one of {', '.join(MODES)}")
    return predictions_frame(examples, option_logprobs, with_mass=mode == "letter")


def predictions_frame(examples: Sequence[Example], option_logprobs: Sequence[np.ndarray],
                      with_mass: bool = False) -> pd.DataFrame:
    rows = []
    for example, logprobs in zip(examples, option_logprobs):
        logprobs = np.asarray(logprobs, dtype=np.float64)
        if not np.all(np.isfinite(logprobs)):
            raise UserError(f"example {example.id}: the model gave non-finite scores; check the checkpoint")
        top = logprobs.max()
        probs = np.exp(logprobs - top)
        mass = probs.sum()
        probs = probs / mass
        pred = int(probs.argmax())
        row = dict(example_id=example.id, gold=example.gold, pred=pred, confidence=float(probs[pred]),
                   probs=probs.tolist(), correct=pred == example.gold)
        if with_mass:
            row["option_mass"] = float(np.exp(top) * mass)
        rows.append(row)
    return pd.DataFrame(rows)

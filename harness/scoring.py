"""Scoring formats: each owns its prompt, its training target and its scorer (DESIGN.md, Contracts: Predictions).

- `letter` (multiple choice): the options are listed with letters and the model's next-token distribution over
  the letter tokens is read after "Answer:" (one forward per question, logits only at that position). Confidence
  is the option-renormalised probability of the chosen letter; `option_mass` keeps how much of the
  full-vocabulary probability the letters held (FIRST's raw top-1 view can be recovered from it).
- `choice` (multiple choice): lm-eval's log-likelihood; each option is a continuation of the question, the
  probabilities are the softmax of the summed (length-unnormalised) log-likelihoods, as in lm-eval's `acc`.
- `cot` (chain of thought, `format: cot` cards): trained on `<rationale>\\nAnswer: <X>`; scored by letting the
  model write its reasoning (greedy, up to the card's `max_new_tokens`, until it writes "Answer:"), then reading
  the answer after its own "Answer:": with options, the next-token distribution over the option letters (as
  `letter`); with an open answer (a number), the greedy answer, exact match of the parsed number, confidence the
  probability of the generated answer tokens. An output with no "Answer:" is `parsed = False` and counts as wrong;
  its answer is still read after an appended "Answer:", so its confidence is defined the same way.

A card's `use_detail: true` puts the example's `detail` (its longer context) before the question; otherwise the
detail is not used. Formats register by name (`FORMATS`); a task is scored in `cot` when its card says
`format: cot`, else in the suite's `scoring` mode.

Predictions: `example_id, gold, pred, confidence, probs, correct` (+ `option_mass` for letter; + `parsed`,
`output` for cot). An open answer's row is a forecast of its own correctness: `probs = [p, 1 - p]` over {the
model's answer, any other answer}, `pred = 0`, `gold` 0 when the answer is right and 1 when not, and the answers
themselves in `answer` and `gold_answer`; so accuracy, ECE, Brier and NLL read it like any other row.
"""
from __future__ import annotations

import math
import re
import string
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd

from trustbench.harness.calibration import OPEN_ANSWER
from trustbench.harness.engines import GENERATION, SCORING, require
from trustbench.harness.errors import UserError
from trustbench.harness.registry import FORMATS
from trustbench.harness.types import Example, TaskCard

LETTERS = string.ascii_uppercase
ANSWER = "Answer:"
ANSWER_TOKENS = 16  # an open answer (a number) is read in at most this many tokens
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Format:
    """How one task's examples become prompts, training targets and predictions."""

    name: ClassVar[str]
    confidence: ClassVar[str]  # the definition, written into the manifest
    needs: ClassVar[str] = SCORING  # the engine capability its scorer uses

    def __init__(self, card: TaskCard | None = None):
        self.card = card

    def question(self, example: Example) -> str:
        if self.card is not None and self.card.use_detail and example.detail:
            return f"{example.detail}\n{example.prompt}"
        return example.prompt

    def prompt(self, example: Example) -> str:
        raise NotImplementedError

    def target(self, example: Example) -> str:
        raise NotImplementedError

    def pair(self, example: Example) -> tuple[str, str]:
        """The (prompt, target) a model is fine-tuned on, in the same format it is scored in."""
        return self.prompt(example), self.target(example)

    def score(self, engine, examples: Sequence[Example]) -> pd.DataFrame:
        raise NotImplementedError


def options_text(example: Example) -> str:
    return "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(example.choices))


@FORMATS.register("letter")
class LetterFormat(Format):
    name = "letter"
    confidence = "probability of the chosen option, renormalised over the option letters' next-token probabilities"

    def prompt(self, example):
        return f"{self.question(example)}\n{options_text(example)}\n{ANSWER}"

    def target(self, example):
        return f" {LETTERS[example.gold]}"

    def score(self, engine, examples):
        _check_choices(examples)
        require(engine, SCORING, "letter scoring")
        most = _most_choices(examples)
        logprobs = engine.next_token_logprobs([self.prompt(e) for e in examples],
                                              letter_token_ids(engine.tokenizer, most))
        return predictions_frame(examples, [row[:len(e.choices)] for row, e in zip(logprobs, examples)],
                                 with_mass=True)


@FORMATS.register("choice")
class ChoiceFormat(Format):
    name = "choice"
    confidence = "probability of the chosen option, softmax over the options' summed log-likelihoods (lm-eval acc)"

    def prompt(self, example):
        return f"{self.question(example)}\n{ANSWER}"

    def target(self, example):
        return f" {example.choices[example.gold]}"

    def score(self, engine, examples):
        return likelihood_frame(engine, examples, lambda e: [(self.prompt(e), f" {c}") for c in e.choices])


@FORMATS.register("lmeval")
class LmevalFormat(Format):
    """An `lmeval:` card, scored exactly as lm-eval scores it: the prompt is lm-eval's own context and each choice
    already carries its target delimiter (the loader builds both), so nothing is added to either."""

    name = "lmeval"
    confidence = ("probability of the chosen option, softmax over the options' summed log-likelihoods, with "
                  "lm-eval's own contexts and continuations (its acc)")

    def prompt(self, example):
        return example.prompt

    def target(self, example):
        return example.choices[example.gold]

    def score(self, engine, examples):
        return likelihood_frame(engine, examples, lambda e: [(e.prompt, c) for c in e.choices])


@FORMATS.register("cot")
class CotFormat(Format):
    name = "cot"
    confidence = ("with options: probability of the chosen option, renormalised over the option letters after the "
                  "model's own 'Answer:'; with an open answer: probability of the generated answer tokens (greedy), "
                  "its row a forecast of its own correctness")
    needs = GENERATION
    REASONING = "Reasoning:"

    @property
    def max_new_tokens(self) -> int:
        return self.card.max_new_tokens if self.card is not None else 256

    def prompt(self, example):
        options = f"\n{options_text(example)}" if example.choices else ""
        return f"{self.question(example)}{options}\n{self.REASONING}"

    def target(self, example):
        if not example.rationale:
            raise UserError(f"example {example.id} has no rationale, so a cot target cannot be written for it; "
                            "give every training example a `rationale`")
        answer = LETTERS[example.gold] if example.choices else str(example.gold)
        steps = [" ".join(line.split()) for line in example.rationale.splitlines() if line.strip()]
        return f" {chr(10).join(steps)}\n{ANSWER} {answer}"

    def score(self, engine, examples):
        require(engine, GENERATION, "cot scoring")
        reasoning = [g[0] for g in engine.generate([self.prompt(e) for e in examples], max_tokens=self.max_new_tokens,
                                                   stop=[ANSWER])]
        contexts = [self.prompt(e) + _answer_context(g) for e, g in zip(examples, reasoning)]
        parsed = np.array([g.stopped_by == ANSWER for g in reasoning])
        outputs = [g.text.strip() for g in reasoning]
        mc = [e for e in examples if e.choices]
        if mc and len(mc) != len(examples):
            raise UserError("a cot task mixes questions with and without options; split it into two tasks")
        if mc:
            require(engine, SCORING, "cot scoring with options")
            most = _most_choices(examples)
            logprobs = engine.next_token_logprobs(contexts, letter_token_ids(engine.tokenizer, most))
            frame = predictions_frame(examples, [row[:len(e.choices)] for row, e in zip(logprobs, examples)])
            frame["correct"] = frame["correct"] & parsed
        else:
            answers = [g[0] for g in engine.generate(contexts, max_tokens=ANSWER_TOKENS, stop=["\n"], logprobs=True)]
            frame = open_answer_frame(examples, answers)
            frame["correct"] = frame["correct"] & parsed
            frame["gold"] = np.where(frame["correct"], 0, 1)
        frame["parsed"] = parsed
        frame["output"] = outputs
        return frame


def likelihood_frame(engine, examples: Sequence[Example], requests_of) -> pd.DataFrame:
    """Predictions from the summed log-likelihood of each option's (context, continuation), `requests_of(e)`."""
    _check_choices(examples)
    require(engine, SCORING, "log-likelihood scoring")
    lls = np.array([ll for ll, _ in engine.loglikelihood([r for e in examples for r in requests_of(e)])])
    bounds = np.cumsum([0] + [len(e.choices) for e in examples])
    return predictions_frame(examples, [lls[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


def _answer_context(reasoning) -> str:
    """The model's reasoning and then "Answer:": its own, or appended when it did not write one."""
    text = reasoning.text
    if reasoning.stopped_by != ANSWER and not text.endswith("\n"):
        text += "\n"
    return text + ANSWER


def open_answer_frame(examples: Sequence[Example], answers) -> pd.DataFrame:
    """Rows of generated open answers: confidence = the probability of the answer tokens (the tokens before the
    newline or end of text that ended it)."""
    confidences = []
    for generation in answers:
        logprobs = generation.logprobs or ()
        kept = len(logprobs) - (1 if generation.finish_reason == "stop" and logprobs else 0)  # not the ending
        confidences.append(math.exp(sum(logprobs[:max(kept, 0)])) if logprobs else 0.0)
    return open_answer_rows(examples, [g.text.strip() for g in answers], confidences)


def open_answer_rows(examples: Sequence[Example], answers: Sequence[str], confidences: Sequence[float]) -> pd.DataFrame:
    """Each answer against gold (exact match of the parsed numbers), as a forecast of its own correctness."""
    rows = []
    for example, answer, confidence in zip(examples, answers, confidences):
        value = parse_number(answer)
        correct = value is not None and value == parse_number(str(example.gold))
        rows.append(dict(example_id=example.id, gold=0 if correct else 1, pred=0, confidence=confidence,
                         probs=[confidence, 1.0 - confidence], correct=correct, answer=answer,
                         **{OPEN_ANSWER: str(example.gold)}))
    return pd.DataFrame(rows)


def parse_number(text: str) -> str | None:
    """The first number in `text`, canonical (`1,000.50` -> `1000.5`, `07` -> `7`); None when there is none."""
    match = _NUMBER.search(text.replace(",", ""))
    if not match:
        return None
    value = float(match.group())
    return str(int(value)) if value.is_integer() else repr(value)


def letter_token_ids(tokenizer, count: int) -> list[int]:
    ids = []
    for letter in LETTERS[:count]:
        encoded = tokenizer.encode(f" {letter}", add_special_tokens=False)
        if len(encoded) != 1:
            raise UserError(f"the tokenizer splits ' {letter}' into {len(encoded)} tokens, so letter scoring "
                            "cannot read it in one step; use `scoring: choice` in the suite")
        ids.append(encoded[0])
    return ids


def _check_choices(examples: Sequence[Example]) -> None:
    if not examples:
        raise UserError("nothing to score: the split is empty; give the task card a larger test/val size")
    if any(not e.choices for e in examples):
        raise UserError("a multiple-choice format got a question without options; give the task `format: cot` in its "
                        "card if its answers are open")


def _most_choices(examples: Sequence[Example]) -> int:
    most = max(len(e.choices) for e in examples)
    if most > len(LETTERS):
        raise UserError(f"an example has {most} choices; letter scoring supports {len(LETTERS)}: use choice mode")
    return most


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
        pred = int(logprobs.argmax())  # of the scores, not of the rounded probabilities: lm-eval's rule on ties
        row = dict(example_id=example.id, gold=example.gold, pred=pred, confidence=float(probs[pred]),
                   probs=probs.tolist(), correct=pred == example.gold)
        if with_mass:
            row["option_mass"] = float(np.exp(top) * mass)
        rows.append(row)
    return pd.DataFrame(rows)


def format_for(card: TaskCard, mode: str) -> Format:
    """The format a task is scored in: `cot` for a cot card, `lmeval` for an lm-eval task (as lm-eval scores it),
    else the suite's multiple-choice `mode`."""
    name = "cot" if card.format == "cot" else "lmeval" if card.source.startswith("lmeval:") else mode
    return FORMATS.get(name)(card)


# The plain-function view the tests and lm-eval adapter use.
def letter_prompt(example: Example) -> str:
    return LetterFormat().prompt(example)


def choice_context(example: Example) -> str:
    return ChoiceFormat().prompt(example)


def training_pair(example: Example, mode: str) -> tuple[str, str]:
    return FORMATS.get(mode)().pair(example)


def score(engine, examples: Sequence[Example], mode: str) -> pd.DataFrame:
    """Score `examples` with `engine` in format `mode`; one row per example."""
    if not examples:
        raise UserError("nothing to score: the split is empty; give the task card a larger test/val size")
    return FORMATS.get(mode)().score(engine, examples)

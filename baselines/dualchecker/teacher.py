"""DualChecker's teacher: asks for labels (by log-likelihood or by a written reply), with the teacher checker's
second question on the detail when a label is unsure."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trustbench.baselines.dualchecker.prompts import (Demo, label_probability, label_prompt, label_span, reason_prompt,
                                                  token_pieces, verbalised_confidence)
from trustbench.harness.errors import UserError
from trustbench.harness.types import Example

REPLY_STOP = ["\n\n", "\nText:"]  # a reply is three lines; what follows is the model writing the next question


@dataclass
class Label:
    """One teacher answer: the label index (None: unparsable), the confidence the checker reads, and both kinds of
    confidence where the answer has them: the label's token probability and the percentage the teacher states."""

    label: int | None
    confidence: float
    token: float | None = None
    verbalised: float | None = None


class Teacher:
    """The prompted teacher over an engine. `reply` False (white box): the label of highest log-likelihood, its
    confidence that probability renormalised over the labels. `reply` True (black box, or a local model asked the
    same way): the teacher writes "Answer / Confidence / Reason", and both confidences are read from the reply, the
    percentage it states and its label's token probability (where the engine returns log-probs); `confidence`
    says which one the checker reads."""

    def __init__(self, engine, instruction: str, settings: dict, reply: bool, confidence: str, endpoint: bool,
                 chat: bool):
        self.engine, self.instruction, self.settings = engine, instruction, settings
        self.reply, self.confidence, self.endpoint, self.chat = reply, confidence, endpoint, chat
        self.unparsable = 0

    def label(self, examples: list[Example], texts: list[str], demos: list[list[Demo]]) -> list[Label]:
        """Each example's label among its own options, asked with `texts` (short or detail) and `demos`."""
        labels = [tuple(e.choices) for e in examples]
        prompts = [label_prompt(self.instruction, ls, d, t, self.settings["demo_chars"], self.reply)
                   for ls, t, d in zip(labels, texts, demos)]
        return self._replies(prompts, labels) if self.reply else self._choices(prompts, labels)

    def _choices(self, prompts: list[str], labels: list[tuple[str, ...]]) -> list[Label]:
        requests = [(p, f" {label}") for p, ls in zip(prompts, labels) for label in ls]
        values = iter(ll for ll, _ in self.engine.loglikelihood(requests))
        answers = []
        for ls in labels:
            row = np.array([next(values) for _ in ls])
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            answers.append(Label(int(np.argmax(probs)), float(probs.max()), token=float(probs.max())))
        return answers

    def _replies(self, prompts: list[str], labels: list[tuple[str, ...]]) -> list[Label]:
        generations = self.engine.generate(prompts, max_tokens=96, temperature=0.0, logprobs=True,
                                           stop=REPLY_STOP, **self._chat())
        tokenizer = getattr(self.engine, "tokenizer", None)
        answers = []
        for generation, ls in zip((g[0] for g in generations), labels):
            span = label_span(generation.text, ls)
            token = label_probability(generation, token_pieces(generation, tokenizer), span)
            verbalised = verbalised_confidence(generation.text)
            if self.confidence == "token" and token is None:
                raise UserError("the teacher's replies carry no token log-probs, so confidence: token cannot be "
                                "read; use confidence: verbalised (or a server that returns log-probs)")
            answers.append(Label(None if span is None else span[0],
                                 token if self.confidence == "token" else verbalised, token, verbalised))
        self.unparsable += sum(a.label is None for a in answers)
        return answers

    def reasons(self, texts: list[str], labels: list[str]) -> list[str]:
        prompts = [reason_prompt(self.instruction, t, label) for t, label in zip(texts, labels)]
        replies = self.engine.generate(prompts, max_tokens=self.settings["reason_tokens"], temperature=0.0,
                                       **self._chat(), **({} if self.endpoint else {"stop": ["\n"]}))
        return [" ".join(g[0].text.split()) or "-" for g in replies]

    def _chat(self) -> dict:
        """The chat flag, passed only when set (the suite's `chat_template: true`, a local model), so requests
        without it keep the cache keys of earlier runs; an endpoint is asked as its `api` says."""
        return {"chat": True} if self.chat else {}

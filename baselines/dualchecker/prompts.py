"""DualChecker's prompts and how a reply is read: the demonstrations, the label and reason prompts, the stated
confidence, the label and its token probability; and ContextAligner's retrieval of similar examples."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from trustbench.harness.types import Example

# the released code's Japanese word scale, in English (a confidence field without a number)
WORD_SCALE = (("somewhat unconfident", 0.25), ("not very confident", 0.25), ("somewhat confident", 0.75),
              ("unconfident", 0.0), ("not confident", 0.0), ("neutral", 0.5), ("confident", 1.0))


@dataclass(frozen=True)
class Demo:
    text: str
    label: str
    reason: str | None = None

    def render(self, chars: int) -> str:
        text = self.text if len(self.text) <= chars else self.text[:chars].rstrip() + "..."
        return f"Text: {text}\nAnswer: {self.label}." + (f" Reason: {self.reason}" if self.reason else "")


def label_prompt(instruction: str, labels: tuple[str, ...], demos: list[Demo], text: str, chars: int,
                 reply: bool = False) -> str:
    """The teacher's question: instruction, labels, demonstrations (the code's order), then the text."""
    ask = ("Reply in three lines: 'Answer: <label>', 'Confidence: <0-100>%', 'Reason: <one sentence>'."
           if reply else "")
    shown = "\n\n".join(d.render(chars) for d in demos)
    return (f"{instruction}\nLabels: {', '.join(labels)}.{' ' + ask if ask else ''}\n\n"
            + (f"{shown}\n\nRefer to the examples above and answer for the next text.\n" if demos else "")
            + f"Text: {text}\nAnswer:")


def reason_prompt(instruction: str, text: str, label: str) -> str:
    """Asking the teacher to justify a human label (ContextAligner; the student checker's feedback)."""
    return (f"{instruction}\nText: {text}\nLabel: {label}\nThe label you chose is '{label}'. Please explain why it "
            "matches this label.\nReason:")


def verbalised_confidence(reply: str) -> float:
    """The confidence a black-box teacher states, by the released code's rules: the largest whole number <= 100 in
    the confidence field, / 100; else a word of its scale; else (no field, nothing readable) 0, so the question is
    asked again."""
    match = re.search(r"confidence\s*[:=]?\s*(.*)", reply, flags=re.I)
    if not match:
        return 0.0
    field = match.group(1).splitlines()[0] if match.group(1) else ""
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", field) if float(n) <= 100]
    if numbers:
        return max(numbers) / 100
    lowered = field.lower()
    for words, value in WORD_SCALE:
        if words in lowered:
            return value
    return 0.0


def parse_label(reply: str, labels: tuple[str, ...]) -> int | None:
    """The label a reply gives after "Answer:" (or at its start): the first label named there, exactly, any case."""
    span = label_span(reply, labels)
    return None if span is None else span[0]


def label_span(reply: str, labels: tuple[str, ...]) -> tuple[int, int, int] | None:
    """(label, start, end): the label `parse_label` reads and where in the reply it stands; None when unparsable."""
    answer = re.search(r"answer\s*:", reply, flags=re.I)
    begin = answer.end() if answer else 0
    rest = reply[begin:]
    begin += len(rest) - len(rest.lstrip())
    line = rest.lstrip().split("\n", 1)[0].lower()
    found = [(m.start(), i, m.end()) for i, label in enumerate(labels)
             for m in [re.search(rf"\b{re.escape(label.lower())}\b", line)] if m]
    if not found:
        return None
    start, label, end = min(found)
    return label, begin + start, begin + end


def label_probability(generation, pieces: list[str] | None, span: tuple[int, int, int] | None) -> float | None:
    """The probability the teacher gave its label in a reply: the product of the probabilities of the generated
    tokens that spell it (the answer token's probability, read from a reply). 0 for an unparsable reply; None when
    the reply has no log-probs or its tokens do not spell its text."""
    if generation.logprobs is None or pieces is None:
        return None
    if span is None:
        return 0.0
    _, start, end = span
    if not "".join(pieces).startswith(generation.text[:end]):
        return None
    total, position = 0.0, 0
    for piece, value in zip(pieces, generation.logprobs):
        if position < end and position + len(piece) > start:
            total += value
        position += len(piece)
    return float(np.exp(total))


def token_pieces(generation, tokenizer) -> list[str] | None:
    """Each generated token's text: the server's (an endpoint), or each id decoded (a local engine)."""
    if generation.tokens is not None:
        return list(generation.tokens)
    if tokenizer is None or not generation.token_ids:
        return None
    return [tokenizer.decode([t], skip_special_tokens=True) for t in generation.token_ids]


def gold_label(example: Example) -> str:
    return example.choices[example.gold]


def label_sets(examples: list[Example]) -> list[str] | None:
    """The labels of a classification split (one set for every example); None when each question has its own."""
    sets = {tuple(e.choices) for e in examples}
    return list(sets.pop()) if len(sets) == 1 else None


def retrieved_count(shots: int) -> int:
    """How many neighbours ContextAligner retrieves for `shots` (the released code: 1 if > 0, 2 if > 3, 3 if > 5)."""
    return 0 if shots <= 0 else 1 if shots <= 3 else 2 if shots <= 5 else 3


def neighbours(embeddings: np.ndarray, query: int, count: int) -> list[int]:
    """The `count` nearest other rows to row `query` by cosine similarity (rows are unit vectors), nearest first."""
    similarity = embeddings @ embeddings[query]
    similarity[query] = -np.inf
    return [int(i) for i in np.argsort(-similarity, kind="stable")[:count]]


def borderline(probs: list[list[float]], gold: list[int]) -> int | None:
    """The misclassified example (argmax != gold) with the lowest top probability; None when all are right."""
    wrong = [(max(p), i) for i, (p, g) in enumerate(zip(probs, gold)) if int(np.argmax(p)) != g]
    return min(wrong)[1] if wrong else None

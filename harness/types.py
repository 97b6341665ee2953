"""The shapes every part of trustbench agrees on (see ../shared/DESIGN.md, Contracts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Example:
    """One multiple-choice question. `gold` indexes `choices`."""

    id: str
    prompt: str
    choices: tuple[str, ...]
    gold: int
    rationale: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]


@dataclass(frozen=True)
class TaskCard:
    """A task as data: where its examples come from and how they are split.

    `source` is `<loader>:<argument>`, e.g. `bigbench:multiemo/hotels_text_en`, `jsonl:/path/to/file.jsonl`,
    `lmeval:arc_easy`, `synthetic:id`. The split rule is a seeded shuffle, then test, val and train take the first
    `test`, `val` and `train` examples in that order (a size of 0 leaves that split empty).
    """

    name: str
    domain: Literal["id", "ood"]
    family: str
    format: Literal["mc", "cot"]
    source: str
    description: str = ""
    split_seed: int = 1234
    train: int = 0
    val: int = 0
    test: int = 0
    max_prompt_chars: int | None = None
    options: dict = field(default_factory=dict)

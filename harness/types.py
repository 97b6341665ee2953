"""The shapes every part of trustbench agrees on (see ../shared/DESIGN.md, Contracts)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Example:
    """One question: multiple choice (`gold` indexes `choices`) or open (no choices; `gold` is the answer text)."""

    id: str
    prompt: str
    choices: tuple[str, ...]
    gold: int | str
    rationale: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class Splits:
    train: list[Example]
    val: list[Example]
    test: list[Example]
    pool: list[Example] = field(default_factory=list)  # unlabelled questions a teacher may annotate (active methods)


@dataclass(frozen=True)
class TaskCard:
    """A task as data: where its examples come from and how they are split.

    `source` is `<loader>:<argument>`, e.g. `countryinfo:province_country`, `jsonl:/path/to/file.jsonl`,
    `lmeval:arc_easy`, `synthetic:id`. The split rule is a seeded shuffle, then test, val, train and pool take the
    first `test`, `val`, `train` and `pool` examples in that order (a size of 0 leaves that split empty).
    `use_detail` puts each example's `detail` before its question; `max_new_tokens` bounds a cot answer's reasoning.
    `license` is the data's licence, as its source states it (every built-in card names one).
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
    pool: int = 0
    max_prompt_chars: int | None = None
    use_detail: bool = False
    max_new_tokens: int = 256
    options: dict = field(default_factory=dict)
    license: str = ""

    def flag(self, key: str, default: bool = False) -> bool:
        """A true/false loader option; anything else (`"no"`, 1) is a one-line error, not silently true."""
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            from trustbench.harness.errors import UserError

            raise UserError(f"task {self.name}: option {key} must be true or false, got {value!r}; fix the card")
        return value


@dataclass(frozen=True)
class Task:
    """A task as a run uses it: its card (sized by the suite), the format it is scored in, and its splits."""

    card: TaskCard
    format: object  # a harness.scoring.Format
    splits: Splits

    @property
    def name(self) -> str:
        return self.card.name

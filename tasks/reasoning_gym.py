"""reasoning-gym generators (PyPI `reasoning-gym`, Apache-2.0): `source: reasoning_gym:<dataset>`, seeded, offline.

Each split is generated from its own range of seeds, so train, val, test and pool never share a generated item:
reasoning-gym builds item i of a dataset seeded s from `Random(s + i)`, and split k starts at
`split_seed * 10**7 + k * 10**6`. A train, val or pool question that happens to equal an earlier split's (small
arithmetic repeats) is dropped and replaced by the next one. Every example is an open question with an integer
answer (`gold` is its text) and a worked rationale:

- `gsm_symbolic`: GSM8K-style word problems from templates; the rationale is the generator's own `answer_cot`
  without its final `#### N` line. Option `templates: [...]` picks the templates (ids 0..99), so an OOD card can
  hold out problem types its ID card trains on. Questions from templates whose answers are not integers are
  skipped.
- `chain_sum`: sums and differences of a few integers; the rationale is the running sum, one step a line
  (`67 + 75 = 142`, `142 - 85 = 57`), written here from the generator's expression (it has none of its own).

Card options: `config: {...}` is passed to the generator (e.g. `{min_terms: 2, max_terms: 3, max_digits: 2}`);
`templates: [...]` for gsm_symbolic.
"""
from __future__ import annotations

import random
import re

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, Splits, TaskCard

OPTIONS = ("config", "templates")
SPLIT_ORDER = ("test", "val", "train", "pool")
SEED_SPAN = 10 ** 6  # items per split's seed range (more than any split asks for)
_TERM = re.compile(r"([+-])\s*(\d+)")


@LOADERS.register("reasoning_gym")
def load(card: TaskCard) -> Splits:
    name = card.source.partition(":")[2].strip()
    unknown = sorted(set(card.options) - set(OPTIONS))
    if unknown:
        raise UserError(f"task {card.name}: unknown reasoning_gym option '{unknown[0]}'; allowed: {', '.join(OPTIONS)}")
    if name not in GENERATORS:
        raise UserError(f"task {card.name}: reasoning_gym dataset {name!r} is not supported (it has no worked "
                        f"rationale here); use one of {', '.join(sorted(GENERATORS))}")
    items = GENERATORS[name](card, dict(card.options.get("config") or {}))
    seen: set[str] = set()
    parts = {}
    for index, part in enumerate(SPLIT_ORDER):
        wanted = getattr(card, part)
        base = card.split_seed * 10 * SEED_SPAN + index * SEED_SPAN
        examples = []
        for i, (question, answer, rationale) in enumerate(items(base)):
            if len(examples) == wanted:
                break
            if question in seen:
                continue
            examples.append(Example(id=f"{card.name}-{part}-{i}", prompt=question, choices=(), gold=answer,
                                    rationale=rationale))
        seen |= {e.prompt for e in examples}
        parts[part] = examples
    return Splits(**parts)


def _chain_sum(card: TaskCard, config: dict):
    import reasoning_gym

    def items(seed: int):
        dataset = _dataset(reasoning_gym, card, "chain_sum", SEED_SPAN, seed, config)
        for entry in dataset:
            yield entry["question"], str(int(entry["answer"])), running_sum(entry["metadata"]["expression"])

    return items


def running_sum(expression: str) -> str:
    """`67 + 75 - 85` -> `67 + 75 = 142\\n142 - 85 = 57`: one line per operation."""
    first = int(re.match(r"\s*(-?\d+)", expression).group(1))
    lines, total = [], first
    for sign, number in _TERM.findall(expression[len(str(first)):]):
        new = total + int(number) if sign == "+" else total - int(number)
        lines.append(f"{total} {sign} {number} = {new}")
        total = new
    return "\n".join(lines)


def _gsm_symbolic(card: TaskCard, config: dict):
    import reasoning_gym

    generators = _dataset(reasoning_gym, card, "gsm_symbolic", 1, 0, config).generators
    templates = list(card.options.get("templates") or sorted(generators))
    bad = [t for t in templates if t not in generators]
    if bad:
        raise UserError(f"task {card.name}: gsm_symbolic has no template {bad[0]!r}; use ids from "
                        f"{min(generators)} to {max(generators)}")

    def items(seed: int):
        for i in range(SEED_SPAN):
            rng = random.Random(seed + i)
            entry = generators[rng.choice(templates)](rng, 1.0)
            value = float(entry["answer"])
            if not value.is_integer():
                continue
            steps = [line.strip() for line in entry["metadata"]["answer_cot"].splitlines()]
            yield entry["question"], str(int(value)), "\n".join(s for s in steps if s and not s.startswith("####"))

    return items


def _dataset(reasoning_gym, card: TaskCard, name: str, size: int, seed: int, config: dict):
    try:
        return reasoning_gym.create_dataset(name, size=size, seed=seed, **config)
    except (TypeError, ValueError, AssertionError) as error:
        raise UserError(f"task {card.name}: reasoning_gym {name} refused config {config} ({error}); fix "
                        "`options: {config: ...}` in the card") from None


GENERATORS = {"chain_sum": _chain_sum, "gsm_symbolic": _gsm_symbolic}

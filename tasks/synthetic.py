"""Seeded synthetic tasks for tests and the smoke suite: `source: synthetic:id`, `synthetic:ood` or `synthetic:cot`.

The world: a handful of named things, each with a weight; the question asks which is heaviest, the choices are the
names. With probability `noise` the gold label is replaced by another choice (label noise), so even a perfect model
is right only ~(1 - noise) of the time and a calibrated one is not confident 1.

`id` uses everyday objects, weights in kg, one short phrasing. `ood` keeps the answer format (pick one of the named
things) but shifts the surface form: unseen entity names (animals and made-up creatures), weights in grams, other
phrasings, and filler sentences that lengthen the context.

`total` is a fixed-label classification (choices "no", "yes"): do `num_choices` everyday objects weigh more than
25 kg each on average together? (label noise as above).

`cot` is an open question for chain-of-thought scoring: the total weight of `num_choices` everyday objects, with the
running sum as its rationale (`3 + 5 = 8`) and the total as its answer (no label noise).

Card options (defaults): n: 200, seed: 0, num_choices: 4, noise: 0.1, short: false. Fully deterministic for a given
set. `short: true` (id, ood, total) keeps only the first fact and the question in the prompt and puts the whole
question in the example's `detail`: a short and a detailed version of one question, for DualChecker's tests.
"""
from __future__ import annotations

import numpy as np

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, TaskCard

VARIANTS = ("id", "ood", "cot", "total")  # appended only: each variant keeps its random stream
DEFAULTS = {"n": 200, "seed": 0, "num_choices": 4, "noise": 0.1}

ID_ITEMS = (
    "apple", "book", "brick", "bucket", "chair", "hammer", "kettle", "lamp", "laptop", "melon", "pillow", "pumpkin",
    "shoe", "suitcase", "table", "toaster", "umbrella", "vase", "wrench", "backpack", "bottle", "guitar", "helmet",
    "drum",
)
OOD_ITEMS = (
    "otter", "heron", "lynx", "badger", "gecko", "tapir", "ibis", "marmot", "okapi", "quokka", "vole", "wombat",
    "zorblat", "fennix", "grumlet", "quillon", "snarvik", "tovelin", "brimmock", "yallow",
)
OOD_TEMPLATES = (
    "Of the following creatures, which one has the greatest mass?",
    "A keeper weighed several animals this morning. Which animal was the heaviest?",
    "Looking only at the recorded masses, which of these is heaviest?",
)
OOD_FILLER = (
    "The scale was calibrated before use.",
    "Measurements were taken before feeding.",
    "Each animal was weighed once.",
    "The enclosure had been cleaned the day before.",
    "Records are kept in a ledger by the entrance.",
)


def generate(variant: str, n: int = 200, seed: int = 0, num_choices: int = 4, noise: float = 0.1,
             prefix: str = "synthetic") -> list[Example]:
    """`n` examples of the `variant` world; example ids are `<prefix>-<i>`."""
    if variant not in VARIANTS:
        raise UserError(f"synthetic variant '{variant}' is not known; use one of "
                        f"{', '.join('synthetic:' + v for v in VARIANTS)}")
    items = OOD_ITEMS if variant == "ood" else ID_ITEMS
    if not 2 <= num_choices <= len(items):
        raise UserError(f"synthetic option num_choices={num_choices} must be between 2 and {len(items)}")
    if not 0.0 <= noise < 1.0:
        raise UserError(f"synthetic option noise={noise} must be in [0, 1)")
    if n < 1:
        raise UserError(f"synthetic option n={n} must be at least 1")
    rng = np.random.default_rng([seed, VARIANTS.index(variant)])
    out = []
    for i in range(n):
        names = [items[j] for j in rng.choice(len(items), size=num_choices, replace=False)]
        weights = rng.choice(np.arange(1, 50), size=num_choices, replace=False)  # distinct: one true answer
        gold = int(np.argmax(weights))
        flip = rng.random() < noise
        other = int(rng.integers(num_choices - 1))
        if flip:
            gold = other if other < gold else other + 1
        if variant == "cot":
            facts = " ".join(f"The {a} weighs {w} kg." for a, w in zip(names, weights))
            sums = np.cumsum(weights)
            rationale = "\n".join(f"{sums[j - 1]} + {weights[j]} = {sums[j]}" for j in range(1, num_choices))
            out.append(Example(id=f"{prefix}-{i}", prompt=f"{facts} How many kg do they weigh together?",
                               choices=(), gold=str(int(sums[-1])), rationale=rationale))
            continue
        if variant == "total":
            facts = " ".join(f"The {a} weighs {w} kg." for a, w in zip(names, weights))
            heavy = int(weights.sum() > 25 * num_choices)
            out.append(Example(id=f"{prefix}-{i}", prompt=f"{facts} Do they weigh more than {25 * num_choices} kg "
                               "together?", choices=("no", "yes"), gold=1 - heavy if flip else heavy))
            continue
        if variant == "id":
            facts = " ".join(f"The {a} weighs {w} kg." for a, w in zip(names, weights))
            prompt = f"{facts} Which item is the heaviest?"
        else:
            facts = [f"The {a} has a mass of {w * 1000} g." for a, w in zip(names, weights)]
            for _ in range(int(rng.integers(1, 3))):
                facts.insert(int(rng.integers(len(facts) + 1)), OOD_FILLER[int(rng.integers(len(OOD_FILLER)))])
            template = OOD_TEMPLATES[int(rng.integers(len(OOD_TEMPLATES)))]
            prompt = f"{' '.join(facts)} {template}"
        out.append(Example(id=f"{prefix}-{i}", prompt=prompt, choices=tuple(names), gold=gold))
    return out


@LOADERS.register("synthetic")
def load(card: TaskCard) -> list[Example]:
    variant = card.source.partition(":")[2].strip()
    bad = sorted(set(card.options) - set(DEFAULTS) - {"short"})
    if bad:
        raise UserError(f"task {card.name}: unknown synthetic option '{bad[0]}'; allowed: {', '.join(DEFAULTS)}")
    short = card.flag("short")
    opts = {**DEFAULTS, **{k: v for k, v in card.options.items() if k != "short"}}
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in opts.values()) \
            or any(not float(opts[k]).is_integer() for k in ("n", "seed", "num_choices")):
        raise UserError(f"task {card.name}: synthetic options n, seed, num_choices must be whole numbers and noise a "
                        f"number, got {card.options}")
    n, seed, k, noise = int(opts["n"]), int(opts["seed"]), int(opts["num_choices"]), float(opts["noise"])
    examples = generate(variant, n=n, seed=seed, num_choices=k, noise=noise, prefix=card.name)
    return [shortened(e) for e in examples] if short and variant != "cot" else examples


def shortened(example: Example) -> Example:
    """The first fact and the question as the prompt; the whole question as the detail."""
    sentences = example.prompt.split(". ")
    short = f"{sentences[0]}. {example.prompt.rsplit('. ', 1)[-1]}"
    return Example(example.id, short, example.choices, example.gold, example.rationale, detail=example.prompt)

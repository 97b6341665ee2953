"""What every method gets (`Context`) and returns (`StudentArtifact`): DESIGN.md, Contracts: Method."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from harness import zoo
from harness.cache import stable_hash
from harness.config import MethodSpec, Suite, TrainConfig
from harness.errors import UserError
from harness.scoring import training_pair
from harness.types import Example
from harness.zoo import model_identity  # re-exported: recipes key their caches with it


@dataclass(frozen=True)
class StudentArtifact:
    """A checkpoint folder to score, and what producing it cost (teacher calls/tokens, train tokens, seconds...)."""

    path: Path
    cost: dict = field(default_factory=dict)


@dataclass
class Context:
    suite: Suite
    spec: MethodSpec
    seed: int
    train: list[Example]  # the ID tasks' train splits, concatenated
    val: list[Example]  # the ID tasks' val splits, concatenated
    log: Callable[[str], None] = print

    def pairs(self, examples: list[Example]) -> list[tuple[str, str]]:
        return [training_pair(e, self.suite.scoring) for e in examples]

    def data_key(self, examples: list[Example]) -> str:
        return stable_hash([(e.id, e.prompt, e.choices, e.gold) for e in examples])

    def train_config(self, base: TrainConfig | None = None) -> TrainConfig:
        """The suite's train settings with this method's overrides (any TrainConfig field in its params)."""
        base = base or self.suite.train
        allowed = {f.name for f in dataclasses.fields(TrainConfig)}
        return dataclasses.replace(base, **{k: v for k, v in self.spec.params.items() if k in allowed})

    @property
    def student_init(self) -> Path:
        return zoo.resolve(self.suite.student)

    @property
    def teacher_init(self) -> Path:
        return zoo.resolve(self.suite.teacher)


def cached_sft(ctx: Context, kind: str, cache: str, init: Path, config: TrainConfig, seed: int) -> StudentArtifact:
    """Fine-tune `init` on the ID train split, once per hash of everything the result depends on."""
    from harness.train import cached_checkpoint, finetune  # Trainer: slow to import, and `eval` never trains

    key = {"kind": kind, "model": model_identity(init), "data": ctx.data_key(ctx.train), "mode": ctx.suite.scoring,
           "train": dataclasses.asdict(config), "seed": seed}
    path, cost = cached_checkpoint(cache, key, lambda out: finetune(init, ctx.pairs(ctx.train), config, seed, out,
                                                                     log=ctx.log))
    return StudentArtifact(path, cost)


@dataclass
class DistillData:
    """Examples encoded exactly as `finetune` encodes them, so teacher outputs line up with the student's targets."""

    pairs: list[tuple[str, str]]
    sequences: list[list[int]]  # prompt + target token ids
    starts: list[int]  # where each target begins

    @property
    def responses(self) -> list[list[int]]:
        return [seq[start:] for seq, start in zip(self.sequences, self.starts)]


def distill_data(ctx: Context, examples: list[Example], config: TrainConfig) -> DistillData:
    """Encode `examples` with the student's tokenizer (the runner has checked the teacher's is the same)."""
    from transformers import AutoTokenizer

    from harness.train import encode_pairs

    pairs = ctx.pairs(examples)
    features = encode_pairs(AutoTokenizer.from_pretrained(ctx.student_init), pairs, config.max_length)
    return DistillData(pairs, [f["input_ids"] for f in features],
                       [len(f["input_ids"]) - f["target_len"] for f in features])


def number_param(spec: MethodSpec, name: str, default: float) -> float:
    """A numeric method parameter, or a one-line UserError naming it (YAML `true` is not a number here)."""
    value = spec.params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"method {spec.name!r}: {name} must be a number, got {value!r}")
    return float(value)


class Method:
    """A distillation recipe. Subclasses set `name`, say whether they depend on the seed, and implement `fit`."""

    name: ClassVar[str]
    seeded: ClassVar[bool] = True
    trains: ClassVar[bool] = True  # needs the ID train split
    params: ClassVar[tuple[str, ...]] = ()  # accepted params besides TrainConfig fields
    distils_logits: ClassVar[bool] = False  # compares teacher and student distributions: same vocabulary needed

    def __init__(self, spec: MethodSpec):
        allowed = set(self.params) | {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(spec.params) - allowed)
        if unknown:
            raise UserError(f"method {spec.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                            f"{self.name} accepts {', '.join(sorted(allowed)) or 'none'}")
        self.spec = spec

    def check(self) -> None:
        """Validate inputs before a run writes anything (raise UserError); most methods need nothing."""

    def fit(self, ctx: Context) -> StudentArtifact:
        raise NotImplementedError

"""What every method gets (`Context`) and returns (`StudentArtifact`): DESIGN.md, Contracts: Method.

A recipe asks `ctx` for what it needs instead of reading the suite and building its own keys:

    ctx.train, ctx.val, ctx.pool      the ID tasks' splits, concatenated (ctx.tasks: per task, with its format)
    ctx.pairs(examples)               (prompt, target) pairs rendered by each example's format
    ctx.train_config()                the suite's train settings with this method's overrides
    ctx.teacher()                     the teacher fine-tuned on the ID train split (cached; built once per process)
    ctx.engine(model, role)           a long-lived engine from the run's pool (model: a path, or the endpoint)
    ctx.cache_key(kind, **extra)      everything a student depends on, so a recipe cannot forget a field
    ctx.record(key, value)            a result reports and figures read by key (`manifest.records(key)`)
    ctx.round_dir(i)                  a folder for round i's artifacts in the run directory
    ctx.teacher_usage()               what the teacher engines were asked since this method started

Nothing here imports torch: a report imports recipe modules to draw their figures, and must stay light.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar

from trustbench.harness import zoo
from trustbench.harness.cache import stable_hash
from trustbench.harness.config import MethodSpec, Suite, TrainConfig, checked
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.engines import DISTRIBUTIONS, GENERATION, LOCAL, SCORING, EnginePool, Usage
from trustbench.harness.errors import UserError
from trustbench.harness.registry import METHODS
from trustbench.harness.store import RunDir
from trustbench.harness.types import Example, Task
from trustbench.harness.zoo import model_identity

TEACHER_SEED = 0  # the teacher is trained once, whatever the run's seeds, so every student of a suite shares it
_TEACHERS: dict[str, "StudentArtifact"] = {}  # fine-tuned teachers built in this process, by key


@dataclass(frozen=True)
class StudentArtifact:
    """A checkpoint folder to score, and what producing it cost (teacher calls/tokens, train tokens, seconds...).
    A method that works in rounds also returns its earlier students (`rounds`, by label): each is scored like a
    method of its own, `<name>@<label>` (e.g. `elad@r1`), so reports and the gate handle rounds as methods."""

    path: Path
    cost: dict = field(default_factory=dict)
    rounds: dict[str, "StudentArtifact"] = field(default_factory=dict)


@dataclass
class Context:
    suite: Suite
    spec: MethodSpec
    seed: int
    tasks: list[Task]  # the ID tasks (what methods train on)
    engines: EnginePool = field(default_factory=EnginePool)
    run: RunDir | None = None
    log: Callable[[str], None] = print
    records: dict = field(default_factory=dict)
    used_teacher: Path | None = None

    def __post_init__(self):
        # by (id, prompt): an example a recipe re-annotates (a new rationale) keeps its task's format
        self._format = {(e.id, e.prompt): task.format for task in self.tasks
                        for part in (task.splits.train, task.splits.val, task.splits.pool) for e in part}
        self._usage_start = {id(e): e.usage.copy() for e in self.engines.engines("teacher")}

    # ------------------------------------------------------------------------------------------ data

    @property
    def train(self) -> list[Example]:
        return [e for task in self.tasks for e in task.splits.train]

    @property
    def val(self) -> list[Example]:
        return [e for task in self.tasks for e in task.splits.val]

    @property
    def pool(self) -> list[Example]:
        return [e for task in self.tasks for e in task.splits.pool]

    def pairs(self, examples: list[Example]) -> list[tuple[str, str]]:
        """(prompt, target) as each example's task format renders it (the suite's mode for other examples)."""
        from trustbench.harness.scoring import FORMATS

        default = FORMATS.get(self.suite.scoring)()
        return [self.format_of(e, default).pair(e) for e in examples]

    def format_of(self, example: Example, default=None):
        """The format of the ID task `example` comes from (`default` for an example from elsewhere)."""
        return self._format.get((example.id, example.prompt), default)

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
        if isinstance(self.suite.teacher, Endpoint):
            raise UserError(f"method {self.spec.name!r} needs the teacher's weights, but the teacher is the endpoint "
                            f"{self.suite.teacher.name}; use a local teacher model")
        return zoo.resolve(self.suite.teacher)

    # ------------------------------------------------------------------------------------------ services

    def teacher(self) -> StudentArtifact:
        """The teacher fine-tuned on the ID train split (its checkpoint and what training it cost): cached by hash
        on disk, built once per process."""
        config = self.suite.teacher_train or self.suite.train
        key = {"kind": "teacher-sft", "model": model_identity(self.teacher_init),
               "pairs": stable_hash(self.pairs(self.train)), "mode": self.suite.scoring,
               "train": dataclasses.asdict(config), "seed": TEACHER_SEED}
        name = stable_hash(key)
        if name not in _TEACHERS:
            self.log(f"teacher: fine-tuning {self.suite.teacher} on {len(self.train)} ID examples (cached by hash)")
            _TEACHERS[name] = self.sft("teachers", key, self.teacher_init, self.train, config, TEACHER_SEED)
        self.used_teacher = _TEACHERS[name].path
        return _TEACHERS[name]

    def engine(self, model: Path | Endpoint, role: str = "student", backend: str | None = None,
               min_logprobs: int = 0):
        """A long-lived engine over `model` (the suite's backend by default; an endpoint's own engine)."""
        if isinstance(model, Endpoint):
            return self.engines.get(model, "openai", role)
        return self.engines.get(model, backend or self.suite.backend, role, min_logprobs=min_logprobs)

    def teacher_engine(self, fine_tuned: bool = True):
        """The teacher as an engine whose generations are cached on disk and counted (`teacher_usage`): the
        fine-tuned local teacher, the base one (`fine_tuned=False`), or the endpoint when the suite's teacher is
        one. A resumed run asks the teacher nothing twice."""
        if isinstance(self.suite.teacher, Endpoint):
            return self.engine(self.suite.teacher, "teacher")
        model = self.teacher().path if fine_tuned else self.teacher_init
        return self.engines.get(model, self.suite.backend, "teacher", remember=True)

    def teacher_usage(self) -> Usage:
        """What the teacher engines were asked (generation calls and tokens) since this context began."""
        total = Usage()
        for engine in self.engines.engines("teacher"):
            total = total.plus(engine.usage.minus(self._usage_start.get(id(engine), Usage())))
        return total

    def cache_key(self, kind: str, examples: list[Example] | None = None, **extra) -> dict:
        """The cache key of a student: the recipe's kind, the method and its parameters, the student's initial
        weights, the rendered training pairs, the scoring mode, the train settings, the seed, the teacher (when
        `ctx.teacher()` was asked for) and anything in `extra`."""
        key = {"kind": kind, "method": self.spec.method, "params": self.spec.params,
               "model": model_identity(self.student_init),
               "pairs": stable_hash(self.pairs(self.train if examples is None else examples)),
               "mode": self.suite.scoring, "train": dataclasses.asdict(self.train_config()), "seed": self.seed}
        if self.used_teacher is not None:
            key["teacher"] = model_identity(self.used_teacher)
        return {**key, **extra}

    def sft(self, cache: str, key: dict, init: Path, examples: list[Example], config: TrainConfig, seed: int,
            **trainer) -> StudentArtifact:
        """Fine-tune `init` on `examples` (their rendered pairs) once per `key` (`trainer`: loss, targets)."""
        from trustbench.harness.train import cached_checkpoint, finetune  # Trainer: slow to import, and `eval` never trains

        path, cost = cached_checkpoint(cache, key, lambda out, work: finetune(
            init, self.pairs(examples), config, seed, out, log=self.log, work_dir=work, **trainer), log=self.log)
        return StudentArtifact(path, cost)

    def record(self, key: str, value) -> None:
        """Keep `value` (JSON) in this method x seed's `records`, for reports and figures."""
        self.records[key] = value

    def round_dir(self, index: int) -> Path:
        if self.run is None:
            raise ValueError("this context has no run directory")
        return self.run.round_dir(self.spec.name, self.seed, index)

    @property
    def teacher_capabilities(self) -> frozenset[str]:
        if isinstance(self.suite.teacher, Endpoint):
            from trustbench.harness.endpoint import OpenAIEngine

            return OpenAIEngine.capabilities
        return LOCAL


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

    from trustbench.harness.train import encode_pairs

    pairs = ctx.pairs(examples)
    features = encode_pairs(AutoTokenizer.from_pretrained(ctx.student_init), pairs, config.max_length)
    return DistillData(pairs, [f["input_ids"] for f in features],
                       [len(f["input_ids"]) - f["target_len"] for f in features])


def teacher_distributions(ctx: Context, config: TrainConfig):
    """The training set as `distill_data` encodes it, and the fine-tuned teacher's full next-token distributions
    over its answers (HF engine; cached on disk, so kd, reverse_kd, gkd and sampled_kd share one extraction)."""
    from trustbench.harness.teacher_cache import teacher_outputs

    teacher = ctx.teacher().path
    data = distill_data(ctx, ctx.train, config)
    return data, teacher_outputs(teacher, data.sequences, data.starts, None, "hf",
                                 lambda backend: ctx.engine(teacher, "teacher", backend), ctx.log)


def teacher_cost(data: DistillData, cache, extra_calls: int = 0) -> dict:
    """The cost columns of a student distilled from a teacher cache: teacher calls and tokens, and the cache's own
    (k, kept mass, bytes, engine, speed)."""
    return {"teacher_calls": len(data.sequences) + extra_calls, "teacher_tokens": cache.info["tokens"],
            **cache.cost_columns()}


def number_param(spec: MethodSpec, name: str, default: float) -> float:
    """A numeric method parameter, or a one-line UserError naming it (YAML `true` is not a number here)."""
    value = spec.params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"method {spec.name!r}: {name} must be a number, got {value!r}")
    return float(value)


def register_method(name: str):
    """Register a recipe under `name` (it becomes the class's `name`): `@register_method("finetune")`."""

    def register(cls):
        cls.name = name
        return METHODS.register(name)(cls)

    return register


class Method:
    """A distillation recipe. Subclasses register a name, say whether they depend on the seed, and implement `fit`."""

    name: ClassVar[str]
    seeded: ClassVar[bool] = True
    trains: ClassVar[bool] = True  # needs the ID train split
    params: ClassVar[tuple[str, ...]] = ()  # accepted params besides TrainConfig fields
    distils_logits: ClassVar[bool] = False  # compares teacher and student distributions: same vocabulary needed
    teacher_needs: ClassVar[frozenset[str]] = frozenset()  # engine capabilities it asks of the teacher
    reference: ClassVar[bool] = False  # a reference row (the prior): no temperature scaling, marked in reports

    def __init__(self, spec: MethodSpec):
        training = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(spec.params) - set(self.params) - training)
        if unknown:
            raise UserError(f"method {spec.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                            f"{self.name} accepts {', '.join(sorted(set(self.params) | training)) or 'none'}")
        overrides = {k: v for k, v in spec.params.items() if k in training}
        checked(TrainConfig, {**dataclasses.asdict(TrainConfig()), **overrides}, f"method {spec.name!r}")
        self.spec = spec

    def check(self, ctx: Context) -> None:
        """Refuse, before a run writes anything, what `fit` could not do (raise UserError). Subclasses that add
        checks call this one: it checks that the teacher can do what the method asks of it."""
        missing = self.teacher_needs - ctx.teacher_capabilities
        if missing:
            raise UserError(f"method {self.spec.name!r} needs a teacher with {', '.join(sorted(missing))}, which the "
                            f"endpoint teacher {ctx.suite.teacher.name} does not offer; use a local teacher model")

    def fit(self, ctx: Context) -> StudentArtifact:
        raise NotImplementedError

    def predict(self, task: Task, split: str):
        """Predictions for `task`'s `split` without a model (a DataFrame), or None: score the checkpoint `fit`
        returned (every method but a reference row)."""
        return None


__all__ = ["Context", "DISTRIBUTIONS", "DistillData", "GENERATION", "Method", "SCORING", "StudentArtifact",
           "distill_data", "model_identity", "number_param", "register_method", "teacher_cost",
           "teacher_distributions"]

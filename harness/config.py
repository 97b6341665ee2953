"""Suites: YAML files naming the teacher, the student, the methods, the tasks, seeds and the backend.

Built-in suites live in `harness/suites/<name>.yaml`; any other path to a YAML file works the same way.
Every field is validated with its type on load (pydantic dataclasses), so a bad suite fails, in one line naming
the field and the fix, before anything is trained or written. Numbers may be written as YAML reads them
(`lr: 1e-4` is a string to PyYAML and is read as 0.0001); true/false is never a number, a whole number is never a
fraction, and `"no"` is not false.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BeforeValidator, ConfigDict, Field, ValidationError
from pydantic.dataclasses import dataclass

from trustbench.harness.cache import stable_hash
from trustbench.harness.endpoint import Endpoint, endpoint_dict, endpoint_from
from trustbench.harness.errors import UserError

SUITES_DIR = Path(__file__).parent / "suites"
LATER_SETTINGS = {"chat_template": False, "num_fewshot": 0}  # settings added after schema 1, with their defaults
CHECKED = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


def _number(value):
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    if isinstance(value, str):  # YAML 1.1 reads `1e-4` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ValueError("must be a number") from None
    return value


def _whole(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    return value


def _flag(value):
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


Number = Annotated[Union[int, float], BeforeValidator(_number)]  # an int stays an int: hashes do not move
Whole = Annotated[int, BeforeValidator(_whole)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Text = Annotated[str, Field(min_length=1)]


@dataclass(frozen=True, config=CHECKED)
class TrainConfig:
    """transformers `Trainer` settings shared by the methods that train (a method may override any field)."""

    epochs: Annotated[Number, Field(gt=0)] = 1.0
    lr: Annotated[Number, Field(gt=0)] = 5e-5
    batch_size: Annotated[Whole, Field(ge=1)] = 8
    grad_accum: Annotated[Whole, Field(ge=1)] = 1
    weight_decay: Annotated[Number, Field(ge=0)] = 0.0
    warmup_ratio: Annotated[Number, Field(ge=0, lt=1)] = 0.03
    max_length: Annotated[Whole, Field(ge=8)] = 512
    train_layers: Annotated[Whole, Field(ge=1)] | None = None  # train the top N blocks (and the norm); None: all


@dataclass(frozen=True, config=CHECKED)
class MethodSpec:
    name: Text  # the row name in reports; defaults to the method
    method: Text  # a registered method, or `module:Class` for one outside trustbench
    params: dict = field(default_factory=dict)


@dataclass(frozen=True, config=CHECKED)
class MetricsConfig:
    bins: Annotated[Whole, Field(ge=1)] = 10
    equal_mass: Flag = False
    n_boot: Annotated[Whole, Field(ge=0)] = 1000


SplitSizes = dict[Literal["train", "val", "test", "pool"], Annotated[Whole, Field(ge=0)]]


@dataclass(frozen=True, config=CHECKED)
class VLLMConfig:
    """Passed to vLLM's `LLM(...)`: how the engine spreads over GPUs. Execution only: not in the suite hash."""

    tensor_parallel_size: Annotated[Whole, Field(ge=1)] = 1
    data_parallel_size: Annotated[Whole, Field(ge=1)] = 1
    gpu_memory_utilization: Annotated[Number, Field(gt=0, le=1)] | None = None  # vLLM's default when unset


@dataclass(frozen=True, config=CHECKED)
class Suite:
    name: Text
    teacher: Union[Text, Endpoint]  # a model (zoo name, folder, cached HF id) or a black-box endpoint
    student: Text
    tasks: Annotated[tuple[Text, ...], Field(min_length=1)]
    methods: Annotated[tuple[MethodSpec, ...], Field(min_length=1)]
    seeds: Annotated[tuple[Annotated[Whole, Field(ge=0)], ...], Field(min_length=1)] = (0,)
    backend: Literal["hf", "vllm"] = "vllm"
    scoring: Literal["letter", "choice"] = "letter"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    train: TrainConfig = TrainConfig()
    teacher_train: TrainConfig | None = None  # the teacher's SFT settings; the student's when absent
    metrics: MetricsConfig = MetricsConfig()
    temperature_scaling: Flag = True
    chat_template: Flag = False  # generation prompts go through the model's chat template
    num_fewshot: Annotated[Whole, Field(ge=0)] = 0  # lm-eval's few-shot examples in each `lmeval:` task's context
    vllm: VLLMConfig = VLLMConfig()
    sizes: dict[Text, SplitSizes] = field(default_factory=dict)  # task -> split sizes, over the card's
    description: str = ""

    def __post_init__(self):
        for key, values in (("tasks", self.tasks), ("seeds", self.seeds)):
            if len(set(values)) < len(values):
                raise ValueError(f"{key} lists {sorted({v for v in values if values.count(v) > 1})} twice")

    @property
    def hash(self) -> str:
        """What makes two runs' cells comparable; selecting methods, tasks or seeds, or how vLLM spreads over GPUs,
        does not change it. Settings
        added after a release count only when set away from their default, so adding one keeps earlier hashes."""
        settings = dataclasses.asdict(self)
        for selection in ("name", "description", "methods", "tasks", "seeds", "vllm"):
            settings.pop(selection)
        for later, default in LATER_SETTINGS.items():
            if settings[later] == default:
                settings.pop(later)
        return stable_hash(settings)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def builtin_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name_or_path: str, _extending: tuple[Path, ...] = ()) -> Suite:
    path = Path(name_or_path)
    if path.is_dir():
        raise UserError(f"suite file {path} is a folder: give the path of a suite YAML file")
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UserError(f"unknown suite {name_or_path!r}: use one of {', '.join(builtin_suites())} "
                            "or a path to a suite YAML file")
    if not path.exists():
        raise UserError(f"suite file {path} does not exist: check the path")
    if not path.is_file():
        raise UserError(f"suite file {path} is a folder: give the path of a suite YAML file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"suite file {path} is not UTF-8 text: give a suite YAML file") from None
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise UserError(f"suite file {path}{line} is not valid YAML: fix the syntax") from None
    if not isinstance(raw, dict):
        raise UserError(f"suite file {path} must be a mapping with keys such as teacher, student, tasks, methods")
    if "extends" in raw:  # a variant of another suite: its settings, with this file's keys on top
        parent = str(raw.pop("extends"))
        if Path(parent).suffix and not Path(parent).is_absolute():
            parent = str(path.parent / parent)  # a relative path is relative to this file
        if path.resolve() in _extending:
            raise UserError(f"suite file {path} extends itself (through {parent}): remove the cycle of `extends:`")
        base = _raw(load_suite(parent, (*_extending, path.resolve())))
        raw = {**base, "description": "", **raw, "name": raw.get("name", path.stem)}
    raw.setdefault("name", path.stem)
    return parse_suite(raw, source=str(path))


def parse_suite(raw: dict, source: str = "suite") -> Suite:
    known = {f.name for f in dataclasses.fields(Suite)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    for key in ("teacher", "student", "tasks", "methods"):
        if not raw.get(key):
            raise UserError(f"{source}: missing {key!r}; every suite names a teacher, a student, tasks and methods")
    values = dict(raw)
    if isinstance(raw["teacher"], dict):
        values["teacher"] = endpoint_from(raw["teacher"], source)
    elif not isinstance(raw["teacher"], str):
        raise UserError(f"{source}: teacher must be a model name or path, or an endpoint mapping "
                        "({endpoint: URL, model: NAME, api_key_env: VAR})")
    values["tasks"] = tuple(_string_list(raw["tasks"], "tasks", source))
    values["methods"] = tuple(_method_specs(raw["methods"], source))
    values["seeds"] = tuple(_int_list(raw.get("seeds", [0]), "seeds", source))
    values["train"] = _sub(TrainConfig, raw.get("train", {}), "train", source)
    if raw.get("teacher_train") is not None:
        values["teacher_train"] = _sub(TrainConfig, raw["teacher_train"], "teacher_train", source)
    values["metrics"] = _sub(MetricsConfig, raw.get("metrics", {}), "metrics", source)
    values["vllm"] = _sub(VLLMConfig, raw.get("vllm", {}), "vllm", source)
    if not isinstance(values.get("sizes", {}), dict):
        raise UserError(f"{source}: sizes must map task names to split sizes, e.g. {{my_task: {{test: 100}}}}")
    unknown = sorted(set(values.get("sizes", {})) - set(values["tasks"]))  # a misspelt task (the override keeps them)
    if unknown:
        raise UserError(f"{source}: sizes names {', '.join(unknown)}, not among the suite's tasks "
                        f"({', '.join(values['tasks'])}); fix it in the suite")
    return checked(Suite, values, source)


def checked(cls, values: dict, source: str, where: str = ""):
    """`cls(**values)` validated, or a one-line UserError naming the field, what is wrong and the value given."""
    try:
        return cls(**values)
    except ValidationError as error:
        problem = error.errors()[0]
        loc = ".".join(str(part) for part in (where, *problem["loc"]) if part not in ("", "[key]"))
        message = problem["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        given = problem.get("input")
        shown = f" (got {given!r})" if isinstance(given, (str, int, float, bool)) else ""
        raise UserError(f"{source}: {loc + ': ' if loc else ''}{message}{shown}; fix it in the suite") from None


def override(suite: Suite, methods=None, tasks=None, seeds=None, backend=None) -> Suite:
    """Apply CLI overrides (`--methods a,b --tasks x,y --seeds 0,1 --backend hf`) to a suite."""
    changes: dict = {}
    if methods:
        by_name = {m.name: m for m in suite.methods}
        missing = [m for m in methods if m not in by_name]
        if missing:
            raise UserError(f"method(s) {', '.join(missing)} are not in suite {suite.name!r}; "
                            f"it has {', '.join(by_name)}")
        changes["methods"] = tuple(by_name[m] for m in methods)
    if tasks:  # the suite's sizes of the tasks left out stay (in its hash, which a selection does not change)
        changes["tasks"] = tuple(tasks)
    if seeds:
        changes["seeds"] = tuple(seeds)
    if backend:
        changes["backend"] = backend
    return checked(Suite, {**{f.name: getattr(suite, f.name) for f in dataclasses.fields(Suite)}, **changes},
                   source=f"suite {suite.name}")


def _raw(suite: Suite) -> dict:
    return {f.name: _raw_value(getattr(suite, f.name)) for f in dataclasses.fields(Suite)}


def _raw_value(value):
    if isinstance(value, tuple) and value and isinstance(value[0], MethodSpec):
        return [{"name": m.name, "method": m.method, **m.params} for m in value]
    if isinstance(value, Endpoint):
        return endpoint_dict(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value


def _method_specs(raw, source: str) -> list[MethodSpec]:
    from trustbench.harness.store import check_name

    if not isinstance(raw, list):
        raise UserError(f"{source}: methods must be a list, e.g. [teacher, zeroshot, {{finetune: {{lr: 1e-4}}}}]")
    specs = []
    for item in raw:
        if isinstance(item, str):
            specs.append(MethodSpec(name=item, method=item))
        elif isinstance(item, dict) and "method" in item:
            params = {k: v for k, v in item.items() if k not in ("name", "method")}
            specs.append(checked(MethodSpec, {"name": item.get("name", item["method"]), "method": item["method"],
                                              "params": params}, source, "methods"))
        elif isinstance(item, dict) and len(item) == 1 and isinstance(next(iter(item.values())), (dict, type(None))):
            (method, params), = item.items()
            specs.append(checked(MethodSpec, {"name": method, "method": method, "params": dict(params or {})},
                                 source, "methods"))
        else:
            raise UserError(f"{source}: cannot read method entry {item!r}; write `name` or `{{name: {{params}}}}`")
    for spec in specs:
        check_name("method", spec.name)
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UserError(f"{source}: method name(s) {', '.join(duplicates)} appear twice; give variants a `name:`")
    return specs


def _sub(cls, raw, key: str, source: str):
    if not isinstance(raw, dict):
        raise UserError(f"{source}: {key} must be a mapping")
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UserError(f"{source}: unknown {key} key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return checked(cls, raw, source, key)


def _string_list(raw, key: str, source: str) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise UserError(f"{source}: {key} must be a list of names")
    return raw


def _int_list(raw, key: str, source: str) -> list[int]:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in raw):
        raise UserError(f"{source}: {key} must be a list of integers, e.g. [0, 1, 2]")
    return raw

"""Suites: YAML files naming the teacher, the student, the methods, the tasks, seeds and the backend.

Built-in suites live in `harness/suites/<name>.yaml`; any other path to a YAML file works the same way.
Validation happens on load, so a bad suite fails before anything is trained or written.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from harness.cache import stable_hash
from harness.endpoint import Endpoint, endpoint_dict, endpoint_from
from harness.errors import UserError

SUITES_DIR = Path(__file__).parent / "suites"
LATER_SETTINGS = {"chat_template": False}  # added in schema 2 of the run directory, with their defaults


@dataclass(frozen=True)
class TrainConfig:
    """transformers `Trainer` settings shared by the methods that train (a method may override any field)."""

    epochs: float = 1.0
    lr: float = 5e-5
    batch_size: int = 8
    grad_accum: int = 1
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_length: int = 512
    train_layers: int | None = None  # train only the top N blocks (and the final norm); None trains everything


@dataclass(frozen=True)
class MethodSpec:
    name: str  # the row name in reports; defaults to the method
    method: str  # a registered method, or `module:Class` for one outside trustbench
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class MetricsConfig:
    bins: int = 10
    equal_mass: bool = False
    n_boot: int = 1000


@dataclass(frozen=True)
class Suite:
    name: str
    teacher: str | Endpoint  # a model (zoo name, folder, cached HF id) or a black-box endpoint
    student: str
    tasks: tuple[str, ...]
    methods: tuple[MethodSpec, ...]
    seeds: tuple[int, ...] = (0,)
    backend: str = "vllm"
    scoring: str = "letter"
    dtype: str = "float32"
    train: TrainConfig = TrainConfig()
    teacher_train: TrainConfig | None = None  # the teacher's SFT settings; the student's when absent
    metrics: MetricsConfig = MetricsConfig()
    temperature_scaling: bool = True
    chat_template: bool = False  # generation prompts go through the model's chat template
    sizes: dict = field(default_factory=dict)  # task -> {train, val, test} overrides of the card's sizes
    description: str = ""

    @property
    def hash(self) -> str:
        """What makes two runs' cells comparable; selecting methods, tasks or seeds does not change it. Settings
        added after a release count only when set away from their default, so adding one keeps earlier hashes."""
        settings = dataclasses.asdict(self)
        for selection in ("name", "description", "methods", "tasks", "seeds"):
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
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UserError(f"unknown suite {name_or_path!r}: use one of {', '.join(builtin_suites())} "
                            "or a path to a suite YAML file")
    if not path.exists():
        raise UserError(f"suite file {path} does not exist: check the path")
    try:
        raw = yaml.safe_load(path.read_text())
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
    if values.get("backend", "vllm") not in ("hf", "vllm"):
        raise UserError(f"{source}: backend must be hf or vllm, not {values['backend']!r}")
    if values.get("scoring", "letter") not in ("letter", "choice"):
        raise UserError(f"{source}: scoring must be letter or choice, not {values['scoring']!r}")
    return Suite(**values)


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
    if tasks:
        changes["tasks"] = tuple(tasks)
    if seeds:
        changes["seeds"] = tuple(seeds)
    if backend:
        changes["backend"] = backend
    return parse_suite({**_raw(suite), **{k: _raw_value(v) for k, v in changes.items()}}, source=f"suite {suite.name}")


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
    if not isinstance(raw, list):
        raise UserError(f"{source}: methods must be a list, e.g. [teacher, zeroshot, {{finetune: {{lr: 1e-4}}}}]")
    specs = []
    for item in raw:
        if isinstance(item, str):
            specs.append(MethodSpec(name=item, method=item))
        elif isinstance(item, dict) and "method" in item:
            params = {k: v for k, v in item.items() if k not in ("name", "method")}
            specs.append(MethodSpec(name=item.get("name", item["method"]), method=item["method"], params=params))
        elif isinstance(item, dict) and len(item) == 1:
            (method, params), = item.items()
            specs.append(MethodSpec(name=method, method=method, params=dict(params or {})))
        else:
            raise UserError(f"{source}: cannot read method entry {item!r}; write `name` or `{{name: {{params}}}}`")
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
    return cls(**raw)


def _string_list(raw, key: str, source: str) -> list[str]:
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise UserError(f"{source}: {key} must be a list of names")
    return raw


def _int_list(raw, key: str, source: str) -> list[int]:
    if isinstance(raw, int):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, int) for x in raw):
        raise UserError(f"{source}: {key} must be a list of integers, e.g. [0, 1, 2]")
    return raw

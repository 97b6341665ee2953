"""An lm-eval run as a trustbench run directory: `trustbench import lm-eval OUTPUT_DIR [--out RUN_DIR]`.

`lm_eval ... --log_samples --output_path OUTPUT_DIR` writes, under OUTPUT_DIR/<model>/, one `results_<date>.json`
(lm-eval's version, the model and its arguments, each task's config and n-shot) and one
`samples_<task>_<date>.jsonl` per task: a line per document whose `filtered_resps` hold each choice's
(log-likelihood, is_greedy), the very values lm-eval scores. Each multiple-choice task becomes a trustbench task
(test split only, seed 0), scored twice, as lm-eval names and computes its two accuracies:

    acc       probs = softmax(ll)          pred = argmax(ll)
    acc_norm  probs = softmax(ll / len)    pred = argmax(ll / len)    len: the choice's length in characters

(`np.argmax`: the first of tied maxima, as in lm-eval's `process_results`). Every sample's own logged `acc` and
`acc_norm` are checked against the import's, so an import reproduces lm-eval's accuracies exactly or is refused.
Everything is read and checked before anything is written, and the run directory is written into a temporary
folder moved into place at the end: bad or partial output is one UserError and nothing on disk.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from trustbench.harness.cache import atomic_dir, stable_hash
from trustbench.harness.errors import UserError
from trustbench.harness.lmeval import choice_loglikelihoods
from trustbench.harness.scoring import predictions_frame
from trustbench.harness.store import (Manifest, MethodEntry, RunDir, Scoring, SeedRun, Source, TaskEntry,
                                      check_name, examples_hash)
from trustbench.harness.types import Example

METHODS = {"acc": "the choices' summed log-likelihoods", "acc_norm": "the summed log-likelihoods divided by each "
           "choice's length in characters"}  # lm-eval's metric names -> what its softmax is taken over
CONFIDENCE = ("probability of the chosen option, softmax over lm-eval's per-choice log-likelihoods (method acc) "
              "or over them divided by each choice's length in characters (method acc_norm)")
RERUN = "rerun `lm_eval ... --log_samples --output_path DIR` to completion"


@dataclass(frozen=True)
class LmevalTask:
    """One task read from lm-eval's output: its examples (each choice with lm-eval's target delimiter, as the
    `lmeval` format keeps them) and both readings' predictions."""

    name: str
    examples: list[Example]
    predictions: dict[str, pd.DataFrame]  # method (acc, acc_norm) -> the store's prediction rows


def import_lmeval(output: str | Path, out: str | Path | None = None, domain: str = "id") -> tuple[Path, Manifest]:
    """Read the lm-eval run at `output` (its output folder, the model's folder in it, or a results_*.json), check it
    whole, then write it as a run directory (`out`, default runs/lm-eval-<model>); return (run path, manifest)."""
    results_path = find_results(Path(output))
    results = read_results(results_path)
    tasks = [read_task(name, results, results_path) for name in sorted(results["configs"])]
    manifest = build_manifest(results, results_path, tasks, domain)
    run_path = Path(out) if out is not None else Path("runs") / f"lm-eval-{_model_label(results)}"
    check_out(run_path)
    with atomic_dir(run_path) as tmp:
        run = RunDir(tmp)
        run.save(manifest)
        for task in tasks:
            for method, frame in task.predictions.items():
                run.write_cell(("test", method, task.name, 0), frame)
    return run_path, manifest


def find_results(output: Path) -> Path:
    """The one `results_*.json` of an lm-eval output: `output` itself, in it, or in its model folder; several (runs
    of other models or dates in one folder) must be told apart by pointing at one."""
    if output.is_file():
        if not output.name.startswith("results_") or output.suffix != ".json":
            raise UserError(f"{output} is not lm-eval's results_<date>.json: point at the folder lm_eval "
                            "--output_path wrote, or at a results_*.json in it")
        return output
    if not output.is_dir():
        raise UserError(f"{output} does not exist: point at the folder given to lm_eval --output_path")
    found = sorted({*output.glob("results_*.json"), *output.glob("*/results_*.json")})
    if not found:
        raise UserError(f"no lm-eval results_*.json in {output} or its model folders: point at the folder given to "
                        "lm_eval --output_path, or rerun lm_eval with --output_path and --log_samples")
    if len(found) > 1:
        runs = ", ".join(str(path.relative_to(output)) for path in found)
        raise UserError(f"{output} holds {len(found)} lm-eval runs ({runs}): point at one of these results_*.json")
    return found[0]


def read_results(path: Path) -> dict:
    """lm-eval's results file, checked for what the import reads."""
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"cannot read {path} ({type(error).__name__}): it is damaged or truncated; {RERUN}") from None
    if not isinstance(results, dict) or not isinstance(results.get("configs"), dict) or not results["configs"] \
            or not isinstance(results.get("config"), dict):
        raise UserError(f"{path} is not lm-eval's results file (no task `configs` or model `config`): point at the "
                        "results_*.json that lm_eval --output_path wrote")
    return results


def read_task(name: str, results: dict, results_path: Path) -> LmevalTask:
    """One multiple-choice task's samples file, read, checked and scored in both readings."""
    check_name("task", name)
    config = results["configs"][name]
    kind = config.get("output_type") if isinstance(config, dict) else None
    if kind != "multiple_choice":
        raise UserError(f"lm-eval task {name} is {kind}, not multiple_choice: only multiple-choice samples carry "
                        "per-choice log-likelihoods; rerun lm_eval without it")
    path = results_path.with_name(f"samples_{name}_{results_path.stem.removeprefix('results_')}.jsonl")
    samples = read_samples(path, _expected_count(results, name))
    delimiter = _delimiter(config, results)
    examples, lls, lengths = [], [], []
    for sample in samples:
        example, sample_lls = _example(sample, delimiter, f"{path} doc {sample.get('doc_id')}")
        examples.append(example)
        lls.append(np.array(sample_lls))
        lengths.append(np.array([float(len(choice.removeprefix(delimiter))) for choice in example.choices]))
    scores = {"acc": lls, "acc_norm": [ll / length for ll, length in zip(lls, lengths)]}
    predictions = {method: predictions_frame(examples, scores[method]) for method in METHODS}
    _check_against_lmeval(samples, predictions, path)
    return LmevalTask(name, examples, predictions)


def read_samples(path: Path, expected: int | None) -> list[dict]:
    """A samples file's lines, one JSON object each, sorted by doc_id; as many as lm-eval says it scored."""
    if not path.is_file():
        raise UserError(f"{path} is missing: lm-eval writes it with --log_samples; {RERUN}")
    samples, number = [], 0
    try:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    samples.append(json.loads(line))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path} line {number} is not a JSON object ({type(error).__name__}): the file is damaged "
                        f"or truncated; {RERUN}") from None
    if not all(isinstance(s, dict) and isinstance(s.get("doc_id"), int) for s in samples):
        raise UserError(f"{path} is not lm-eval's samples file (a line without a doc_id): {RERUN}")
    if len({s.get("filter") for s in samples}) > 1:
        raise UserError(f"{path} holds samples of several lm-eval filters: import a task with one filter")
    ids = [s["doc_id"] for s in samples]
    if len(set(ids)) != len(ids):
        raise UserError(f"{path} lists a doc_id twice (two runs appended to one file?): {RERUN} into a new folder")
    if not samples or (expected is not None and len(samples) != expected):
        raise UserError(f"{path} holds {len(samples)} samples but lm-eval scored {expected}: the file is partial; "
                        f"{RERUN}")
    return sorted(samples, key=lambda s: s["doc_id"])


def _expected_count(results: dict, name: str) -> int | None:
    counts = (results.get("n-samples") or {}).get(name) or {}
    return counts.get("effective")


def _delimiter(config: dict, results: dict) -> str:
    """What lm-eval put before each choice (`construct_requests`): the target delimiter, which a chat template drops
    unless the generation prefix ends in a non-space."""
    delimiter = config.get("target_delimiter", " ")
    prefix = config.get("gen_prefix") or ""
    if results.get("chat_template") is not None and not (prefix and not prefix[-1].isspace()):
        return ""
    return delimiter


def _example(sample: dict, delimiter: str, where: str) -> tuple[Example, list[float]]:
    """A sample as an Example (its context, its choices with the delimiter, its gold index) and its per-choice
    log-likelihoods; a UserError when it is not a single-context multiple-choice sample."""
    try:
        arguments = sample["arguments"]
        requests = [arguments[f"gen_args_{i}"] for i in range(len(arguments))]
        contexts, choices = [r["arg_0"] for r in requests], tuple(r["arg_1"] for r in requests)
        lls = choice_loglikelihoods(sample)
    except (KeyError, TypeError, ValueError, IndexError):
        raise UserError(f"{where} lacks per-choice log-likelihoods (`arguments` and `filtered_resps` with a "
                        "(log-likelihood, is_greedy) pair per choice): only multiple-choice samples can be imported; "
                        f"{RERUN}") from None
    if not choices or len(lls) != len(choices) or len(set(contexts)) != 1:
        raise UserError(f"{where}: {len(lls)} log-likelihoods for {len(choices)} requests in {len(set(contexts))} "
                        "contexts; tasks whose choices sit in the context (winogrande) or that add unconditional "
                        "requests (acc_mutual_info) cannot be imported")
    if not all(c.startswith(delimiter) for c in choices):
        raise UserError(f"{where}: a choice does not start with the task's target delimiter {delimiter!r}; the "
                        "results file does not belong to this samples file")
    gold = _gold(str(sample.get("target")), [c.removeprefix(delimiter) for c in choices], where)
    return Example(id=str(sample["doc_id"]), prompt=contexts[0], choices=choices, gold=gold), lls


def _gold(target: str, choices: list[str], where: str) -> int:
    """The gold index as lm-eval reads `doc_to_target`: an index, or the text of a choice."""
    try:
        gold = int(target)
    except ValueError:
        gold = choices.index(target) if target in choices else -1
    if not 0 <= gold < len(choices):
        raise UserError(f"{where}: target {target!r} is not one of its {len(choices)} choices (several gold answers, "
                        "or an index out of range): such a task cannot be imported")
    return gold


def _check_against_lmeval(samples: list[dict], predictions: dict[str, pd.DataFrame], path: Path) -> None:
    """Each sample's logged `acc` / `acc_norm` (where its task computed them) equals the import's: the import is lm-eval's
    scoring, or it is refused."""
    for method, frame in predictions.items():
        for sample, correct in zip(samples, frame["correct"]):
            if method in sample and float(sample[method]) != float(correct):
                raise UserError(f"{path} doc {sample['doc_id']}: lm-eval's {method} is {sample[method]} but its "
                                f"logged log-likelihoods give {float(correct)}; this task's choices cannot be read "
                                "back from its samples, so it cannot be imported")


def build_manifest(results: dict, results_path: Path, tasks: list[LmevalTask], domain: str) -> Manifest:
    """The run's manifest: one method per lm-eval accuracy, seed 0, every task; lm-eval's run in `source`."""
    names = [task.name for task in tasks]
    source = Source(tool="lm-eval", version=str(results.get("lm_eval_version") or ""),
                    model=str(results["config"].get("model") or ""), model_args=results["config"].get("model_args"),
                    path=str(results_path.resolve()), created=_created(results),
                    tasks={name: {"config": results["configs"][name], "n_shot": (results.get("n-shot") or {}).get(name),
                                  "version": (results.get("versions") or {}).get(name)} for name in names})
    checkpoint = str(results.get("model_name") or source.model_args)
    methods = {method: MethodEntry(method="lm-eval", params={"metric": method, "softmax_over": over},
                                   runs={0: SeedRun(checkpoint=checkpoint, tasks=names)})
               for method, over in METHODS.items()}
    task_entries = {task.name: TaskEntry(domain=domain, family="lm-eval", scoring="lmeval",
                                         sizes={"train": 0, "val": 0, "test": len(task.examples)},
                                         test_hash=examples_hash(task.examples)) for task in tasks}
    return Manifest(suite="lm-eval", suite_hash=_settings_hash(results, names), source=source,
                    created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    scoring=Scoring(mode="lmeval", confidence=CONFIDENCE, formats={"lmeval": CONFIDENCE}),
                    tasks=task_entries, methods=methods, versions=_versions(results))


def _settings_hash(results: dict, names: list[str]) -> str:
    """What lm-eval was asked, without the model: two imports of one task set (configs, n-shot, chat template,
    system instruction) gate against each other whatever model each scored. lm-eval copies the model arguments
    into each config's `metadata`, so that is left out."""
    configs = {name: {k: v for k, v in results["configs"][name].items() if k != "metadata"} for name in names}
    asked = {key: results.get(key) for key in ("n-shot", "versions", "chat_template_sha", "system_instruction_sha",
                                               "fewshot_as_multiturn")}
    return stable_hash({"tool": "lm-eval", "configs": configs, **asked})


def _created(results: dict) -> str:
    date = results.get("date")
    if isinstance(date, (int, float)):
        return datetime.fromtimestamp(date, timezone.utc).isoformat(timespec="seconds")
    return str(date or "")


def _versions(results: dict) -> dict[str, str]:
    """The versions that scored the predictions (lm-eval's, as it wrote them) and trustbench's, which imported them."""
    versions = {"lm-eval": results.get("lm_eval_version"), "transformers": results.get("transformers_version"),
                "trustbench": metadata.version("trustbench")}
    return {name: str(version) for name, version in versions.items() if version}


def _model_label(results: dict) -> str:
    """A folder name for the model: the last part of lm-eval's model name (a hub id or a path)."""
    label = Path(str(results.get("model_name") or "")).name
    return label if label and not label.startswith(".") else "model"


def check_out(path: Path) -> None:
    """The run directory must be new (or an empty folder): an import never mixes with or replaces a run."""
    if path.exists() and not path.is_dir():
        raise UserError(f"--out {path} is a file: give a new folder for the imported run")
    if path.is_dir() and any(path.iterdir()):
        held = "a run" if (path / "manifest.json").exists() else "files"
        raise UserError(f"--out {path} already holds {held}: give a new folder, or delete it to import again")

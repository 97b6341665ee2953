"""lm-eval tasks: `source: lmeval:<task name>`, any lm-evaluation-harness `multiple_choice` task whose data is
reachable without a download (a local `dataset_path: json` task, or a dataset already in the local HF cache).

This loader turns lm-eval's hub access off for the whole process (HF_DATASETS_OFFLINE=1, HF_HUB_OFFLINE=1):
trustbench never downloads from a model or dataset hub.

Each doc of the chosen split becomes an Example scored exactly as lm-eval scores it (the `lmeval` format):
prompt = lm-eval's own context, `task.fewshot_context(doc, num_fewshot)` (its description, few-shot examples drawn by
its sampler with lm-eval's default seed, and `doc_to_text(doc)`); choices = the task's `target_delimiter` +
`doc_to_choice(doc)`, lm-eval's continuations; gold = `doc_to_target(doc)` (an index, or a choice's text); id
`<card name>-<index>`.

Card options:
    include_path: <dir or list of dirs> extra lm-eval YAML task folders (relative: against the card file's folder)
    include_defaults: whether to index lm-eval's built-in tasks too; default true without include_path and false
                      with it (indexing the ~14k built-in tasks takes ~15 s)
    split: test | validation | train | fewshot   default: test if the task has it, else validation
    num_fewshot: 0                  few-shot examples in each context, as `lm_eval --num_fewshot`
    fewshot_seed: 1234              the few-shot sampler's seed (lm-eval's default `fewshot_random_seed`)
"""
from __future__ import annotations

import difflib
import numbers
import os

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, TaskCard

OPTIONS = ("include_path", "include_defaults", "split", "num_fewshot", "fewshot_seed")
SPLITS = ("test", "validation", "train", "fewshot")


def _offline() -> None:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    # Already-imported libraries read these once, at import time.
    import sys
    if "datasets" in sys.modules:
        sys.modules["datasets"].config.HF_DATASETS_OFFLINE = True
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


@LOADERS.register("lmeval")
def load(card: TaskCard) -> list[Example]:
    name = card.source.partition(":")[2].strip()
    opts = card.options
    bad = sorted(set(opts) - set(OPTIONS))
    if bad:
        raise UserError(f"task {card.name}: unknown lmeval option '{bad[0]}'; allowed: {', '.join(OPTIONS)}")
    include = opts.get("include_path") or None
    include_defaults = card.flag("include_defaults", include is None)
    split = opts.get("split")
    if split is not None and split not in SPLITS:
        raise UserError(f"task {card.name}: lmeval option split={split!r}; use one of: {', '.join(SPLITS)}")

    _offline()
    try:
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise UserError(f"lmeval tasks need lm-eval ({_first_line(exc)}); pip install 'lm-eval[hf]'") from None
    manager = TaskManager(include_path=include, include_defaults=include_defaults)
    if name not in manager.all_tasks:
        close = difflib.get_close_matches(name, manager.all_subtasks, n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        where = f"in {include}" + (" or lm-eval's built-in tasks" if include_defaults else "") if include else "in lm-eval"
        raise UserError(f"task {card.name}: lm-eval task '{name}' not found {where}; {hint}fix `source: lmeval:...` "
                        f"or the include_path option")
    try:
        loaded = manager.load(name)["tasks"]
    except Exception as exc:  # dataset unreachable, bad YAML, missing builder: lm-eval raises many kinds
        raise UserError(f"task {card.name}: lm-eval could not build '{name}' ({_first_line(exc)}); its data must be "
                        f"reachable offline (local files, or already in the HF cache)") from None
    if len(loaded) != 1:
        raise UserError(f"task {card.name}: lm-eval name '{name}' is a group or tag of {len(loaded)} tasks; "
                        f"name one task, e.g. {sorted(loaded)[0] if loaded else '...'}")
    task = next(iter(loaded.values()))
    if task.OUTPUT_TYPE != "multiple_choice":
        raise UserError(f"task {card.name}: lm-eval task '{name}' has output_type {task.OUTPUT_TYPE}; "
                        f"only multiple_choice tasks can be used")
    docs = _docs(task, split, card.name, name)
    shots, seed = opts.get("num_fewshot", 0), opts.get("fewshot_seed", 1234)
    for key, value in (("num_fewshot", shots), ("fewshot_seed", seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UserError(f"task {card.name}: lmeval option {key} must be a whole number >= 0, got {value!r}")
    if shots:
        task.set_fewshot_seed(seed=seed)
    delimiter = task.config.target_delimiter
    out = []
    for i, doc in enumerate(docs):
        try:
            text, choices, target = task.doc_to_text(doc), task.doc_to_choice(doc), task.doc_to_target(doc)
            context = task.fewshot_context(doc, shots) if isinstance(text, str) else None
        except Exception as exc:
            raise UserError(f"task {card.name}: lm-eval could not format doc {i} of '{name}' ({_first_line(exc)}); "
                            f"check its doc_to_text / doc_to_choice / doc_to_target / fewshot split") from None
        if not isinstance(text, str):
            raise UserError(f"task {card.name}: lm-eval task '{name}' varies the context per choice (doc_to_text "
                            f"gives {type(text).__name__}); such multiple-input tasks are not supported")
        choices = [str(c) for c in choices]
        gold = _gold(target, choices)
        if gold is None:
            raise UserError(f"task {card.name}: doc {i} of lm-eval task '{name}' has target {target!r}, not an index "
                            f"into or one of its {len(choices)} choices; fix its doc_to_target")
        out.append(Example(id=f"{card.name}-{i}", prompt=context, choices=tuple(delimiter + c for c in choices),
                           gold=gold))
    return out


def _docs(task, split: str | None, card_name: str, name: str) -> list:
    if split is None:
        split = "test" if task.has_test_docs() else "validation"
    has = {"test": task.has_test_docs, "validation": task.has_validation_docs, "train": task.has_training_docs,
           "fewshot": lambda: task.config.fewshot_split is not None}[split]
    if not has():
        raise UserError(f"task {card_name}: lm-eval task '{name}' has no {split} split; set option split to one it has")
    get = {"test": task.test_docs, "validation": task.validation_docs, "train": task.training_docs,
           "fewshot": task.fewshot_docs}[split]
    try:
        return list(get())
    except Exception as exc:
        raise UserError(f"task {card_name}: could not read the {split} docs of lm-eval task '{name}' "
                        f"({_first_line(exc)}); its data must be reachable offline") from None


def _gold(target, choices: list[str]) -> int | None:
    if isinstance(target, (list, tuple)) and len(target) >= 1:
        target = target[0]
    if isinstance(target, bool):
        return None
    if isinstance(target, numbers.Integral):
        target = int(target)
        return target if 0 <= target < len(choices) else None
    if isinstance(target, str):
        if target in choices:
            return choices.index(target)
        if target.strip().isdigit() and int(target) < len(choices):
            return int(target)
    return None

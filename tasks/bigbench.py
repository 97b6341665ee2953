"""BIG-bench `task.json` loader: `source: bigbench:<task path>`, e.g. `bigbench:multiemo/hotels_text_en`.

Data comes from the sdist of bigbench 1.0.0 (358 MB), which the user supplies: no package the lock installs holds
it, and the package registry no longer serves it (it lists only bigbench 0.0.1, code without any task.json). So no
built-in suite uses these cards; they stay for users who have the archive. Put the file at
`cache_dir("downloads")/bigbench-1.0.0.tar.gz` (`$TRUSTBENCH_CACHE/downloads/`; where your own package index still
serves it, `pip download --no-deps --no-binary :all: bigbench==1.0.0 -d DIR` fetches it with your settings). Its
sha256 is checked; nothing is fetched by URL. `trustbench list tasks` marks these cards, and a run naming one while
the file is missing stops with one line saying where to put it, before anything is written. The task.json files
that cards ask for are pulled out of the archive in one streaming pass into
`cache_dir("bigbench")/<task path>/task.json`; later loads read the extracted file. The same pass writes
`cache_dir("bigbench")/index.txt` (every task path in the archive), so a misspelt path fails fast with suggestions.

Parsing (BIG-bench JSON multiple-choice format): every example with `input` and `target_scores` {choice: score}
becomes an Example: prompt = input (stripped), choices = the target_scores keys in file order (stripped), gold = the
choice with the highest score; examples without target_scores, with a tie at the top or with choices that clash
after stripping are skipped and counted. Ids are `<card name>-<index in file>`. When an example's `target` is a
string that starts with the gold answer and goes on (strategyqa), the rest is kept as its `rationale`.

Card options:
    task_prefix: false      prepend the task's `task_prefix` (its instruction) to every prompt
    shuffle_choices: false  shuffle each example's choices (seeded by split_seed and the example index); for
                            tasks whose gold is always in the same position (timedial puts it last)
    short: first_sentence | last_line   the prompt keeps only that part of the input, and the whole input
                            (with the instruction, when task_prefix) becomes the example's `detail`: the short and
                            the detailed version of one question (DualChecker re-asks its teacher with the detail)
    labels: [a, b]          keep only the examples whose gold is one of these choices, with these as the choices
                            (in this order): e.g. a binary positive/negative task from a four-way sentiment task
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from trustbench.harness.cache import atomic_path, cache_dir, write_text
from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, TaskCard

ARCHIVE_NAME = "bigbench-1.0.0.tar.gz"
ARCHIVE_SHA256 = "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2"
MEMBER_PREFIX = "bigbench-1.0.0/bigbench/benchmark_tasks/"
OPTIONS = ("task_prefix", "shuffle_choices", "short", "labels")
SHORT = ("first_sentence", "last_line")


# ---------------------------------------------------------------------------------------------------- parsing
@dataclass
class Parsed:
    examples: list[Example]
    skipped: dict[str, int] = field(default_factory=dict)
    task_prefix: str = ""


def parse_task(data: dict, name: str, *, task_prefix: bool = False, shuffle_seed: int | None = None,
               short: str | None = None, labels: list[str] | None = None) -> Parsed:
    """Turn a loaded BIG-bench task.json into Examples (see the module docstring for the rules)."""
    prefix = str(data.get("task_prefix") or "").strip()
    out = Parsed(examples=[], task_prefix=prefix)
    skipped = {"no_target_scores": 0, "tied_top_score": 0, "bad_choices": 0}
    for i, raw in enumerate(data.get("examples") or []):
        scores = raw.get("target_scores") if isinstance(raw, dict) else None
        if not isinstance(scores, dict) or not scores or not isinstance(raw.get("input"), str):
            skipped["no_target_scores"] += 1
            continue
        try:
            values = [float(v) for v in scores.values()]
        except (TypeError, ValueError):
            skipped["bad_choices"] += 1
            continue
        choices = [str(c).strip() for c in scores]
        if len(choices) < 2 or len(set(choices)) < len(choices) or not all(choices):
            skipped["bad_choices"] += 1
            continue
        top = max(values)
        if values.count(top) > 1:
            skipped["tied_top_score"] += 1
            continue
        gold = values.index(top)
        if labels is not None:
            if choices[gold] not in labels or not set(labels) <= set(choices):
                skipped["other_label"] = skipped.get("other_label", 0) + 1
                continue
            gold, choices = labels.index(choices[gold]), list(labels)
        if shuffle_seed is not None:
            order = np.random.default_rng([shuffle_seed, i]).permutation(len(choices))
            choices = [choices[j] for j in order]
            gold = int(np.flatnonzero(order == gold)[0])
        text = raw["input"].strip()
        prompt, detail = (shorten(text, short), text) if short else (text, None)
        if task_prefix and prefix:
            prompt, detail = f"{prefix}\n\n{prompt}", detail and f"{prefix}\n\n{detail}"
        out.examples.append(
            Example(id=f"{name}-{i}", prompt=prompt, choices=tuple(choices), gold=gold,
                    rationale=_rationale(raw.get("target"), choices[gold]), detail=detail)
        )
    out.skipped = {k: v for k, v in skipped.items() if v}
    return out


def shorten(text: str, how: str) -> str:
    """The first sentence of `text` (up to the first ., ! or ? followed by a space or a line end) or its last
    non-empty line."""
    if how == "last_line":
        return [line for line in text.splitlines() if line.strip()][-1].strip()
    return re.split(r"(?<=[.!?])\s+", text, maxsplit=1)[0].strip()


def _rationale(target: object, gold: str) -> str | None:
    """strategyqa-style targets: "Yes. <why>" -> "<why>"."""
    if isinstance(target, list) and len(target) == 1:
        target = target[0]
    if not isinstance(target, str) or not target.strip().startswith(gold):
        return None
    rest = target.strip()[len(gold):].lstrip(" .:,-\n").strip()
    return rest or None


# ---------------------------------------------------------------------------------------------------- loading
@LOADERS.register("bigbench")
def load(card: TaskCard) -> list[Example]:
    task = task_path(card.source)
    bad = sorted(set(card.options) - set(OPTIONS))
    if bad:
        raise UserError(f"task {card.name}: unknown bigbench option '{bad[0]}'; allowed: {', '.join(OPTIONS)}")
    card.flag("shuffle_choices"), card.flag("task_prefix")  # checked before the archive is opened
    if card.options.get("short", SHORT[0]) not in SHORT:
        raise UserError(f"task {card.name}: option short is {card.options['short']!r}; use one of {', '.join(SHORT)}")
    labels = card.options.get("labels", ["a", "b"])
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) and x for x in labels):
        raise UserError(f"task {card.name}: option labels must be a list of at least two choice names, got {labels!r}")
    path = extracted_path(task)
    if not path.exists():
        if archive_path_if_cached() is None:
            raise UserError(f"task {card.name}: {missing_archive()}")
        ensure_extracted([task, *_other_card_tasks()], required=[task], card_name=card.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"task {card.name}: cannot read {path} ({exc}); delete it and run again to re-extract") from None
    seed = card.split_seed if card.flag("shuffle_choices") else None
    parsed = parse_task(data, card.name, task_prefix=card.flag("task_prefix"), shuffle_seed=seed,
                        short=card.options.get("short"), labels=card.options.get("labels"))
    if parsed.skipped:
        detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in parsed.skipped.items())
        print(f"bigbench {task}: skipped {detail}", file=sys.stderr)
    if not parsed.examples:
        raise UserError(f"task {card.name}: BIG-bench task '{task}' has no multiple-choice examples "
                        f"(no target_scores); pick a multiple-choice task for this card")
    return parsed.examples


def task_path(source: str) -> str:
    task = source.partition(":")[2].strip().strip("/")
    if not task or ".." in task.split("/"):
        raise UserError(f"bad BIG-bench source {source!r}; write bigbench:<task path>, e.g. bigbench:multiemo/hotels_text_en")
    return task


def extracted_path(task: str) -> Path:
    return cache_dir("bigbench") / task / "task.json"


def _other_card_tasks() -> list[str]:
    """The task paths of every built-in bigbench card (read from the card files), so one pass over the archive
    serves them all."""
    found = []
    for path in sorted((Path(__file__).parent / "cards").glob("*.yaml")):
        match = re.search(r"^source:\s*[\"']?bigbench:([^\s\"'#]+)", path.read_text(encoding="utf-8"), re.M)
        if match:
            found.append(task_path(f"bigbench:{match.group(1)}"))
    return found


def archive_path() -> Path:
    """The archive the user put in the cache; a UserError that says where to put it when it is not there."""
    path = cache_dir("downloads") / ARCHIVE_NAME
    if not path.exists():
        raise UserError(missing_archive())
    return path


def archive_path_if_cached() -> Path | None:
    path = cache_dir("downloads") / ARCHIVE_NAME
    return path if path.exists() else None


def missing_archive() -> str:
    """What a BIG-bench card needs and how to supply it, in one line."""
    return (f"BIG-bench cards need {ARCHIVE_NAME} (sha256 {ARCHIVE_SHA256[:12]}...), which no installed package "
            f"ships; put the file at {cache_dir('downloads') / ARCHIVE_NAME} (`pip download --no-deps --no-binary "
            f":all: bigbench==1.0.0` where your package index serves it), or use a suite without BIG-bench cards")


def _index_path() -> Path:
    return cache_dir("bigbench") / "index.txt"


def ensure_extracted(tasks: list[str], required: list[str], card_name: str = "") -> None:
    """Extract the task.json of each of `tasks` not yet extracted, in one pass; a `required` one missing from the
    archive is a UserError (with close matches)."""
    index = _index_path()
    if index.exists():
        known = set(index.read_text().split())
        for task in required:
            if task not in known:
                _missing(task, known, card_name)
        tasks = [t for t in tasks if t in known]
    todo = sorted({t for t in tasks if not extracted_path(t).exists()})
    if not todo:
        return
    archive = archive_path()
    wanted = {f"{MEMBER_PREFIX}{t}/task.json": t for t in todo}
    found: dict[str, bytes] = {}
    all_tasks: list[str] = []
    total = archive.stat().st_size
    with open(archive, "rb") as raw:
        reader = _HashingReader(raw, total, f"BIG-bench: extracting {len(todo)} task(s) from {ARCHIVE_NAME}")
        try:
            with tarfile.open(fileobj=reader, mode="r|gz") as tar:
                for member in tar:
                    if member.isfile() and member.name.startswith(MEMBER_PREFIX) and member.name.endswith("/task.json"):
                        all_tasks.append(member.name[len(MEMBER_PREFIX):-len("/task.json")])
                        if member.name in wanted:
                            found[wanted[member.name]] = tar.extractfile(member).read()
            reader.drain()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise UserError(f"{archive} is not a readable tar.gz ({exc}); put a good copy of {ARCHIVE_NAME} there") from None
        finally:
            reader.done()
    if reader.sha256() != ARCHIVE_SHA256:
        raise UserError(f"{archive} has sha256 {reader.sha256()[:12]}..., expected {ARCHIVE_SHA256[:12]}...; "
                        f"put a good copy of {ARCHIVE_NAME} there")
    for task, blob in found.items():
        with atomic_path(extracted_path(task)) as tmp:
            tmp.write_bytes(blob)
    write_text(index, "\n".join(sorted(all_tasks)) + "\n")
    for task in required:
        if task not in found and not extracted_path(task).exists():
            _missing(task, set(all_tasks), card_name)


def _missing(task: str, known: set[str], card_name: str) -> None:
    close = difflib.get_close_matches(task, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    who = f"task {card_name}: " if card_name else ""
    raise UserError(f"{who}BIG-bench task '{task}' is not in {ARCHIVE_NAME}; {hint}fix `source: bigbench:...` in its card")


class _HashingReader:
    """A file wrapper that hashes what passes through it and prints a progress line to stderr."""

    def __init__(self, raw: BinaryIO, total: int, label: str):
        self.raw, self.total, self.label = raw, max(total, 1), label
        self.seen, self._hash, self._shown, self._t0 = 0, hashlib.sha256(), -1, time.time()

    def read(self, n: int = -1) -> bytes:
        blob = self.raw.read(n)
        self._hash.update(blob)
        self.seen += len(blob)
        pct = int(100 * self.seen / self.total)
        if pct != self._shown and pct % 5 == 0:
            self._shown = pct
            print(f"\r{self.label}: {pct:3d}% ({self.seen >> 20}/{self.total >> 20} MB)", end="", file=sys.stderr)
        return blob

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def done(self) -> None:
        print(f"\r{self.label}: done in {time.time() - self._t0:.0f} s" + " " * 20, file=sys.stderr)

    def sha256(self) -> str:
        return self._hash.hexdigest()

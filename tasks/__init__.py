"""The task registry: one YAML card per task in `tasks/cards/`, the loaders behind them, and the split rule.

    all_cards()        every card in tasks/cards/*.yaml, by name (validated; a bad card is a UserError)
    get_card(name)     one card (unknown name: a UserError that suggests close names)
    load_card(path)    one card file; card_from_dict(data) builds one from a mapping (e.g. inline in a suite)
    load_examples(card)  the card's examples, by the loader its `source` prefix names (cached in-process)
    split(card)        deterministic train / val / test Splits (see `split`)
    missing_data(card) what the user must supply before the card loads (a BIG-bench archive), or None
    describe(card)     a dict for `trustbench list tasks`

A card is data (see harness.types.TaskCard):

    name: provinces_europe           # required; must equal the file name without .yaml
    domain: id                       # id (trained on) | ood (evaluated only)
    family: geography_provinces      # pairs OOD tasks with the ID task they shift from
    format: mc                       # mc | cot
    source: countryinfo:province_country   # countryinfo: | reasoning_gym: | synthetic: | jsonl: | lmeval: | bigbench:
    description: one line
    split_seed: 1234
    train: 400
    val: 100
    test: 500
    pool: 0                          # unlabelled questions for methods that ask a teacher (after train)
    max_prompt_chars: 700            # drop longer examples (the prompt, plus the detail when used) before splitting
    use_detail: false                # put each example's `detail` (longer context) before its question
    max_new_tokens: 256              # cot: the longest reasoning a model may write before its answer
    options: {region: Europe}        # loader options (see each loader's docstring)
    license: MIT (countryinfo 1.0.1)  # the data's licence, as its source states it

Relative paths in a card (a `jsonl:` source, lm-eval `include_path`) resolve against the card file's folder and are
stored absolute in the loaded card.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.store import check_name
from trustbench.harness.types import Example, Splits, TaskCard

CARDS_DIR = Path(__file__).resolve().parent / "cards"

_FIELDS = {f.name: f for f in dataclasses.fields(TaskCard)}
_INT_FIELDS = ("split_seed", "train", "val", "test", "pool")
_DOMAINS = ("id", "ood")
_FORMATS = ("mc", "cot")

__all__ = [
    "CARDS_DIR", "all_cards", "get_card", "load_card", "card_from_dict", "load_examples", "split",
    "usable_examples", "missing_data", "describe", "clear_cache",
]


# ---------------------------------------------------------------------------------------------------- cards
def card_from_dict(data: Any, origin: str = "<inline card>", base_dir: str | Path | None = None) -> TaskCard:
    """Validate a mapping and build a TaskCard. `origin` names the file in errors; `base_dir` anchors relative paths."""
    if not isinstance(data, dict):
        raise UserError(f"{origin}: a task card must be a YAML mapping of keys to values; got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(_FIELDS))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(_FIELDS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(_FIELDS)}"
        raise UserError(f"{origin}: unknown key '{key}' in task card; {hint}")
    for key in ("name", "domain", "family", "format", "source"):
        if data.get(key) in (None, ""):
            raise UserError(f"{origin}: missing key '{key}' in task card; add `{key}: ...`")
        if not isinstance(data[key], str):
            raise UserError(f"{origin}: key '{key}' must be a string, got {data[key]!r}")
    check_name("task", data["name"])
    if data["domain"] not in _DOMAINS:
        raise UserError(f"{origin}: key 'domain' is {data['domain']!r}; use one of: {', '.join(_DOMAINS)}")
    if data["format"] not in _FORMATS:
        raise UserError(f"{origin}: key 'format' is {data['format']!r}; use one of: {', '.join(_FORMATS)}")
    for key in _INT_FIELDS:
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 0):
            raise UserError(f"{origin}: key '{key}' must be a whole number >= 0, got {data[key]!r}")
    if not isinstance(data.get("use_detail", False), bool):
        raise UserError(f"{origin}: key 'use_detail' must be true or false, got {data['use_detail']!r}")
    new_tokens = data.get("max_new_tokens", 256)
    if not isinstance(new_tokens, int) or isinstance(new_tokens, bool) or new_tokens < 1:
        raise UserError(f"{origin}: key 'max_new_tokens' must be a positive whole number, got {new_tokens!r}")
    mpc = data.get("max_prompt_chars")
    if mpc is not None and (not isinstance(mpc, int) or isinstance(mpc, bool) or mpc <= 0):
        raise UserError(f"{origin}: key 'max_prompt_chars' must be a positive whole number or absent, got {mpc!r}")
    for key in ("description", "license"):
        if key in data and not isinstance(data[key], str):
            raise UserError(f"{origin}: key '{key}' must be a string, got {data[key]!r}")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise UserError(f"{origin}: key 'options' must be a mapping, got {options!r}")
    prefix, sep, arg = data["source"].partition(":")
    if not sep or prefix not in LOADERS or not arg.strip():
        raise UserError(
            f"{origin}: key 'source' is {data['source']!r}; write `<loader>:<argument>` with loader one of "
            f"{', '.join(LOADERS)} (e.g. countryinfo:province_country)"
        )
    fields = dict(data, options=dict(options))
    if base_dir is not None:
        fields = _anchor_paths(fields, Path(base_dir))
    card = TaskCard(**fields)
    if sum((card.train, card.val, card.test, card.pool)) == 0:
        raise UserError(f"{origin}: all of 'train', 'val' and 'test' are 0; give 'test' (and for id tasks train/val) a size")
    return card


def _anchor_paths(fields: dict, base: Path) -> dict:
    """Make a card's relative paths absolute, relative to the folder the card file lives in."""
    prefix, _, arg = fields["source"].partition(":")
    if prefix == "jsonl":
        path = Path(arg).expanduser()
        fields["source"] = f"jsonl:{path if path.is_absolute() else (base / path).resolve()}"
    if prefix == "lmeval" and fields["options"].get("include_path"):
        inc = fields["options"]["include_path"]
        incs = [inc] if isinstance(inc, str) else list(inc)
        out = [str(p if (p := Path(i).expanduser()).is_absolute() else (base / p).resolve()) for i in incs]
        fields["options"]["include_path"] = out[0] if isinstance(inc, str) else out
    return fields


def load_card(path: str | Path) -> TaskCard:
    """Read and validate one card file; its `name` must equal the file name without `.yaml`."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"task card {path} is a folder; give the path of a card YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"task card {path} not found; check the path") from None
    except UnicodeDecodeError:
        raise UserError(f"task card {path} is not UTF-8 text; give a card YAML file") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        raise UserError(f"{path}:{line} is not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    if isinstance(data, dict) and data.get("name") and data["name"] != path.stem:
        raise UserError(f"{path}: key 'name' is {data['name']!r} but the file is {path.name}; make them match")
    return card_from_dict(data, origin=str(path), base_dir=path.parent)


_CARDS: dict[str, TaskCard] | None = None


def all_cards() -> dict[str, TaskCard]:
    """Every card in tasks/cards/*.yaml by name (read once per process)."""
    global _CARDS
    if _CARDS is None:
        cards = {}
        for path in sorted(CARDS_DIR.glob("*.yaml")):
            card = load_card(path)
            cards[card.name] = card
        _CARDS = cards
    return dict(_CARDS)


def get_card(name: str) -> TaskCard:
    """A registered card by name, or a card file of the user's by path (`my_task.yaml`)."""
    if name.endswith((".yaml", ".yml")):
        return load_card(name)
    cards = all_cards()
    if name in cards:
        return cards[name]
    close = difflib.get_close_matches(name, list(cards), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UserError(f"unknown task '{name}'; {hint}`trustbench list tasks` shows all")


# ---------------------------------------------------------------------------------------------------- examples
def _card_key(card: TaskCard) -> str:
    # TaskCard holds a dict (options), so it is not hashable: key the cache by its JSON form instead.
    return json.dumps(dataclasses.asdict(card), sort_keys=True, default=str)


_LOADED: dict[str, list[Example] | Splits] = {}


def _loaded(card: TaskCard) -> list[Example] | Splits:
    """What the card's loader gives: all examples (split here), or splits it generated itself; validated (ids
    unique, gold within choices) and cached per card in this process."""
    key = _card_key(card)
    if key not in _LOADED:
        prefix, _, _ = card.source.partition(":")
        loaded = LOADERS.get(prefix)(card)
        _check_examples(card, _flat(loaded))
        _LOADED[key] = loaded
    return _LOADED[key]


def _flat(loaded: list[Example] | Splits) -> list[Example]:
    if isinstance(loaded, Splits):
        return loaded.test + loaded.val + loaded.train + loaded.pool
    return list(loaded)


def load_examples(card: TaskCard) -> list[Example]:
    """All examples of a card (every split of a generating loader), validated; cached per card in this process."""
    return _flat(_loaded(card))


def clear_cache() -> None:
    """Forget cached cards and examples (tests; or after editing cards in a long-lived process)."""
    global _CARDS
    _CARDS = None
    _LOADED.clear()


def _check_examples(card: TaskCard, examples: list[Example]) -> None:
    if not examples:
        raise UserError(f"task {card.name}: source {card.source} gave no examples; check the source and its options")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise UserError(f"task {card.name}: example id '{ex.id}' appears twice; make ids unique")
        seen.add(ex.id)
        if not ex.choices and card.format == "cot":
            if not isinstance(ex.gold, str) or not ex.gold.strip():
                raise UserError(f"task {card.name}: open-answer example '{ex.id}' needs its answer as text in gold")
            continue
        if len(ex.choices) < 2 or isinstance(ex.gold, (str, bool)) or not 0 <= ex.gold < len(ex.choices):
            raise UserError(
                f"task {card.name}: example '{ex.id}' has gold {ex.gold} for {len(ex.choices)} choices; "
                f"each example needs >= 2 choices and a gold index within them"
            )


def prompt_chars(ex: Example, use_detail: bool = False) -> int:
    """What `max_prompt_chars` measures: the prompt, plus the detail (longer context) when the card uses it."""
    return len(ex.prompt) + (len(ex.detail or "") if use_detail else 0)


def usable_examples(card: TaskCard) -> list[Example]:
    """The examples that survive `max_prompt_chars`, in source order."""
    return _usable(card, load_examples(card))


def _usable(card: TaskCard, examples: list[Example]) -> list[Example]:
    if card.max_prompt_chars is None:
        return examples
    return [ex for ex in examples if prompt_chars(ex, card.use_detail) <= card.max_prompt_chars]


def split(card: TaskCard) -> Splits:
    """Split a card's usable examples: a seeded shuffle (numpy default_rng(split_seed).permutation), then test takes
    the first `test`, val the next `val`, train the next `train`, pool the next `pool`, each clamped to what is
    left. Test and val do not depend on the train or pool size. A loader that generates its splits itself (from
    disjoint seeds) keeps them as generated. A split asked to be non-empty that ends up empty is a UserError."""
    loaded = _loaded(card)
    if isinstance(loaded, Splits):
        parts = {part: _usable(card, getattr(loaded, part)) for part in ("test", "val", "train", "pool")}
        available = len(_usable(card, _flat(loaded)))
    else:
        usable = _usable(card, loaded)
        order = np.random.default_rng(card.split_seed).permutation(len(usable))
        shuffled = [usable[i] for i in order]
        parts, start = {}, 0
        for part in ("test", "val", "train", "pool"):
            parts[part] = shuffled[start:start + getattr(card, part)]
            start += len(parts[part])
        available = len(usable)
    for part in ("test", "val", "train", "pool"):
        if getattr(card, part) > 0 and not parts[part]:
            cut = f" after max_prompt_chars={card.max_prompt_chars}" if card.max_prompt_chars else ""
            raise UserError(
                f"task {card.name}: the {part} split is empty ({available} usable examples{cut}, all taken by "
                f"earlier splits); lower the sizes or raise max_prompt_chars in its card"
            )
    return Splits(**parts)


def missing_data(card: TaskCard) -> str | None:
    """What the user must supply before the card's examples load, in one line; None when its data installs with
    the lock's packages or is generated (every built-in suite's cards) or is the user's own file."""
    if card.source.startswith("bigbench:"):
        from trustbench.tasks import bigbench

        if not bigbench.extracted_path(bigbench.task_path(card.source)).exists() \
                and bigbench.archive_path_if_cached() is None:
            return bigbench.missing_archive()
    return None


def describe(card: TaskCard, sizes: bool = True) -> dict:
    """What `trustbench list tasks` shows. `sizes=False` skips loading data (for a card whose data is missing)."""
    info: dict[str, Any] = {
        "name": card.name, "domain": card.domain, "family": card.family, "format": card.format,
        "source": card.source, "description": card.description, "num_choices": None, "license": card.license,
    }
    if not sizes:
        return info
    examples = load_examples(card)
    counts = sorted({len(ex.choices) for ex in examples})
    info["num_choices"] = "open" if counts == [0] else counts[0] if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    parts = split(card)
    info["sizes"] = {
        "total": len(examples), "usable": len(usable_examples(card)),
        "train": len(parts.train), "val": len(parts.val), "test": len(parts.test),
    }
    return info


from trustbench.tasks import bigbench, countryinfo, jsonl, lmeval, reasoning_gym, synthetic  # noqa: E402,F401  (each registers its loader)

"""JSONL loader: `source: jsonl:<path>`, one JSON object per line.

    {"id": "q1", "prompt": "2 + 2 = ?", "choices": ["3", "4"], "gold": 1, "rationale": "...", "detail": "..."}
    {"id": "q2", "prompt": "What is 2 + 3?", "answer": "5", "rationale": "2 + 3 = 5"}

- `prompt` (or `question`): the question text;
- `choices`: a list of at least 2 distinct strings, and `gold`: the index of the right choice (0-based) or its text;
- or, for an open question (a `format: cot` card), no choices and `answer`: the answer's text (or a number);
- optional `id` (default `<card name>-<line number>`), `rationale`, `detail` (longer context); other keys are ignored.

Blank lines are skipped. A relative path in a card file resolves against the folder the card file lives in (the
registry stores it absolute); a relative path in a card built in code resolves against the current directory.
Any bad line is a UserError naming the file, the line and the fix.
"""
from __future__ import annotations

import json
from pathlib import Path

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, TaskCard


@LOADERS.register("jsonl")
def load(card: TaskCard) -> list[Example]:
    path = Path(card.source.partition(":")[2].strip()).expanduser()
    return read_jsonl(path, prefix=card.name)


def read_jsonl(path: str | Path, prefix: str = "jsonl") -> list[Example]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"jsonl file {path} not found; fix the path after `jsonl:` in the card "
                        f"(relative paths resolve against the card file's folder)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read jsonl file {path} ({exc}); it must be UTF-8 text, one JSON object per line") from None
    out: list[Example] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{where}: not valid JSON ({exc.msg}); write one JSON object per line") from None
        ex = _example(row, where, default_id=f"{prefix}-{lineno}")
        if ex.id in seen:
            raise UserError(f"{where}: id '{ex.id}' already used on line {seen[ex.id]}; give each line a unique id")
        seen[ex.id] = lineno
        out.append(ex)
    if not out:
        raise UserError(f"jsonl file {path} has no examples; add one JSON object per line")
    return out


def _example(row: object, where: str, default_id: str) -> Example:
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}; write one object per line")
    prompt = row.get("prompt", row.get("question"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise UserError(f"{where}: missing key 'prompt' (or 'question'); add the question text as a string")
    choices = row.get("choices")
    if "choices" not in row and "answer" in row:
        answer = row["answer"]
        if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
            raise UserError(f"{where}: 'answer' must be the answer's text or a number, got {answer!r}")
        return _with_extras(row, where, default_id, prompt, (), str(answer).strip())
    if "choices" not in row:
        raise UserError(f"{where}: missing key 'choices'; add a list of at least 2 answer strings (or `answer` for an "
                        "open question)")
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) and c.strip() for c in choices):
        raise UserError(f"{where}: 'choices' must be a list of at least 2 non-empty strings, got {choices!r}")
    if len(set(choices)) < len(choices):
        raise UserError(f"{where}: 'choices' has a duplicate; make each choice distinct")
    if "gold" not in row:
        raise UserError(f"{where}: missing key 'gold'; add the index (0-based) or the text of the right choice")
    gold = row["gold"]
    if isinstance(gold, bool) or not isinstance(gold, (int, str)):
        raise UserError(f"{where}: 'gold' must be a choice index or the choice text, got {gold!r}")
    if isinstance(gold, str):
        if gold not in choices:
            raise UserError(f"{where}: gold {gold!r} is not one of the choices {choices}; make it match one exactly")
        gold = choices.index(gold)
    elif not 0 <= gold < len(choices):
        raise UserError(f"{where}: gold index {gold} is out of range for {len(choices)} choices; use 0 to {len(choices) - 1}")
    return _with_extras(row, where, default_id, prompt, tuple(choices), gold)


def _with_extras(row: dict, where: str, default_id: str, prompt: str, choices: tuple, gold) -> Example:
    ex_id = row.get("id", default_id)
    if not isinstance(ex_id, (str, int)) or isinstance(ex_id, bool) or str(ex_id) == "":
        raise UserError(f"{where}: 'id' must be a non-empty string or number, got {ex_id!r}")
    for key in ("rationale", "detail"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise UserError(f"{where}: '{key}' must be a string, got {type(row[key]).__name__}")
    return Example(id=str(ex_id), prompt=prompt.strip(), choices=choices, gold=gold,
                   rationale=row.get("rationale") or None, detail=row.get("detail") or None)

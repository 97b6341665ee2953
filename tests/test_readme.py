"""The documented commands, run as written: the CLI page's usage block (every command it shows, with every flag it
shows, its placeholders filled with the smoke suite's values: tiny models, seconds) and the README's quick start. A
flag the CLI does not take, or a command that fails, fails here, so neither can drift from the CLI."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from lmeval_outputs import write_output

ROOT = Path(__file__).resolve().parents[1]
# placeholder as written -> the value it gets ({runs}: the folder of this test's runs)
VALUES = {"SUITE": "smoke", "a,b": "finetune,kd", "x,y": "smoke_id,smoke_ood", "0,1,2": "0", "hf|vllm": "hf",
          "NAME_OR_PATH": "tiny-random", "N": "8", "K": "0", "choice|letter": "choice", "METHOD": "finetune",
          "png,pdf": "png,pdf", "X": "0.01", "Y": "0.01", "A": "0.05", "BASE=CAND": "finetune=kd",
          "RUN_DIR": "{runs}/run", "BASELINE_RUN": "{runs}/run", "CANDIDATE_RUN": "{runs}/run", "NAME": "smece",
          "holm|none": "holm", "LMEVAL_DIR": "{runs}/lmeval", "id|ood": "ood", "TEXT": "a test machine"}
OUT = {"run": "{runs}/run", "eval": "{runs}/eval", "report": "{runs}/report", "import": "{runs}/imported",
       "publish": "{runs}/published", "pages": "{runs}/site"}  # --out DIR, --root DIR


def usage_commands() -> list[str]:
    """The usage block's commands (the CLI page's first bash block), continuation lines joined, comments dropped."""
    text = (ROOT / "docs" / "cli.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1)
    commands: list[str] = []
    for line in block.splitlines():
        code = line.split("#", 1)[0].rstrip()
        if code.startswith("trustbench "):
            commands.append(code)
        elif code.strip():
            commands[-1] += " " + code.strip()
    return commands


def filled(command: str, runs: Path) -> list[list[str]]:
    """The command with its optional parts taken and its placeholders filled; `list a|b|c` is one command each."""
    words = command.replace("[", " ").replace("]", " ").replace("...", " ").split()
    if words[1] == "list":
        return [["trustbench", "list", what] for what in words[2].split("|")]
    out, seen_run = [], False
    for i, word in enumerate(words):
        if word == "DIR":
            value = OUT[words[1]]
        elif word == "RUN_DIR" and seen_run:
            continue  # `RUN_DIR [RUN_DIR ...]`: one is enough here
        else:
            value = VALUES.get(word, word)
            seen_run |= word == "RUN_DIR"
        out.append(value.replace("{runs}", str(runs)))
    return [out]


def test_every_usage_command_runs_as_written(tmp_path):
    commands = usage_commands()
    assert [c.split()[1] for c in commands] == ["run", "eval", "report", "figures", "gate", "import", "publish",
                                                "pages", "list"]
    write_output(tmp_path / "lmeval")  # what `lm_eval --log_samples --output_path lmeval` writes
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        for words in filled(command, tmp_path):
            result = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{shlex.join(words)}\n{result.stderr[-2000:]}"
    assert (tmp_path / "report" / "comparison.csv").exists() and (tmp_path / "run" / "figures").is_dir()
    assert list((tmp_path / "run" / "figures").glob("*.pdf"))
    assert (tmp_path / "eval" / "results.csv").exists() and (tmp_path / "imported" / "manifest.json").exists()
    assert (tmp_path / "published" / "manifest.json").exists() and (tmp_path / "site" / "docs" / "measured.md").exists()


def test_the_filling_takes_every_flag_the_readme_shows():
    words = filled("trustbench gate BASELINE_RUN CANDIDATE_RUN [--alpha A] [--methods BASE=CAND]", Path("/r"))[0]
    assert words == ["trustbench", "gate", "/r/run", "/r/run", "--alpha", "0.05", "--methods", "finetune=kd"]
    assert filled("trustbench list tasks|suites", Path("/r")) == [["trustbench", "list", "tasks"],
                                                                  ["trustbench", "list", "suites"]]


def test_the_readme_quick_start_runs_as_written(tmp_path):
    """Every quick-start command but `make demo` (the main job, timed elsewhere), with runs/ under tmp_path."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index("## Quick start"):], flags=re.S).group(1)
    commands = [line.split("#", 1)[0].split() for line in block.splitlines() if line.strip()]
    assert commands[0] == ["make", "demo"] and len(commands) == 5
    binary = Path(sys.executable).parent / "trustbench"
    for words in commands[1:]:
        assert words[0] == ".venv/bin/trustbench"
        words = [str(binary)] + [str(tmp_path / w) if w.startswith("runs/") else str(ROOT / w)
                                 if w.startswith("results/") else w for w in words[1:]]
        result = subprocess.run(words, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{shlex.join(words)}\n{result.stderr[-2000:]}"
    assert (tmp_path / "runs" / "probe-base" / "report.html").is_file()


def test_the_your_data_page_runs_as_written(tmp_path):
    """docs/your-data.md: its JSONL file and card, written out, then its commands (a real card file, scored)."""
    text = (ROOT / "docs" / "your-data.md").read_text()
    blocks = dict(re.findall(r"<!-- data-example: (\S+) -->\n```\w+\n(.*?)```", text, flags=re.S))
    assert set(blocks) == {"capitals.jsonl", "capitals.yaml", "commands"}
    for name in ("capitals.jsonl", "capitals.yaml"):
        (tmp_path / name).write_text(blocks[name])
    binary = Path(sys.executable).parent / "trustbench"
    for line in blocks["commands"].splitlines():
        words = shlex.split(line)
        result = subprocess.run([str(binary), *words[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"{line}\n{result.stderr[-2000:]}"
    assert (tmp_path / "runs" / "capitals-report" / "results.csv").read_text().count("capitals") >= 2


def test_every_relative_link_in_the_docs_points_to_a_file():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")) and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, broken


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) for every `trustbench ...` line in a bash block of the README or docs/."""
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            for line in block.splitlines():
                code = line.split("#", 1)[0].strip()
                words = code.split()
                if words and words[0].split("=")[-1].endswith("trustbench") or "trustbench " in code[:40]:
                    found.append((str(page.relative_to(ROOT)), code[code.index("trustbench"):]))
    return found


def test_every_documented_command_and_flag_exists():
    """Every `trustbench <command> --flag` in the docs' shell blocks names a real command and real flags (the
    commands that need a GPU or an hour cannot run here; their spelling can still not drift)."""
    helps: dict[str, str] = {}
    wrong = []
    commands = documented_commands()
    assert len(commands) >= 20
    for page, line in commands:
        words = line.split()
        name = " ".join(words[1:3]) if words[1] == "import" else words[1]
        if name not in helps:
            result = subprocess.run([sys.executable, "-m", "trustbench", *name.split(), "--help"],
                                    capture_output=True, text=True)
            helps[name] = result.stdout if result.returncode == 0 else ""
        flags = [w.strip("[]").split("=")[0] for w in words if w.strip("[").startswith("--")]
        if not helps[name] or any(flag not in helps[name] for flag in flags):
            wrong.append(f"{page}: {line}")
    assert not wrong, wrong


def documented_parameters() -> dict[tuple[str, str], str]:
    """(method, parameter) -> default cell, from the methods pages' parameter tables."""
    rows = {}
    for page in sorted((ROOT / "docs" / "methods").glob("*.md")):
        for method, name, default in re.findall(r"^\| `(\w+)` \| `?([\w()]+)`? \| ([^|]*) \|", page.read_text(),
                                                flags=re.M):
            rows[method, name] = default.strip()
    return rows


def test_every_method_parameter_is_in_its_page_with_the_codes_default():
    """The parameter tables of docs/methods/ against the recipes: every parameter a built-in recipe accepts has a
    row, no row names a parameter it does not accept, and a default the code fixes is the one the row states."""
    from trustbench import baselines
    from trustbench.harness.config import MethodSpec

    rows = documented_parameters()
    missing, wrong = [], []
    for name, cls in sorted(baselines.available().items()):
        if name == "load" or not isinstance(cls, type):
            continue  # `load` scores a checkpoint (its `path:` is on the CLI page); entry points are not ours
        method = baselines.build(MethodSpec(name=name, method=name, params={}))
        defaults = getattr(method, "settings", None) or {p: getattr(method, p) for p in cls.params}
        documented = {p for m, p in rows if m == name} - {"(none)"}
        missing += [f"{name}.{p}" for p in set(cls.params) - documented]
        wrong += [f"{name}.{p} (not a parameter)" for p in documented - set(cls.params)]
        wrong += [f"{name}.{p}: page says {rows[name, p]}, code {defaults[p]!r}" for p in set(cls.params) & documented
                  if defaults.get(p) is not None and rows[name, p] != f"`{defaults[p]}`"]
    assert not missing and not wrong, (missing, wrong)

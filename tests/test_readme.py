"""The README's usage section, run as written: every command it shows, with every flag it shows, its placeholders
filled with the smoke suite's values (tiny models, seconds). A flag the CLI does not take, or a command that fails,
fails here, so the usage section cannot drift from the CLI."""
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
          "holm|none": "holm", "LMEVAL_DIR": "{runs}/lmeval", "id|ood": "ood"}
OUT = {"run": "{runs}/run", "eval": "{runs}/eval", "report": "{runs}/report", "import": "{runs}/imported"}  # --out DIR


def usage_commands() -> list[str]:
    """The usage block's commands, continuation lines joined and comments dropped."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Using it"):]
    block = re.search(r"```bash\n(.*?)```", block, flags=re.S).group(1)
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
    assert [c.split()[1] for c in commands] == ["run", "eval", "report", "figures", "gate", "import", "list"]
    write_output(tmp_path / "lmeval")  # what `lm_eval --log_samples --output_path lmeval` writes
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for command in commands:
        for words in filled(command, tmp_path):
            result = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{shlex.join(words)}\n{result.stderr[-2000:]}"
    assert (tmp_path / "report" / "comparison.csv").exists() and (tmp_path / "run" / "figures").is_dir()
    assert list((tmp_path / "run" / "figures").glob("*.pdf"))
    assert (tmp_path / "eval" / "results.csv").exists() and (tmp_path / "imported" / "manifest.json").exists()


def test_the_filling_takes_every_flag_the_readme_shows():
    words = filled("trustbench gate BASELINE_RUN CANDIDATE_RUN [--alpha A] [--methods BASE=CAND]", Path("/r"))[0]
    assert words == ["trustbench", "gate", "/r/run", "/r/run", "--alpha", "0.05", "--methods", "finetune=kd"]
    assert filled("trustbench list tasks|suites", Path("/r")) == [["trustbench", "list", "tasks"],
                                                                  ["trustbench", "list", "suites"]]

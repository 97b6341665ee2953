"""The command line: help everywhere, listings, and one-line errors with exit code 2 that write nothing."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


def trustbench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "trustbench", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


@pytest.mark.parametrize("command", [[], ["run"], ["eval"], ["report"], ["figures"], ["gate"], ["list"], ["import"],
                                     ["import", "lm-eval"]])
def test_help(command):
    result = trustbench(*command, "--help")
    assert result.returncode == 0 and "Usage" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "no_such_suite"], "unknown suite 'no_such_suite'"),
    (["run", "smoke", "--tasks", "smoke_idd"], "unknown task 'smoke_idd'; did you mean smoke_id"),
    (["run", "demo", "--tasks", "provinces_eurpe"], "did you mean provinces_europe"),  # a suite with sizes too
    (["run", "smoke", "--methods", "cot_distill"], "not in suite"),
    (["run", "smoke", "--seeds", "one"], "--seeds takes integers"),
    (["eval", "--model", "no-such-model", "--tasks", "smoke_id", "--backend", "hf"], "unknown model"),
    (["report", "missing_run_dir"], "missing_run_dir"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = trustbench(*args, "--out", str(tmp_path / "out")) if args[0] == "run" else trustbench(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_bad_option_value_exits_2():
    result = trustbench("run", "smoke", "--backend", "tpu")
    assert result.returncode == 2 and "tpu" in result.stderr


@pytest.mark.parametrize("what, expected", [
    ("tasks", ["smoke_id", "provinces_europe", "400/100/500 (1285)", "MIT (countryinfo 1.0.1)", "ood",
               "multiemo_hotels", "needs data you supply (*)", "(*) BIG-bench cards need bigbench-1.0.0.tar.gz"]),
    ("methods", ["teacher", "zeroshot", "finetune", "load"]),
    ("models", ["smollm2-135m", "smollm2-135m-l6", "tiny-random"]),
    ("suites", ["smoke", "demo"]),
])
def test_list(what, expected):
    result = trustbench("list", what)
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


def test_the_methods_listing_gives_each_recipe_one_whole_sentence():
    result = trustbench("list", "methods")
    rows = result.stdout.strip().splitlines()[1:]
    assert len(rows) >= 13 and {row.split()[0] for row in rows} >= {"sampled_kd", "gkd", "reverse_kd", "first"}
    for row in rows:
        description = row.split(None, 1)[1]
        assert description[0].isupper() and description.endswith((".", ".)")), row  # not cut mid-sentence
        assert "METHODS.md" not in description and "DESIGN.md" not in description, row  # no file outside the repo

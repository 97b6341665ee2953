"""A corpus of bad inputs, each through the `trustbench` command as a user types it: exit code 2, one error line on
stderr naming the problem (no traceback), and nothing written (no run directory created, an existing run
untouched)."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from lmeval_outputs import DOCS, write_output
from trustbench.cli import main

SMOKE = ("teacher: tiny-random\nstudent: tiny-random-l1\nbackend: hf\ntasks: [smoke_id]\n"
         "methods: [finetune]\n")
CARD = "name: {name}\ndomain: ood\nfamily: f\nformat: mc\nsource: jsonl:data.jsonl\ntest: 2\n"
DATA = ('{"prompt": "Which is heaviest?", "choices": ["a feather", "a brick"], "gold": 1}\n'
        '{"prompt": "Which is lightest?", "choices": ["a truck", "a leaf"], "gold": 1}\n')


def suite(text: str):
    """`trustbench run <suite file> --out out` with `text` added to a valid smoke-sized suite."""
    def make(tmp: Path) -> list[str]:
        (tmp / "suite.yaml").write_text(SMOKE + text)
        return ["run", str(tmp / "suite.yaml"), "--out", str(tmp / "out")]
    return make


def raw_suite(content: bytes | str):
    def make(tmp: Path) -> list[str]:
        path = tmp / "suite.yaml"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return ["run", str(path), "--out", str(tmp / "out")]
    return make


def card(text: str, name: str = "mine", data: str = DATA):
    """`trustbench eval` of tiny-random on a card file (`text` replaces the defaults' lines it names)."""
    def make(tmp: Path) -> list[str]:
        (tmp / "data.jsonl").write_text(data)
        lines = dict(line.split(": ", 1) for line in CARD.format(name=name).splitlines())
        lines.update(line.split(": ", 1) for line in text.splitlines() if line)
        (tmp / f"{name}.yaml").write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
        return ["eval", "--model", "tiny-random", "--backend", "hf", "--tasks", str(tmp / f"{name}.yaml"), "--out",
                str(tmp / "out")]
    return make


def command(*args: str, setup=None):
    def make(tmp: Path) -> list[str]:
        if setup:
            setup(tmp)
        return [a.replace("{tmp}", str(tmp)) for a in args]
    return make


def model_folder(config: str | None, weights: bool):
    def setup(tmp: Path) -> None:
        (tmp / "model").mkdir()
        if config is not None:
            (tmp / "model" / "config.json").write_text(config)
        if weights:
            (tmp / "model" / "model.safetensors").write_bytes(b"\0" * 16)
    return setup


def damaged_run(manifest: str):
    def setup(tmp: Path) -> None:
        (tmp / "out").mkdir()
        (tmp / "out" / "manifest.json").write_text(manifest)
    return setup


def lmeval_output(change=None, out: str = "{tmp}/run"):
    """`trustbench import lm-eval` of an lm-eval output folder that `change(model_folder)` damages."""
    def setup(tmp: Path) -> None:
        folder = write_output(tmp / "lmeval")
        if change:
            change(folder)
    return command("import", "lm-eval", "{tmp}/lmeval", "--out", out, setup=setup)


def samples_file(folder: Path) -> Path:
    return next(folder.glob("samples_*.jsonl"))


def results_file(folder: Path) -> Path:
    return next(folder.glob("results_*.json"))


def edit_first_sample(edit):
    def change(folder: Path) -> None:
        path = samples_file(folder)
        lines = path.read_text().splitlines()
        first = json.loads(lines[0])
        edit(first)
        path.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    return change


def generate_until(folder: Path) -> None:
    write_output(folder.parent, output_type="generate_until")
    edit_first_sample(lambda s: s.update(filtered_resps=["an answer"]))(folder)


CASES = {
    # suite files
    "suite not UTF-8": (raw_suite(bytes(range(128, 256))), "is not UTF-8 text"),
    "suite is a folder": (command("run", "{tmp}", "--out", "{tmp}/out"), "is a folder"),
    "suite missing": (command("run", "{tmp}/nope.yaml", "--out", "{tmp}/out"), "does not exist"),
    "unknown built-in suite": (command("run", "nosuch", "--out", "{tmp}/out"), "unknown suite 'nosuch'"),
    "suite not YAML": (raw_suite("teacher: [unclosed\n"), "is not valid YAML"),
    "suite is a list": (raw_suite("- teacher\n- student\n"), "must be a mapping"),
    "unknown key": (suite("colour: red\n"), "unknown key(s) colour"),
    "missing teacher": (raw_suite("student: tiny-random-l1\ntasks: [smoke_id]\nmethods: [finetune]\n"),
                        "missing 'teacher'"),
    "negative epochs": (suite("train: {epochs: -1}\n"), "train.epochs: input should be greater than 0 (got -1)"),
    "lr not a number": (suite("train: {lr: fast}\n"), "train.lr: must be a number (got 'fast')"),
    "fractional batch size": (suite("train: {batch_size: 2.5}\n"), "train.batch_size: must be a whole number"),
    "unknown train key": (suite("train: {speed: 3}\n"), "unknown train key(s) speed"),
    "seed true": (suite("seeds: [true]\n"), "seeds must be a list of integers"),
    "seed twice": (suite("seeds: [1, 1]\n"), "seeds lists [1] twice"),
    "negative size": (suite("sizes: {smoke_id: {test: -5}}\n"), "sizes.smoke_id.test: input should be greater"),
    "size of a misspelt task": (suite("sizes: {smok_id: {test: 5}}\n"), "sizes names smok_id"),
    "unknown split size": (suite("sizes: {smoke_id: {tests: 5}}\n"), "sizes.smoke_id.tests"),
    "dtype": (suite("dtype: fp8\n"), "dtype: input should be 'float32', 'bfloat16' or 'float16'"),
    "backend": (suite("backend: tpu\n"), "backend: input should be 'hf' or 'vllm'"),
    "zero bins": (suite("metrics: {bins: 0}\n"), "metrics.bins: input should be greater than or equal to 1"),
    "negative resamples": (suite("metrics: {n_boot: -1}\n"), "metrics.n_boot"),
    "temperature scaling 'no'": (suite("temperature_scaling: 'no'\n"), "temperature_scaling: must be true or false"),
    "method name with /": (suite("methods: [{name: a/b, method: finetune}]\n"), "method name 'a/b' cannot name a file"),
    "method name with __": (suite("methods: [{name: a__b, method: finetune}]\n"), "cannot name a file"),
    "method name with +": (suite("methods: [{name: kd+ts, method: kd}]\n"), "cannot name a file"),
    "method name with a space": (suite("methods: [{name: my kd, method: kd}]\n"), "cannot name a file"),
    "unknown method": (suite("methods: [distill_magic]\n"), "unknown method 'distill_magic'"),
    "unknown method parameter": (suite("methods: [{finetune: {speed: 3}}]\n"), "unknown parameter(s) speed"),
    "method lr not a number": (suite("methods: [{finetune: {lr: x}}]\n"), "method 'finetune': lr: must be a number"),
    "first c negative": (suite("methods: [{first: {c: -1}}]\n"), "c must be `search`, `none` or a positive number"),
    "kd alpha above 1": (suite("methods: [{kd: {alpha: 2}}]\n"), "needs 0 <= alpha <= 1"),
    "method twice": (suite("methods: [finetune, finetune]\n"), "appear twice"),
    "unknown task": (suite("tasks: [smoke_idd]\n"), "unknown task 'smoke_idd'"),
    "extends itself": (raw_suite("extends: suite.yaml\n"), "extends itself"),
    "extends a missing file": (raw_suite("extends: nowhere.yaml\n"), "does not exist"),
    "endpoint teacher without a URL": (raw_suite(SMOKE.replace("teacher: tiny-random",
                                                               "teacher: {endpoint: localhost, model: m}")),
                                       "is not an http(s) URL"),
    # task cards and data files
    "card with an unknown key": (card("colour: red"), "unknown key 'colour' in task card"),
    "card domain": (card("domain: train"), "key 'domain' is 'train'; use one of: id, ood"),
    "card source loader": (card("source: magic:thing"), "key 'source' is 'magic:thing'"),
    "card name and file differ": (card("name: other"), "key 'name' is 'other' but the file is mine.yaml"),
    "card size negative": (card("test: -1"), "key 'test' must be a whole number >= 0"),
    "card name with __": (card("", name="my__task"), "task name 'my__task' cannot name a file"),
    "card flag 'no'": (card("source: bigbench:winowhy\noptions: {task_prefix: 'no'}"),
                       "option task_prefix must be true or false, got 'no'"),
    "endpoint key not set": (raw_suite(SMOKE.replace(
        "teacher: tiny-random", "teacher: {endpoint: 'http://127.0.0.1:9/v1', model: m, api_key_env: TB_UNSET_KEY}")),
        "the environment variable TB_UNSET_KEY (api_key_env) is not set; export TB_UNSET_KEY=<your key>"),
    "BIG-bench card without the archive": (
        raw_suite(SMOKE.replace("tasks: [smoke_id]", "tasks: [smoke_id, multiemo_hotels]")),
        "task multiemo_hotels: BIG-bench cards need bigbench-1.0.0.tar.gz"),
    "card is a folder": (command("eval", "--model", "tiny-random", "--tasks", "{tmp}/dir.yaml", "--out", "{tmp}/out",
                                 setup=lambda tmp: (tmp / "dir.yaml").mkdir()), "is a folder"),
    "data gold out of range": (card("", data=DATA.replace('"gold": 1}', '"gold": 5}', 1)), "gold index 5 is out"),
    "data not JSON": (card("", data="{not json\n"), "not valid JSON"),
    "data ids repeat": (card("", data=DATA.replace('{"prompt"', '{"id": "q", "prompt"')), "id 'q' already used"),
    "data file missing": (card("source: jsonl:nowhere.jsonl"), "jsonl file"),
    # models
    "model config not JSON": (command("eval", "--model", "{tmp}/model", "--tasks", "smoke_id", "--out", "{tmp}/out",
                                      setup=model_folder("{oops", weights=True)), "config.json is not valid JSON"),
    "model without weights": (command("eval", "--model", "{tmp}/model", "--tasks", "smoke_id", "--out", "{tmp}/out",
                                      setup=model_folder('{"model_type": "llama"}', weights=False)),
                              "has a config but no weights"),
    "unknown model": (command("eval", "--model", "gpt-17", "--tasks", "smoke_id", "--out", "{tmp}/out"),
                      "unknown model 'gpt-17'"),
    # run directories
    "out is a file": (command("run", "smoke", "--out", "{tmp}/out", setup=lambda tmp: (tmp / "out").write_text("x")),
                      "is a file"),
    "resumed run's manifest damaged": (command("run", "smoke", "--out", "{tmp}/out", setup=damaged_run("{oops")),
                                       "it is damaged"),
    "few-shot on a card lm-eval does not build": (
        command("eval", "--model", "tiny-random", "--tasks", "smoke_id", "--num_fewshot", "2", "--out", "{tmp}/out"),
        "num_fewshot applies to lm-eval tasks"),
    "eval of a model folder that is not there": (command("eval", "--model", "{tmp}/ckpt/final", "--tasks", "smoke_id",
                                                          "--out", "{tmp}/out"), "does not exist"),
    "resumed run of another suite": (command("run", "smoke", "--out", "{tmp}/out", setup=damaged_run(
        '{"schema_version": 3, "suite": "x", "suite_hash": "other", "scoring": {"mode": "letter", '
        '"confidence": "c"}}')), "holds a run of suite 'x', not of 'smoke'"),
    "report without a manifest": (command("report", "{tmp}", "--out", "{tmp}/out"), "no run manifest"),
    "gate of a missing run": (command("gate", "{tmp}/a", "{tmp}/b"), "no run manifest"),
    # lm-eval outputs to import
    "lm-eval output not there": (command("import", "lm-eval", "{tmp}/nowhere", "--out", "{tmp}/run"),
                                 "does not exist: point at the folder given to lm_eval --output_path"),
    "lm-eval output without results": (command("import", "lm-eval", "{tmp}", "--out", "{tmp}/run"),
                                       "no lm-eval results_*.json in"),
    "lm-eval results missing beside samples": (lmeval_output(lambda f: results_file(f).unlink()),
                                               "no lm-eval results_*.json in"),
    "lm-eval samples missing (no --log_samples)": (lmeval_output(lambda f: samples_file(f).unlink()),
                                                   "is missing: lm-eval writes it with --log_samples"),
    "lm-eval samples not JSON lines": (lmeval_output(lambda f: samples_file(f).write_text("doc_id,acc\n0,1\n")),
                                       "line 1 is not a JSON object"),
    "lm-eval samples truncated mid-line": (lmeval_output(lambda f: samples_file(f).write_text(
        samples_file(f).read_text()[:-40])), f"line {len(DOCS)} is not a JSON object"),
    "lm-eval samples cut at a line": (lmeval_output(lambda f: samples_file(f).write_text(
        "".join(samples_file(f).read_text().splitlines(True)[:2]))), f"holds 2 samples but lm-eval scored {len(DOCS)}"),
    "lm-eval results truncated": (lmeval_output(lambda f: results_file(f).write_text(results_file(f).read_text()[:99])),
                                  "it is damaged or truncated"),
    "lm-eval results of another tool": (lmeval_output(lambda f: results_file(f).write_text('{"acc": 1}')),
                                        "is not lm-eval's results file"),
    "lm-eval generate_until task": (lmeval_output(generate_until), "is generate_until, not multiple_choice"),
    "lm-eval sample without log-likelihoods": (lmeval_output(edit_first_sample(lambda s: s.pop("filtered_resps"))),
                                               "doc 0 lacks per-choice log-likelihoods"),
    "lm-eval sample with several golds": (lmeval_output(edit_first_sample(lambda s: s.update(target="[0, 1]"))),
                                          "target '[0, 1]' is not one of its 3 choices"),
    "lm-eval output of two runs": (lmeval_output(lambda f: write_output(f.parent, model="/models/other")),
                                   "holds 2 lm-eval runs"),
    "lm-eval import onto an existing run": (lmeval_output(out="{tmp}/out", change=lambda f: damaged_run("{}")(
        f.parent.parent)), "/out already holds a run: give a new folder"),
    "lm-eval import onto a file": (lmeval_output(out="{tmp}/lmeval/x", change=lambda f: (f.parent / "x").write_text("")),
                                   "is a file: give a new folder"),
    # command-line flags
    "seeds not numbers": (command("run", "smoke", "--seeds", "a,b", "--out", "{tmp}/out"), "--seeds takes integers"),
    "backend flag": (command("run", "smoke", "--backend", "tpu", "--out", "{tmp}/out"),
                     "Invalid value for '--backend'"),
    "figure format": (command("figures", "{tmp}", "--format", "bmp"), "unknown figure format bmp"),
    "method not in the suite": (command("run", "smoke", "--methods", "cot_distill", "--out", "{tmp}/out"),
                                "method(s) cot_distill are not in suite 'smoke'"),
    "missing argument": (command("run"), "Missing argument 'suite'"),
    "import domain": (command("import", "lm-eval", "{tmp}", "--domain", "train"), "Invalid value for '--domain'"),
}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, monkeypatch, capsys):
    make, message = CASES[name]
    monkeypatch.chdir(tmp_path)
    args = make(tmp_path)
    before = snapshot(tmp_path)
    monkeypatch.setattr(sys, "argv", ["trustbench", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_.value.code == 2, err
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err  # (progress bars may precede it)
    assert err.rstrip().splitlines()[-1] == errors[0]
    assert snapshot(tmp_path) == before  # nothing written, nothing changed


def test_the_corpus_is_large():
    assert len(CASES) >= 40

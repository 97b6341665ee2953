"""End to end on the `smoke` suite: run, resume, rebuild the report, and `eval` through both engines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trustbench.harness.config import load_suite
from trustbench.runner import run_suite
from trustbench.harness.store import RunDir

METHODS = ["teacher", "zeroshot", "finetune", "kd", "first", "dualchecker", "elad@r0", "elad@r1", "elad"]
TASKS = {"smoke_id": 48, "smoke_ood": 48, "smoke_cot": 24, "smoke_cot_id": 16}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke")
    log: list[str] = []
    report = run_suite(load_suite("smoke"), run_dir, log=log.append)
    return run_dir, report, log


def test_smoke_writes_the_whole_run_directory(smoke_run):
    run_dir, report, _ = smoke_run
    assert report == run_dir / "report.html" and report.exists()
    results = pd.read_csv(run_dir / "results.csv")
    expected = {(m + fix, t) for m in METHODS for fix in ("", "+ts", "+iso") for t in TASKS} | {
        ("prior", t) for t in TASKS}
    assert set(zip(results.method, results.task)) == expected
    assert (results.n == results.task.map(TASKS)).all()
    assert results.acc.between(0, 1).all() and (results.acc_lo <= results.acc).all()
    cot = pd.read_parquet(RunDir(run_dir).cell_path("test", "teacher", "smoke_cot", 0))
    assert {"answer", "gold_answer", "parsed", "output"} <= set(cot.columns)
    unparsed = results.set_index(["method", "task"]).loc[("teacher", "smoke_cot"), "n_unparsed"]
    assert unparsed == (~cot.parsed).sum()
    leaderboard = (run_dir / "leaderboard.md").read_text()
    assert "finetune+ts" in leaderboard and "ID avg" in leaderboard and "OOD avg" in leaderboard
    for method in METHODS:
        assert (run_dir / "figures" / f"reliability_{method}_smoke_ood.png").exists()
    first_figures = ["first_ece_vs_c", "first_topk_mass", "first_reliability_id_ood"]
    for name in first_figures:
        assert (run_dir / "figures" / f"{name}.png").exists()
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 4 * len(METHODS) + len(first_figures)


def test_reference_rows_and_cells_without_signal_are_marked_and_warned_about(smoke_run):
    """The tiny random models of `smoke` answer one letter whatever the question: every cell is collapsed."""
    run_dir, _, log = smoke_run
    results = pd.read_csv(run_dir / "results.csv").set_index(["method", "task"])
    prior = results.loc[("prior", "smoke_id")]
    assert prior.acc == pytest.approx(prior.majority) and prior.top_share == 1 and not prior.oracle
    assert results.loc[("prior", "smoke_ood"), "oracle"]  # no train split: its frequencies are the test split's
    teacher = results.loc[("teacher", "smoke_id")]
    assert teacher.collapsed == (teacher.top_share >= 0.9) and teacher.at_chance == (teacher.acc_lo <= teacher.majority)
    warnings = [line for line in log if line.startswith("warning: ")]
    raw = ~results.index.get_level_values(0).str.contains("+", regex=False)
    flagged = results[(results.at_chance | results.collapsed) & raw]
    assert len(warnings) == len(flagged) - len(TASKS)  # every flagged raw cell but the prior's, one line each
    assert not any(line.startswith("warning: prior") for line in warnings)
    leaderboard = (run_dir / "leaderboard.md").read_text()
    assert "prior (reference)" in leaderboard and "‡" in leaderboard and "°" in leaderboard



def test_elad_runs_its_rounds_on_the_smoke_pool(smoke_run):
    """ELAD in smoke: n0 = 4 seed questions, then 2 rounds of 4 from smoke_cot_id's pool of 12, each round's student a
    scored cell, the teacher's budget growing round by round; the other methods never see that task's pool."""
    run_dir, _, log = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["tasks"]["smoke_cot_id"]["sizes"] == {"train": 0, "val": 0, "test": 16, "pool": 12}
    record = manifest["methods"]["elad"]["runs"]["0"]["records"]["elad"]
    rounds = record["rounds"]
    assert [r["pool_left"] for r in rounds] == [8, 4] and all(len(r["accepted_steps"]) == 4 for r in rounds)
    assert all(r["kept"] + r["dropped"] + r["unparsable"] == 4 for r in rounds)
    spent = [r["budget_before"]["teacher_calls"] for r in rounds] + [record["final_budget"]["teacher_calls"]]
    assert spent[0] >= 4 and spent == sorted(set(spent))  # every round asks the teacher something new
    costs = [manifest["methods"][m]["runs"]["0"]["cost"]["teacher_calls"] for m in ("elad@r0", "elad@r1", "elad")]
    assert costs == spent
    assert manifest["methods"]["finetune"]["runs"]["0"]["cost"]["train_examples"] == 64
    budget = pd.read_csv(run_dir / "tables" / "elad_budget.csv")
    assert set(zip(budget.variant, budget.domain)) == {("elad", "id"), ("elad", "ood")} and (budget.rounds == 3).all()
    assert "egss + clear (elad)" in set(pd.read_csv(run_dir / "tables" / "elad_main.csv").iloc[:, 0])
    for name in ("elad_budget", "elad_uncertainty"):
        assert (run_dir / "figures" / f"{name}.png").exists()

def test_predictions_follow_the_contract(smoke_run):
    run_dir, _, _ = smoke_run
    frame = pd.read_parquet(RunDir(run_dir).cell_path("test", "finetune", "smoke_id", 0))
    assert {"example_id", "gold", "pred", "confidence", "probs", "correct"} <= set(frame.columns)
    assert (frame.correct == (frame.pred == frame.gold)).all()
    assert all(abs(sum(p) - 1) < 1e-9 for p in frame.probs)
    assert (frame.confidence == frame.probs.map(max)).all()


def test_manifest_records_the_run(smoke_run):
    run_dir, _, _ = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 4
    assert manifest["scoring"]["mode"] == "letter" and "renormalised" in manifest["scoring"]["confidence"]
    assert manifest["tasks"]["smoke_ood"]["domain"] == "ood" and manifest["tasks"]["smoke_id"]["sizes"]["train"] == 64
    assert manifest["methods"]["finetune"]["runs"]["0"]["cost"]["train_examples"] == 64
    assert {"torch", "transformers", "lm-eval"} <= set(manifest["versions"])
    assert manifest["methods"]["first"]["module"] == "trustbench.baselines.first"
    first = manifest["methods"]["first"]["runs"]["0"]["records"]["first"]
    curve = dict(map(tuple, first["ece_curve"]))
    assert first["c_mode"] == "search" and curve[first["c"]] == min(curve.values()) and len(curve) >= 10
    cache = first["teacher_cache"]
    assert cache["positions"] == 64 and cache["cache_bytes"] == 64 * first["k"] * 8
    assert cache["full_over_cache"] == round(cache["full_bytes"] / cache["cache_bytes"], 1) > 1
    assert sum(first["topk_mass_hist"]) == 64 and 0 < first["topk_mass_mean"] <= 1
    assert manifest["methods"]["first"]["runs"]["0"]["cost"]["c"] == first["c"]
    kd = manifest["methods"]["kd"]["runs"]["0"]["cost"]
    assert kd["full_over_cache"] == 1.0 and kd["train_examples"] == 64


def test_repeat_skips_finished_cells_and_resumes_missing_ones(smoke_run):
    run_dir, _, _ = smoke_run
    kept = RunDir(run_dir).cell_path("test", "teacher", "smoke_id", 0)
    lost = RunDir(run_dir).cell_path("test", "finetune", "smoke_ood", 0)
    kept_mtime = kept.stat().st_mtime_ns
    before = pd.read_parquet(lost)
    lost.unlink()  # as if the run had been interrupted before this cell
    log: list[str] = []
    run_suite(load_suite("smoke"), run_dir, log=log.append)
    assert kept.stat().st_mtime_ns == kept_mtime
    assert any("teacher seed 0] done already" in line for line in log)
    assert sum("scoring" in line for line in log) == 1  # only finetune had work left
    pd.testing.assert_frame_equal(pd.read_parquet(lost), before)  # cached checkpoint, same predictions


def test_report_rebuilds_identically_without_importing_torch(smoke_run):
    """`trustbench report` and `trustbench figures` redraw a finished run byte for byte from its predictions and
    manifest, importing the recipes the manifest names but never torch."""
    run_dir, _, _ = smoke_run
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and "predictions" not in p.parts
                   and p.name != "manifest.json")
    before = {p: p.read_bytes() for p in files}
    script = ("import sys; from trustbench.cli import app\n"
              "for command in (['report', sys.argv[1]], ['figures', sys.argv[1]]):\n"
              "    app(command, standalone_mode=False)\n"
              "print('torch imported' if 'torch' in sys.modules else 'no torch',"
              " 'first recipe imported' if 'trustbench.baselines.first' in sys.modules else 'no recipe')")
    result = subprocess.run([sys.executable, "-c", script, str(run_dir)], capture_output=True, text=True,
                            env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no torch" in result.stdout and "first recipe imported" in result.stdout
    assert (run_dir / "figures" / "first_ece_vs_c.png").exists()  # the recipe's own figure, drawn by the report
    assert {p: p.read_bytes() for p in files} == before


def _eval(tmp_path: Path, backend: str) -> pd.DataFrame:
    out = tmp_path / backend
    result = subprocess.run([sys.executable, "-m", "trustbench", "eval", "--model", "tiny-random", "--tasks",
                             "smoke_id,smoke_ood", "--backend", backend, "--scoring", "letter", "--out", str(out)],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"report: {out / 'report.html'}" in result.stdout
    return pd.read_csv(out / "results.csv")


@pytest.mark.vllm
def test_eval_through_vllm_matches_hf(tmp_path):
    from conftest import vllm_available

    if not vllm_available():
        pytest.skip("vLLM is not installed")
    hf, vllm = _eval(tmp_path, "hf"), _eval(tmp_path, "vllm")
    pd.testing.assert_series_equal(hf.acc, vllm.acc)
    assert (abs(hf.ece - vllm.ece) <= 0.01).all()


def test_a_changed_task_is_refused_not_silently_reused(smoke_run, monkeypatch):
    import dataclasses

    from trustbench import tasks
    from trustbench.harness.errors import UserError

    run_dir, _, _ = smoke_run
    original = tasks.get_card

    def noisier(name):
        card = original(name)
        return dataclasses.replace(card, options={**card.options, "noise": 0.3}) if name == "smoke_ood" else card

    monkeypatch.setattr(tasks, "get_card", noisier)
    with pytest.raises(UserError, match="task smoke_ood changed"):
        run_suite(load_suite("smoke"), run_dir, log=lambda _: None)


def test_eval_takes_a_card_file_of_ones_own_and_lm_evals_defaults_and_limit(tmp_path):
    """`trustbench eval` as an lm-eval user expects it: choice scoring (lm-eval's acc) and the faster engine where it
    runs (HF without a GPU) unless told otherwise, and `--limit` scores the first N questions of each task."""
    data = tmp_path / "mine.jsonl"
    data.write_text('{"prompt": "Which is heaviest?", "choices": ["a feather", "a brick"], "gold": 1}\n'
                    '{"prompt": "Which is lightest?", "choices": ["a truck", "a leaf"], "gold": "a leaf"}\n'
                    '{"prompt": "Which floats?", "choices": ["a stone", "a cork"], "gold": 1}\n')
    (tmp_path / "my_task.yaml").write_text("name: my_task\ndomain: ood\nfamily: mine\nformat: mc\n"
                                           "source: jsonl:mine.jsonl\ntest: 3\n")
    result = subprocess.run([sys.executable, "-m", "trustbench", "eval", "--model", "tiny-random", "--tasks",
                             str(tmp_path / "my_task.yaml"), "--limit", "2", "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Loading weights" not in result.stderr  # the libraries' own progress bars stay quiet
    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert results.method.tolist() == ["prior", "tiny-random"]  # the reference row, and the model
    assert results.task.tolist() == ["my_task"] * 2 and results.n.tolist() == [2, 2]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert (manifest["scoring"]["mode"], manifest["backend"]) == ("choice", "hf")


def test_an_empty_test_split_is_refused_before_anything_is_written(tmp_path):
    from trustbench.harness.config import parse_suite
    from trustbench.harness.errors import UserError

    suite = parse_suite({"name": "t", "teacher": "tiny-random", "student": "tiny-random-l1", "backend": "hf",
                         "tasks": ["smoke_id", "smoke_ood"], "methods": ["zeroshot"], "sizes": {"smoke_ood": {"test": 0}}})
    with pytest.raises(UserError, match="smoke_ood has an empty test split"):
        run_suite(suite, tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()


def test_a_method_from_outside_trustbench_runs_by_module_and_class(tmp_path, monkeypatch):
    from trustbench.harness.config import parse_suite

    (tmp_path / "my_methods.py").write_text(
        "from trustbench import Method, StudentArtifact\n"
        "from trustbench.harness import zoo\n\n"
        "class Untrained(Method):\n"
        "    name = 'untrained'\n"
        "    trains = False\n\n"
        "    def fit(self, ctx):\n"
        "        return StudentArtifact(zoo.resolve(ctx.suite.student), {'teacher_calls': 0})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    suite = parse_suite({"name": "plugin", "teacher": "tiny-random", "student": "tiny-random-l1", "backend": "hf",
                         "tasks": ["smoke_ood"], "methods": [{"name": "mine", "method": "my_methods:Untrained"}],
                         "temperature_scaling": False})
    run_suite(suite, tmp_path / "run", log=lambda _: None)
    results = pd.read_csv(tmp_path / "run" / "results.csv")
    assert results.method.tolist() == ["mine", "prior"] and results.n.tolist() == [48, 48]

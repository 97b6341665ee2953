"""`trustbench import lm-eval`: an lm-eval run's samples become a run directory whose acc and acc_norm are lm-eval's
own, exactly, and which report, figures and gate take as any run."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from lmeval_outputs import DOCS, sample, write_output
from trustbench.cli import app
from trustbench.harness.errors import UserError
from trustbench.harness.lmeval_import import import_lmeval
from trustbench.harness.store import RunDir, read_cell
from trustbench.reports.results import compute_results


def trustbench(*args: str) -> None:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def accuracies(run) -> dict[str, float]:
    results = compute_results(run)
    return dict(zip(results["method"], results["acc"]))


def test_an_lm_eval_run_imports_with_lm_evals_own_acc_and_acc_norm(tiny_path, local_task, tmp_path):
    """lm-eval's command line on a local task with the tiny model, imported: acc and acc_norm are exactly (==) the
    ones lm-eval reported, and report, figures and gate work on the run unchanged."""
    out = tmp_path / "lmeval-out"
    result = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                             f"pretrained={tiny_path},dtype=float32", "--device", "cpu", "--tasks", "tiny_mc",
                             "--include_path", str(local_task), "--batch_size", "4", "--log_samples",
                             "--output_path", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    (results_path,) = out.rglob("results_*.json")
    theirs = json.loads(results_path.read_text())

    run = tmp_path / "run"
    summary = trustbench("import", "lm-eval", out, "--out", run).output
    assert f"1 task(s), {len(DOCS)} samples" in summary and str(run) in summary

    ours = accuracies(run)
    assert ours == {"acc": theirs["results"]["tiny_mc"]["acc,none"],
                    "acc_norm": theirs["results"]["tiny_mc"]["acc_norm,none"]}
    manifest = RunDir(run).load()
    assert manifest.source.version == theirs["lm_eval_version"] == "0.4.13"
    assert manifest.source.model_args == {"pretrained": str(tiny_path), "dtype": "float32"}
    assert manifest.source.tasks["tiny_mc"]["config"] == theirs["configs"]["tiny_mc"]
    assert manifest.source.tasks["tiny_mc"]["n_shot"] == 0 and manifest.tasks["tiny_mc"].domain == "id"

    trustbench("report", run)
    assert (run / "report.html").is_file() and (run / "results.csv").is_file()
    trustbench("figures", run)
    assert (run / "figures" / "reliability_acc_norm_tiny_mc.png").is_file()
    trustbench("gate", run, run)

    # the samples the other tests write by hand are shaped as lm-eval writes them
    real = json.loads(next(out.rglob("samples_tiny_mc_*.jsonl")).read_text().splitlines()[0])
    fake = write_output(tmp_path / "fake")
    assert set(json.loads((next(fake.glob("samples_*")).read_text().splitlines()[0]))) == set(real)
    assert set(json.loads(next(fake.glob("results_*")).read_text())) <= set(theirs)


def test_acc_and_acc_norm_read_the_log_likelihoods_as_lm_eval_does(tmp_path):
    """acc: softmax and argmax of the raw log-likelihoods; acc_norm: of them divided by each choice's length in
    characters (without the target delimiter); ties go to the first choice."""
    run, _ = import_lmeval(write_output(tmp_path / "out"), tmp_path / "run")
    assert accuracies(run) == {"acc": 0.25, "acc_norm": 0.75}
    raw = read_cell(RunDir(run).cell_path("test", "acc", "tiny_mc", 0))
    norm = read_cell(RunDir(run).cell_path("test", "acc_norm", "tiny_mc", 0))
    assert raw.pred.tolist() == [2, 0, 1, 1] and norm.pred.tolist() == [0, 1, 1, 0]  # doc 0: -9/9 == -6/6, first
    lls, lengths = np.array([-4.0, -4.5]), np.array([len("a truck"), len("a feather")])
    np.testing.assert_allclose(norm.probs[1], np.exp(lls / lengths) / np.exp(lls / lengths).sum())
    np.testing.assert_allclose(raw.probs[1], np.exp(lls) / np.exp(lls).sum())
    assert (raw.confidence == raw.probs.map(max)).all() and raw.example_id.tolist() == ["0", "1", "2", "3"]


def test_a_tie_the_probabilities_round_away_is_broken_on_the_log_likelihoods(tmp_path):
    """Two log-likelihoods one ulp apart have equal rounded probabilities; lm-eval's argmax still sees the larger."""
    near = float(np.nextafter(-0.25, 0.0))
    samples = [sample(0, [-0.25, near], 1, ["aa", "bb"]), sample(1, [-1.0, -1.0], 1, ["aa", "bb"])]
    run, _ = import_lmeval(write_output(tmp_path / "out", samples), tmp_path / "run")
    frame = read_cell(RunDir(run).cell_path("test", "acc", "tiny_mc", 0))
    assert frame.probs[0][0] == frame.probs[0][1] and frame.pred.tolist() == [1, 0]


def test_two_models_on_one_task_set_gate_against_each_other(tmp_path):
    """The suite hash is what lm-eval was asked, not the model: imports of two models are comparable."""
    base, _ = import_lmeval(write_output(tmp_path / "a", model="/models/base"), tmp_path / "base")
    worse = [sample(i, [-1.0] * len(d["choices"]), d["answer"], d["choices"]) for i, d in enumerate(DOCS)]
    cand, manifest = import_lmeval(write_output(tmp_path / "b", worse, model="/models/cand"), tmp_path / "cand")
    assert RunDir(base).load().suite_hash == manifest.suite_hash
    assert manifest.methods["acc"].runs[0].checkpoint == "/models/cand"
    result = CliRunner().invoke(app, ["gate", str(base), str(cand), "--n-boot", "200"])
    assert result.exit_code in (0, 1) and "tiny_mc" in result.output  # compared, not refused


def test_the_default_run_directory_is_named_after_the_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, _ = import_lmeval(write_output(tmp_path / "out"), domain="ood")
    assert run == tmp_path.joinpath("runs", "lm-eval-tiny").relative_to(tmp_path)
    assert RunDir(run).load().tasks["tiny_mc"].domain == "ood"


def test_a_sample_whose_logged_accuracy_the_import_cannot_reproduce_is_refused(tmp_path):
    """The import checks itself against every sample's own acc_norm (e.g. choices lm-eval read from elsewhere)."""
    samples = [sample(i, [-1.0, -2.0], 0, ["a", "b"]) for i in range(2)]
    samples[1]["acc_norm"] = 0.0
    with pytest.raises(UserError, match="doc 1: lm-eval's acc_norm is 0.0 but its logged log-likelihoods give 1.0"):
        import_lmeval(write_output(tmp_path / "out", samples), tmp_path / "run")
    assert not (tmp_path / "run").exists()

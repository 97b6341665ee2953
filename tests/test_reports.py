"""Reports from a synthetic run directory: results, leaderboard, figures, HTML, rebuild, and user errors."""
from __future__ import annotations

import math
import shutil
import struct

import numpy as np
import pandas as pd
import pytest

from trustbench.harness.errors import UserError
from trustbench.reports import build_report
from trustbench.harness.statistics import _rng
from trustbench.reports.leaderboard import leaderboard_frame, render_markdown
from trustbench.reports.results import COLUMNS, METRICS, compute_results
from synthetic_runs import manifest_dict, point_draws, write_run

METHODS = {"teacher": (2.0, 1.0), "kd": (1.0, 3.0)}  # name: (skill, sharpness); kd is over-confident
TASKS = {"nli_a": {"domain": "id", "family": "nli", "test_hash": "h-nli_a"},
         "senti_b": {"domain": "ood", "family": "sentiment", "test_hash": "h-senti_b"}}
SEEDS = (0, 1)
N = 80


def make_run(root, n_boot: int = 100):
    rng = np.random.default_rng(12345)
    manifest = manifest_dict(TASKS, METHODS, n_boot=n_boot,
                             versions={"numpy": np.__version__, "pandas": pd.__version__})
    manifest["scoring"]["confidence"] = "option-renormalised probability of the chosen option"
    return write_run(root, manifest, METHODS, TASKS, SEEDS, rng, ood_skill=1 / 2, n=N, choices=None)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("run"))
    report = build_report(run)
    return run, report


def _table(md: str, heading: str) -> list[list[str]]:
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## ") and heading in line)
    rows, i = [], start + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    while i < len(lines) and lines[i].startswith("|"):
        rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
        i += 1
    return [rows[0]] + rows[2:]  # drop the alignment row


def test_results_csv_columns_and_rows(built):
    run, _ = built
    df = pd.read_csv(run / "results.csv")
    assert tuple(df.columns) == COLUMNS
    assert len(df) == len(METHODS) * len(TASKS) * len(SEEDS) * 3  # plain, `+ts` and `+iso`
    keys = list(zip(df["method"], df["task"], df["seed"]))
    assert keys == sorted(keys)
    assert set(df["config_hash"]) == {"ab12cd34ef56"} and set(df["suite"]) == {"unit"}
    assert (df["n"] == N).all()
    assert ((df["acc_lo"] <= df["acc"] + 1e-12) & (df["acc"] <= df["acc_hi"] + 1e-12)).all()
    assert (df["ece_lo"] <= df["ece_hi"]).all()  # ECE's point estimate may sit outside its percentile CI
    # plain accuracy is exactly the stored per-example correctness
    plain = df[~df["method"].str.contains("+", regex=False)]
    for r in plain.itertuples():
        stored = pd.read_parquet(run / "predictions" / "test" / f"{r.method}__{r.task}__s{r.seed}.parquet")
        assert r.acc == pytest.approx(stored["correct"].mean())
        assert math.isnan(r.temperature)


def test_ts_rows_have_temperature_and_same_accuracy(built):
    run, _ = built
    df = pd.read_csv(run / "results.csv")
    ts = df[df["method"].str.endswith("+ts")]
    assert sorted(set(ts["method"])) == ["kd+ts", "teacher+ts"]
    assert set(ts["task"]) == set(TASKS)  # applied to OOD tasks too
    assert (ts["temperature"] > 0).all() and np.isfinite(ts["temperature"]).all()
    # one temperature per (method, seed), shared by its tasks
    assert (ts.groupby(["method", "seed"])["temperature"].nunique() == 1).all()
    # the over-confident method is cooled down (T > 1)
    assert (ts[ts["method"] == "kd+ts"]["temperature"] > 1).all()
    _same_accuracy_other_calibration(df, "+ts")


def _same_accuracy_other_calibration(df: pd.DataFrame, suffix: str) -> None:
    fixed = df[df["method"].str.endswith(suffix)]
    plain = df[~df["method"].str.contains("+", regex=False)].assign(method=lambda d: d["method"] + suffix)
    merged = fixed.merge(plain, on=["method", "task", "seed"], suffixes=("", "_plain"))
    assert len(merged) == len(fixed)
    assert np.allclose(merged["acc"], merged["acc_plain"])
    # paired bootstrap: X+ts and X+iso reuse X's resamples, so the accuracy intervals match too
    assert np.allclose(merged["acc_lo"], merged["acc_lo_plain"]) and np.allclose(merged["acc_hi"], merged["acc_hi_plain"])
    assert not np.allclose(merged["ece"], merged["ece_plain"])


def test_iso_rows_keep_accuracy_and_fix_the_in_domain_calibration_gap(built):
    run, _ = built
    df = pd.read_csv(run / "results.csv")
    iso = df[df["method"].str.endswith("+iso")]
    assert sorted(set(iso["method"])) == ["kd+iso", "teacher+iso"] and set(iso["task"]) == set(TASKS)
    assert iso["temperature"].isna().all()
    _same_accuracy_other_calibration(df, "+iso")
    # the over-confident kd: isotonic regression fitted on its ID val split closes most of its ID confidence gap
    kd = df[(df["task"] == "nli_a") & df["method"].isin(["kd", "kd+iso"])].groupby("method")["conf_gap"].mean()
    assert abs(kd["kd+iso"]) < abs(kd["kd"]) / 2


def test_leaderboard_shape_and_pinned_cell(built):
    run, _ = built
    md = (run / "leaderboard.md").read_text(encoding="utf-8")
    assert "unit" in md and "letter" in md and "option-renormalised" in md
    assert "unweighted" in md and "bootstrap over test examples and seeds" in md
    expected_header = ["method", "nli_a", "ID avg", "senti_b", "OOD avg"]
    # the ranking rule: Brier score averaged over the ID and OOD averages, lower first
    df = pd.read_csv(run / "results.csv")
    brier = df.groupby(["method", "task"])["brier"].mean().groupby("method").mean()  # one task per domain here
    expected_methods = list(brier.sort_values(kind="mergesort").index)
    assert sorted(expected_methods) == ["kd", "kd+iso", "kd+ts", "teacher", "teacher+iso", "teacher+ts"]
    for heading in ("Accuracy (%)", "ECE (%, 10 equal-width bins; lower is better)", "Brier score",
                    "Mean confidence minus accuracy"):
        table = _table(md, heading)
        assert table[0] == expected_header
        assert [r[0] for r in table[1:]] == expected_methods
        assert all(len(r) == len(expected_header) for r in table)

    # pinned: kd accuracy on the ID task from the parquet files; its interval from a plain loop over the resamples
    frames = [pd.read_parquet(run / "predictions" / "test" / f"kd__nli_a__s{s}.parquet").sort_values("example_id")
              for s in SEEDS]
    m = np.mean([f["correct"].mean() for f in frames])
    lo, hi = plain_interval(frames, "nli_a", SEEDS, n_boot=100)
    want = f"{100 * m:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]"
    acc_table = {r[0]: dict(zip(expected_header, r)) for r in _table(md, "Accuracy (%)")[1:]}
    assert acc_table["kd"]["nli_a"].rstrip("†‡") == want
    assert acc_table["kd"]["ID avg"] == want  # one ID task: its average is itself
    assert acc_table["kd+ts"]["nli_a"].rstrip("†‡") == want  # temperature scaling keeps the argmax


def plain_interval(frames, task, seeds, n_boot):
    """The accuracy interval of `harness.statistics`, resample by resample: n examples and len(seeds) seeds drawn
    with replacement (the draws keyed by task and seeds), the mean over drawn seeds of the accuracy on drawn
    examples; the 2.5 and 97.5 percentiles, widened to hold the point."""
    n = len(frames[0])
    examples = _rng("examples", task, n).integers(0, n, size=(n_boot, n))
    picks = _rng("seeds", *seeds).integers(0, len(seeds), size=(n_boot, len(seeds)))
    values = [np.mean([frames[j]["correct"].to_numpy()[examples[b]].mean() for j in picks[b]]) for b in range(n_boot)]
    point = np.mean([f["correct"].mean() for f in frames])
    lo, hi = np.percentile(values, [2.5, 97.5])
    return min(lo, point), max(hi, point)


def test_leaderboard_layout_reference_rows_and_averages():
    rows = []
    for method, task, domain, acc in (("b", "t1", "id", 0.5), ("b", "t2", "id", 0.7), ("b", "o1", "ood", 0.4),
                                      ("teacher", "t1", "id", 0.9), ("teacher", "t2", "id", 0.8),
                                      ("teacher", "o1", "ood", 0.6), ("prior", "t1", "id", 0.3),
                                      ("prior", "t2", "id", 0.3), ("prior", "o1", "ood", 0.5)):
        rows.append({"suite": "x", "method": method, "task": task, "domain": domain, "seed": 0, "n": 10,
                     "acc": acc, "ece": 0.05, "brier": 1 - acc, "majority": 0.45, "top_share": 0.5,
                     "oracle": method == "prior" and domain == "ood"})
    results = pd.DataFrame(rows)
    frame = leaderboard_frame(results, {"t1": {}, "t2": {}, "o1": {}}, point_draws(results), references={"prior"})
    md = render_markdown(frame, results)
    table = _table(md, "Accuracy")
    assert table[0] == ["method", "t1", "t2", "ID avg", "o1", "OOD avg"]
    assert [r[0] for r in table[1:]] == ["teacher", "b", "prior (reference)"]
    b, prior = dict(zip(table[0], table[2])), dict(zip(table[0], table[3]))
    assert b["t1"] == "50.0 [50.0, 50.0]" and b["ID avg"] == "60.0 [60.0, 60.0]"  # unweighted mean of 50 and 70
    assert b["o1"] == "40.0 [40.0, 40.0]†"  # not above the majority rate 45%
    assert prior["o1"] == "50.0 [50.0, 50.0]°" and prior["t1"] == "30.0 [30.0, 30.0]"  # a reference is the chance
    assert not frame.loc[frame["method"] == "prior", "best"].any()


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_figures_exist_and_are_pngs(built):
    run, _ = built
    figs = sorted((run / "figures").glob("*.png"))
    want = {f"reliability_{m}{fix}_{t}.png" for m in ("teacher", "kd") for fix in ("", "+ts", "+iso") for t in TASKS}
    want |= {f"smooth_{m}_{t}.png" for m in ("teacher", "kd") for t in TASKS}  # raw methods only
    assert {p.name for p in figs} == want | {"reliability_grid.png", "acc_vs_ece.png", "id_to_ood.png"}
    for p in figs:
        if not p.name.startswith(("reliability_", "smooth_")) or p.name == "reliability_grid.png":
            continue
        w, h = _png_size(p)
        assert 400 <= w <= 600 and 400 <= h <= 600  # ~3.3 in at 150 dpi
    assert not list((run / "figures").glob(".*.tmp"))


def test_html_is_self_contained_with_tables_and_images(built):
    run, report = built
    assert report == run / "report.html"
    page = report.read_text(encoding="utf-8")
    n_figs = len(list((run / "figures").glob("*.png")))
    assert page.count('<img src="data:image/png;base64,') == n_figs == 12 + 4 + 3  # per cell, smooth, the run's
    assert "Accuracy (%)" in page and "ECE (%" in page and "All results" in page
    assert page.count("<table class=\"sortable\"") == 6 + len(TASKS) + 1  # leaderboard metrics, per task, all results
    assert "<td>kd+ts</td>" in page and "letter" in page and "option-renormalised" in page
    assert pd.__version__ in page  # versions from the manifest
    for external in ("http://", "https://", "<script src", "<link", "@import", "url("):
        assert external not in page
    assert page.count("<script>") == 1  # the inline sorter
    # ID task's figures come before the OOD task's
    assert page.index("nli_a (ID)") < page.index("senti_b (OOD)")


def test_rebuild_is_byte_identical(built):
    run, _ = built
    before = {name: (run / name).read_bytes() for name in ("results.csv", "leaderboard.md")}
    build_report(run)
    after = {name: (run / name).read_bytes() for name in ("results.csv", "leaderboard.md")}
    assert before == after


def test_missing_predictions_dir_is_a_user_error(built, tmp_path):
    run, _ = built
    shutil.copy(run / "manifest.json", tmp_path / "manifest.json")
    with pytest.raises(UserError, match=r"predictions.*trustbench run unit"):
        build_report(tmp_path)
    assert not (tmp_path / "results.csv").exists()


def test_the_comparison_reference_is_a_choice(built, tmp_path):
    """`--reference kd`: every other method against kd (macro-F1 included: these are classifications); a method
    the run lacks is a one-line error and writes nothing."""
    run, _ = built
    build_report(run, out=tmp_path / "vs-kd", reference="kd")
    table = pd.read_csv(tmp_path / "vs-kd" / "comparison.csv")
    assert set(table["reference"]) == {"kd"} and set(table["method"]) == {"teacher"}
    assert set(table["metric"]) == set(METRICS)
    with pytest.raises(UserError, match="--reference nosuch: the run has no such method; use one of kd"):
        build_report(run, out=tmp_path / "vs-nosuch", reference="nosuch")
    assert not (tmp_path / "vs-nosuch").exists()


def test_missing_manifest_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="manifest"):
        compute_results(tmp_path)


def test_corrupted_parquet_is_a_user_error(built, tmp_path):
    run, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run / "predictions", copy / "predictions")
    shutil.copy(run / "manifest.json", copy / "manifest.json")
    bad = copy / "predictions" / "test" / "kd__senti_b__s1.parquet"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(UserError, match="kd__senti_b__s1.parquet"):
        build_report(copy)
    assert not (copy / "results.csv").exists() and not (copy / "report.html").exists()


def test_bad_file_name_is_a_user_error(built, tmp_path):
    run, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run / "predictions", copy / "predictions")
    shutil.copy(run / "manifest.json", copy / "manifest.json")
    (copy / "predictions" / "test" / "kd__nli_a__s1.parquet").rename(copy / "predictions" / "test" / "kd_nli.parquet")
    with pytest.raises(UserError, match="kd_nli.parquet"):
        compute_results(copy)

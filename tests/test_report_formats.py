"""Leaderboard formats (md, csv, tex, html), merging runs, and one-line errors for missing or unreadable runs."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from test_reports import SEEDS, TASKS, make_run

from trustbench.harness.errors import UserError
from trustbench.reports import build_report
from trustbench.reports.leaderboard import SHOWN, format_cell, header_line, leaderboard_frame, marks, render_latex, tex_escape
from synthetic_runs import point_draws
from trustbench.harness.store import RunDir

FORMATS = ("results.csv", "leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.html")
TABLES = FORMATS[:-1]  # report.html also lists the runs it came from


def _copy_run(src, dst, seeds=SEEDS):
    """A run directory holding only `seeds` of `src` (same manifest)."""
    dst.mkdir(parents=True)
    shutil.copy(src / "manifest.json", dst / "manifest.json")
    for path in (src / "predictions").glob("*/*.parquet"):
        if int(path.stem.rsplit("__s", 1)[1]) in seeds:
            (dst / "predictions" / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, dst / "predictions" / path.parent.name / path.name)
    return dst


def _edit_manifest(run, **changes):
    manifest = json.loads((run / "manifest.json").read_text())
    manifest.update(changes)
    (run / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """Predictions only: tests copy it before building anything."""
    return make_run(tmp_path_factory.mktemp("pristine") / "run")


@pytest.fixture(scope="module")
def full(pristine, tmp_path_factory):
    run = _copy_run(pristine, tmp_path_factory.mktemp("full") / "run")
    build_report(run)
    return run


@pytest.fixture(scope="module")
def merged(pristine, tmp_path_factory):
    root = tmp_path_factory.mktemp("merged")
    runs = [_copy_run(pristine, root / f"s{seed}", seeds=(seed,)) for seed in SEEDS]
    out = root / "out"
    build_report(runs, out=out)
    return runs, out


def _md_tables(md: str) -> dict[str, dict[str, dict[str, str]]]:
    """{metric heading: {method: {column: cell}}} from leaderboard.md, keeping row order."""
    tables, heading, header = {}, None, None
    for line in md.splitlines():
        if line.startswith("## "):
            heading, header = line[3:], None
        elif line.startswith("|") and heading:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = cells
            elif not cells[0].startswith(":--"):
                tables.setdefault(heading, {})[cells[0]] = dict(zip(header[1:], cells[1:]))
    return tables


@pytest.mark.parametrize("name, escaped", [
    ("plain", "plain"),
    ("nli_a", r"nli\_a"),
    ("kd+ts", "kd+ts"),
    ("a&b", r"a\&b"),
    ("50%", r"50\%"),
    ("$x$", r"\$x\$"),
    ("#1", r"\#1"),
    ("{x}", r"\{x\}"),
    ("a~b", r"a\textasciitilde{}b"),
    ("x^2", r"x\textasciicircum{}2"),
    ("a\\b", r"a\textbackslash{}b"),
    ("m_1 & 5%", r"m\_1 \& 5\%"),
])
def test_tex_escape(name, escaped):
    assert tex_escape(name) == escaped


def test_latex_is_booktabs_with_escaped_names_and_bold_best(full):
    tex = (full / "leaderboard.tex").read_text(encoding="utf-8")
    lines = tex.splitlines()
    assert lines[0].startswith("%") and "booktabs" in lines[0]
    for command in (r"\toprule", r"\bottomrule", r"\end{tabular}", r"\caption{", r"\end{table}"):
        assert sum(line.startswith(command) for line in lines) == 1, command
    assert r"\begin{tabular}{lrrrr}" in tex and r"\hline" not in tex
    assert tex.count(r"\midrule") == len(SHOWN)  # one panel per metric
    assert r"\cmidrule(lr){2-3} \cmidrule(lr){4-5}" in tex
    assert r"Method & nli\_a & ID avg & senti\_b & OOD avg \\" in tex
    rows = [line for line in lines if line.endswith(r"\\") and line.split(" & ")[0] in ("teacher", "kd", "kd+ts",
                                                                                         "teacher+ts")]
    assert len(rows) == 4 * len(SHOWN)
    assert all(row.count(" & ") == 4 for row in rows)
    assert "Brier" in tex and "ranked" in tex and r"95\% CI" in tex  # the ranking rule and the CI in the caption
    # bold exactly where the frame says a cell is best, e.g. `\textbf{85.6} {\scriptsize [77.7, 93.6]}`
    frame = pd.read_csv(full / "leaderboard.csv")
    assert tex.count(r"\textbf{") == int(frame["best"].sum()) > 0


def test_latex_escapes_odd_names():
    rows = [{"suite": "s", "method": method, "task": task, "domain": domain, "seed": 0, "n": 5, "acc": acc,
             "acc_lo": acc, "acc_hi": acc, "ece": 0.1, "ece_lo": 0.0, "ece_hi": 0.2, "brier": 0.3, "brier_lo": 0.2,
             "brier_hi": 0.4}
            for method, acc in (("my_kd&co", 0.5), ("50%-method", 0.6))
            for task, domain in (("t#1", "id"), ("o_2", "ood"))]
    results = pd.DataFrame(rows)
    tex = render_latex(leaderboard_frame(results, {}, point_draws(results)), results)
    assert r"my\_kd\&co" in tex and r"50\%-method" in tex and r"t\#1" in tex and r"o\_2" in tex
    assert "my_kd" not in tex and "t#1" not in tex


def test_csv_has_the_markdown_numbers(full):
    frame = pd.read_csv(full / "leaderboard.csv")
    assert list(frame.columns) == ["rank", "method", "task", "domain", "metric", "mean", "lo", "hi", "n_seeds",
                                   "best", "reference", "at_chance", "collapsed", "oracle", "small_sample"]
    tables = _md_tables((full / "leaderboard.md").read_text(encoding="utf-8"))
    headings = dict(zip(SHOWN, tables))
    assert len(frame) == len(SHOWN) * 6 * (len(TASKS) + 2)  # 2 methods, each raw, +ts and +iso
    for row in frame.to_dict("records"):
        assert format_cell(row) + marks(row) == tables[headings[row["metric"]]][row["method"]][row["task"]]
    for metric in SHOWN:  # the markdown's row order is the rank
        part = frame[frame["metric"] == metric].drop_duplicates("method")
        assert list(part["method"]) == list(tables[headings[metric]]) and list(part["rank"]) == [1, 2, 3, 4, 5, 6]
    assert set(frame["n_seeds"]) == {len(SEEDS)}


def test_ranking_and_best_follow_the_rule(full):
    frame = pd.read_csv(full / "leaderboard.csv")
    avg = frame[frame["task"].isin(["ID avg", "OOD avg"])].groupby(["metric", "method"])["mean"].mean()
    by_rank = frame.drop_duplicates("method").sort_values("rank")["method"].tolist()
    assert by_rank == sorted(by_rank, key=lambda m: (avg["brier"][m], -avg["acc"][m]))
    for (metric, _), cells in frame.groupby(["metric", "task"]):
        shown = cells["mean"].map(lambda v: round(100 * v, 1))
        best = {"acc": shown.max(), "macro_f1": shown.max(), "conf_gap": min(shown, key=abs)}.get(metric, shown.min())
        assert list(cells["best"]) == list(shown == best)


def test_merge_of_two_runs_equals_one_run_with_both_seeds(full, merged):
    runs, out = merged
    for name in TABLES:
        assert (out / name).read_bytes() == (full / name).read_bytes(), name
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == \
        sorted(p.name for p in (full / "figures").glob("*.png"))
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Merged runs" in page and all(str(run) in page for run in runs)
    assert not list(out.glob(".staging-*"))
    for run in runs:  # the merged runs are only read
        assert sorted(p.name for p in run.iterdir()) == ["manifest.json", "predictions"]


def test_identical_cells_in_two_runs_are_merged_once(full, pristine, tmp_path):
    other = _copy_run(pristine, tmp_path / "again", seeds=(1,))
    build_report([full, other], out=tmp_path / "out")
    for name in TABLES:
        assert (tmp_path / "out" / name).read_bytes() == (full / name).read_bytes(), name


def test_report_elsewhere_leaves_the_run_alone_and_rebuilds_identically(full, tmp_path):
    before = {name: (full / name).read_bytes() for name in FORMATS}
    build_report(full, out=tmp_path / "copy")
    build_report(full)
    for name in FORMATS:
        assert (full / name).read_bytes() == before[name] == (tmp_path / "copy" / name).read_bytes(), name
    for png in (full / "figures").glob("*.png"):
        assert (tmp_path / "copy" / "figures" / png.name).read_bytes() == png.read_bytes()


@pytest.mark.parametrize("change, message", [
    ({"suite_hash": "ffff0000ffff"}, "suite_hash differs ('ab12cd34ef56' vs 'ffff0000ffff')"),
    ({"scoring": {"mode": "choice", "confidence": "softmax"}}, "scoring differs"),
    ({"metrics": {"bins": 15, "equal_mass": False, "n_boot": 100}}, "metrics differs"),
    ({"tasks": {**TASKS, "nli_a": {**TASKS["nli_a"], "test_hash": "other"}}}, "task nli_a's data differs"),
])
def test_incomparable_runs_are_a_user_error(pristine, tmp_path, change, message):
    a = _copy_run(pristine, tmp_path / "a", seeds=(0,))
    b = _copy_run(pristine, tmp_path / "b", seeds=(1,))
    _edit_manifest(b, **change)
    with pytest.raises(UserError, match=re.escape(f"runs {a} and {b} are not comparable: {message}")):
        build_report([a, b], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_same_cell_with_different_predictions_is_a_user_error(pristine, tmp_path):
    a = _copy_run(pristine, tmp_path / "a", seeds=(0,))
    b = _copy_run(pristine, tmp_path / "b", seeds=(0,))
    path = b / "predictions" / "test" / "kd__senti_b__s0.parquet"
    df = pd.read_parquet(path)
    df.loc[0, "correct"] = not df.loc[0, "correct"]
    df.to_parquet(path)
    message = f"runs {a} and {b} both hold kd on senti_b seed 0, with different"
    with pytest.raises(UserError, match=re.escape(message)):
        build_report([a, b], out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_merge_needs_its_own_out(full, tmp_path):
    with pytest.raises(UserError, match="needs --out"):
        build_report([full, full])
    with pytest.raises(UserError, match="is one of the runs being merged"):
        build_report([full, full], out=full)


@pytest.mark.parametrize("split, name", [("test", "kd__senti_b__s1.parquet"), ("val", "teacher__nli_a__s0.parquet")])
def test_predictions_the_manifest_lists_but_are_gone(pristine, tmp_path, split, name):
    run = _copy_run(pristine, tmp_path / "run")
    runs = {str(s): {"checkpoint": "somewhere", "tasks": sorted(TASKS)} for s in SEEDS}
    _edit_manifest(run, methods={"teacher": {"method": "teacher", "runs": runs}, "kd": {"method": "kd", "runs": runs}})
    RunDir(run).check_cells(RunDir(run).load())  # complete: fine
    (run / "predictions" / split / name).unlink()
    missing = re.escape(f"predictions {run / 'predictions' / split / name} are missing")
    with pytest.raises(UserError, match=missing + ".*trustbench run unit"):
        build_report(run)
    assert not (run / "results.csv").exists() and not (run / "figures").exists()


def _trustbench(*args):
    return subprocess.run([sys.executable, "-m", "trustbench", "report", *map(str, args)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=300)


def test_cli_merges_and_names_a_corrupt_run_in_one_line(pristine, tmp_path):
    a = _copy_run(pristine, tmp_path / "a", seeds=(0,))
    b = _copy_run(pristine, tmp_path / "b", seeds=(1,))
    ok = _trustbench(a, b, "--out", tmp_path / "merged")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"report: {tmp_path / 'merged' / 'report.html'}"
    assert all((tmp_path / "merged" / name).is_file() for name in FORMATS)

    bad = b / "predictions" / "test" / "kd__nli_a__s1.parquet"
    bad.write_bytes(bad.read_bytes()[:200])
    for args, message in (([a, b, "--out", tmp_path / "again"], f"cannot read predictions {bad}"),
                          ([a, b], "needs --out")):
        result = _trustbench(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "again").exists()


def test_missing_metric_columns_show_as_missing():
    rows = [{"suite": "s", "method": "m", "task": "t", "domain": "id", "seed": 0, "n": 5, "acc": 0.5,
             "acc_lo": 0.4, "acc_hi": 0.6}]
    frame = leaderboard_frame(pd.DataFrame(rows), {}, point_draws(pd.DataFrame(rows)))
    brier = frame[frame["metric"] == "brier"]
    assert brier["mean"].map(math.isnan).all() and not brier["best"].any()


def test_a_method_missing_a_domain_average_ranks_after_those_with_both():
    """`partial` has the best ID Brier but no OOD average: ranking it on ID alone would put it first."""
    rows = [{"suite": "s", "method": m, "task": t, "domain": d, "seed": 0, "n": 5, "acc": 0.5, "acc_lo": 0.4,
             "acc_hi": 0.6, "brier": b, "brier_lo": b - 0.05, "brier_hi": b + 0.05}
            for m, t, d, b in (("full", "i", "id", 0.3), ("full", "o", "ood", 0.3), ("partial", "i", "id", 0.1))]
    frame = leaderboard_frame(pd.DataFrame(rows), {}, point_draws(pd.DataFrame(rows)))
    ranks = frame.drop_duplicates("method").set_index("method")["rank"]
    assert ranks["full"] < ranks["partial"]


@pytest.mark.parametrize("scoring, expected", [
    ({"mode": "letter", "confidence": "P(letter)", "formats": {"cot": "P(answer)"}},
     "Scoring: cot (confidence: P(answer)); seeds: 0, 1."),  # an all-cot run: the suite's mode is not used
    ({"mode": "letter", "confidence": "P(letter)", "formats": {"cot": "P(answer)", "letter": "P(letter)"}},
     "Scoring: letter (confidence: P(letter)); cot (confidence: P(answer)); seeds: 0, 1."),
    ({"mode": "choice", "confidence": "P(option)"}, "Scoring: choice (confidence: P(option)); seeds: 0, 1."),
    (None, "Scoring: ? (confidence: ?); seeds: 0, 1."),
])
def test_the_header_names_the_formats_the_tasks_are_scored_in(scoring, expected):
    assert header_line(pd.DataFrame({"seed": [1, 0, 1]}), scoring) == expected


def test_report_out_that_is_a_file_is_a_user_error(tmp_path):
    from trustbench.reports import _out_dir

    (tmp_path / "taken").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        _out_dir([tmp_path / "run"], tmp_path / "taken")

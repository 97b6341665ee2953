"""report.html in a real headless browser (Debian's `chromium`): tables, sorting and embedded images work.

`make test` installs chromium when it is missing; without it the test is skipped, except on CI where it fails.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from test_reports import TASKS, make_run

from trustbench.reports import build_report

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium():
    path = shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail("chromium is missing on CI: `make test` installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed: `make test` installs it (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return build_report(make_run(tmp_path_factory.mktemp("browser") / "run", n_boot=50))


def browse(chromium, report, tmp_path, *args, fragment=""):
    """Run chromium on report.html (#fragment) with `args`; return its stdout."""
    result = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args,
                             report.as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def column(dom: str, table_id: str, index: int) -> list[str]:
    """`data-value` (or the text) of one column of a table in the dumped DOM, top to bottom."""
    table = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', dom, re.S)
    assert table, table_id
    body = table.group(1).split("<tbody>", 1)[1]
    cells = [re.findall(r"<td([^>]*)>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]
    out = []
    for row in cells:
        attrs, text = row[index]
        value = re.search(r'data-value="([^"]*)"', attrs)
        out.append(value.group(1) if value else text)
    return out


def test_tables_sorter_and_images_are_there(chromium, report, tmp_path):
    dom = browse(chromium, report, tmp_path, "--dump-dom")
    n_figures = len(list((report.parent / "figures").glob("*.png")))
    for metric in ("acc", "ece", "brier"):
        assert re.search(rf'<table[^>]*id="leaderboard-{metric}"[^>]*data-sortable="ready"', dom), metric
        assert [float(v) for v in column(dom, f"leaderboard-{metric}", 0)] == [1, 2, 3, 4, 5, 6]  # rank order
        assert sorted(column(dom, f"leaderboard-{metric}", 1)) == ["kd", "kd+iso", "kd+ts", "teacher", "teacher+iso",
                                                                   "teacher+ts"]
    assert len(column(dom, "results", 0)) == 6 * len(TASKS) * 2  # methods x tasks x seeds
    for task in TASKS:
        assert f'<details id="task-{task}">' in dom and len(column(dom, f"results-{task}", 0)) == 12
    assert dom.count('<img src="data:image/png;base64,') == n_figures == 12 + 4 + 3  # per cell, smooth, the run's
    assert f'data-images-loaded="{n_figures}"' in dom  # the browser decoded every embedded PNG


@pytest.mark.parametrize("table, index, order", [
    ("leaderboard-ece", 2, "asc"), ("leaderboard-acc", 5, "desc"), ("leaderboard-brier", 1, "desc"),
    ("results", 6, "asc"),
])
def test_sorting(chromium, report, tmp_path, table, index, order):
    dom = browse(chromium, report, tmp_path, "--dump-dom", fragment=f"#sort={table}:{index}:{order}")
    values = column(dom, table, index)
    keys = [float(v) for v in values] if all(re.fullmatch(r"[-\d.e]+", v) for v in values) else values
    assert keys == sorted(keys, reverse=order == "desc") and len(set(keys)) > 1
    header = re.search(rf'<table[^>]*id="{table}"[^>]*>.*?</thead>', dom, re.S).group(0)
    assert header.count(f'aria-sort="{"ascending" if order == "asc" else "descending"}"') == 1


def test_screenshot_shows_a_task_with_its_figures(chromium, report, tmp_path):
    from PIL import Image

    shot = tmp_path / "task.png"
    # tall: headless chromium paints a scrolled page only partly, so the opened task must fit without scrolling
    browse(chromium, report, tmp_path, "--window-size=1200,5000", f"--screenshot={shot}", fragment="#task-nli_a")
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    assert pixels.shape == (5000, 1200, 3)
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 60  # tables and text are grey; the diagrams are not
    assert colourful.mean() > 0.005


def test_the_report_leads_with_the_answer_and_fits_the_page(chromium, report, tmp_path):
    dom = browse(chromium, report, tmp_path, "--window-size=800,900", "--dump-dom")
    sections = re.findall(r"<h2>(.*?)</h2>", dom)
    assert sections[0] == "Leaderboard" and sections[1] == "Figures" and sections[-1] == "Run"
    assert dom.index("Against chance") < dom.index('id="leaderboard-acc"')
    assert re.search(r"<figcaption>[A-Z][^<]{20,}</figcaption>", dom)  # captions in words, not file names
    assert 'data-overflows="false"' in dom  # wide tables scroll in place at 800 pixels
    accuracy = re.search(r'<table[^>]*id="leaderboard-acc".*?</table>', dom, re.S).group(0)
    assert " tie" in accuracy and " best" not in accuracy  # teacher, +ts and +iso share the best accuracy: a tie

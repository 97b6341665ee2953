"""Agreement with the teacher: how close each student stays to the teacher it learned from, not only to the labels
(teacher calibration predicts distillation quality: arXiv 2508.20224).

For every raw student method (not the teacher, not a reference row, not a recalibrated row) and classification
task of a run that has a `teacher` row, seed by seed on the test examples both scored (the student's seed s against
the teacher's seed s, or the teacher's only seed when it was stored once): top-1 agreement (`metrics.teacher_agreement`), the mean KL from teacher to student over the
options (`metrics.teacher_kl`) and the correlation of their confidences (`metrics.confidence_correlation`). Each is
the mean over seeds with a 95% interval from the bootstrap over examples and seeds that every cell uses
(`statistics.cell_draws`), so these intervals pair with the leaderboard's. Registered as the table
`teacher_agreement` and the figure `ece_vs_agreement`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from trustbench.harness.calibration import is_recalibrated
from trustbench.harness.metrics import OPEN_ANSWER, _correlation_rows, _kl_terms
from trustbench.harness.plots import FIGSIZE, RunView, register_figure, register_table
from trustbench.harness.statistics import cell_draws, interval, over_seeds
from trustbench.harness.store import read_cell
from trustbench.reports.paper_figures import DOMAIN_STYLE, method_colors

TEACHER = "teacher"
MEASURES = ("agreement", "kl", "conf_corr")


@register_table("teacher_agreement")
def teacher_agreement_table(view: RunView) -> pd.DataFrame | None:
    """Each student against the teacher, per task: top-1 agreement (%), the mean KL(teacher || student) over the
    options (nats) and the correlation of their confidences, means over seeds with 95% bootstrap intervals over
    examples and seeds."""
    cells = view.run.cells("test") if view.run is not None else {}
    references = {name for name, entry in view.manifest.methods.items() if entry.reference}
    students = sorted({m for m, _, _ in cells if m != TEACHER and m not in references and not is_recalibrated(m)})
    rows = []
    for method in students:
        for task in sorted({t for m, t, _ in cells if m == method}):
            pairs = _teacher_seeds(cells, method, task)
            if pairs:
                row = _cell(cells, method, task, pairs, view.manifest.metrics.n_boot)
                if row is not None:
                    domain = view.manifest.tasks[task].domain if task in view.manifest.tasks else ""
                    rows.append({"method": method, "task": task, "domain": domain, **row})
    return pd.DataFrame(rows) if rows else None


def _teacher_seeds(cells: dict, method: str, task: str) -> dict[int, int]:
    """{student seed: the teacher seed it is held against}: the same seed, or the teacher's only one (a teacher
    that does not depend on the seed is stored once)."""
    teacher = sorted(s for m, t, s in cells if m == TEACHER and t == task)
    mine = sorted(s for m, t, s in cells if m == method and t == task)
    return {s: s if s in teacher else teacher[0] for s in mine if s in teacher or len(teacher) == 1}


def _cell(cells: dict, method: str, task: str, seeds: dict[int, int], n_boot: int) -> dict | None:
    """One student x task against the teacher: point, lo, hi of each measure; None for open-answer tasks, and where
    the two did not score the same questions (ids whose gold answer or options differ)."""
    pairs = [(read_cell(cells[TEACHER, task, t]), read_cell(cells[method, task, s])) for s, t in seeds.items()]
    if any(OPEN_ANSWER in frame or "pred" not in frame for pair in pairs for frame in pair):
        return None
    ids = sorted(set.intersection(*(set(frame["example_id"]) for pair in pairs for frame in pair)))
    aligned = [[frame.set_index("example_id").loc[ids] for frame in pair] for pair in pairs]
    if not all(_same_questions(teacher, student) for teacher, student in aligned):
        return None
    examples, picks = cell_draws(task, len(ids), list(seeds), n_boot)
    every = np.arange(len(ids))[None]
    points = [_measures(teacher, student, every) for teacher, student in aligned]
    resampled = [_measures(teacher, student, examples) for teacher, student in aligned]
    out: dict = {"seeds": len(seeds), "n": len(ids)}
    for k, name in enumerate(MEASURES):
        point = float(np.mean([p[k][0] for p in points]))
        out[name], (out[f"{name}_lo"], out[f"{name}_hi"]) = point, interval(point, over_seeds(
            np.stack([r[k] for r in resampled]), picks))
    return out


def _same_questions(teacher: pd.DataFrame, student: pd.DataFrame) -> bool:
    """Whether both scored the same questions: the same gold answer and number of options under every id."""
    return bool((teacher["gold"].to_numpy() == student["gold"].to_numpy()).all()
                and [len(p) for p in teacher["probs"]] == [len(p) for p in student["probs"]])


def _measures(teacher: pd.DataFrame, student: pd.DataFrame, index: np.ndarray) -> tuple[np.ndarray, ...]:
    """Agreement, KL and confidence correlation on each row of `index` (resampled example positions)."""
    agree = teacher["pred"].to_numpy() == student["pred"].to_numpy()
    kl = _kl_terms(list(teacher["probs"]), list(student["probs"]))
    conf, teacher_conf = student["confidence"].to_numpy(dtype=float), teacher["confidence"].to_numpy(dtype=float)
    return agree[index].mean(axis=1), kl[index].mean(axis=1), _correlation_rows(conf[index], teacher_conf[index])


@register_figure("ece_vs_agreement")
def ece_vs_agreement(view: RunView):
    """Student ECE against its top-1 agreement with the teacher, one point per method x task (seed means, 95%
    intervals both ways), ID and OOD tasks marked apart: does staying close to the teacher come with calibration?"""
    from matplotlib.figure import Figure

    table = teacher_agreement_table(view)
    if table is None:
        return None
    ece = view.results.groupby(["method", "task"])[["ece", "ece_lo", "ece_hi"]].mean()
    colors = method_colors(view.results)
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for row in table.itertuples(index=False):
        if (row.method, row.task) not in ece.index:
            continue
        e = ece.loc[(row.method, row.task)]
        marker, _ = DOMAIN_STYLE.get(row.domain, ("s", row.domain))
        ax.errorbar(100 * row.agreement, 100 * e["ece"],
                    xerr=[[100 * (row.agreement - row.agreement_lo)], [100 * (row.agreement_hi - row.agreement)]],
                    yerr=[[100 * (e["ece"] - e["ece_lo"])], [100 * (e["ece_hi"] - e["ece"])]],
                    fmt=marker, color=colors.get(row.method, "0.3"), markersize=3.5, elinewidth=0.6, capsize=1.5)
    for method in dict.fromkeys(table["method"]):
        ax.plot([], [], "o", color=colors.get(method, "0.3"), markersize=3.5, label=method)
    for marker, label in DOMAIN_STYLE.values():
        ax.plot([], [], marker, color="0.5", markersize=3.5, label=label.split()[0])
    ax.set_xlabel("top-1 agreement with the teacher (%)")
    ax.set_ylabel("ECE (%)")
    ax.set_title("Student ECE against\ntop-1 agreement with the teacher", pad=4, linespacing=1.4)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(loc="best", frameon=False, fontsize=5.5)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.9, bottom=0.13)
    return fig

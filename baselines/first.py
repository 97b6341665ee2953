"""`first`: FIRST (Shum et al., EMNLP 2024), a top-k teacher cache with trustworthy maximization.

What the paper and its code say: ../shared/METHODS.md, sections 1 and 4.

1. Concentrated knowledge: the fine-tuned teacher runs once, teacher-forced, over every training sequence; the top-k
   ids and log-probs at each response position are cached on disk (`harness.teacher_cache`), once for k <= 10.
2. Trustworthy maximization: the teacher's top-k *probabilities* p go through softmax(p / c); c minimises the
   teacher's ECE on the ID validation split over 0.1 .. 1.0 (step 0.1), then steps of 0.02 around the best.
   The ECE is over the validation response tokens (in letter mode: the answer letter): confidence is the adjusted
   top-1 probability, correct when the teacher's top-1 token is the gold token.
3. Knowledge matching: forward KL from the adjusted top-k teacher distribution to the student's probabilities
   renormalised over the same k ids, summed over response positions and averaged over sequences. No hard-label
   term, as in the released code; its `use_other_token` path is not a KL and is not implemented.
   The renormalisation is exact, computed in log space (a softmax over the k gathered logits). The released code's
   `linear` norm adds eps = 1e-6 to each probability first (`renorm_eps: 1.0e-6` reproduces it); when the student
   starts with almost no probability on the teacher's top k (a layer-dropped student on an answer letter: 1e-8),
   that eps swamps it, the renormalised vector is uniform whatever the logits, and the gradient vanishes.

Ablations are parameters: `k` (1, 3, 5, 10), `c: none` (plain renormalised top-k), `c: <number>` (fixed), and
`label_smoothing: 0.1` (takes that much off the target's top-1 and spreads it over the other k - 1).
With k = 1 both renormalised distributions are [1]: the loss is identically 0 and the student stays as initialised.
"""
from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import pandas as pd

from trustbench.baselines.base import DISTRIBUTIONS, Context, Method, StudentArtifact, distill_data, number_param, register_method
from trustbench.harness.errors import UserError
from trustbench.harness.plots import FIGSIZE, RunView, draw_reliability, register_figure

CACHE_K = 10  # one top-10 extraction serves every k of the ablation
COARSE_GRID = tuple(round(0.1 * i, 2) for i in range(1, 11))
FINE_STEP = 0.02
MASS_BINS = 20


def trustworthy_target(logprobs: np.ndarray, c: float | None, label_smoothing: float = 0.0) -> np.ndarray:
    """The student's target from the teacher's top-k log-probs `[positions, k]` (by rank): softmax(p / c), or
    p renormalised when c is None; then label smoothing, if any."""
    p = np.exp(logprobs.astype(np.float64))
    if c is None:
        target = p / p.sum(-1, keepdims=True)
    else:
        z = p / c
        target = np.exp(z - z.max(-1, keepdims=True))
        target /= target.sum(-1, keepdims=True)
    if label_smoothing and target.shape[-1] > 1:
        share = np.minimum(label_smoothing, target[:, :1])
        target[:, 1:] += share / (target.shape[-1] - 1)
        target[:, :1] -= share
    return target


def validation_ece(logprobs: np.ndarray, correct: np.ndarray, c: float | None, bins: int = 10,
                   equal_mass: bool = False) -> float:
    """The teacher's ECE with adjusted confidences: top-1 of `trustworthy_target` against top-1 correctness."""
    from trustbench.harness.metrics import ece

    return ece(trustworthy_target(logprobs, c)[:, 0], correct, bins=bins, equal_mass=equal_mass)


def search_c(ece_of: Callable[[float], float], coarse=COARSE_GRID, step: float = FINE_STEP) -> tuple[float, list]:
    """Grid search for the c that minimises `ece_of(c)`: the coarse grid, then `step`s within 0.1 of its best.
    Returns c and the whole curve [[c, ece], ...] sorted by c."""
    curve = {c: ece_of(c) for c in coarse}
    best = min(curve, key=curve.get)
    for c in np.arange(max(step, best - 0.1), best + 0.1 + 1e-9, step):
        c = round(float(c), 4)
        if c not in curve:
            curve[c] = ece_of(c)
    best = min(sorted(curve), key=curve.get)  # ties: the smallest c
    return best, [[c, float(curve[c])] for c in sorted(curve)]


def first_loss(logits, labels, targets: dict, vocab: int, renorm_eps: float = 0.0):
    """sum over response positions of KL(target || student renormalised over the teacher's k ids), per sequence."""
    import torch

    mask = labels != -100
    ids = targets["teacher_ids"][mask].long()  # [positions, k]
    target = targets["teacher_probs"][mask].float()
    student = logits[mask][:, :vocab].float()
    if renorm_eps:  # the released code: full-vocabulary softmax, + eps, renormalise
        probs = torch.softmax(student, dim=-1).gather(-1, ids) + renorm_eps
        student_log = torch.log(probs / probs.sum(-1, keepdim=True))
    else:  # exact: the full-vocabulary normaliser cancels, leaving a softmax over the k logits
        student_log = torch.log_softmax(student.gather(-1, ids), dim=-1)
    kl = torch.xlogy(target, target) - target * student_log
    return kl.sum() / logits.shape[0]


@register_method("first")
class First(Method):
    params = ("k", "c", "label_smoothing", "renorm_eps")
    distils_logits = True
    teacher_needs = frozenset({DISTRIBUTIONS})

    def __init__(self, spec):
        super().__init__(spec)
        self.k = spec.params.get("k", 5)
        self.c = spec.params.get("c", "search")
        self.label_smoothing = number_param(spec, "label_smoothing", 0.0)
        self.renorm_eps = number_param(spec, "renorm_eps", 0.0)
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise UserError(f"method {spec.name!r}: k must be a positive integer, got {self.k!r}")
        if self.c in (None, "none"):
            self.c = None
        elif self.c != "search" and (isinstance(self.c, bool) or not (isinstance(self.c, (int, float)) and self.c > 0)):
            raise UserError(f"method {spec.name!r}: c must be `search`, `none` or a positive number, got {self.c!r}")
        if self.renorm_eps < 0:
            raise UserError(f"method {spec.name!r}: renorm_eps must be >= 0, got {self.renorm_eps}")
        if not 0 <= self.label_smoothing < 1:
            raise UserError(f"method {spec.name!r}: label_smoothing must be in [0, 1), got {self.label_smoothing}")

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        if self.c == "search" and not ctx.val:
            raise UserError(f"method {ctx.spec.name!r}: the c search needs an ID validation split; give the ID "
                            "tasks `val: N` in the suite's sizes, or set `c:` to a number")

    def fit(self, ctx: Context) -> StudentArtifact:
        config = ctx.train_config()
        teacher = ctx.teacher().path
        train = distill_data(ctx, ctx.train, config)
        outputs = self._teacher_topk(ctx, teacher, train)
        c, curve, val_calls = self._choose_c(ctx, teacher, config)
        targets = [{"teacher_ids": ids, "teacher_probs": trustworthy_target(logprobs, c, self.label_smoothing)
                    .astype(np.float32)} for ids, logprobs in map(outputs.sequence, range(len(outputs)))]
        ctx.log(f"{ctx.spec.name}: distilling top-{self.k} (c = {c}, label smoothing {self.label_smoothing}) "
                f"into {ctx.suite.student}, seed {ctx.seed}")
        loss = partial(first_loss, vocab=outputs.info["vocab"], renorm_eps=self.renorm_eps)
        key = ctx.cache_key("first", k=self.k, c=c, label_smoothing=self.label_smoothing, renorm_eps=self.renorm_eps,
                            engine=outputs.info["engine"])
        artifact = ctx.sft("students", key, ctx.student_init, ctx.train, config, ctx.seed, loss=loss, targets=targets)
        mass = outputs.mass
        ctx.record("first", {"k": self.k, "c": c, "c_mode": "search" if curve else ("none" if c is None else "fixed"),
                             "label_smoothing": self.label_smoothing, "renorm_eps": self.renorm_eps,
                             "ece_curve": curve, "topk_mass_mean": round(float(mass.mean()), 4),
                             "topk_mass_hist": np.histogram(mass, bins=MASS_BINS, range=(0, 1))[0].tolist(),
                             "teacher_cache": outputs.record()})
        return StudentArtifact(artifact.path, {**artifact.cost, "teacher_calls": len(train.sequences) + val_calls,
                                               "teacher_tokens": outputs.info["tokens"], **outputs.cost_columns(),
                                               "c": c})

    def _teacher_topk(self, ctx: Context, teacher, data):
        """The teacher's top-k over `data`'s response positions, from the one top-10 cache every k <= 10 shares."""
        from trustbench.harness.teacher_cache import teacher_outputs

        cache_k = max(self.k, CACHE_K)
        outputs = teacher_outputs(teacher, data.sequences, data.starts, cache_k, ctx.suite.backend,
                                  lambda backend: ctx.engine(teacher, "teacher", backend, min_logprobs=cache_k),
                                  ctx.log)
        return outputs.top(self.k)

    def _choose_c(self, ctx: Context, teacher, config) -> tuple[float | None, list, int]:
        """The configured c, or the searched one with its ECE(c) curve on the ID validation split (and the
        number of validation sequences the teacher ran on)."""
        if self.c != "search":
            return self.c, [], 0
        val = distill_data(ctx, ctx.val, config)
        outputs = self._teacher_topk(ctx, teacher, val)
        correct = outputs.ids[:, 0] == np.concatenate([np.asarray(r) for r in val.responses])
        metrics = ctx.suite.metrics
        c, curve = search_c(lambda c: validation_ece(outputs.logprobs, correct, c, metrics.bins, metrics.equal_mass))
        ctx.log(f"{ctx.spec.name}: trustworthy maximization picked c = {c} (teacher val ECE "
                f"{dict(map(tuple, curve))[c]:.4f} over {len(correct)} response tokens)")
        return c, curve, len(val.sequences)


# Figures, drawn by `trustbench report` and `trustbench figures` from what `fit` recorded in the manifest


@register_figure("first_ece_vs_c")
def ece_vs_c_figure(view: RunView):
    """The teacher's validation ECE against c, with the chosen c marked (one line per FIRST variant searched)."""
    from matplotlib.figure import Figure

    curves = {name: r for name, r in view.records("first").items() if r.get("ece_curve")}
    if not curves:
        return None
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for name, record in sorted(curves.items()):
        c, ece = np.array(record["ece_curve"]).T
        line, = ax.plot(c, 100 * ece, marker="o", markersize=2, linewidth=0.9, label=f"{name} (k = {record['k']})")
        chosen = dict(zip(c, ece))[record["c"]]
        ax.plot([record["c"]], [100 * chosen], marker="*", markersize=9, color=line.get_color(), linestyle="none")
        ax.annotate(f"c* = {record['c']:g}", (record["c"], 100 * chosen), textcoords="offset points",
                    xytext=(4, 6), fontsize=6)
    ax.set_xlabel("c (teacher top-k probabilities / c, then softmax)")
    ax.set_ylabel("teacher ECE on ID validation (%)")
    ax.set_title("Trustworthy maximization: ECE(c)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


@register_figure("first_topk_mass")
def topk_mass_figure(view: RunView):
    """Histogram of the teacher probability the top k keep at each training response position."""
    from matplotlib.figure import Figure

    records = {}
    for name, record in sorted(view.records("first").items()):
        records.setdefault(record["k"], (name, record))  # one histogram per k
    if not records:
        return None
    fig = Figure(figsize=FIGSIZE)
    ax = fig.add_subplot()
    for k, (_, record) in sorted(records.items()):
        counts = np.array(record["topk_mass_hist"], dtype=float)
        edges = np.linspace(0, 1, len(counts) + 1)
        ax.stairs(counts / counts.sum(), edges, label=f"k = {k} (mean {100 * record['topk_mass_mean']:.1f}%)")
    ax.set_xlabel("teacher probability mass in the top k")
    ax.set_ylabel("share of response positions")
    ax.set_title("Concentrated knowledge: top-k mass")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, loc="upper left")
    fig.tight_layout()
    return fig


@register_figure("first_reliability_id_ood")
def side_by_side_reliability(view: RunView):
    """finetune, kd and first side by side (columns), ID and OOD tasks pooled (rows)."""
    from matplotlib.figure import Figure

    methods = [m for m in ("finetune", "kd", "first") if m in set(view.results["method"])]
    if "first" not in methods:
        return None
    domains = {d: sorted(set(view.results.loc[view.results["domain"] == d, "task"])) for d in ("id", "ood")}
    domains = {d: t for d, t in domains.items() if t}
    fig = Figure(figsize=(FIGSIZE[0] * len(methods), FIGSIZE[1] * len(domains) * 1.1))
    outer = fig.add_gridspec(len(domains), len(methods), hspace=0.4, wspace=0.3)
    for row, (domain, task_names) in enumerate(domains.items()):
        for col, method in enumerate(methods):
            frames = [view.predictions(method, task) for task in task_names]
            pooled = pd.concat([f for f in frames if not f.empty], ignore_index=True)
            inner = outer[row, col].subgridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
            ax = fig.add_subplot(inner[0])
            tasks_text = f"{len(task_names)} task{'s' if len(task_names) > 1 else ''}"
            draw_reliability(ax, fig.add_subplot(inner[1], sharex=ax), pooled,
                             f"{method}, {domain.upper()} ({tasks_text})", view.settings["bins"],
                             view.settings["equal_mass"], legend=row == 0 and col == 0)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.94, bottom=0.06)
    return fig

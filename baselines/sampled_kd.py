"""`sampled_kd`: Random-Sampling KD (Anshumann et al., ACL 2025, "Sparse Logit Sampling"), the counter to FIRST's
top-k cache at the same bytes.

The paper's argument: a cache of the teacher's top-k probabilities is a biased estimate of its distribution (the
tail is cut, the head renormalised up), and the student learns that bias, over-confident; a few tokens *drawn* from
the teacher, importance-weighted, estimate it without bias, so the KD gradient is preserved in expectation.

What is implemented, at every answer position t (p the fine-tuned teacher's next-token distribution):

1. Proposal q_t(x) ∝ p_t(x)^(1/t), the teacher at proposal temperature `t` (t = 1, q = p: the paper's RS-KD).
2. N = `n` draws x_1..x_N ~ q_t with replacement; the cache keeps each draw's id and the teacher's log p_t(x_i): the
   same int32 id + float32 log-prob per slot as FIRST's top-k, so at n = k the two caches cost the same bytes.
3. Importance weights w_i = (p/q)(x_i) / sum_j (p/q)(x_j), i.e. w_i ∝ p(x_i)^(1 - 1/t) (the normaliser of q
   cancels, so the cache needs nothing else). At t = 1 every w_i = 1/N, the sparse target is counts / N and
   E[target(x)] = p(x) exactly; at t != 1 the self-normalised estimate is consistent, with O(1/N) bias.
4. Loss, averaged over answer positions: sum_i w_i (log p(x_i) - log s(x_i)), with s the student's *full-vocabulary*
   softmax (not renormalised over the drawn ids: that renormalisation is what makes top-k KD biased). Its
   expectation at t = 1 is KL(p || s), the loss of `kd` with alpha = 0, tau = 1 (`kd_pure`), and its gradient
   is that loss's gradient in expectation.

Draws depend on the run seed, so the sampler's variance is part of the seed-to-seed spread. Left out: the paper's
pre-training setting (every position of web text, an 8B teacher) and its storage tricks (unique ids with counts,
quantised probabilities); here the answer positions of the demo's task, with the plain id + log-prob slot so that
bytes compare with FIRST's one to one. The full distributions the draws are taken from are the ones `kd` caches
(extracted once, shared): what the student's training reads, and what `costs.csv` counts, is the sparse cache.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from trustbench.baselines.base import (DISTRIBUTIONS, Context, Method, StudentArtifact, number_param, register_method,
                                      teacher_cost, teacher_distributions)
from trustbench.harness.errors import UserError
from trustbench.harness.teacher_cache import TeacherOutputs


def sample_teacher(full: TeacherOutputs, n: int, t: float, seed: int) -> TeacherOutputs:
    """`n` draws per row of a full-distribution cache from q ∝ p^(1/t): their ids and the teacher's log p."""
    rng = np.random.default_rng(seed)
    ids = np.empty((len(full.logprobs), n), dtype=np.int32)
    for row, logprobs in enumerate(full.logprobs):  # a row at a time: the full cache is [positions, vocab]
        proposal = np.exp((logprobs.astype(np.float64) - logprobs.max()) / t)
        cdf = np.cumsum(proposal)
        ids[row] = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right").clip(max=len(cdf) - 1)
    return TeacherOutputs(np.take_along_axis(full.logprobs, ids, -1), ids, full.offsets, {**full.info, "k": n})


def importance_weights(logprobs: np.ndarray, t: float) -> np.ndarray:
    """Self-normalised w_i ∝ p(x_i) / q(x_i) ∝ p(x_i)^(1 - 1/t) over each row's draws (1/N each at t = 1)."""
    log_w = (1 - 1 / t) * logprobs.astype(np.float64)
    w = np.exp(log_w - log_w.max(-1, keepdims=True))
    return w / w.sum(-1, keepdims=True)


def sampled_kd_loss(logits, labels, targets: dict, vocab: int):
    """Mean over answer positions of sum_i w_i (log p(x_i) - log s(x_i)), s the full-vocabulary student softmax."""
    import torch

    mask = labels != -100
    ids = targets["teacher_ids"][mask].long()  # [positions, n]
    teacher_log = targets["teacher_logprobs"][mask].float()
    weights = targets["weights"][mask].float()
    student_log = torch.log_softmax(logits[mask][:, :vocab].float(), dim=-1).gather(-1, ids)
    return (weights * (teacher_log - student_log)).sum(-1).mean()


@register_method("sampled_kd")
class SampledKD(Method):
    params = ("n", "t")
    distils_logits = True
    teacher_needs = frozenset({DISTRIBUTIONS})

    def __init__(self, spec):
        super().__init__(spec)
        self.n = spec.params.get("n", 5)  # FIRST's default k: the same cache bytes
        self.t = number_param(spec, "t", 1.0)
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise UserError(f"method {spec.name!r}: n (draws per answer position) must be a positive integer, "
                            f"got {self.n!r}")
        if self.t <= 0:
            raise UserError(f"method {spec.name!r}: t (the proposal's temperature) must be > 0, got {self.t}")

    def fit(self, ctx: Context) -> StudentArtifact:
        config = ctx.train_config()
        data, full = teacher_distributions(ctx, config)
        sampled = sample_teacher(full, self.n, self.t, ctx.seed)
        targets = [{"teacher_ids": ids, "teacher_logprobs": logprobs,
                    "weights": importance_weights(logprobs, self.t).astype(np.float32)}
                   for ids, logprobs in map(sampled.sequence, range(len(sampled)))]
        distinct = _distinct_per_row(sampled.ids)
        ctx.log(f"{ctx.spec.name}: distilling {self.n} teacher draws per answer position (proposal p^(1/{self.t:g}), "
                f"{distinct.mean():.2f} distinct ids, {100 * sampled.mass.mean():.1f}% of the teacher's mass) into "
                f"{ctx.suite.student}, seed {ctx.seed}")
        loss = partial(sampled_kd_loss, vocab=full.info["vocab"])
        artifact = ctx.sft("students", ctx.cache_key("sampled_kd", n=self.n, t=self.t), ctx.student_init, ctx.train,
                           config, ctx.seed, loss=loss, targets=targets)
        ctx.record("sampled_kd", {"n": self.n, "t": self.t, "proposal": f"teacher^(1/{self.t:g})",
                                  "weights": "self-normalised p/q", "draw_seed": ctx.seed,
                                  "distinct_ids_mean": round(float(distinct.mean()), 3),
                                  "teacher_cache": sampled.record()})
        return StudentArtifact(artifact.path, {**artifact.cost, **teacher_cost(data, sampled)})


def _distinct_per_row(ids: np.ndarray) -> np.ndarray:
    ordered = np.sort(ids, axis=-1)
    return 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(-1)

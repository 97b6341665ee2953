"""`kd`: Hinton distillation over the full vocabulary at the answer positions.

    loss = alpha * CE(gold, student) + (1 - alpha) * tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau))

averaged over the target positions; defaults tau = 2, alpha = 0.5. With alpha = 0 and tau = 1 it is the pure
full-distribution reference that FIRST's top-k claim is measured against (a suite entry: `{name: kd_pure,
method: kd, alpha: 0, tau: 1}`). The teacher is the fine-tuned teacher, frozen, so its distributions are computed
once (HF engine, cached by hash) rather than at every step: the same loss, a fraction of the compute.
"""
from __future__ import annotations

from functools import partial

from trustbench.baselines.base import (DISTRIBUTIONS, Context, Method, StudentArtifact, number_param, register_method,
                                      teacher_cost, teacher_distributions)
from trustbench.harness.errors import UserError


def kd_loss(logits, labels, targets: dict, alpha: float, tau: float):
    """Hinton's loss at the positions with a label; `targets["teacher_logprobs"]` is `[batch, positions, vocab]`."""
    import torch

    mask = labels != -100
    teacher = targets["teacher_logprobs"][mask].float()
    student = logits[mask][:, :teacher.shape[-1]].float()  # a padded student vocabulary is cut to the tokenizer's
    teacher_log = torch.log_softmax(teacher / tau, dim=-1)
    kl = (teacher_log.exp() * (teacher_log - torch.log_softmax(student / tau, dim=-1))).sum(-1).mean()
    ce = torch.nn.functional.cross_entropy(student, labels[mask])
    return alpha * ce + (1 - alpha) * tau ** 2 * kl


@register_method("kd")
class KD(Method):
    params = ("alpha", "tau")
    distils_logits = True
    teacher_needs = frozenset({DISTRIBUTIONS})

    def __init__(self, spec):
        super().__init__(spec)
        self.alpha = number_param(spec, "alpha", 0.5)
        self.tau = number_param(spec, "tau", 2.0)
        if not (0 <= self.alpha <= 1 and self.tau > 0):
            raise UserError(f"method {spec.name!r}: needs 0 <= alpha <= 1 and tau > 0 (got {self.alpha}, {self.tau})")

    def fit(self, ctx: Context) -> StudentArtifact:
        config = ctx.train_config()
        data, outputs = teacher_distributions(ctx, config)
        targets = [{"teacher_logprobs": outputs.sequence(i)[1]} for i in range(len(outputs))]
        ctx.log(f"{ctx.spec.name}: distilling {ctx.suite.teacher} into {ctx.suite.student} "
                f"(alpha {self.alpha}, tau {self.tau}, seed {ctx.seed})")
        loss = partial(kd_loss, alpha=self.alpha, tau=self.tau)
        artifact = ctx.sft("students", ctx.cache_key("kd", alpha=self.alpha, tau=self.tau), ctx.student_init,
                           ctx.train, config, ctx.seed, loss=loss, targets=targets)
        return StudentArtifact(artifact.path, {**artifact.cost, **teacher_cost(data, outputs)})

"""`reverse_kd`: reverse (mode-seeking) KL from the student to the teacher at the answer positions, or its skewed
form (DistiLLM, Ko et al., ICML 2024).

    loss = KL(s || skew * s + (1 - skew) * p),   averaged over answer positions

p the fine-tuned teacher's next-token distribution (the full vocabulary, cached once and shared with `kd`), s the
student's. skew = 0 (the default) is plain reverse KL, the divergence MiniLLM (Gu et al., ICLR 2024) minimises;
DistiLLM's skew reverse KL mixes a share of the student into the target, which bounds the loss and its gradient
where the teacher puts almost no mass (skew = 0.1 in its experiments). Gradients flow through both appearances of s.

Off-policy, on the gold answers, like `kd`: MiniLLM optimises the sequence-level reverse KL with a policy gradient over
the student's own samples, and DistiLLM adds an adaptive off-policy replay of them; both are left out. The
on-policy row is `gkd` (lmbda > 0), whose beta = 1 is this loss on the student's samples.
"""
from __future__ import annotations

from functools import partial

from trustbench.baselines.base import (DISTRIBUTIONS, Context, Method, StudentArtifact, number_param, register_method,
                                      teacher_cost, teacher_distributions)
from trustbench.harness.errors import UserError


def reverse_kd_loss(logits, labels, targets: dict, skew: float = 0.0):
    """KL(s || skew s + (1 - skew) p) at the positions with a label, averaged; `targets["teacher_logprobs"]` is
    `[batch, positions, vocab]`."""
    import math

    import torch

    mask = labels != -100
    teacher = targets["teacher_logprobs"][mask].float()
    student = torch.log_softmax(logits[mask][:, :teacher.shape[-1]].float(), dim=-1)
    mixture = teacher if skew == 0 else torch.logsumexp(
        torch.stack([student + math.log(skew), teacher + math.log1p(-skew)]), dim=0)
    return (student.exp() * (student - mixture)).sum(-1).mean()


@register_method("reverse_kd")
class ReverseKD(Method):
    params = ("skew",)
    distils_logits = True
    teacher_needs = frozenset({DISTRIBUTIONS})

    def __init__(self, spec):
        super().__init__(spec)
        self.skew = number_param(spec, "skew", 0.0)
        if not 0 <= self.skew < 1:
            raise UserError(f"method {spec.name!r}: skew must be in [0, 1) (0: reverse KL), got {self.skew}")

    def fit(self, ctx: Context) -> StudentArtifact:
        config = ctx.train_config()
        data, outputs = teacher_distributions(ctx, config)
        targets = [{"teacher_logprobs": outputs.sequence(i)[1]} for i in range(len(outputs))]
        ctx.log(f"{ctx.spec.name}: reverse-KL distillation of {ctx.suite.teacher} into {ctx.suite.student} "
                f"(skew {self.skew}, seed {ctx.seed})")
        artifact = ctx.sft("students", ctx.cache_key("reverse_kd", skew=self.skew), ctx.student_init, ctx.train,
                           config, ctx.seed, loss=partial(reverse_kd_loss, skew=self.skew), targets=targets)
        return StudentArtifact(artifact.path, {**artifact.cost, **teacher_cost(data, outputs)})

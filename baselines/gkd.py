"""`gkd`: generalised knowledge distillation (Agarwal et al., ICLR 2024, "On-Policy Distillation of Language Models").

At every answer position, with p the fine-tuned teacher's next-token distribution and s the student's (eq. 1 of the
paper, with TRL's `GKDTrainer.generalized_jsd_loss` conventions):

    JSD_beta(p || s) = beta * KL(p || m) + (1 - beta) * KL(s || m),   m = beta * p + (1 - beta) * s
    beta = 0: KL(p || s) (forward, as `kd` with alpha = 0, tau = 1);  beta = 1: KL(s || p) (reverse, `reverse_kd`)

averaged over answer positions. The answers it is taken on are on-policy with probability `lmbda` per optimiser
step: the batch's gold answers are replaced by the student's own samples (temperature `temperature`) for the same
prompts, drawn from its current weights through an HF engine around the training model, and the teacher's
distributions over them come from the teacher's engine; otherwise the gold answers and the teacher's cached
distributions are used, as in `kd`. Defaults beta = 0.5, lmbda = 0.5 (TRL's), temperature = 1 (the paper samples the
student as it is). Each step's coin and samples are seeded by (run seed, step): a resumed run redraws them alike.

Why not TRL's `GKDTrainer` itself: it trains on chat-formatted whole sequences with the teacher model in every
step, its own collator and its own generation; the harness's contract is a loss over answer positions on its
`Trainer` path (left-padded targets, the teacher's distributions cached on disk for the off-policy batches, epoch
checkpoints to resume). So the loss is written here in a few lines, checked against TRL's in the tests when TRL is
installed, and the on-policy swap is `AnswerLossTrainer`'s `resample` hook. Left out: the paper's sequence-level
sampling of long outputs and its supervised-KD mixtures; `teacher_calls` counts the scheduled on-policy batches as
full batches (an upper bound by the last, smaller batch of each epoch).
"""
from __future__ import annotations

import math
from functools import partial

import numpy as np

from trustbench.baselines.base import (DISTRIBUTIONS, Context, Method, StudentArtifact, number_param, register_method,
                                      teacher_cost, teacher_distributions)
from trustbench.harness.errors import UserError


def generalized_jsd(student_log, teacher_log, beta: float):
    """JSD_beta per position from log-probs `[positions, vocab]` (the limits KL(p || s), KL(s || p) at 0 and 1)."""
    import torch

    def kl(a_log, b_log):
        return (a_log.exp() * (a_log - b_log)).sum(-1)

    if beta == 0:
        return kl(teacher_log, student_log)
    if beta == 1:
        return kl(student_log, teacher_log)
    mixture = torch.logsumexp(torch.stack([teacher_log + math.log(beta), student_log + math.log1p(-beta)]), dim=0)
    return beta * kl(teacher_log, mixture) + (1 - beta) * kl(student_log, mixture)


def gkd_loss(logits, labels, targets: dict, beta: float):
    """JSD_beta(p || s) at the positions with a label, averaged; `targets["teacher_logprobs"]` `[batch, pos, vocab]`."""
    import torch

    mask = labels != -100
    teacher = targets["teacher_logprobs"][mask].float()
    student = torch.log_softmax(logits[mask][:, :teacher.shape[-1]].float(), dim=-1)
    return generalized_jsd(student, teacher, beta).mean()


class OnPolicy:
    """`AnswerLossTrainer`'s `resample`: with probability `lmbda` per step, the batch's answers become the student's
    samples, with the teacher's full distributions over them."""

    def __init__(self, prompts: dict, teacher, lmbda: float, temperature: float, seed: int):
        self.prompts = prompts  # prompt token ids (a tuple) -> the prompt's text, as the engine encodes it
        self.teacher = teacher  # the teacher's HF engine
        self.lmbda, self.temperature, self.seed = lmbda, temperature, seed

    def on_policy(self, step: int) -> bool:
        return bool(np.random.default_rng([self.seed, step]).random() < self.lmbda)

    def summary(self, steps: int) -> dict:
        """What the schedule did over `steps` optimiser steps (the same coins as training drew)."""
        return {"train_steps": steps, "on_policy_steps": sum(map(self.on_policy, range(steps)))}

    def __call__(self, model, inputs: dict, step: int) -> dict:
        if not self.on_policy(step):
            return inputs
        from trustbench.harness.engines import HFEngine
        from trustbench.harness.train import LeftPadCollator

        student = HFEngine.around(model, self.teacher.tokenizer)  # distils_logits: the vocabularies are the same
        prompt_ids = prompts_of(inputs)
        model.eval()
        try:
            samples = student.generate([self.prompts[tuple(ids)] for ids in prompt_ids],
                                       max_tokens=inputs["labels"].shape[1], temperature=self.temperature,
                                       seed=self.seed * 1_000_003 + step)
        finally:
            model.train()
        sequences = [ids + list(rows[0].token_ids) for ids, rows in zip(prompt_ids, samples)]
        starts = [len(ids) for ids in prompt_ids]
        teacher = self.teacher.topk_logprobs(sequences, starts, None)
        features = [{"input_ids": seq, "target_len": len(seq) - start, "teacher_logprobs": logprobs}
                    for seq, start, (_, logprobs) in zip(sequences, starts, teacher)]
        return LeftPadCollator(student.pad_id)(features)


def prompts_of(inputs: dict) -> list[list[int]]:
    """Each row of a collated batch's prompt tokens: its unpadded ids less the target tokens that end them."""
    prompts = []
    for ids, mask, labels in zip(inputs["input_ids"], inputs["attention_mask"], inputs["labels"]):
        kept = ids[mask.bool()].tolist()
        prompts.append(kept[:len(kept) - int((labels != -100).sum())])
    return prompts


@register_method("gkd")
class GKD(Method):
    params = ("beta", "lmbda", "temperature")
    distils_logits = True
    teacher_needs = frozenset({DISTRIBUTIONS})

    def __init__(self, spec):
        super().__init__(spec)
        self.beta = number_param(spec, "beta", 0.5)
        self.lmbda = number_param(spec, "lmbda", 0.5)
        self.temperature = number_param(spec, "temperature", 1.0)
        for name, value in (("beta", self.beta), ("lmbda", self.lmbda)):
            if not 0 <= value <= 1:
                raise UserError(f"method {spec.name!r}: {name} must be in [0, 1], got {value}")
        if self.temperature <= 0:
            raise UserError(f"method {spec.name!r}: temperature (of the student's samples) must be > 0, "
                            f"got {self.temperature}")

    def fit(self, ctx: Context) -> StudentArtifact:
        config = ctx.train_config()
        data, outputs = teacher_distributions(ctx, config)
        targets = [{"teacher_logprobs": outputs.sequence(i)[1]} for i in range(len(outputs))]
        prompts = {tuple(seq[:start]): prompt for seq, start, (prompt, _) in zip(data.sequences, data.starts,
                                                                                 data.pairs)}
        teacher = ctx.engine(ctx.teacher().path, "teacher", "hf")
        on_policy = OnPolicy(prompts, teacher, self.lmbda, self.temperature, ctx.seed)
        ctx.log(f"{ctx.spec.name}: generalised KD of {ctx.suite.teacher} into {ctx.suite.student} (beta {self.beta}, "
                f"on-policy share {self.lmbda}, sampling temperature {self.temperature}, seed {ctx.seed})")
        key = ctx.cache_key("gkd", beta=self.beta, lmbda=self.lmbda, temperature=self.temperature)
        artifact = ctx.sft("students", key, ctx.student_init, ctx.train, config, ctx.seed,
                           loss=partial(gkd_loss, beta=self.beta), targets=targets, resample=on_policy)
        schedule = {key: artifact.cost[key] for key in ("train_steps", "on_policy_steps")}
        ctx.record("gkd", {"beta": self.beta, "lmbda": self.lmbda, "temperature": self.temperature, **schedule})
        on_policy_calls = schedule["on_policy_steps"] * config.batch_size * config.grad_accum
        return StudentArtifact(artifact.path, {**artifact.cost, **teacher_cost(data, outputs, on_policy_calls)})

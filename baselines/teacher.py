"""`teacher`: the teacher fine-tuned on the ID train split, as a reference row.

Later methods distil from this same checkpoint (`finetuned_teacher`), cached by a hash of everything it depends on.
The teacher is trained once with seed 0, whatever the run's seeds, so every student in a suite shares it.
"""
from __future__ import annotations

from baselines.base import Context, Method, StudentArtifact, model_identity

TEACHER_SEED = 0


def finetuned_teacher(ctx: Context) -> StudentArtifact:
    from harness.train import cached_checkpoint, finetune, train_config_dict  # Trainer: slow to import

    config = ctx.suite.teacher_train or ctx.suite.train
    init = ctx.teacher_init
    key = {"kind": "teacher-sft", "model": model_identity(init), "data": ctx.data_key(ctx.train),
           "mode": ctx.suite.scoring, "train": train_config_dict(config), "seed": TEACHER_SEED}
    ctx.log(f"teacher: fine-tuning {ctx.suite.teacher} on {len(ctx.train)} ID examples (cached by hash)")
    path, cost = cached_checkpoint("teachers", key, lambda out: finetune(
        init, ctx.pairs(ctx.train), config, TEACHER_SEED, out, log=ctx.log))
    return StudentArtifact(path, cost)


class Teacher(Method):
    name = "teacher"
    seeded = False

    def fit(self, ctx: Context) -> StudentArtifact:
        return finetuned_teacher(ctx)

"""`teacher`: the teacher fine-tuned on the ID train split, as a reference row.

Later methods distil from this same checkpoint (`finetuned_teacher`), cached by a hash of everything it depends on.
The teacher is trained once with seed 0, whatever the run's seeds, so every student in a suite shares it.
"""
from __future__ import annotations

from baselines.base import Context, Method, StudentArtifact, cached_sft

TEACHER_SEED = 0


def finetuned_teacher(ctx: Context) -> StudentArtifact:
    ctx.log(f"teacher: fine-tuning {ctx.suite.teacher} on {len(ctx.train)} ID examples (cached by hash)")
    return cached_sft(ctx, "teacher-sft", "teachers", ctx.teacher_init, ctx.suite.teacher_train or ctx.suite.train,
                      TEACHER_SEED)


class Teacher(Method):
    name = "teacher"
    seeded = False

    def fit(self, ctx: Context) -> StudentArtifact:
        return finetuned_teacher(ctx)

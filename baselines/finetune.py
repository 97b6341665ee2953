"""`finetune`: supervised fine-tuning of the student on the ID train split, loss on the answer only.

The accurate-but-over-confident baseline that distillation methods claim to improve on.
"""
from __future__ import annotations

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method


@register_method("finetune")
class Finetune(Method):
    def fit(self, ctx: Context) -> StudentArtifact:
        ctx.log(f"{ctx.spec.name}: fine-tuning {ctx.suite.student} on {len(ctx.train)} ID examples (seed {ctx.seed})")
        artifact = ctx.sft("students", ctx.cache_key("finetune"), ctx.student_init, ctx.train, ctx.train_config(),
                           ctx.seed)
        return StudentArtifact(artifact.path, {**artifact.cost, "teacher_calls": 0})

"""`zeroshot`: the student before any training, the floor every method should clear."""
from __future__ import annotations

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method


@register_method("zeroshot")
class ZeroShot(Method):
    seeded = False
    trains = False

    def fit(self, ctx: Context) -> StudentArtifact:
        return StudentArtifact(ctx.student_init, {"train_tokens": 0, "teacher_calls": 0})

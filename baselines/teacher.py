"""`teacher`: the teacher fine-tuned on the ID train split, as a reference row.

The distillation methods distil from this same checkpoint (`ctx.teacher()`), cached by a hash of everything it
depends on and trained once with seed 0, whatever the run's seeds, so every student in a suite shares it.
"""
from __future__ import annotations

from trustbench.baselines.base import Context, Method, StudentArtifact, register_method
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.errors import UserError


@register_method("teacher")
class Teacher(Method):
    seeded = False

    def check(self, ctx: Context) -> None:
        if isinstance(ctx.suite.teacher, Endpoint):
            raise UserError(f"method {self.spec.name!r} fine-tunes the teacher, but the teacher is the endpoint "
                            f"{ctx.suite.teacher.name}; drop `teacher` from the suite's methods")

    def fit(self, ctx: Context) -> StudentArtifact:
        return ctx.teacher()

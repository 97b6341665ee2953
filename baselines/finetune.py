"""`finetune`: supervised fine-tuning of the student on the ID train split, loss on the answer only.

The accurate-but-over-confident baseline that distillation methods claim to improve on.
"""
from __future__ import annotations

from baselines.base import Context, Method, StudentArtifact, model_identity


class Finetune(Method):
    name = "finetune"

    def fit(self, ctx: Context) -> StudentArtifact:
        from harness.train import cached_checkpoint, finetune, train_config_dict  # Trainer: slow to import

        config = ctx.train_config()
        init = ctx.student_init
        key = {"kind": "finetune", "model": model_identity(init), "data": ctx.data_key(ctx.train),
               "mode": ctx.suite.scoring, "train": train_config_dict(config), "seed": ctx.seed}
        ctx.log(f"{ctx.spec.name}: fine-tuning {ctx.suite.student} on {len(ctx.train)} ID examples (seed {ctx.seed})")
        path, cost = cached_checkpoint("students", key, lambda out: finetune(
            init, ctx.pairs(ctx.train), config, ctx.seed, out, log=ctx.log))
        return StudentArtifact(path, {**cost, "teacher_calls": 0})

"""`cot_distill`: the student fine-tuned on the teacher's explanations of the whole pool (standard chain-of-thought
distillation, and ELAD's upper bound: what annotating every question buys).

The teacher writes an explanation and an answer for every pool question of the chain-of-thought ID tasks (ELAD's
`teacher_cot` annotator); those whose answer disagrees with gold are dropped (`keep: correct`, the default) or kept
(`keep: all`); the student is fine-tuned on the rest. The teacher's calls and tokens are its budget.
"""
from __future__ import annotations

from collections import Counter

from trustbench.baselines.base import GENERATION, Context, Method, StudentArtifact, register_method
from trustbench.baselines.elad.annotators import teacher_cot
from trustbench.baselines.elad.method import pool_tasks, teacher_chats
from trustbench.baselines.elad.student import Explained
from trustbench.harness.errors import UserError


@register_method("cot_distill")
class CotDistill(Method):
    params = ("keep", "step_splitter")
    teacher_needs = frozenset({GENERATION})

    def __init__(self, spec):
        super().__init__(spec)
        self.settings = {"keep": spec.params.get("keep", "correct"),
                         "step_splitter": spec.params.get("step_splitter", "newline")}
        if self.settings["keep"] not in ("correct", "all"):
            raise UserError(f"method {spec.name!r}: keep must be correct or all, got {self.settings['keep']!r}")

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        pool_tasks(ctx, self.spec.name)

    def fit(self, ctx: Context) -> StudentArtifact:
        pool = [e for t in pool_tasks(ctx, self.spec.name) for e in t.splits.pool]
        chat = teacher_chats(ctx)
        annotations = teacher_cot(ctx.teacher_engine(), ctx.format_of(pool[0]),
                                  [Explained(e, [], None, 0.0) for e in pool], self.settings, chat)
        statuses = Counter(a.status(self.settings["keep"]) for a in annotations)
        kept = [a.as_example() for a in annotations if a.status(self.settings["keep"]) == "kept"]
        ctx.log(f"{ctx.spec.name}: the teacher explained {len(pool)} pool questions: {statuses['kept']} kept, "
                f"{statuses['dropped']} dropped, {statuses['unparsable']} without an answer")
        student = ctx.sft("students", ctx.cache_key("cot_distill", examples=kept), ctx.student_init, kept,
                          ctx.train_config(), ctx.seed) if kept else StudentArtifact(ctx.student_init, {})
        ctx.record("cot_distill", {"kept": statuses["kept"], "dropped": statuses["dropped"],
                                   "unparsable": statuses["unparsable"]})
        return StudentArtifact(student.path, {**student.cost, **ctx.teacher_usage().as_cost(), "annotated": len(kept)})

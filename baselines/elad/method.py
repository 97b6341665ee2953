"""The ELAD loop as a method (`elad`): its parameters, the seed set, the rounds, the students as rows."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np

from trustbench.baselines.base import GENERATION, Context, Method, StudentArtifact, number_param, register_method
from trustbench.baselines.elad.student import Explained, explain
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.errors import UserError
from trustbench.harness.registry import ANNOTATORS, SELECTORS
from trustbench.harness.scoring import CotFormat, parse_number
from trustbench.harness.types import Example


DEFAULTS = {"n0": 16, "B": 16, "R": 3, "K": 4, "temperature": 0.7, "selector": "egss", "annotator": "clear",
            "egss_terms": "both", "egss_weight": 1.0, "intra": "prefix", "step_splitter": "newline",
            "check": "greedy", "likelihood_threshold": -1.0, "keep": "correct", "refit": "scratch"}
CHOICES = {"egss_terms": ("both", "intra", "inter"), "intra": ("prefix", "removal"),
           "step_splitter": ("newline", "sentence"), "check": ("greedy", "likelihood"), "keep": ("correct", "all"),
           "refit": ("scratch", "continue")}


def pool_tasks(ctx: Context, method: str) -> list:
    """The open-answer chain-of-thought ID tasks with a pool of questions a teacher may explain (one line when the
    suite has none: answers are read as numbers, so a task with options is refused too)."""
    tasks = [t for t in ctx.tasks if isinstance(t.format, CotFormat) and t.splits.pool]
    if not tasks:
        raise UserError(f"method {method!r} needs a chain-of-thought ID task with a pool of questions: give the suite "
                        "a `format: cot` ID task and `pool: N` in its sizes")
    if any(e.choices for t in tasks for e in t.splits.pool[:1]):
        raise UserError(f"method {method!r} reads a number after 'Answer:'; its ID task {tasks[0].name!r} has "
                        "options: give it an open-answer cot task (reasoning-gym)")
    return tasks


def teacher_chats(ctx: Context) -> bool:
    """Whether the teacher is asked in chat turns: an endpoint, or a local model through its chat template."""
    return isinstance(ctx.suite.teacher, Endpoint) or ctx.suite.chat_template



@register_method("elad")
class Elad(Method):
    params = tuple(DEFAULTS)
    teacher_needs = frozenset({GENERATION})

    def __init__(self, spec):
        super().__init__(spec)
        self.settings = {**DEFAULTS, **{k: v for k, v in spec.params.items() if k in DEFAULTS}}
        s, name = self.settings, spec.name
        for key in ("n0", "B", "R", "K"):
            if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < (0 if key == "n0" else 1):
                raise UserError(f"method {name!r}: {key} must be a whole number >= {0 if key == 'n0' else 1}, "
                                f"got {s[key]!r}")
        for key in ("temperature", "egss_weight", "likelihood_threshold"):
            number_param(spec, key, s[key])
        for key, allowed in CHOICES.items():
            if s[key] not in allowed:
                raise UserError(f"method {name!r}: {key} must be one of {', '.join(allowed)}, got {s[key]!r}")
        SELECTORS.get(s["selector"]), ANNOTATORS.get(s["annotator"])
        if s["K"] < 2 and SELECTORS.get(s["selector"]).needs & {"samples"}:
            raise UserError(f"method {name!r}: selector {s['selector']} compares K sampled explanations; K must be "
                            f"at least 2, got {s['K']}")
        if s["temperature"] <= 0 and SELECTORS.get(s["selector"]).needs & {"samples"}:
            raise UserError(f"method {name!r}: sampled explanations need temperature > 0, got {s['temperature']}")

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        tasks = pool_tasks(ctx, self.spec.name)
        s, size = self.settings, sum(len(t.splits.pool) for t in tasks)
        if s["n0"] + s["R"] * s["B"] > size:
            raise UserError(f"method {self.spec.name!r}: n0 + R x B = {s['n0'] + s['R'] * s['B']} questions, more "
                            f"than the pool's {size}; lower B or R, or give the pool more questions")

    def fit(self, ctx: Context) -> StudentArtifact:
        s = self.settings
        pool = [e for t in pool_tasks(ctx, self.spec.name) for e in t.splits.pool]
        fmt = ctx.format_of(pool[0])
        rng = np.random.default_rng(ctx.seed)
        order = rng.permutation(len(pool))
        teacher = ctx.teacher_engine()
        chat = teacher_chats(ctx)
        seed_items = [Explained(pool[i], [], None, 0.0) for i in order[:s["n0"]]]
        annotated = self._annotate(ANNOTATORS.get("teacher_cot"), teacher, fmt, seed_items, chat, ctx, "seed")
        remaining = [pool[i] for i in order[s["n0"]:]]
        rounds, history, student = {}, [], None
        for r in range(s["R"] + 1):
            student = self._train(ctx, fmt, annotated, r, student)
            spent = ctx.teacher_usage()
            student = StudentArtifact(student.path, {**student.cost, **spent.as_cost(),
                                                     "annotated": len(annotated), "round": r})
            if r == s["R"]:
                break
            rounds[f"r{r}"] = student
            items = self._explain(ctx, fmt, student.path, remaining)
            scores, terms = SELECTORS.get(s["selector"])(items, s, rng)
            picked = sorted(np.argsort(-scores, kind="stable")[:s["B"]].tolist())
            new = self._annotate(ANNOTATORS.get(s["annotator"]), teacher, fmt, [items[i] for i in picked], chat,
                                 ctx, f"round {r}")
            annotated += new
            history.append(self._round_record(ctx, r, items, scores, terms, picked, spent))
            taken = set(picked)
            remaining = [e for i, e in enumerate(remaining) if i not in taken]
        ctx.record("elad", {"settings": s, "rounds": history, "final_budget": ctx.teacher_usage().as_cost()})
        return StudentArtifact(student.path, student.cost, rounds=rounds)

    def _annotate(self, annotator, teacher, fmt, items, chat, ctx, when) -> list[Example]:
        annotations = annotator(teacher, fmt, items, self.settings, chat)
        statuses = Counter(a.status(self.settings["keep"]) for a in annotations)
        ctx.log(f"{ctx.spec.name}: {when}: the teacher explained {len(items)} questions: {statuses['kept']} kept, "
                f"{statuses['dropped']} with a wrong answer dropped, {statuses['unparsable']} without an answer")
        self._last_counts = {k: statuses[k] for k in ("kept", "dropped", "unparsable")}
        # CLEAR: how many of the student's steps the teacher accepted, per question (None: it wrote them all)
        self._last_counts["accepted_steps"] = [a.accepted for a in annotations]
        return [a.as_example() for a in annotations if a.status(self.settings["keep"]) == "kept"]

    def _train(self, ctx: Context, fmt, annotated: list[Example], r: int, previous) -> StudentArtifact:
        continuing = self.settings["refit"] == "continue" and previous is not None
        init = previous.path if continuing else ctx.student_init
        if not annotated:  # the teacher gave nothing usable yet: the student stays as it was
            ctx.log(f"{ctx.spec.name}: round {r}: no explanation kept yet; the student is not fine-tuned")
            return StudentArtifact(init, {"train_examples": 0})
        key = ctx.cache_key("elad", examples=annotated, round=r,
                            init=str(init) if continuing else "student")
        ctx.log(f"{ctx.spec.name}: round {r}: fine-tuning the student on {len(annotated)} explanations")
        return ctx.sft("students", key, init, annotated, ctx.train_config(), ctx.seed)

    def _explain(self, ctx: Context, fmt, checkpoint, questions) -> list[Explained]:
        engine = ctx.engine(checkpoint, "student")
        try:
            return explain(engine, fmt, questions, SELECTORS.get(self.settings["selector"]).needs, self.settings,
                           ctx.seed)
        finally:
            ctx.engines.release(checkpoint)

    def _round_record(self, ctx, r, items, scores, terms, picked, spent) -> dict:
        folder = ctx.round_dir(r) if ctx.run else None
        if folder:
            rows = [{"id": i.example.id, "answer": i.answer, "steps": len(i.steps), "score": float(scores[k]),
                     "picked": k in picked, **{name: values[k] for name, values in terms.items()}}
                    for k, i in enumerate(items)]
            (folder / "selection.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        correct = [i.answer is not None and i.answer == parse_number(str(i.example.gold)) for i in items]
        return {"round": r, "budget_before": spent.as_cost(), "pool_left": len(items),
                "student_pool_accuracy": float(np.mean(correct)) if correct else None, **self._last_counts,
                **{name: [round(float(v), 4) for v in values] for name, values in terms.items()}}

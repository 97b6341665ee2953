"""The DualChecker method (`dualchecker`): its parameters, ContextAligner, the student checker's online buffers, and
the student trained on the teacher's labels."""
from __future__ import annotations

import dataclasses

import numpy as np

from trustbench.baselines.base import Context, Method, StudentArtifact, number_param, register_method
from trustbench.baselines.dualchecker.prompts import (Demo, borderline, gold_label, label_sets, neighbours,
                                                      retrieved_count)
from trustbench.baselines.dualchecker.teacher import Label, Teacher
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.errors import UserError
from trustbench.harness.types import Example

PARTS = ("none", "simi", "teacher", "student", "all")
ASKS, CONFIDENCES = ("choice", "reply"), ("token", "verbalised")
DEFAULTS = {"shots": 3, "part": "all", "ask": None, "confidence": None, "tau": None, "buffer": 8, "buffer_epochs": 10,
            "reason_tokens": 48, "demo_chars": 120, "detail_chars": 600, "unparsable": "drop"}
TAU = {"token": 0.75, "verbalised": 0.85}  # the released code's thresholds for its white-box and black-box teachers


@register_method("dualchecker")
class DualChecker(Method):
    params = tuple(DEFAULTS)

    def __init__(self, spec):
        super().__init__(spec)
        s = self.settings = {**DEFAULTS, **{k: v for k, v in spec.params.items() if k in DEFAULTS}}
        for key in ("shots", "buffer", "buffer_epochs", "reason_tokens", "demo_chars", "detail_chars"):
            low = 0 if key == "shots" else 1
            if isinstance(s[key], bool) or not isinstance(s[key], int) or s[key] < low:
                raise UserError(f"method {spec.name!r}: {key} must be a whole number >= {low}, got {s[key]!r}")
        if s["part"] not in PARTS:
            raise UserError(f"method {spec.name!r}: part must be one of {', '.join(PARTS)}, got {s['part']!r}")
        if s["unparsable"] not in ("drop", "gold_leak"):
            raise UserError(f"method {spec.name!r}: unparsable must be drop or gold_leak, got {s['unparsable']!r}")
        if s["tau"] is not None and not 0 <= number_param(spec, "tau", s["tau"]) <= 1:
            raise UserError(f"method {spec.name!r}: tau must be a probability in [0, 1], got {s['tau']!r}")
        for key, allowed in (("ask", ASKS), ("confidence", CONFIDENCES)):
            if s[key] is not None and s[key] not in allowed:
                raise UserError(f"method {spec.name!r}: {key} must be {' or '.join(allowed)}, got {s[key]!r}")
        if s["ask"] == "choice" and s["confidence"] == "verbalised":
            raise UserError(f"method {spec.name!r}: a teacher asked to choose (ask: choice) states no confidence; "
                            "use ask: reply for confidence: verbalised")

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        tasks = [t for t in ctx.tasks if t.splits.train]
        if not tasks or any(not e.choices for t in tasks for e in t.splits.train[:1]):
            raise UserError(f"method {self.spec.name!r} labels classification examples: give the suite an ID task "
                            "with options (a multiple-choice card) and a train split")
        if len(tasks) > 1:
            raise UserError(f"method {self.spec.name!r} labels one ID task (its card's description is the teacher's "
                            f"instruction), and the suite has {len(tasks)}: {', '.join(t.name for t in tasks)}; keep "
                            "one ID task with a train split")
        if isinstance(ctx.suite.teacher, Endpoint) and self.settings["ask"] == "choice":
            raise UserError(f"method {self.spec.name!r}: an endpoint teacher gives no log-likelihoods to choose a "
                            "label by; use ask: reply (the default for an endpoint)")
        if self.uses("teacher") and not any(e.detail for t in tasks for e in t.splits.train):
            raise UserError(f"method {self.spec.name!r}: the teacher checker re-asks with each example's detail, "
                            f"and {tasks[0].name} has none; use a card with `short:` in its options, or part: simi")

    def _asking(self, endpoint: bool) -> tuple[str, str]:
        """How the teacher is asked (choice: label log-likelihoods; reply: a written answer) and which confidence
        the checker reads; an endpoint can only reply, and a reply's default confidence is the stated one."""
        ask = self.settings["ask"] or ("reply" if endpoint else "choice")
        return ask, self.settings["confidence"] or ("verbalised" if ask == "reply" else "token")

    def uses(self, component: str) -> bool:
        """Whether this part of the grid has `component` (simi: ContextAligner; teacher, student: the checkers)."""
        part = self.settings["part"]
        return part != "none" and (component == "simi" or part in (component, "all"))

    def fit(self, ctx: Context) -> StudentArtifact:
        s, train = self.settings, ctx.train
        endpoint = isinstance(ctx.suite.teacher, Endpoint)
        ask, confidence = self._asking(endpoint)
        tau = TAU[confidence] if s["tau"] is None else float(s["tau"])
        instruction = next(t for t in ctx.tasks if t.splits.train).card.description or "Label the text."
        teacher = Teacher(ctx.teacher_engine(fine_tuned=False), instruction, s, reply=ask == "reply",
                          confidence=confidence, endpoint=endpoint, chat=ctx.suite.chat_template and not endpoint)
        rng = np.random.default_rng(ctx.seed)
        order = [int(i) for i in rng.permutation(len(train))]
        static = self._static(train, rng, s["shots"] - (retrieved_count(s["shots"]) if self.uses("simi") else 0))
        demos_of = self._aligner(ctx, teacher, train, static) if self.uses("simi") else \
            (lambda i: [Demo(train[j].prompt, gold_label(train[j])) for j in static])
        learner = self._learner(ctx) if self.uses("student") else None
        feedback: list[Demo] = []
        rows, stream = {}, []
        for start in range(0, len(order), s["buffer"]):
            batch = order[start:start + s["buffer"]]
            demos = [feedback[-1:] + demos_of(i) for i in batch]
            first = teacher.label([train[i] for i in batch], [train[i].prompt for i in batch], demos)
            final, again = self._reask(teacher, [train[i] for i in batch], demos, first, tau)
            for k, i in enumerate(batch):
                rows[i] = {"id": train[i].id, "gold": int(train[i].gold), "first": first[k].label,
                           "first_confidence": first[k].confidence, "label": final[k].label,
                           "confidence": final[k].confidence, "reprompted": k in again, "buffer": start // s["buffer"],
                           "first_token_confidence": first[k].token, "token_confidence": final[k].token,
                           "first_verbalised_confidence": first[k].verbalised,
                           "verbalised_confidence": final[k].verbalised}
            if learner is not None:
                picked = self._student_check(ctx, learner, teacher, [train[i] for i in batch], final)
                if picked is not None:
                    feedback.append(picked)
            stream.append(self._stream_point(rows, feedback))
        labelled = self._relabelled(train, rows)
        ctx.log(f"{ctx.spec.name}: the teacher labelled {len(rows)} examples: {self._summary(rows)}; "
                f"{len(feedback)} feedback demonstration(s)")
        ctx.record("dualchecker", {"settings": {**s, "ask": ask, "confidence": confidence, "tau": tau},
                                   "black_box": endpoint, "labels": label_sets(train),
                                   "items": [rows[i] for i in sorted(rows)], "stream": stream,
                                   "feedback": [dataclasses.asdict(d) for d in feedback],
                                   "unparsable": teacher.unparsable})
        key = ctx.cache_key("dualchecker", examples=labelled)
        student = ctx.sft("students", key, ctx.student_init, labelled, ctx.train_config(), ctx.seed)
        return StudentArtifact(student.path, {**student.cost, **ctx.teacher_usage().as_cost(),
                                              "labelled": len(labelled), "unparsable": teacher.unparsable})

    # ------------------------------------------------------------------------------------------ parts

    def _reask(self, teacher: Teacher, batch: list[Example], demos: list[list[Demo]], first: list[Label],
               tau: float) -> tuple[list[Label], set[int]]:
        """The teacher checker: an answer below `tau` is asked again with the detail, and the second one stands."""
        final = list(first)
        again = [k for k, answer in enumerate(first)
                 if self.uses("teacher") and answer.confidence < tau and batch[k].detail]
        if again:
            redo = teacher.label([batch[k] for k in again],
                                 [batch[k].detail[:self.settings["detail_chars"]] for k in again],
                                 [demos[k] for k in again])
            for k, answer in zip(again, redo):
                final[k] = answer
        return final, set(again)

    @staticmethod
    def _static(train: list[Example], rng: np.random.Generator, count: int) -> list[int]:
        """`count` fixed gold examples, one label after another (seeded), for every question's prompt."""
        by_label: dict[int, list[int]] = {}
        for i in rng.permutation(len(train)):
            by_label.setdefault(int(train[int(i)].gold), []).append(int(i))
        cycle = [pool[k] for k in range(max(map(len, by_label.values()), default=0))
                 for _, pool in sorted(by_label.items()) if k < len(pool)]
        return cycle[:max(count, 0)]

    def _aligner(self, ctx: Context, teacher: Teacher, train: list[Example], static: list[int]):
        """ContextAligner: each question's demonstrations, its nearest gold-labelled neighbours with the teacher's
        reasons for their labels (asked once per example: the reasons are cached), after the fixed ones."""
        from trustbench.harness.engines import embed_texts

        count = retrieved_count(self.settings["shots"])
        embeddings = embed_texts(ctx.student_init, [e.prompt for e in train])
        near = {i: neighbours(embeddings, i, count) for i in range(len(train))}
        needed = sorted(set(static) | {j for js in near.values() for j in js})
        reasons = dict(zip(needed, teacher.reasons([train[j].prompt for j in needed],
                                                   [gold_label(train[j]) for j in needed])))
        demo = {j: Demo(train[j].prompt, gold_label(train[j]), reasons[j]) for j in needed}
        return lambda i: [demo[j] for j in near[i]] + [demo[j] for j in static]

    def _learner(self, ctx: Context):
        from trustbench.harness.train import OnlineLearner

        return OnlineLearner(ctx.student_init, ctx.train_config(), ctx.seed)

    def _student_check(self, ctx: Context, learner, teacher: Teacher, batch: list[Example],
                       answers: list[Label]) -> Demo | None:
        """Train on the buffer's teacher labels; before the last step, the borderline example becomes feedback."""
        usable = [(e, a.label) for e, a in zip(batch, answers) if a.label is not None]
        if not usable:
            return None
        pairs = ctx.pairs([dataclasses.replace(e, gold=label) for e, label in usable])
        for _ in range(self.settings["buffer_epochs"] - 1):
            learner.step(pairs)
        options = [[ctx.pairs([dataclasses.replace(e, gold=c)])[0][1] for c in range(len(e.choices))]
                   for e in batch]
        probs = learner.option_probs([ctx.pairs([e])[0][0] for e in batch], options)
        learner.step(pairs)
        pick = borderline(probs, [int(e.gold) for e in batch])
        if pick is None:
            return None
        example = batch[pick]
        label = gold_label(example)
        return Demo(example.prompt, label, teacher.reasons([example.prompt], [label])[0])

    def _relabelled(self, train: list[Example], rows: dict) -> list[Example]:
        """The train split with the teacher's labels; an unparsable one dropped (or, `gold_leak`, given gold)."""
        out = []
        for i, example in enumerate(train):
            label = rows[i]["label"]
            if label is None and self.settings["unparsable"] == "gold_leak":
                label = example.gold
            if label is not None:
                out.append(dataclasses.replace(example, gold=label))
        return out

    @staticmethod
    def _stream_point(rows: dict, feedback: list) -> dict:
        done = list(rows.values())
        return {"seen": len(done), "feedback": len(feedback),
                "accuracy": float(np.mean([r["label"] == r["gold"] for r in done])),
                "macro_f1": teacher_f1(done)}

    @staticmethod
    def _summary(rows: dict) -> str:
        done = list(rows.values())
        before = np.mean([r["first"] == r["gold"] for r in done])
        after = np.mean([r["label"] == r["gold"] for r in done])
        share = np.mean([r["reprompted"] for r in done])
        return (f"accuracy {100 * before:.1f}% before re-asking, {100 * after:.1f}% after "
                f"({100 * share:.1f}% re-asked), macro-F1 {100 * teacher_f1(done):.1f}")


def teacher_f1(rows: list[dict], key: str = "label") -> float:
    """Macro-F1 of the teacher's labels against gold (an unparsable label counts as a wrong class of its own)."""
    from trustbench.harness.metrics import macro_f1

    return macro_f1([-1 if r[key] is None else r[key] for r in rows], [r["gold"] for r in rows])

"""`dualchecker`: Interactive DualChecker (Wang et al., 2024; METHODS.md 3): a prompted teacher labels the ID train
split, and the labels train the student.

The teacher is the suite's teacher model as it ships (few-shot prompted, not fine-tuned): a local white-box model
or any chat model through the endpoint. The ID card's `description` is its task instruction; each example's prompt
is the short input and its `detail` the longer one (cards in `tasks/cards/` say which is which). The labels are an
example's options: one label set on a classification card (the paper's setting), or each question's own on a
multiple-choice one (how `smoke` runs it, without the teacher checker: its card has no detail).

- ContextAligner (`part` simi, teacher, student, all): the gold-labelled train split is embedded (mean-pooled hidden
  states of the student's initial model, `harness.engines.embed_texts`); for each question the nearest other train
  examples by cosine similarity (the question itself excluded; 1, 1, 2, 3 of them for 1, 3, 5, 7 shots, as in the
  released code) become demonstrations "Text: ... Answer: <gold>. Reason: <why>", the reason written by the
  teacher when asked to justify the human label. Fixed gold examples fill the other shots. Without it (`part:
  none`, the plain few-shot baseline) the shots are fixed gold examples without reasons.
- Teacher checker (`part` teacher, all): a label whose confidence is below `tau` is asked once more with the
  example's `detail` (its first `detail_chars` characters, as the code truncates it for a white-box teacher) in
  place of its short text; both answers are kept, the second is the label. How the teacher is asked (`ask`):
  `choice` (white box, a local model's default) takes the label of highest log-likelihood, its confidence that
  probability renormalised over the labels; `reply` (black box: an endpoint's default and only way, or a local
  model asked the same way) has the teacher write "Answer / Confidence / Reason", and reads both confidences from
  the reply: the percentage it states (`verbalised_confidence`) and its label's token probability (the endpoint's
  or the engine's log-probs). `confidence: token | verbalised` says which one the checker reads (default: token
  for choice, verbalised for reply); both are recorded. `tau` defaults to 0.75 (token) and 0.85 (verbalised), the
  code's values for its white-box and black-box teachers.
- Student checker (`part` student, all): the student (the suite's, from its initial weights) learns online from
  buffers of `buffer` teacher-labelled examples, `buffer_epochs` steps each; before its last step on a buffer the
  misclassified example (against gold) with the lowest top probability becomes a demonstration with a teacher
  reason for its gold label, placed first in every later teacher prompt.
- An unparsable teacher reply is counted and its example left out of the student's training (`unparsable: drop`).
  The released code fills it with the gold label; `unparsable: gold_leak` does that, and its name says why not.

The final student is fine-tuned from its initial weights on the teacher's labels of the whole train split (the
suite's train settings) and scored like every other method. Every teacher call goes through the cached, counted
teacher engine, so a resumed run asks nothing twice.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

import numpy as np

from trustbench.baselines.base import Context, Method, StudentArtifact, number_param, register_method
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.errors import UserError
from trustbench.harness.plots import FIGSIZE, RunView, register_figure, register_table
from trustbench.harness.types import Example

PARTS = ("none", "simi", "teacher", "student", "all")
ASKS, CONFIDENCES = ("choice", "reply"), ("token", "verbalised")
REPLY_STOP = ["\n\n", "\nText:"]  # a reply is three lines; what follows is the model writing the next question
DEFAULTS = {"shots": 3, "part": "all", "ask": None, "confidence": None, "tau": None, "buffer": 8, "buffer_epochs": 10,
            "reason_tokens": 48, "demo_chars": 120, "detail_chars": 600, "unparsable": "drop"}
TAU = {"token": 0.75, "verbalised": 0.85}  # the released code's thresholds for its white-box and black-box teachers
# the released code's Japanese word scale, in English (a confidence field without a number)
WORD_SCALE = (("somewhat unconfident", 0.25), ("not very confident", 0.25), ("somewhat confident", 0.75),
              ("unconfident", 0.0), ("not confident", 0.0), ("neutral", 0.5), ("confident", 1.0))


# ---------------------------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Demo:
    text: str
    label: str
    reason: str | None = None

    def render(self, chars: int) -> str:
        text = self.text if len(self.text) <= chars else self.text[:chars].rstrip() + "..."
        return f"Text: {text}\nAnswer: {self.label}." + (f" Reason: {self.reason}" if self.reason else "")


def label_prompt(instruction: str, labels: tuple[str, ...], demos: list[Demo], text: str, chars: int,
                 reply: bool = False) -> str:
    """The teacher's question: instruction, labels, demonstrations (the code's order), then the text."""
    ask = ("Reply in three lines: 'Answer: <label>', 'Confidence: <0-100>%', 'Reason: <one sentence>'."
           if reply else "")
    shown = "\n\n".join(d.render(chars) for d in demos)
    return (f"{instruction}\nLabels: {', '.join(labels)}.{' ' + ask if ask else ''}\n\n"
            + (f"{shown}\n\nRefer to the examples above and answer for the next text.\n" if demos else "")
            + f"Text: {text}\nAnswer:")


def reason_prompt(instruction: str, text: str, label: str) -> str:
    """Asking the teacher to justify a human label (ContextAligner; the student checker's feedback)."""
    return (f"{instruction}\nText: {text}\nLabel: {label}\nThe label you chose is '{label}'. Please explain why it "
            "matches this label.\nReason:")


def verbalised_confidence(reply: str) -> float:
    """The confidence a black-box teacher states, by the released code's rules: the largest whole number <= 100 in
    the confidence field, / 100; else a word of its scale; else (no field, nothing readable) 0, so the question is
    asked again."""
    match = re.search(r"confidence\s*[:=]?\s*(.*)", reply, flags=re.I)
    if not match:
        return 0.0
    field = match.group(1).splitlines()[0] if match.group(1) else ""
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?", field) if float(n) <= 100]
    if numbers:
        return max(numbers) / 100
    lowered = field.lower()
    for words, value in WORD_SCALE:
        if words in lowered:
            return value
    return 0.0


def parse_label(reply: str, labels: tuple[str, ...]) -> int | None:
    """The label a reply gives after "Answer:" (or at its start): the first label named there, exactly, any case."""
    span = label_span(reply, labels)
    return None if span is None else span[0]


def label_span(reply: str, labels: tuple[str, ...]) -> tuple[int, int, int] | None:
    """(label, start, end): the label `parse_label` reads and where in the reply it stands; None when unparsable."""
    answer = re.search(r"answer\s*:", reply, flags=re.I)
    begin = answer.end() if answer else 0
    rest = reply[begin:]
    begin += len(rest) - len(rest.lstrip())
    line = rest.lstrip().split("\n", 1)[0].lower()
    found = [(m.start(), i, m.end()) for i, label in enumerate(labels)
             for m in [re.search(rf"\b{re.escape(label.lower())}\b", line)] if m]
    if not found:
        return None
    start, label, end = min(found)
    return label, begin + start, begin + end


def label_probability(generation, pieces: list[str] | None, span: tuple[int, int, int] | None) -> float | None:
    """The probability the teacher gave its label in a reply: the product of the probabilities of the generated
    tokens that spell it (the answer token's probability, read from a reply). 0 for an unparsable reply; None when
    the reply has no log-probs or its tokens do not spell its text."""
    if generation.logprobs is None or pieces is None:
        return None
    if span is None:
        return 0.0
    _, start, end = span
    if not "".join(pieces).startswith(generation.text[:end]):
        return None
    total, position = 0.0, 0
    for piece, value in zip(pieces, generation.logprobs):
        if position < end and position + len(piece) > start:
            total += value
        position += len(piece)
    return float(np.exp(total))


def token_pieces(generation, tokenizer) -> list[str] | None:
    """Each generated token's text: the server's (an endpoint), or each id decoded (a local engine)."""
    if generation.tokens is not None:
        return list(generation.tokens)
    if tokenizer is None or not generation.token_ids:
        return None
    return [tokenizer.decode([t], skip_special_tokens=True) for t in generation.token_ids]


def gold_label(example: Example) -> str:
    return example.choices[example.gold]


def label_sets(examples: list[Example]) -> list[str] | None:
    """The labels of a classification split (one set for every example); None when each question has its own."""
    sets = {tuple(e.choices) for e in examples}
    return list(sets.pop()) if len(sets) == 1 else None


def retrieved_count(shots: int) -> int:
    """How many neighbours ContextAligner retrieves for `shots` (the released code: 1 if > 0, 2 if > 3, 3 if > 5)."""
    return 0 if shots <= 0 else 1 if shots <= 3 else 2 if shots <= 5 else 3


def neighbours(embeddings: np.ndarray, query: int, count: int) -> list[int]:
    """The `count` nearest other rows to row `query` by cosine similarity (rows are unit vectors), nearest first."""
    similarity = embeddings @ embeddings[query]
    similarity[query] = -np.inf
    return [int(i) for i in np.argsort(-similarity, kind="stable")[:count]]


def borderline(probs: list[list[float]], gold: list[int]) -> int | None:
    """The misclassified example (argmax != gold) with the lowest top probability; None when all are right."""
    wrong = [(max(p), i) for i, (p, g) in enumerate(zip(probs, gold)) if int(np.argmax(p)) != g]
    return min(wrong)[1] if wrong else None


# ---------------------------------------------------------------------------------------------- the teacher


@dataclass
class Label:
    """One teacher answer: the label index (None: unparsable), the confidence the checker reads, and both kinds of
    confidence where the answer has them: the label's token probability and the percentage the teacher states."""

    label: int | None
    confidence: float
    token: float | None = None
    verbalised: float | None = None


class Teacher:
    """The prompted teacher over an engine. `reply` False (white box): the label of highest log-likelihood, its
    confidence that probability renormalised over the labels. `reply` True (black box, or a local model asked the
    same way): the teacher writes "Answer / Confidence / Reason", and both confidences are read from the reply, the
    percentage it states and its label's token probability (where the engine returns log-probs); `confidence`
    says which one the checker reads."""

    def __init__(self, engine, instruction: str, settings: dict, reply: bool, confidence: str, endpoint: bool,
                 chat: bool):
        self.engine, self.instruction, self.settings = engine, instruction, settings
        self.reply, self.confidence, self.endpoint, self.chat = reply, confidence, endpoint, chat
        self.unparsable = 0

    def label(self, examples: list[Example], texts: list[str], demos: list[list[Demo]]) -> list[Label]:
        """Each example's label among its own options, asked with `texts` (short or detail) and `demos`."""
        labels = [tuple(e.choices) for e in examples]
        prompts = [label_prompt(self.instruction, ls, d, t, self.settings["demo_chars"], self.reply)
                   for ls, t, d in zip(labels, texts, demos)]
        return self._replies(prompts, labels) if self.reply else self._choices(prompts, labels)

    def _choices(self, prompts: list[str], labels: list[tuple[str, ...]]) -> list[Label]:
        requests = [(p, f" {label}") for p, ls in zip(prompts, labels) for label in ls]
        values = iter(ll for ll, _ in self.engine.loglikelihood(requests))
        answers = []
        for ls in labels:
            row = np.array([next(values) for _ in ls])
            probs = np.exp(row - row.max())
            probs /= probs.sum()
            answers.append(Label(int(np.argmax(probs)), float(probs.max()), token=float(probs.max())))
        return answers

    def _replies(self, prompts: list[str], labels: list[tuple[str, ...]]) -> list[Label]:
        generations = self.engine.generate(prompts, max_tokens=96, temperature=0.0, logprobs=True,
                                           stop=REPLY_STOP, **self._chat())
        tokenizer = getattr(self.engine, "tokenizer", None)
        answers = []
        for generation, ls in zip((g[0] for g in generations), labels):
            span = label_span(generation.text, ls)
            token = label_probability(generation, token_pieces(generation, tokenizer), span)
            verbalised = verbalised_confidence(generation.text)
            if self.confidence == "token" and token is None:
                raise UserError("the teacher's replies carry no token log-probs, so confidence: token cannot be "
                                "read; use confidence: verbalised (or a server that returns log-probs)")
            answers.append(Label(None if span is None else span[0],
                                 token if self.confidence == "token" else verbalised, token, verbalised))
        self.unparsable += sum(a.label is None for a in answers)
        return answers

    def reasons(self, texts: list[str], labels: list[str]) -> list[str]:
        prompts = [reason_prompt(self.instruction, t, label) for t, label in zip(texts, labels)]
        replies = self.engine.generate(prompts, max_tokens=self.settings["reason_tokens"], temperature=0.0,
                                       **self._chat(), **({} if self.endpoint else {"stop": ["\n"]}))
        return [" ".join(g[0].text.split()) or "-" for g in replies]

    def _chat(self) -> dict:
        """The chat flag, passed only when set (the suite's `chat_template: true`, a local model), so requests
        without it keep the cache keys of earlier runs; an endpoint is asked as its `api` says."""
        return {"chat": True} if self.chat else {}


# ---------------------------------------------------------------------------------------------- the method


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


# ---------------------------------------------------------------------------------------------- reports


def teacher_records(view: RunView) -> list[tuple[str, int, dict]]:
    """(variant, seed, record) for every DualChecker method x seed of the run."""
    return [(name, seed, run.records["dualchecker"]) for name, entry in view.manifest.methods.items()
            for seed, run in sorted(entry.runs.items()) if "dualchecker" in run.records]


WHEN = (("before", "first", "first_"), ("after", "label", ""))  # (when, label key, confidence key prefix)


def confidence_kinds(items: list[dict]) -> list[str]:
    """The kinds of confidence (token, verbalised) every answer of a record has."""
    return [kind for kind in CONFIDENCES if all(r.get(f"{p}{kind}_confidence") is not None
                                                for r in items for _, _, p in WHEN)]


def teacher_side(record: dict) -> dict:
    """The teacher's labels of the train split against gold: accuracy, macro-F1 and the ECE of the confidence the
    checker reads (and of each kind the answers have: token, verbalised), before and after re-asking; the share
    re-asked and the accuracy of those before and after; feedback count."""
    from trustbench.harness.metrics import ece

    items = record["items"]
    out = {}
    for when, label, prefix in WHEN:
        correct = [r[label] == r["gold"] for r in items]
        out[f"acc_{when}"] = float(np.mean(correct))
        out[f"f1_{when}"] = teacher_f1(items, label)
        out[f"ece_{when}"] = ece([r[f"{prefix}confidence"] for r in items], correct)
        for kind in CONFIDENCES:
            out[f"ece_{kind}_{when}"] = (ece([r[f"{prefix}{kind}_confidence"] for r in items], correct)
                                         if kind in confidence_kinds(items) else np.nan)
    asked = [r for r in items if r["reprompted"]]
    out["reprompted"] = len(asked) / len(items)
    out["reprompted_acc_before"] = float(np.mean([r["first"] == r["gold"] for r in asked])) if asked else np.nan
    out["reprompted_acc_after"] = float(np.mean([r["label"] == r["gold"] for r in asked])) if asked else np.nan
    out["feedback"] = len(record["feedback"])
    out["unparsable"] = record["unparsable"]
    return out


@register_table("dualchecker_teacher")
def teacher_table(view: RunView):
    """Per DualChecker variant (mean over seeds): the teacher side of the method."""
    import pandas as pd

    keys = ["variant", "part", "shots", "ask", "confidence"]
    rows = [{"variant": name, **{k: settings_of(record)[k] for k in keys[1:]}, "seed": seed, **teacher_side(record)}
            for name, seed, record in teacher_records(view)]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    numbers = [c for c in frame.columns if c not in keys + ["seed"]]
    table = frame.groupby(keys, as_index=False, sort=False)[numbers].mean()
    table.insert(len(keys), "seeds", frame.groupby(keys, sort=False)["seed"].count().to_numpy())
    return table


@register_table("dualchecker_gains")
def gains_table(view: RunView):
    """Each variant's teacher against the plain few-shot teacher (`part: none`, asked the same way and with the same
    shots when the run has them) on the same train examples: the difference in macro-F1 and accuracy of their
    labels, mean over the seeds both ran, with a 95% paired bootstrap interval (the same resampled examples for both
    in each seed)."""
    import pandas as pd

    runs: dict[str, dict[int, dict]] = {}
    for name, seed, record in teacher_records(view):
        runs.setdefault(name, {})[seed] = record
    setting = {name: settings_of(next(iter(by_seed.values()))) for name, by_seed in runs.items()}
    bases = [name for name in runs if setting[name]["part"] == "none"]
    rows = []
    for name in [n for n in runs if n not in bases and bases]:
        alike = [b for b in bases if setting[b]["ask"] == setting[name]["ask"]] or bases
        base = next((b for b in alike if setting[b]["shots"] == setting[name]["shots"]), alike[0])
        seeds = sorted(set(runs[name]) & set(runs[base]))
        if seeds:
            rows.append({"variant": name, "part": setting[name]["part"], "shots": setting[name]["shots"],
                         "against": base, "seeds": len(seeds), **paired_gain(runs[name], runs[base], seeds)})
    return pd.DataFrame(rows) if rows else None


def settings_of(record: dict) -> dict:
    """A record's settings with `ask` and `confidence` (records from before they were parameters asked an endpoint
    by reply, reading the stated confidence, and a local model by choice)."""
    settings, endpoint = record["settings"], record.get("black_box")
    return {**settings, "ask": settings.get("ask") or ("reply" if endpoint else "choice"),
            "confidence": settings.get("confidence") or ("verbalised" if endpoint else "token")}


def paired_gain(mine: dict[int, dict], base: dict[int, dict], seeds: list[int], n_boot: int = 1000) -> dict:
    """Macro-F1 and accuracy of `mine`'s labels minus `base`'s, mean over `seeds`, with a paired bootstrap (each
    seed's examples drawn on their own, both teachers' labels of an example together)."""
    from trustbench.harness.metrics import _macro_f1_rows
    from trustbench.harness.statistics import percentile_interval, resample_indices

    rng = np.random.default_rng(0)
    draws = {"f1": np.zeros(n_boot), "acc": np.zeros(n_boot)}
    point = {"f1": 0.0, "acc": 0.0}
    for seed in seeds:
        theirs = {r["id"]: r for r in base[seed]["items"]}
        items = [(r["gold"], r["label"], theirs[r["id"]]["label"]) for r in mine[seed]["items"] if r["id"] in theirs]
        gold, a, b = (np.array([-1 if v is None else v for v in column]) for column in zip(*items))
        gaps = {"f1": lambda i: _macro_f1_rows(a[i], gold[i]) - _macro_f1_rows(b[i], gold[i]),
                "acc": lambda i: (a[i] == gold[i]).mean(axis=1) - (b[i] == gold[i]).mean(axis=1)}
        resampled = resample_indices(rng, len(gold), n_boot)
        for key, gap in gaps.items():
            point[key] += gap(np.arange(len(gold))[None])[0] / len(seeds)
            draws[key] += gap(resampled) / len(seeds)
    out = {}
    for key in ("f1", "acc"):
        out[f"{key}_gain"] = float(point[key])
        out[f"{key}_gain_lo"], out[f"{key}_gain_hi"] = percentile_interval(point[key], draws[key])
    return out


@register_figure("dualchecker_components")
def components_figure(view: RunView):
    """Teacher macro-F1 and ECE on the train split per variant (the `--part` grid and shots), mean over seeds,
    with the range over seeds as error bars."""
    import pandas as pd
    from matplotlib.figure import Figure

    table = teacher_table(view)
    if table is None:
        return None
    rows = [{"variant": name, "seed": seed, **teacher_side(record)} for name, seed, record in teacher_records(view)]
    spread = pd.DataFrame(rows).groupby("variant", sort=False)
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    for ax, metric, label in zip(fig.subplots(1, 2), ("f1_after", "ece_after"),
                                 ("teacher macro-F1 (%)", "teacher ECE (%)")):
        low, high = (100 * spread[metric].agg(f).reindex(table["variant"]) for f in ("min", "max"))
        mean = 100 * table[metric].to_numpy()
        ax.bar(range(len(table)), mean, yerr=[mean - low.to_numpy(), high.to_numpy() - mean], capsize=3,
               color="#4477aa")
        ax.set_xticks(range(len(table)), [f"{v}\n({p}, {k} shots)" for v, p, k in
                                          zip(table["variant"], table["part"], table["shots"])], fontsize="x-small")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    fig.suptitle("The teacher's labels of the train split, per component (bars: range over seeds)")
    fig.tight_layout()
    return fig


@register_figure("dualchecker_stream")
def stream_figure(view: RunView):
    """The teacher's macro-F1 on the examples labelled so far, over the stream, per variant (first seed), with the
    feedback demonstrations as they accumulate."""
    from matplotlib.figure import Figure

    records = view.records("dualchecker")
    if not records:
        return None
    fig = Figure(figsize=FIGSIZE)
    ax = fig.subplots()
    for name, record in sorted(records.items()):
        stream = record["stream"]
        ax.plot([p["seen"] for p in stream], [100 * p["macro_f1"] for p in stream], linewidth=1, label=name)
    ax.set_xlabel("train examples labelled")
    ax.set_ylabel("teacher macro-F1 so far (%)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize="small")
    ax.set_title("Teacher F1 over the stream")
    fig.tight_layout()
    return fig


@register_figure("dualchecker_reliability")
def reliability_figure(view: RunView):
    """The teacher's reliability diagram before and after re-asking (first seed of each variant that re-asks), for
    each kind of confidence its answers have (token probability, verbalised)."""
    from matplotlib.figure import Figure

    from trustbench.harness.metrics import reliability_table

    records = {n: r for n, r in view.records("dualchecker").items() if any(i["reprompted"] for i in r["items"])}
    if not records:
        return None
    fig = Figure(figsize=(FIGSIZE[0] * len(records), FIGSIZE[1]))
    for ax, (name, record) in zip(np.atleast_1d(fig.subplots(1, len(records))), sorted(records.items())):
        items = record["items"]
        kinds = confidence_kinds(items) or [None]  # None: a record from before both kinds were kept
        for (when, label, prefix), kind in ((w, k) for k in kinds for w in WHEN):
            key = f"{prefix}{kind}_confidence" if kind else f"{prefix}confidence"
            table = reliability_table([r[key] for r in items], [r[label] == r["gold"] for r in items])
            table = table[table["count"] > 0]
            ax.plot(100 * table["confidence"], 100 * table["accuracy"], marker="o", markersize=3,
                    linestyle="--" if kind == "verbalised" else "-", label=f"{when}, {kind}" if kind else when)
        ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5, linestyle="--")
        ax.set_xlabel("teacher confidence (%)")
        ax.set_ylabel("teacher accuracy (%)")
        ax.set_title(f"{name}: before and after re-asking")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig

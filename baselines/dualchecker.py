"""`dualchecker`: Interactive DualChecker (Wang et al., 2024; METHODS.md 3): a prompted teacher labels the ID train
split, and the labels train the student.

The teacher is the suite's teacher model as it ships (few-shot prompted, not fine-tuned): a local white-box model
or any chat model through the endpoint. The card's `description` is its task instruction; each example's prompt is
the short input and its `detail` the longer one (cards in `tasks/cards/` say which is which).

- ContextAligner (`part` simi, teacher, student, all): the gold-labelled train split is embedded (mean-pooled hidden
  states of the student's initial model, `harness.engines.embed_texts`); for each question the nearest other train
  examples by cosine similarity (the question itself excluded; 1, 1, 2, 3 of them for 1, 3, 5, 7 shots, as in the
  released code) become demonstrations "Text: ... Answer: <gold>. Reason: <why>", the reason written by the
  teacher when asked to justify the human label. Fixed gold examples fill the other shots. Without it (`part:
  none`, the plain few-shot baseline) the shots are fixed gold examples without reasons.
- Teacher checker (`part` teacher, all): a label whose confidence is below `tau` is asked once more with the
  example's `detail` (its first `detail_chars` characters, as the code truncates it for a white-box teacher) in
  place of its short text; both answers are kept, the second is the label. Confidence is the
  probability of the teacher's answer, renormalised over the labels' log-likelihoods (white box), or the
  percentage the teacher states (`verbalised_confidence`, black box). `tau` defaults to 0.75 (white box) and 0.85
  (black box), the code's values.
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

from baselines.base import Context, Method, StudentArtifact, number_param, register_method
from harness.endpoint import Endpoint
from harness.errors import UserError
from harness.plots import FIGSIZE, RunView, register_figure, register_table
from harness.types import Example

PARTS = ("none", "simi", "teacher", "student", "all")
DEFAULTS = {"shots": 3, "part": "all", "tau": None, "buffer": 8, "buffer_epochs": 10, "reason_tokens": 48,
            "demo_chars": 120, "detail_chars": 600,
            "unparsable": "drop"}
TAU = {"white": 0.75, "black": 0.85}
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
                 black_box: bool = False) -> str:
    """The teacher's question: instruction, labels, demonstrations (the code's order), then the text."""
    ask = ("Reply in three lines: 'Answer: <label>', 'Confidence: <0-100>%', 'Reason: <one sentence>'."
           if black_box else "")
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
    head = re.split(r"answer\s*:", reply, flags=re.I)
    text = (head[1] if len(head) > 1 else reply).strip().splitlines()
    first = text[0].lower() if text else ""
    found = [(m.start(), i) for i, label in enumerate(labels)
             for m in [re.search(rf"\b{re.escape(label.lower())}\b", first)] if m]
    return min(found)[1] if found else None


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
    """One teacher answer: the label index (None: unparsable) and its confidence."""

    label: int | None
    confidence: float


class Teacher:
    """The prompted teacher over an engine: white box (log-likelihood of each label) or black box (a chat reply
    with a stated confidence)."""

    def __init__(self, engine, black_box: bool, instruction: str, labels: tuple[str, ...], settings: dict):
        self.engine, self.black_box, self.instruction, self.labels = engine, black_box, instruction, labels
        self.settings = settings
        self.unparsable = 0

    def label(self, texts: list[str], demos: list[list[Demo]]) -> list[Label]:
        prompts = [label_prompt(self.instruction, self.labels, d, t, self.settings["demo_chars"], self.black_box)
                   for t, d in zip(texts, demos)]
        if self.black_box:
            replies = [g[0].text for g in self.engine.generate(
                [[{"role": "user", "content": p}] for p in prompts], max_tokens=96, temperature=0.0)]
            answers = [Label(parse_label(r, self.labels), verbalised_confidence(r)) for r in replies]
            self.unparsable += sum(a.label is None for a in answers)
            return answers
        requests = [(p, f" {label}") for p in prompts for label in self.labels]
        values = np.array([ll for ll, _ in self.engine.loglikelihood(requests)]).reshape(len(prompts), -1)
        probs = np.exp(values - values.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        return [Label(int(np.argmax(p)), float(p.max())) for p in probs]

    def reasons(self, texts: list[str], labels: list[str]) -> list[str]:
        prompts = [reason_prompt(self.instruction, t, label) for t, label in zip(texts, labels)]
        asks = [[{"role": "user", "content": p}] for p in prompts] if self.black_box else prompts
        replies = self.engine.generate(asks, max_tokens=self.settings["reason_tokens"], temperature=0.0,
                                       **({} if self.black_box else {"stop": ["\n"]}))
        return [" ".join(g[0].text.split()) or "-" for g in replies]


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

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        tasks = [t for t in ctx.tasks if t.splits.train]
        if not tasks or any(not e.choices for t in tasks for e in t.splits.train[:1]):
            raise UserError(f"method {self.spec.name!r} labels classification examples: give the suite an ID task "
                            "with options (a multiple-choice card) and a train split")
        labels = {tuple(e.choices) for t in tasks for e in t.splits.train}
        if len(labels) > 1:
            raise UserError(f"method {self.spec.name!r}: the ID train examples do not share one label set "
                            f"({len(labels)} different); give it one classification task, or tasks with one label set")
        if self.uses("teacher") and not any(e.detail for t in tasks for e in t.splits.train):
            raise UserError(f"method {self.spec.name!r}: the teacher checker re-asks with each example's detail, "
                            f"and {tasks[0].name} has none; use a card with `short:` in its options, or part: simi")

    def uses(self, component: str) -> bool:
        """Whether this part of the grid has `component` (simi: ContextAligner; teacher, student: the checkers)."""
        part = self.settings["part"]
        return part != "none" and (component == "simi" or part in (component, "all"))

    def fit(self, ctx: Context) -> StudentArtifact:
        s, train = self.settings, ctx.train
        black_box = isinstance(ctx.suite.teacher, Endpoint)
        tau = TAU["black" if black_box else "white"] if s["tau"] is None else float(s["tau"])
        instruction = ctx.tasks[0].card.description or "Label the text."
        labels = tuple(train[0].choices)
        teacher = Teacher(ctx.teacher_engine(fine_tuned=False), black_box, instruction, labels, s)
        rng = np.random.default_rng(ctx.seed)
        order = [int(i) for i in rng.permutation(len(train))]
        static = self._static(train, rng, s["shots"] - (retrieved_count(s["shots"]) if self.uses("simi") else 0))
        demos_of = self._aligner(ctx, teacher, train, static) if self.uses("simi") else \
            (lambda i: [Demo(train[j].prompt, labels[train[j].gold]) for j in static])
        learner = self._learner(ctx) if self.uses("student") else None
        feedback: list[Demo] = []
        rows, stream = {}, []
        for start in range(0, len(order), s["buffer"]):
            batch = order[start:start + s["buffer"]]
            demos = [feedback[-1:] + demos_of(i) for i in batch]
            first = teacher.label([train[i].prompt for i in batch], demos)
            final, again = self._reask(teacher, [train[i] for i in batch], demos, first, tau)
            for k, i in enumerate(batch):
                rows[i] = {"id": train[i].id, "gold": int(train[i].gold), "first": first[k].label,
                           "first_confidence": first[k].confidence, "label": final[k].label,
                           "confidence": final[k].confidence, "reprompted": k in again, "buffer": start // s["buffer"]}
            if learner is not None:
                picked = self._student_check(ctx, learner, teacher, [train[i] for i in batch], final)
                if picked is not None:
                    feedback.append(picked)
            stream.append(self._stream_point(rows, feedback))
        labelled = self._relabelled(train, rows)
        ctx.log(f"{ctx.spec.name}: the teacher labelled {len(rows)} examples: {self._summary(rows)}; "
                f"{len(feedback)} feedback demonstration(s)")
        ctx.record("dualchecker", {"settings": {**s, "tau": tau}, "black_box": black_box, "labels": list(labels),
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
            redo = teacher.label([batch[k].detail[:self.settings["detail_chars"]] for k in again],
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
        from harness.engines import embed_texts

        count = retrieved_count(self.settings["shots"])
        embeddings = embed_texts(ctx.student_init, [e.prompt for e in train])
        near = {i: neighbours(embeddings, i, count) for i in range(len(train))}
        needed = sorted(set(static) | {j for js in near.values() for j in js})
        reasons = dict(zip(needed, teacher.reasons([train[j].prompt for j in needed],
                                                   [teacher.labels[train[j].gold] for j in needed])))
        demo = {j: Demo(train[j].prompt, teacher.labels[train[j].gold], reasons[j]) for j in needed}
        return lambda i: [demo[j] for j in near[i]] + [demo[j] for j in static]

    def _learner(self, ctx: Context):
        from harness.train import OnlineLearner

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
        label = teacher.labels[example.gold]
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
    from harness.metrics import macro_f1

    return macro_f1([-1 if r[key] is None else r[key] for r in rows], [r["gold"] for r in rows])


# ---------------------------------------------------------------------------------------------- reports


def teacher_records(view: RunView) -> list[tuple[str, int, dict]]:
    """(variant, seed, record) for every DualChecker method x seed of the run."""
    return [(name, seed, run.records["dualchecker"]) for name, entry in view.manifest.methods.items()
            for seed, run in sorted(entry.runs.items()) if "dualchecker" in run.records]


def teacher_side(record: dict) -> dict:
    """The teacher's labels of the train split against gold: accuracy, macro-F1 and the ECE of its confidence,
    before and after re-asking; the share re-asked and the accuracy of those before and after; feedback count."""
    from harness.metrics import ece

    items = record["items"]
    out = {}
    for when, label, confidence in (("before", "first", "first_confidence"), ("after", "label", "confidence")):
        correct = [r[label] == r["gold"] for r in items]
        out[f"acc_{when}"] = float(np.mean(correct))
        out[f"f1_{when}"] = teacher_f1(items, label)
        out[f"ece_{when}"] = ece([r[confidence] for r in items], correct)
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

    rows = [{"variant": name, "part": record["settings"]["part"], "shots": record["settings"]["shots"],
             "seed": seed, **teacher_side(record)} for name, seed, record in teacher_records(view)]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    numbers = [c for c in frame.columns if c not in ("variant", "part", "shots", "seed")]
    table = frame.groupby(["variant", "part", "shots"], as_index=False, sort=False)[numbers].mean()
    table.insert(3, "seeds", frame.groupby(["variant", "part", "shots"], sort=False)["seed"].count().to_numpy())
    return table


@register_table("dualchecker_gains")
def gains_table(view: RunView):
    """Each variant's teacher against the plain few-shot teacher (`part: none`, the same shots when the run has it)
    on the same train examples: the difference in macro-F1 and accuracy of their labels, mean over the seeds both
    ran, with a 95% paired bootstrap interval (the same resampled examples for both in each seed)."""
    import pandas as pd

    runs: dict[str, dict[int, dict]] = {}
    for name, seed, record in teacher_records(view):
        runs.setdefault(name, {})[seed] = record
    setting = {name: next(iter(by_seed.values()))["settings"] for name, by_seed in runs.items()}
    bases = [name for name in runs if setting[name]["part"] == "none"]
    rows = []
    for name in [n for n in runs if n not in bases and bases]:
        base = next((b for b in bases if setting[b]["shots"] == setting[name]["shots"]), bases[0])
        seeds = sorted(set(runs[name]) & set(runs[base]))
        if seeds:
            rows.append({"variant": name, "part": setting[name]["part"], "shots": setting[name]["shots"],
                         "against": base, "seeds": len(seeds), **paired_gain(runs[name], runs[base], seeds)})
    return pd.DataFrame(rows) if rows else None


def paired_gain(mine: dict[int, dict], base: dict[int, dict], seeds: list[int], n_boot: int = 1000) -> dict:
    """Macro-F1 and accuracy of `mine`'s labels minus `base`'s, mean over `seeds`, with a paired bootstrap."""
    from harness.metrics import _macro_f1_rows

    rng = np.random.default_rng(0)
    draws = {"f1": np.zeros(n_boot), "acc": np.zeros(n_boot)}
    point = {"f1": 0.0, "acc": 0.0}
    for seed in seeds:
        theirs = {r["id"]: r for r in base[seed]["items"]}
        items = [(r["gold"], r["label"], theirs[r["id"]]["label"]) for r in mine[seed]["items"] if r["id"] in theirs]
        gold, a, b = (np.array([-1 if v is None else v for v in column]) for column in zip(*items))
        gaps = {"f1": lambda i: _macro_f1_rows(a[i], gold[i]) - _macro_f1_rows(b[i], gold[i]),
                "acc": lambda i: (a[i] == gold[i]).mean(axis=1) - (b[i] == gold[i]).mean(axis=1)}
        resampled = rng.integers(0, len(gold), size=(n_boot, len(gold)))
        for key, gap in gaps.items():
            point[key] += gap(np.arange(len(gold))[None])[0] / len(seeds)
            draws[key] += gap(resampled) / len(seeds)
    out = {}
    for key in ("f1", "acc"):
        lo, hi = np.percentile(draws[key], [2.5, 97.5])
        out.update({f"{key}_gain": float(point[key]), f"{key}_gain_lo": float(min(lo, point[key])),
                    f"{key}_gain_hi": float(max(hi, point[key]))})
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
    """The teacher's reliability diagram before and after re-asking (first seed of each variant that re-asks)."""
    from matplotlib.figure import Figure

    from harness.metrics import reliability_table

    records = {n: r for n, r in view.records("dualchecker").items() if any(i["reprompted"] for i in r["items"])}
    if not records:
        return None
    fig = Figure(figsize=(FIGSIZE[0] * len(records), FIGSIZE[1]))
    for ax, (name, record) in zip(np.atleast_1d(fig.subplots(1, len(records))), sorted(records.items())):
        for when, label, confidence in (("before", "first", "first_confidence"), ("after", "label", "confidence")):
            items = record["items"]
            table = reliability_table([r[confidence] for r in items], [r[label] == r["gold"] for r in items])
            table = table[table["count"] > 0]
            ax.plot(100 * table["confidence"], 100 * table["accuracy"], marker="o", markersize=3, label=when)
        ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5, linestyle="--")
        ax.set_xlabel("teacher confidence (%)")
        ax.set_ylabel("teacher accuracy (%)")
        ax.set_title(f"{name}: before and after re-asking")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig

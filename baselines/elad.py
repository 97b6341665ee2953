"""`elad`: ELAD (Zhang et al., Findings of ACL 2024): explanation-guided active distillation (METHODS.md 2).

The loop of the authors' poster (its Figure 1), on a chain-of-thought ID task with a `pool` of questions:

1. The teacher writes explanations for a seed set of `n0` pool questions (drawn with the run's seed): D.
2. Round r = 0, 1, ...: the student is fine-tuned on D (from its initial weights, or `refit: continue` from the last
   round's); it writes an explanation and an answer for every question left in the pool U; a selector ranks them;
   the annotator explains the `B` ranked first, and those explanations join D.
3. After `R` rounds of selection, the student fine-tuned on D is the method's row; the students of rounds 0 .. R-1
   are rows `<name>@r<i>`, each scored like any method, with the teacher budget spent before it.

Selectors (higher is asked first; each reads the student's outputs on a question):
- `egss`, Explanation-Guided Sample Selection: intra + `egss_weight` x inter, where intra-explanation uncertainty
  is the share of the explanation's steps that change the answer the student reaches (`intra: prefix`: the answer
  read after steps 1..i against the one after steps 1..i-1, i = 1..m, the poster's reading; `intra: removal`: the
  answer without step i against the answer with all of them), and inter-explanation uncertainty is the answer
  disagreement over K sampled explanations, 1 - (votes of the most common answer) / K. `egss_terms: intra|inter`
  keeps one term. Both terms are stored per question and per round.
- `random`: uniformly at random (seeded).
- `max_entropy`: the mean entropy of the student's next-token distribution over the tokens of its answer (from
  the top 10 log-probs at each answer token; the tail beyond them is left out).
- `least_confidence`: 1 - the probability of the student's (greedy) answer tokens.
- `disagreement`: the answer disagreement over K sampled explanations (EGSS's inter term alone).
- `self_confidence`: 1 - the student's own probability that its answer is right: P(" Yes") against P(" No") after
  "Is this answer right? Yes or No:" appended to its explanation and answer.

Annotators:
- `clear` (CLEAR: Customized LLM-Annotated Explanation Revision): the teacher checks the student's steps in order
  and keeps the accepted prefix; from the first rejected step it writes the rest and the final answer. A local
  (white-box) teacher checks a step by its own greedy next step (`check: greedy`: accepted when it writes the
  same step) or by its likelihood (`check: likelihood`: mean token log-prob >= `likelihood_threshold`), and writes
  the rest by generation. With `check: greedy` and greedy decoding an accepted step is the teacher's own next
  step, so the revision is what `teacher_cot` writes, at the cost of the checks (measured: the same annotated sets,
  round by round); only `check: likelihood` (or a chat teacher) keeps student steps the teacher would not have
  written. A chat or endpoint teacher gets the poster's multi-turn prompt ("Can we start with this
  step: ...? If yes, give me your step. If no, give me the rest steps and the final answer."; then "Can we continue
  with this step ...?") and re-words each step it accepts.
- `teacher_cot`: the teacher writes the whole explanation itself.
An explanation whose final answer disagrees with gold is dropped (`keep: correct`) or kept (`keep: all`); one with
no parsable answer is dropped. Kept, dropped and unparsable counts are recorded per round.

Every teacher call goes through the teacher's engine: cached on disk and counted, so a run killed mid-round
resumes without asking the teacher anything twice; the budget axis is teacher calls and teacher tokens.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from trustbench.baselines.base import GENERATION, Context, Method, StudentArtifact, number_param, register_method
from trustbench.harness.endpoint import Endpoint
from trustbench.harness.errors import UserError
from trustbench.harness.plots import FIGSIZE, RunView, register_figure, register_table
from trustbench.harness.registry import ANNOTATORS, SELECTORS
from trustbench.harness.scoring import ANSWER, ANSWER_TOKENS, CotFormat, parse_number
from trustbench.harness.types import Example

DEFAULTS = {"n0": 16, "B": 16, "R": 3, "K": 4, "temperature": 0.7, "selector": "egss", "annotator": "clear",
            "egss_terms": "both", "egss_weight": 1.0, "intra": "prefix", "step_splitter": "newline",
            "check": "greedy", "likelihood_threshold": -1.0, "keep": "correct", "refit": "scratch"}
CHOICES = {"egss_terms": ("both", "intra", "inter"), "intra": ("prefix", "removal"),
           "step_splitter": ("newline", "sentence"), "check": ("greedy", "likelihood"), "keep": ("correct", "all"),
           "refit": ("scratch", "continue")}
CHAT_INSTRUCTION = "Solve the problem step by step, one step a line, then write 'Answer: <the answer>'."


# ---------------------------------------------------------------------------------------------- the student


@dataclass
class Explained:
    """The student's outputs on one pool question: what the selectors read."""

    example: Example
    steps: list[str]
    answer: str | None  # its parsed answer (None: none)
    confidence: float  # the probability of its answer tokens
    entropy: float = 0.0  # mean next-token entropy over its answer tokens (top-10)
    samples: list[str | None] = field(default_factory=list)  # answers of K sampled explanations
    step_answers: list[str | None] = field(default_factory=list)  # answers after step prefixes (or removals)
    self_confidence: float = 1.0  # its P(right)


def split_steps(text: str, splitter: str = "newline") -> list[str]:
    """An explanation's steps: its non-empty lines, or its sentences."""
    text = text.strip()
    parts = text.splitlines() if splitter == "newline" else re.split(r"(?<=[.!?])\s+", text)
    return [" ".join(p.split()) for p in parts if p.strip()]


def reasoning_context(prompt: str, steps: list[str]) -> str:
    """The cot prompt followed by `steps` and "Answer:", as the student was trained to write them."""
    return prompt + (" " + "\n".join(steps) + "\n" if steps else "\n") + ANSWER


def read_answers(engine, contexts: list[str], top: int = 0) -> list[tuple[str | None, float, float]]:
    """Greedy answers after each context: (parsed answer, probability of its tokens, mean top-k entropy)."""
    if not contexts:
        return []
    generations = [g[0] for g in engine.generate(contexts, max_tokens=ANSWER_TOKENS, stop=["\n"], logprobs=True,
                                                 top_logprobs=top)]
    out = []
    for g in generations:
        values = list(g.logprobs or ())[:len(g.logprobs or ()) - (1 if g.finish_reason == "stop" and g.logprobs
                                                                   else 0)]
        entropy = 0.0
        if top and g.top_logprobs:
            entropies = [-sum(math.exp(v) * v for v in position.values()) for position in g.top_logprobs[:len(values)]]
            entropy = float(np.mean(entropies)) if entropies else 0.0
        out.append((parse_number(g.text), math.exp(sum(values)) if g.logprobs else 0.0, entropy))
    return out


def explain(engine, fmt: CotFormat, examples: list[Example], needs: set[str], params: dict, seed: int) -> list[Explained]:
    """The student's explanation of every question, and what the selector `needs` of it."""
    prompts = [fmt.prompt(e) for e in examples]
    greedy = [g[0] for g in engine.generate(prompts, max_tokens=fmt.max_new_tokens, stop=[ANSWER])]
    steps = [split_steps(g.text, params["step_splitter"]) for g in greedy]
    answers = read_answers(engine, [reasoning_context(p, s) for p, s in zip(prompts, steps)],
                           top=10 if "entropy" in needs else 0)
    explained = [Explained(e, s, a, c, h) for e, s, (a, c, h) in zip(examples, steps, answers)]
    if "samples" in needs:
        sampled = engine.generate(prompts, max_tokens=fmt.max_new_tokens, stop=[ANSWER], n=params["K"],
                                  temperature=params["temperature"], seed=seed)
        contexts = [reasoning_context(p, split_steps(g.text, params["step_splitter"]))
                    for p, row in zip(prompts, sampled) for g in row]
        flat = [a for a, _, _ in read_answers(engine, contexts)]
        for i, item in enumerate(explained):
            item.samples = flat[i * params["K"]:(i + 1) * params["K"]]
    if "steps" in needs:
        variants = [[s[:i] for i in range(len(s) + 1)] if params["intra"] == "prefix"
                    else [s] + [s[:i] + s[i + 1:] for i in range(len(s))] for s in steps]
        flat = [a for a, _, _ in read_answers(engine, [reasoning_context(p, v) for p, vs in zip(prompts, variants)
                                                       for v in vs])]
        cursor = 0
        for item, vs in zip(explained, variants):
            item.step_answers, cursor = flat[cursor:cursor + len(vs)], cursor + len(vs)
    if "self" in needs:
        yes_no = [engine.tokenizer.encode(w, add_special_tokens=False)[0] for w in (" Yes", " No")]
        asks = [f"{reasoning_context(p, i.steps)} {i.answer}\nIs this answer right? Yes or No:"
                for p, i in zip(prompts, explained)]
        for item, (yes, no) in zip(explained, engine.next_token_logprobs(asks, yes_no)):
            item.self_confidence = float(1 / (1 + math.exp(no - yes)))
    return explained


# ---------------------------------------------------------------------------------------------- selectors


def intra_uncertainty(item: Explained, mode: str = "prefix") -> float:
    """The share of steps that change the student's answer: prefix i against prefix i-1, or all steps against all
    but step i (0 for an explanation without steps)."""
    answers = item.step_answers
    if len(answers) < 2:
        return 0.0
    if mode == "prefix":
        return sum(a != b for a, b in zip(answers[1:], answers[:-1])) / (len(answers) - 1)
    return sum(a != answers[0] for a in answers[1:]) / (len(answers) - 1)


def inter_uncertainty(item: Explained) -> float:
    """Answer disagreement over the K sampled explanations: 1 - votes of the most common answer / K."""
    if not item.samples:
        return 0.0
    return 1 - Counter(item.samples).most_common(1)[0][1] / len(item.samples)


@SELECTORS.register("egss")
def egss(items: list[Explained], params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Explanation-Guided Sample Selection: intra + egss_weight x inter (or one term, `egss_terms`)."""
    intra = np.array([intra_uncertainty(i, params["intra"]) for i in items])
    inter = np.array([inter_uncertainty(i) for i in items])
    weights = {"both": (1.0, params["egss_weight"]), "intra": (1.0, 0.0), "inter": (0.0, 1.0)}[params["egss_terms"]]
    return weights[0] * intra + weights[1] * inter, {"intra": intra.tolist(), "inter": inter.tolist()}


egss.needs = {"samples", "steps"}


@SELECTORS.register("random")
def random_selection(items, params, rng):
    """Uniformly at random, from the run's seed."""
    return rng.random(len(items)), {}


random_selection.needs = set()


@SELECTORS.register("max_entropy")
def max_entropy(items, params, rng):
    """The mean entropy of the student's next-token distribution over its answer tokens (top-10 log-probs)."""
    return np.array([i.entropy for i in items]), {}


max_entropy.needs = {"entropy"}


@SELECTORS.register("least_confidence")
def least_confidence(items, params, rng):
    """1 - the probability of the student's greedy answer tokens."""
    return np.array([1 - i.confidence for i in items]), {}


least_confidence.needs = set()


@SELECTORS.register("disagreement")
def disagreement(items, params, rng):
    """Answer disagreement over K sampled explanations (EGSS's inter term alone)."""
    return np.array([inter_uncertainty(i) for i in items]), {}


disagreement.needs = {"samples"}


@SELECTORS.register("self_confidence")
def self_confidence(items, params, rng):
    """1 - the student's own P(" Yes") against P(" No") that its answer is right."""
    return np.array([1 - i.self_confidence for i in items]), {}


self_confidence.needs = {"self"}


# ---------------------------------------------------------------------------------------------- annotators


@dataclass
class Annotation:
    example: Example
    steps: list[str]
    answer: str | None
    accepted: int | None = None  # CLEAR: how many of the student's steps the teacher accepted

    def status(self, keep: str) -> str:
        if self.answer is None:
            return "unparsable"
        if keep == "correct" and self.answer != parse_number(str(self.example.gold)):
            return "dropped"
        return "kept"

    def as_example(self) -> Example:
        return dataclasses.replace(self.example, rationale="\n".join(self.steps), gold=self.answer)


def parse_explanation(text: str, splitter: str = "newline") -> tuple[list[str], str | None]:
    """Steps before "Answer:", and the number after it (None when there is no "Answer:" or no number)."""
    head, found, tail = text.partition(ANSWER)
    answer = parse_number(tail.strip().splitlines()[0]) if found and tail.strip() else None
    return split_steps(head, splitter), answer


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).lower() == " ".join(b.split()).lower()


@ANNOTATORS.register("teacher_cot")
def teacher_cot(teacher, fmt: CotFormat, items: list[Explained], params: dict, chat: bool) -> list[Annotation]:
    """The teacher writes the whole explanation and the answer itself."""
    if chat:
        prompts = [f"{CHAT_INSTRUCTION}\n\n{fmt.question(i.example)}" for i in items]
        texts = [g[0].text for g in teacher.generate(prompts, max_tokens=fmt.max_new_tokens + ANSWER_TOKENS)]
    else:
        texts = write_to_answer(teacher, fmt, [fmt.prompt(i.example) for i in items])
    return [Annotation(i.example, *parse_explanation(t, params["step_splitter"])) for i, t in zip(items, texts)]


def write_to_answer(teacher, fmt: CotFormat, contexts: list[str]) -> list[str]:
    """A local teacher's reasoning from each context up to its "Answer:", then its answer line: two generations, as
    cot scoring reads a model, so no budget is spent past the answer (a fine-tuned model does not stop there). A
    reasoning that runs out of tokens before "Answer:" is returned as it is: without an answer, unparsable."""
    reasoning = [g[0] for g in teacher.generate(contexts, max_tokens=fmt.max_new_tokens, stop=[ANSWER])]
    finished = [k for k, g in enumerate(reasoning) if g.stopped_by == ANSWER]
    answers = teacher.generate([contexts[k] + reasoning[k].text + ANSWER for k in finished], max_tokens=ANSWER_TOKENS,
                               stop=["\n"]) if finished else []
    texts = [g.text for g in reasoning]
    for k, answer in zip(finished, answers):
        texts[k] += ANSWER + answer[0].text
    return texts


@ANNOTATORS.register("clear")
def clear(teacher, fmt: CotFormat, items: list[Explained], params: dict, chat: bool) -> list[Annotation]:
    """CLEAR: the teacher checks the student's steps in order, keeps the accepted prefix and writes the rest."""
    return clear_chat(teacher, fmt, items, params) if chat else clear_local(teacher, fmt, items, params)


def clear_local(teacher, fmt: CotFormat, items: list[Explained], params: dict) -> list[Annotation]:
    """A white-box teacher: step i is accepted when the teacher's own greedy next step is the same (`check:
    greedy`) or when its mean token log-prob under the teacher clears the threshold (`check: likelihood`); the
    checks run for every question at once, step by step. The rest is the teacher's greedy continuation."""
    prompts = [fmt.prompt(i.example) for i in items]
    accepted: list[list[str]] = [[] for _ in items]
    active = [k for k, i in enumerate(items) if i.steps]
    step = 0
    while active:
        contexts = [_step_context(prompts[k], accepted[k]) for k in active]
        proposals = [items[k].steps[step] for k in active]
        if params["check"] == "greedy":
            written = [g[0].text for g in teacher.generate(contexts, max_tokens=64, stop=["\n"])]
            verdicts = [_same(w, p) for w, p in zip(written, proposals)]
        else:
            verdicts = _likely(teacher, contexts, proposals, params["likelihood_threshold"])
        still = []
        for k, ok in zip(active, verdicts):
            if ok:
                accepted[k].append(items[k].steps[step])
                if step + 1 < len(items[k].steps):
                    still.append(k)
        active, step = still, step + 1
    rests = write_to_answer(teacher, fmt, [_step_context(p, a) for p, a in zip(prompts, accepted)])
    annotations = []
    for item, kept, rest in zip(items, accepted, rests):
        steps, answer = parse_explanation(rest, params["step_splitter"])
        annotations.append(Annotation(item.example, kept + steps, answer, len(kept)))
    return annotations


def _step_context(prompt: str, accepted: list[str]) -> str:
    """Where the teacher writes its next step: after "Reasoning:", or after the accepted steps and a newline."""
    return prompt if not accepted else prompt + " " + "\n".join(accepted) + "\n"


def _likely(teacher, contexts: list[str], steps: list[str], threshold: float) -> list[bool]:
    requests = [(c, (" " if c.endswith(":") else "") + s) for c, s in zip(contexts, steps)]
    lengths = [len(teacher.encode_pair(c, s)[1]) for c, s in requests]
    return [ll / max(n, 1) >= threshold for (ll, _), n in zip(teacher.loglikelihood(requests), lengths)]


def clear_chat(teacher, fmt: CotFormat, items: list[Explained], params: dict) -> list[Annotation]:
    """The poster's multi-turn prompt, for a chat or endpoint teacher: one conversation per question, one turn per
    step until the teacher rejects one ("No, we should proceed as ..., the final answer is ..."), then its answer."""
    conversations = [[{"role": "user", "content": _first_turn(fmt.question(i.example), i.steps)}] for i in items]
    accepted: list[list[str]] = [[] for _ in items]
    done: dict[int, Annotation] = {}
    active = list(range(len(items)))
    while active:
        replies = [g[0].text for g in teacher.generate([conversations[k] for k in active],
                                                       max_tokens=fmt.max_new_tokens + ANSWER_TOKENS)]
        still = []
        for k, reply in zip(active, replies):
            conversations[k].append({"role": "assistant", "content": reply})
            verdict, body = _verdict(reply)
            step = len(accepted[k])
            if verdict == "yes" and step < len(items[k].steps):
                accepted[k].append(body or items[k].steps[step])
                follow = (f"Can we continue with this step: {items[k].steps[step + 1]}? If yes, give me your step. "
                          "If no, give me the rest steps and the final answer."
                          if step + 1 < len(items[k].steps) else "Then what is the final answer?")
                conversations[k].append({"role": "user", "content": follow})
                still.append(k)
            else:  # a rejection with the rest, or the final answer after every step was accepted
                steps, answer = _rest_and_answer(body if verdict == "no" else reply, params["step_splitter"])
                done[k] = Annotation(items[k].example, accepted[k] + steps, answer, len(accepted[k]))
        active = still
    return [done[k] for k in range(len(items))]


def _first_turn(question: str, steps: list[str]) -> str:
    if not steps:
        return f"For question: {question}\nLet's think step by step. Give me the steps and the final answer."
    return (f"For question: {question}\nLet's think step by step. Can we start with this step: {steps[0]}? If yes, "
            "give me your step. If no, give me the rest steps and the final answer.")


def _verdict(reply: str) -> tuple[str, str]:
    """("yes" | "no" | "other", the reply after its Yes/No)."""
    match = re.match(r"\s*(yes|no)\b[\s,.:;!-]*(.*)", reply, flags=re.I | re.S)
    return (match.group(1).lower(), match.group(2).strip()) if match else ("other", reply.strip())


def _rest_and_answer(text: str, splitter: str) -> tuple[list[str], str | None]:
    """Steps and the final answer from a teacher's reply: "we should proceed as <steps>, the final answer is <a>"."""
    text = re.sub(r"^\s*we should proceed as\s*", "", text, flags=re.I)
    match = re.search(r"the final answer is", text, flags=re.I)
    if not match:
        return parse_explanation(text, splitter)
    return split_steps(text[:match.start()].rstrip(" ,.;"), splitter), parse_number(text[match.end():])


# ---------------------------------------------------------------------------------------------- the method


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


# ---------------------------------------------------------------------------------------------- reports


def budget_curves(view: RunView):
    """Per ELAD variant, round and seed: the teacher tokens spent before the round's student, and its accuracy and
    ECE averaged over the ID tasks and over the OOD tasks."""
    import pandas as pd

    rows, variants = [], set(view.records("elad"))
    for name, entry in view.manifest.methods.items():
        main = entry.round_of or name
        if main not in variants:
            continue
        for seed, run in entry.runs.items():
            results = view.results[(view.results["method"] == name) & (view.results["seed"] == seed)]
            for domain in ("id", "ood"):
                part = results[results["domain"] == domain]
                if part.empty:
                    continue
                rows.append({"variant": main, "method": name, "round": run.cost.get("round"), "seed": seed,
                             "domain": domain, "teacher_tokens": run.cost.get("teacher_tokens", 0),
                             "teacher_calls": run.cost.get("teacher_calls", 0), "acc": part["acc"].mean(),
                             "ece": part["ece"].mean()})
    return pd.DataFrame(rows)


@register_table("elad_budget")
def budget_table(view: RunView):
    """Per ELAD variant: accuracy and ECE by round with the teacher budget (means over seeds), the area under the
    accuracy-budget curve (trapezoids over teacher tokens, divided by the budget range), and the budget at which
    accuracy first reaches 90% of full-data distillation (`cot_distill`), when the run has it and it clears chance.

    Chance is read as the leaderboard reads it (`full_pool_targets`)."""
    import pandas as pd

    curves = budget_curves(view)
    if curves.empty:
        return None
    means = curves.groupby(["variant", "domain", "round"], as_index=False)[["teacher_tokens", "teacher_calls", "acc",
                                                                            "ece"]].mean()
    distilled = full_pool_targets(view)
    rows = []
    for (variant, domain), part in means.groupby(["variant", "domain"]):
        part = part.sort_values("round")
        x, y = part["teacher_tokens"].to_numpy(float), part["acc"].to_numpy(float)
        area = float(np.trapz(y, x) / (x[-1] - x[0])) if len(x) > 1 and x[-1] > x[0] else float(y.mean())
        full = distilled.get(domain, 0.0)  # a full-data student at 0% gives no target to reach
        reached = part[part["acc"] >= 0.9 * full] if full > 0 else part.iloc[:0]
        rows.append({"variant": variant, "domain": domain, "rounds": len(part),
                     "acc_by_round": " ".join(f"{100 * a:.1f}" for a in y),
                     "ece_by_round": " ".join(f"{100 * e:.1f}" for e in part["ece"]),
                     "teacher_tokens_by_round": " ".join(str(int(t)) for t in x), "acc_budget_area": area,
                     "tokens_to_90pct_full": int(reached["teacher_tokens"].iloc[0]) if len(reached) else None})
    return pd.DataFrame(rows)


def full_pool_targets(view: RunView) -> dict[str, float]:
    """Per domain, the accuracy of `cot_distill` (the student of the whole pool), mean over seeds; 0 where that
    student is at chance on any of the domain's tasks, pooled over seeds as the leaderboard marks it (90% of noise
    is not a budget)."""
    from trustbench.harness.statistics import cell_at_chance, majority_rates

    rows = view.results[view.results["method"] == "cot_distill"]
    majority = majority_rates(rows, "cot_distill")
    draws = _round_draws(view, {"cot_distill"})[1] if majority else None
    return {domain: 0.0 if majority and cell_at_chance(draws, "cot_distill", sorted(set(part["task"])), majority)
            else float(part["acc"].mean()) for domain, part in rows.groupby("domain")}


@register_table("elad_main")
def main_table(view: RunView):
    """The poster's main table on this run's tasks: the final student's accuracy (%, mean over seeds) for each
    selector + annotator, under the teacher's and the untrained student's, with the full-pool distillation last."""
    import pandas as pd

    settings = {name: r["settings"] for name, r in view.records("elad").items()}
    if not settings:
        return None
    labels = {"teacher": "teacher", "zeroshot": "student zero-shot",
              **{name: f"{s['selector']} + {s['annotator']} ({name})" for name, s in settings.items()},
              "cot_distill": "full pool + teacher CoT (cot_distill)"}
    results = view.results[view.results["method"].isin(labels)]
    table = results.groupby(["method", "task"])["acc"].agg(["mean", "count"]).reset_index()
    wide = table.pivot(index="method", columns="task", values="mean").mul(100).round(2)
    wide.insert(0, "seeds", table.groupby("method")["count"].min())
    wide = wide.reindex([m for m in labels if m in wide.index])
    wide.index = [labels[m] for m in wide.index]
    return wide.rename_axis("selection + annotation").reset_index()


# The poster's two claims: EGSS against the other selectors, CLEAR against teacher-written explanations.
CLAIMS = {"selector": "egss", "annotator": "clear"}
CLEAR_ONLY = ("check", "likelihood_threshold")  # settings only CLEAR reads


def claim_pairs(settings: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(claim, variant, against) for every two ELAD variants whose settings differ in one thing only: the selector,
    with EGSS on the variant's side, or the annotator, with CLEAR on it (CLEAR's own settings are not compared
    with an annotator that does not read them). Same n0, B, R: the same budget in questions, round by round."""
    pairs = []
    for variant, mine in settings.items():
        for against, theirs in settings.items():
            both_clear = mine.get("annotator") == theirs.get("annotator") == "clear"
            differs = [key for key in sorted(set(mine) | set(theirs))
                       if mine.get(key) != theirs.get(key) and (both_clear or key not in CLEAR_ONLY)]
            key = differs[0] if len(differs) == 1 else None
            if key in CLAIMS and mine.get(key) == CLAIMS[key]:
                pairs.append((f"{mine[key]} vs {theirs[key]}", variant, against))
    return pairs


def round_students(view: RunView) -> dict[str, dict[int, str]]:
    """Per ELAD variant: the method name of its student after each round (the final one is round R)."""
    found: dict[str, dict[int, str]] = {}
    for name, entry in view.manifest.methods.items():
        for run in entry.runs.values():
            if "round" in run.cost:
                found.setdefault(entry.round_of or name, {})[int(run.cost["round"])] = name
                break
    return found


@register_table("elad_claims")
def claims_table(view: RunView):
    """The poster's claims, round by round at equal budget: for each pair of `claim_pairs`, round and domain, the
    paired difference variant - against in accuracy and ECE (fractions) with its 95% interval from the bootstrap
    over test examples and seeds (`harness.statistics`, the comparison's), both students' teacher tokens, and
    whether either student is at chance there (`cell_at_chance`: its accuracy's lower bound over examples and seeds
    does not clear the majority rate, the leaderboard's mark). `finding` is an interval that excludes 0 between
    students that are not at chance: a difference between students at chance is noise, not evidence for or against
    the claim."""
    import pandas as pd

    from trustbench.harness.statistics import cell_at_chance, interval, majority_rates

    pairs = claim_pairs({name: r["settings"] for name, r in view.records("elad").items()})
    rounds = round_students(view)
    pairs = [(claim, a, b) for claim, a, b in pairs if a in rounds and b in rounds]
    if not pairs:
        return None
    names = {name for _, a, b in pairs for name in (*rounds[a].values(), *rounds[b].values())}
    results, draws = _round_draws(view, names)

    def tokens(name: str) -> float:
        return float(np.mean([run.cost.get("teacher_tokens", 0) for run in view.manifest.methods[name].runs.values()]))

    rows = []
    for claim, variant, against in pairs:
        for r in sorted(set(rounds[variant]) & set(rounds[against])):
            mine, theirs = rounds[variant][r], rounds[against][r]
            for domain in ("id", "ood"):
                scope = results[results["domain"] == domain]
                tasks = sorted(set(scope.loc[scope["method"] == mine, "task"])
                               & set(scope.loc[scope["method"] == theirs, "task"]))
                if not tasks:
                    continue
                chance = any(cell_at_chance(draws, m, tasks, majority_rates(scope, m)) for m in (mine, theirs))
                for metric in ("acc", "ece"):
                    (a, a_values), (b, b_values) = (draws.average(m, tasks, metric) for m in (mine, theirs))
                    lo, hi = interval(a - b, a_values - b_values)
                    rows.append({"claim": claim, "variant": variant, "against": against, "round": r,
                                 "domain": domain, "metric": metric, "tasks": len(tasks),
                                 "seeds": int(scope.loc[scope["method"] == mine, "seed"].nunique()),
                                 "variant_tokens": tokens(mine), "against_tokens": tokens(theirs),
                                 "variant_mean": a, "against_mean": b, "diff": a - b, "diff_lo": lo, "diff_hi": hi,
                                 "at_chance": chance, "finding": not chance and (lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def _round_draws(view: RunView, names: set[str]):
    """The results rows of the students `names` and their bootstrap over test examples and seeds (the
    comparison's resamples, so a band or a difference here means what it means in the report)."""
    from trustbench.harness.statistics import bootstrap
    from trustbench.harness.store import read_cell

    results = view.results[view.results["method"].isin(names)]
    settings = view.manifest.metrics
    return results, bootstrap(results, lambda m, t, s: read_cell(view.run.cell_path("test", m, t, s)),
                              settings.n_boot, settings.bins, settings.equal_mass)


def budget_bands(view: RunView):
    """Per ELAD variant and round, on the ID tasks: the mean teacher tokens spent, and accuracy and ECE (fractions)
    with the 95% interval from the bootstrap over test examples and seeds (with 3 seeds a range over seeds would
    say little, and nothing of the test set's size)."""
    import pandas as pd

    from trustbench.harness.statistics import interval

    curves = budget_curves(view)
    curves = curves[curves["domain"] == "id"] if not curves.empty else curves
    if curves.empty:
        return pd.DataFrame()
    results, draws = _round_draws(view, set(curves["method"]))
    results = results[results["domain"] == "id"]
    rows = []
    for (variant, r), part in curves.groupby(["variant", "round"]):
        method = part["method"].iloc[0]
        row = {"variant": variant, "round": r, "method": method, "teacher_tokens": part["teacher_tokens"].mean()}
        for metric in ("acc", "ece"):
            point, values = draws.average(method, sorted(set(results.loc[results["method"] == method, "task"])),
                                          metric)
            row[metric], (row[f"{metric}_lo"], row[f"{metric}_hi"]) = point, interval(point, values)
        rows.append(row)
    return pd.DataFrame(rows)


@register_figure("elad_budget")
def budget_figure(view: RunView):
    """Accuracy and ECE (ID tasks) against the teacher tokens spent, per variant, with `budget_bands`' intervals."""
    from matplotlib.figure import Figure

    bands = budget_bands(view)
    if bands.empty:
        return None
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    axes = fig.subplots(1, 2)
    for variant, part in bands.groupby("variant"):
        for ax, metric in zip(axes, ("acc", "ece")):
            line, = ax.plot(part["teacher_tokens"], 100 * part[metric], marker="o", markersize=3, linewidth=1,
                            label=variant)
            ax.fill_between(part["teacher_tokens"], 100 * part[f"{metric}_lo"], 100 * part[f"{metric}_hi"],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    id_rows = view.results[view.results["domain"] == "id"]
    if "majority" in id_rows and id_rows["majority"].notna().any():  # chance, what a student must clear
        axes[0].axhline(100 * id_rows.groupby("task")["majority"].first().mean(), color="grey", linestyle="--",
                        linewidth=1, label="majority rate")
    for ax, label in zip(axes, ("accuracy (%, ID)", "ECE (%, ID)")):
        ax.set_xlabel("teacher tokens spent")
        ax.set_ylabel(label)
        ax.grid(True, linewidth=0.3, alpha=0.5)
    axes[0].set_title("Accuracy against teacher budget (band: 95% interval)")
    axes[1].set_title("ECE against teacher budget")
    handles, labels = axes[0].get_legend_handles_labels()
    rows = -(-len(labels) // 4)  # below both panels: an ablation run's eight variants hide the curves inside one
    fig.set_figheight(FIGSIZE[1] + 0.15 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.15 * rows / fig.get_figheight(), 1, 1))
    return fig


def egss_term_values(view: RunView):
    """EGSS's two terms over the pool questions each round scored, per EGSS variant, pooled over seeds: one row per
    (variant, seed, round, term, value)."""
    import pandas as pd

    rows = []
    for name, entry in view.manifest.methods.items():
        for seed, run in entry.runs.items():
            for scored in run.records.get("elad", {}).get("rounds", []):
                for term in ("intra", "inter"):
                    rows += [{"variant": name, "seed": seed, "round": scored["round"], "term": term, "value": v}
                             for v in scored.get(term) or []]
    return pd.DataFrame(rows, columns=["variant", "seed", "round", "term", "value"])


@register_figure("elad_uncertainty")
def uncertainty_figure(view: RunView):
    """The distributions of EGSS's two terms over the pool, round by round: a box per EGSS variant (pooled over
    seeds), side by side, the mean as a dot."""
    from matplotlib.figure import Figure

    terms = egss_term_values(view)
    if terms.empty:
        return None
    variants = sorted(set(terms["variant"]))
    width = 0.8 / len(variants)
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    axes = fig.subplots(1, 2)
    for ax, term in zip(axes, ("intra", "inter")):
        for i, variant in enumerate(variants):
            part = terms[(terms["term"] == term) & (terms["variant"] == variant)].groupby("round")["value"]
            rounds = sorted(part.groups)
            positions = [r - 0.4 + width * (i + 0.5) for r in rounds]
            color = f"C{i}"
            ax.boxplot([part.get_group(r) for r in rounds], positions=positions, widths=width * 0.8,
                       showfliers=False, boxprops={"color": color}, medianprops={"color": color},
                       whiskerprops={"color": color}, capprops={"color": color})
            ax.plot(positions, [part.get_group(r).mean() for r in rounds], "o", color=color, markersize=3,
                    label=variant)
        ax.set_xticks(sorted(set(terms["round"])), [str(r) for r in sorted(set(terms["round"]))])
    for ax, term in zip(axes, ("intra-explanation", "inter-explanation")):
        ax.set_xlabel("round")
        ax.set_ylabel(f"{term} uncertainty")
        ax.grid(True, linewidth=0.3, alpha=0.5)
    axes[0].legend(frameon=False, fontsize="small")
    fig.suptitle("EGSS terms over the pool, per round (boxes pooled over seeds; dots: means)")
    fig.tight_layout()
    return fig

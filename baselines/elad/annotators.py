"""ELAD's annotators (`annotator:`, registered in `harness.registry.ANNOTATORS`): CLEAR and teacher CoT, the
explanations a question in the annotated set gets."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from trustbench.baselines.elad.student import Explained, split_steps
from trustbench.harness.registry import ANNOTATORS
from trustbench.harness.scoring import ANSWER, ANSWER_TOKENS, CotFormat, parse_number
from trustbench.harness.types import Example

CHAT_INSTRUCTION = "Solve the problem step by step, one step a line, then write 'Answer: <the answer>'."


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

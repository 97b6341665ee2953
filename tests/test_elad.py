"""ELAD: each selector's score on hand-made student outputs, what the student's outputs become (`explain`) on a
scripted student, CLEAR against a scripted teacher (local and chat), the teacher budget per round of a real run,
a run killed mid-round that resumes without asking the teacher anything twice, and bad parameters refused before
anything is written."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustbench.baselines import elad
from trustbench.baselines.elad.annotators import Annotation, clear_chat, clear_local, teacher_cot
from trustbench.baselines.elad.student import Explained, explain, split_steps
from trustbench.harness.engines import Generation
from trustbench.harness.registry import SELECTORS
from trustbench.harness.scoring import ANSWER, CotFormat
from trustbench.harness.types import Example
from teacher_runs import kill_and_resume, refused

FMT = CotFormat()


def question(i: int, gold: str = "9") -> Example:
    return Example(f"q{i}", f"Question {i}: what is 3 + 4 + 2?", (), gold)


def item(**fields) -> Explained:
    return Explained(question(0), fields.pop("steps", ["a", "b"]), fields.pop("answer", "9"),
                     fields.pop("confidence", 0.5), **fields)


# Four hand-made student outputs. intra (prefix): the share of steps i whose prefix answer differs from prefix i-1's;
# intra (removal): the share of steps whose removal changes the all-steps answer (answers[0]); inter: 1 - top votes/K.
ITEMS = [
    item(step_answers=["1", "1", "2", "2"], samples=["2", "2", "3", "2"], entropy=0.3, confidence=0.9,
         self_confidence=0.8),  # prefix 1/3, removal 2/3, inter 1/4
    item(step_answers=["5"], samples=[], entropy=1.2, confidence=0.2, self_confidence=0.1),  # no steps: 0, 0
    item(step_answers=["4", "4", "7", "4"], samples=["1", "2", "3", "4"], entropy=0.0, confidence=1.0,
         self_confidence=0.5),  # prefix 2/3, removal 1/3, inter 3/4
    item(step_answers=[None, "3", "3"], samples=["3", "3"], entropy=0.7, confidence=0.6,
         self_confidence=1.0),  # prefix 1/2, removal 1 ("3" != None twice), inter 0
]
PARAMS = {**elad.DEFAULTS}

SELECTOR_TABLE = [
    ("egss", {}, [1 / 3 + 1 / 4, 0, 2 / 3 + 3 / 4, 1 / 2]),
    ("egss", {"egss_weight": 2.0}, [1 / 3 + 2 / 4, 0, 2 / 3 + 6 / 4, 1 / 2]),
    ("egss", {"egss_terms": "intra"}, [1 / 3, 0, 2 / 3, 1 / 2]),
    ("egss", {"egss_terms": "inter"}, [1 / 4, 0, 3 / 4, 0]),
    ("egss", {"egss_terms": "intra", "intra": "removal"}, [2 / 3, 0, 1 / 3, 1]),
    ("disagreement", {}, [1 / 4, 0, 3 / 4, 0]),
    ("max_entropy", {}, [0.3, 1.2, 0.0, 0.7]),
    ("least_confidence", {}, [0.1, 0.8, 0.0, 0.4]),
    ("self_confidence", {}, [0.2, 0.9, 0.5, 0.0]),
]


@pytest.mark.parametrize("name, params, expected", SELECTOR_TABLE)
def test_each_selector_scores_hand_made_outputs(name, params, expected):
    scores, terms = SELECTORS.get(name)(ITEMS, {**PARAMS, **params}, np.random.default_rng(0))
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    if name == "egss":  # both terms are kept whichever the score uses
        mode = params.get("intra", "prefix")
        assert terms["intra"] == pytest.approx({"prefix": [1 / 3, 0, 2 / 3, 1 / 2],
                                                "removal": [2 / 3, 0, 1 / 3, 1]}[mode])
        assert terms["inter"] == pytest.approx([1 / 4, 0, 3 / 4, 0])


def test_random_selection_is_the_seeded_generator_and_every_selector_says_what_it_reads():
    scores, terms = SELECTORS.get("random")(ITEMS, PARAMS, np.random.default_rng(7))
    np.testing.assert_array_equal(scores, np.random.default_rng(7).random(len(ITEMS)))
    assert terms == {}
    needs = {name: SELECTORS.get(name).needs for name in ("egss", "random", "max_entropy", "least_confidence",
                                                          "disagreement", "self_confidence")}
    assert needs == {"egss": {"samples", "steps"}, "random": set(), "max_entropy": {"entropy"},
                     "least_confidence": set(), "disagreement": {"samples"}, "self_confidence": {"self"}}


@pytest.mark.parametrize("text, splitter, steps", [
    ("3 + 4 = 7\n\n 7 + 2 =  9 \n", "newline", ["3 + 4 = 7", "7 + 2 = 9"]),
    ("First 3 + 4 = 7. Then 7 + 2 = 9! Done", "sentence", ["First 3 + 4 = 7.", "Then 7 + 2 = 9!", "Done"]),
    ("  ", "newline", []),
])
def test_split_steps(text, splitter, steps):
    assert split_steps(text, splitter) == steps


# ---------------------------------------------------------------------------------------------- scripted models


class Scripted:
    """An engine whose every generation is `script(prompt, stop, n)`: a text, a list of n texts, or a Generation.
    A text ends at the first stop string, as if the model wrote it next; each token gets log-prob log(0.5).
    Requests are recorded (`calls`: prompt and stop strings)."""

    def __init__(self, script):
        self.script, self.calls, self.tokenizer = script, [], None

    @property
    def asked(self) -> list:
        return [prompt for prompt, _ in self.calls]

    def generate(self, prompts, max_tokens=64, temperature=0.0, top_p=1.0, n=1, seed=0, stop=(), logprobs=False,
                 top_logprobs=0, chat=False):
        self.calls += [(list(p) if isinstance(p, list) else p, tuple(stop)) for p in prompts]  # a chat as asked
        out = []
        for prompt in prompts:
            texts = self.script(prompt, tuple(stop), n)
            texts = texts if isinstance(texts, list) else [texts]
            out.append([t if isinstance(t, Generation) else
                        Generation(t, tuple(range(len(t.split()) + 1)), (math.log(0.5),) * (len(t.split()) + 1)
                                   if logprobs else None, finish_reason="stop", stopped_by=stop[0] if stop else None)
                        for t in texts])
        return out


def student_script(prompt, stop, n):
    """The student writes "3 + 4 = 8\\n8 + 2 = 10"; after "Answer:" it answers the last number of the steps before
    it (3 without steps); its K samples reach 10, 10, 9, 10."""
    if prompt.endswith(ANSWER):
        numbers = re.findall(r"\d+", prompt.split(FMT.REASONING, 1)[1])
        return f" {numbers[-1] if numbers else 3}"
    if n > 1:
        return [f" 3 + 4 = 7\n7 + 2 = {a}" for a in (10, 10, 9, 10)]
    return " 3 + 4 = 8\n8 + 2 = 10\n"


def test_explain_reads_the_student_answers_after_each_prefix_and_over_samples():
    student = Scripted(student_script)
    params = {**PARAMS, "K": 4}
    (out,) = explain(student, FMT, [question(0)], {"steps", "samples"}, params, seed=0)
    assert out.steps == ["3 + 4 = 8", "8 + 2 = 10"] and out.answer == "10"
    assert out.confidence == pytest.approx(0.5)  # one answer token at log(0.5); the "\n" that stopped it left out
    assert out.step_answers == ["3", "8", "10"] and out.samples == ["10", "10", "9", "10"]
    assert elad.intra_uncertainty(out) == 1.0 and elad.inter_uncertainty(out) == pytest.approx(0.25)
    (removal,) = explain(student, FMT, [question(0)], {"steps"}, {**params, "intra": "removal"}, seed=0)
    assert removal.step_answers == ["10", "10", "8"]  # all steps; without step 1; without step 2


# The teacher's own explanation of every question: 3 + 4 = 7, 7 + 2 = 9, answer 9.
TEACHER_STEPS = ["3 + 4 = 7", "7 + 2 = 9"]


def local_teacher_script(prompt, stop, n):
    """A white-box teacher that, after its prompt and k accepted steps, writes its step k+1 (a check: stop "\\n"),
    or the rest of its steps (stop "Answer:"), and after "Answer:" its answer."""
    if prompt.endswith(ANSWER):
        return " 9"
    done = len(split_steps(prompt.split(FMT.REASONING, 1)[1]))
    lead = " " if done == 0 else ""
    if stop == ("\n",):
        return lead + (TEACHER_STEPS[done] if done < len(TEACHER_STEPS) else "Answer: 9")
    return lead + "".join(step + "\n" for step in TEACHER_STEPS[done:])


class LikelihoodTeacher(Scripted):
    """Scores a step 0 per token when it is the teacher's own next step, -5 per token otherwise."""

    def __init__(self):
        super().__init__(local_teacher_script)
        self.scored = []

    def encode_pair(self, context, continuation):
        return context.split(), continuation.split()

    def loglikelihood(self, requests):
        self.scored += list(requests)
        out = []
        for context, step in requests:
            done = len(split_steps(context.split(FMT.REASONING, 1)[1]))
            mine = done < len(TEACHER_STEPS) and step.strip() == TEACHER_STEPS[done]
            out.append((0.0 if mine else -5.0 * len(step.split()), mine))
        return out


CLEAR_CASES = [  # the student's steps -> the revised explanation, how many steps accepted
    (["3 + 4 = 7", "7 + 2 = 9"], TEACHER_STEPS, 2),  # all steps accepted: the teacher adds only the answer
    (["3 + 4 = 8", "8 + 2 = 10"], TEACHER_STEPS, 0),  # first step rejected: the teacher writes it all
    (["3 + 4 = 7", "7 + 2 = 10"], TEACHER_STEPS, 1),  # the second rejected: the first kept, the rest rewritten
    ([], TEACHER_STEPS, 0),  # no steps at all
]


@pytest.mark.parametrize("check", ["greedy", "likelihood"])
def test_clear_with_a_local_teacher_keeps_the_accepted_prefix_and_writes_the_rest(check):
    teacher = Scripted(local_teacher_script) if check == "greedy" else LikelihoodTeacher()
    items = [Explained(question(i), steps, "10", 0.5) for i, (steps, _, _) in enumerate(CLEAR_CASES)]
    annotations = clear_local(teacher, FMT, items, {**PARAMS, "check": check, "likelihood_threshold": -1.0})
    for annotation, (_, revised, accepted) in zip(annotations, CLEAR_CASES):
        assert annotation.steps == revised and annotation.answer == "9" and annotation.accepted == accepted
    # steps checked: both of the first, one of the second, two of the third, none of the empty one; then one
    # continuation per question
    checks = teacher.scored if check == "likelihood" else [p for p, stop in teacher.calls if stop == ("\n",)
                                                            and not p.endswith(ANSWER)]
    writes = [stop for prompt, stop in teacher.calls if stop != ("\n",) or prompt.endswith(ANSWER)]
    assert len(checks) == 5 and writes == [(ANSWER,)] * 4 + [("\n",)] * 4  # the rest to "Answer:", then the answer


def chat_teacher(replies: dict[int, list[str]]):
    """A chat teacher that answers the conversation about question i with replies[i], turn by turn."""
    def script(conversation, stop, n):
        i = int(re.search(r"Question (\d+)", conversation[0]["content"]).group(1))
        return replies[i][sum(m["role"] == "assistant" for m in conversation)]
    return Scripted(script)


def test_clear_with_a_chat_teacher_follows_the_posters_conversation():
    items = [Explained(question(0), ["3 + 4 = 7", "7 + 2 = 9"], "9", 0.5),
             Explained(question(1), ["3 + 4 = 8", "8 + 2 = 10"], "10", 0.5),
             Explained(question(2), ["3 + 4 = 7"], "7", 0.5)]
    teacher = chat_teacher({
        0: ["Yes, adding 3 and 4 gives 7.", "Yes. Adding 2 to 7 gives 9.", "The final answer is 9."],
        1: ["No, we should proceed as 3 + 4 = 7\n7 + 2 = 9, the final answer is 9."],
        2: ["I cannot tell."]})
    first, rejected, unparsable = clear_chat(teacher, FMT, items, PARAMS)
    assert (first.steps, first.answer, first.accepted) == (["adding 3 and 4 gives 7.", "Adding 2 to 7 gives 9."],
                                                            "9", 2)  # accepted steps, re-worded by the teacher
    assert (rejected.steps, rejected.answer, rejected.accepted) == (TEACHER_STEPS, "9", 0)
    assert unparsable.answer is None and unparsable.status("all") == "unparsable"
    conversation = next(p for p in teacher.asked if "Question 0" in p[0]["content"] and len(p) == 5)
    assert conversation[0]["content"] == ("For question: Question 0: what is 3 + 4 + 2?\nLet's think step by step. "
                                          "Can we start with this step: 3 + 4 = 7? If yes, give me your step. If no, "
                                          "give me the rest steps and the final answer.")
    assert conversation[2]["content"].startswith("Can we continue with this step: 7 + 2 = 9?")
    assert conversation[4]["content"] == "Then what is the final answer?"


def test_teacher_cot_and_the_keep_rule():
    def script(prompt, stop, n):
        if "Question 2" in prompt:  # runs out of tokens before "Answer:"
            return Generation(" 3 + 4 = 7\n7 +", finish_reason="length")
        return " 9" if prompt.endswith(ANSWER) else " 3 + 4 = 7\n7 + 2 = 9\n"

    teacher = Scripted(script)
    right, wrong, unfinished = teacher_cot(teacher, FMT, [Explained(question(i, gold), [], None, 0) for i, gold in
                                                          enumerate(["9", "8", "9"])], PARAMS, False)
    assert right.steps == TEACHER_STEPS and right.answer == "9"
    assert [right.status("correct"), wrong.status("correct"), wrong.status("all")] == ["kept", "dropped", "kept"]
    assert right.as_example().rationale == "3 + 4 = 7\n7 + 2 = 9" and right.as_example().gold == "9"
    assert teacher.asked == [FMT.prompt(question(i)) for i in range(3)] + [
        FMT.prompt(question(i)) + " 3 + 4 = 7\n7 + 2 = 9\n" + ANSWER for i in range(2)]  # no answer asked of the third
    assert unfinished.answer is None and unfinished.status("all") == "unparsable"
    assert Annotation(question(0), [], None).status("all") == "unparsable"


# ---------------------------------------------------------------------------------------------- real runs


SUITE = """teacher: tiny-random
student: tiny-random-l1
backend: hf
tasks: [smoke_cot_id, smoke_cot]
methods:
  - {name: elad, method: elad, n0: 4, B: 4, R: 2, K: 2, annotator: %s, keep: all}
train: {epochs: 1, lr: 1.0e-3, batch_size: 8, max_length: 128}
metrics: {bins: 10, n_boot: 20}
"""


def run(tmp: Path, name: str, annotator: str, monkeypatch) -> Path:
    from trustbench.harness.config import load_suite
    from trustbench.runner import run_suite

    monkeypatch.setenv("TRUSTBENCH_CACHE", str(tmp / f"cache-{name}"))
    (tmp / f"{name}.yaml").write_text(SUITE % annotator)
    run_suite(load_suite(str(tmp / f"{name}.yaml")), tmp / name, log=lambda line: None)
    return tmp / name


@pytest.mark.slow
def test_every_round_is_a_scored_cell_with_the_teacher_budget_spent_before_it(tmp_path, monkeypatch):
    """teacher_cot asks the teacher once per question: n0 seed questions, then B per round."""
    from trustbench.harness.store import RunDir

    out = run(tmp_path, "cot", "teacher_cot", monkeypatch)
    results = pd.read_csv(out / "results.csv")
    assert {"elad@r0", "elad@r1", "elad"} <= set(results.method)
    manifest = RunDir(out).load()
    calls = [manifest.methods[m].runs[0].cost["teacher_calls"] for m in ("elad@r0", "elad@r1", "elad")]
    assert calls == [4, 8, 12]
    record = manifest.methods["elad"].runs[0].records["elad"]
    assert [r["budget_before"]["teacher_calls"] for r in record["rounds"]] == [4, 8]
    assert record["final_budget"]["teacher_calls"] == 12 and [r["pool_left"] for r in record["rounds"]] == [36, 32]
    assert [r["accepted_steps"] for r in record["rounds"]] == [[None] * 4] * 2  # teacher CoT accepts no student step
    assert all(r["kept"] + r["dropped"] + r["unparsable"] == 4 for r in record["rounds"])
    picked = [pd.read_json(f, lines=True) for f in sorted((out / "rounds").rglob("selection.jsonl"))]
    assert [len(p) for p in picked] == [36, 32] and all(p.picked.sum() == 4 for p in picked)


@pytest.mark.slow
def test_a_run_killed_mid_round_resumes_without_asking_the_teacher_anything_twice(tmp_path, monkeypatch):
    """Killed after half the teacher's requests of a whole run, then resumed: every request the teacher answered is
    answered once, the resumed run asks exactly the rest, and the results are the whole run's."""
    whole_keys, stored = kill_and_resume(tmp_path, monkeypatch, lambda name: run(tmp_path, name, "clear", monkeypatch))
    whole = tmp_path / "whole"
    assert len(whole_keys) == len(set(whole_keys)) > 8
    assert len(stored) == len(set(stored)) and sorted(stored) == sorted(whole_keys)
    results = [pd.read_csv(d / "results.csv").drop(columns="suite") for d in (tmp_path / "killed", whole)]
    pd.testing.assert_frame_equal(*results)


BAD = "teacher: tiny-random\nstudent: tiny-random-l1\nbackend: hf\ntasks: [%s, smoke_cot]\nmethods:\n  - %s\n"


@pytest.mark.parametrize("task, method, message", [
    ("smoke_cot_id", "{method: elad, n0: 4, B: 20, R: 2}", "n0 + R x B = 44 questions, more than the pool's 40"),
    ("smoke_cot_id", "{method: elad, R: 0}", "R must be a whole number >= 1, got 0"),
    ("smoke_cot_id", "{method: elad, selector: disagreement, K: 1}", "K must be at least 2, got 1"),
    ("smoke_cot_id", "{method: elad, selector: egss, temperature: 0}", "temperature > 0"),
    ("smoke_cot_id", "{method: elad, selector: nonsense}", "nonsense"),
    ("smoke_cot_id", "{method: elad, refit: sometimes}", "refit must be one of scratch, continue"),
    ("smoke_id", "{method: elad}", "needs a chain-of-thought ID task with a pool"),
    ("smoke_id", "{method: cot_distill}", "needs a chain-of-thought ID task with a pool"),
])
def test_bad_parameters_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, task, method,
                                                                      message):
    assert message in refused(tmp_path, monkeypatch, capsys, BAD % (task, method))


def synthetic_view(seeds=(0, 1)):
    """Two ELAD rounds and the final student, over `seeds`: ID accuracy 20, 40, 60% (+1 point on seed 1) after 100,
    300, 500 teacher tokens; the full-pool student at 50%; the teacher at 80%."""
    from trustbench.harness.plots import RunView
    from trustbench.harness.store import Manifest, MethodEntry, SeedRun

    entries, rows = {}, []
    for name, round_index, acc, tokens in [("elad@r0", 0, 0.2, 100), ("elad@r1", 1, 0.4, 300), ("elad", 2, 0.6, 500)]:
        runs = {}
        for seed in seeds:
            records = {"elad": {"settings": {"selector": "egss", "annotator": "clear"}, "rounds": []}} \
                if name == "elad" else {}
            runs[seed] = SeedRun(checkpoint="x", cost={"round": round_index, "teacher_tokens": tokens,
                                                       "teacher_calls": tokens // 10}, records=records)
            rows += [{"method": name, "seed": seed, "task": task, "domain": domain, "acc": acc + 0.01 * seed,
                      "ece": 0.1} for task, domain in (("sum", "id"), ("sum_long", "ood"))]
        entries[name] = MethodEntry(method="elad", round_of=None if name == "elad" else "elad", runs=runs)
    rows += [{"method": m, "seed": s, "task": "sum", "domain": "id", "acc": a, "ece": 0.1}
             for m, a in (("cot_distill", 0.5), ("teacher", 0.8)) for s in seeds]
    manifest = Manifest(suite="s", suite_hash="h", scoring={"mode": "letter", "confidence": "-"},
                        methods=entries)
    return RunView(None, manifest, pd.DataFrame(rows))


def test_the_budget_table_integrates_accuracy_over_tokens_and_finds_the_90_percent_point():
    table = elad.budget_table(synthetic_view()).set_index("domain")
    ident = table.loc["id"]
    assert ident.acc_by_round == "20.5 40.5 60.5" and ident.teacher_tokens_by_round == "100 300 500"
    # trapezoids: (20.5 + 40.5) / 2 x 200 + (40.5 + 60.5) / 2 x 200, over 400 tokens
    assert ident.acc_budget_area == pytest.approx(0.405)
    assert ident.tokens_to_90pct_full == 500  # 90% of the full-pool 50% is 45%: first reached after 500 tokens
    assert pd.isna(table.loc["ood"].tokens_to_90pct_full)  # no full-pool student was scored OOD


@pytest.mark.parametrize("right_by_seed, target", [
    ((72, 120), 0.48),  # seed 0 alone is at chance (72 of 200 against a majority of 30%), the pooled cell is not
    ((72, 50), 0.0),    # pooled over seeds too: a full-pool student at chance sets no target
])
def test_the_budget_target_is_at_chance_pooled_over_seeds_as_the_leaderboard_marks_it(tmp_path, right_by_seed,
                                                                                      target):
    view = claims_run(tmp_path)
    rows = []
    for seed, right in enumerate(right_by_seed):
        correct = np.arange(200) < right
        view.run.write_cell(("test", "cot_distill", "sum", seed), pd.DataFrame({
            "example_id": [f"q{i}" for i in range(200)], "gold": [0] * 200, "pred": np.where(correct, 0, 1),
            "confidence": [0.9] * 200, "probs": [[0.9, 0.1] if c else [0.1, 0.9] for c in correct],
            "correct": correct}))
        rows.append({"method": "cot_distill", "seed": seed, "task": "sum", "domain": "id", "acc": right / 200,
                     "ece": 0.1, "majority": 0.3, "at_chance": seed == 0})  # results.csv's per-seed reading
    view = type(view)(view.run, view.manifest, pd.concat([view.results, pd.DataFrame(rows)], ignore_index=True))
    assert elad.full_pool_targets(view) == {"id": pytest.approx(target)}
    table = elad.budget_table(view).set_index(["variant", "domain"])
    reached = table.loc[("elad", "id")].tokens_to_90pct_full  # elad: 60% in both rounds
    assert reached == 100 if target else pd.isna(reached)


def test_the_main_table_has_the_posters_layout():
    table = elad.main_table(synthetic_view()).set_index("selection + annotation")
    assert list(table.index) == ["teacher", "egss + clear (elad)", "full pool + teacher CoT (cot_distill)"]
    assert table.loc["egss + clear (elad)", "sum"] == pytest.approx(60.5) and table.loc["teacher", "seeds"] == 2


SETTINGS = {"a": {"selector": "egss", "annotator": "clear", "egss_terms": "both"},
            "b": {"selector": "random", "annotator": "clear", "egss_terms": "both"},
            "c": {"selector": "egss", "annotator": "teacher_cot", "egss_terms": "both"},
            "d": {"selector": "random", "annotator": "teacher_cot", "egss_terms": "both"},
            "e": {"selector": "egss", "annotator": "clear", "egss_terms": "intra"},
            "f": {"selector": "max_entropy", "annotator": "teacher_cot", "egss_terms": "intra"},
            "g": {"selector": "egss", "annotator": "clear", "egss_terms": "both", "check": "likelihood"}}


@pytest.mark.parametrize("names, pairs", [
    ("ab", [("egss vs random", "a", "b")]),
    ("ac", [("clear vs teacher_cot", "a", "c")]),
    ("abcd", [("egss vs random", "a", "b"), ("clear vs teacher_cot", "a", "c"), ("clear vs teacher_cot", "b", "d"),
              ("egss vs random", "c", "d")]),
    ("ae", []),  # EGSS's terms differ: an ablation, not a claim
    ("bd", [("clear vs teacher_cot", "b", "d")]),
    ("ef", []),  # two things differ
    ("bf", []),
    ("cg", [("clear vs teacher_cot", "g", "c")]),  # CLEAR's check is not compared with teacher CoT's
    ("ag", []),  # two CLEARs that differ in their check: an ablation
])
def test_claim_pairs_differ_in_the_selector_or_the_annotator_only(names, pairs):
    assert elad.claim_pairs({n: SETTINGS[n] for n in names}) == pairs


def claims_run(tmp_path: Path, chance: set[str] = frozenset()):
    """A stored run with three ELAD variants (elad: egss + clear, random_clear, egss_cot), rounds 0 and 1, seeds 0
    and 1, one ID and one OOD task of 20 questions. Right answers: elad and egss_cot the first 12 of 20 on every
    task, seed and round; random_clear the first 6 in round 0 and the first 12 in round 1 (the final student)."""
    from trustbench.harness.plots import RunView
    from trustbench.harness.store import Manifest, MethodEntry, RunDir, SeedRun

    run, entries, rows = RunDir(tmp_path), {}, []
    variants = {"elad": ("egss", "clear"), "random_clear": ("random", "clear"), "egss_cot": ("egss", "teacher_cot")}
    for variant, (selector, annotator) in variants.items():
        for name, r in ((f"{variant}@r0", 0), (variant, 1)):
            right = 6 if (variant, r) == ("random_clear", 0) else 12
            runs = {}
            for seed in (0, 1):
                record = {"elad": {"settings": {"selector": selector, "annotator": annotator}}} if r else {}
                runs[seed] = SeedRun(checkpoint="x", cost={"round": r, "teacher_tokens": 100 * (r + 1)},
                                     records=record)
                for task, domain in (("sum", "id"), ("sum_long", "ood")):
                    correct = np.arange(20) < right
                    frame = pd.DataFrame({"example_id": [f"q{i}" for i in range(20)], "gold": [0] * 20,
                                          "pred": np.where(correct, 0, 1), "confidence": [0.9] * 20,
                                          "probs": [[0.9, 0.1] if c else [0.1, 0.9] for c in correct],
                                          "correct": correct})
                    run.write_cell(("test", name, task, seed), frame)
                    rows.append({"method": name, "seed": seed, "task": task, "domain": domain,
                                 "acc": right / 20, "ece": 0.9 - right / 20,
                                 "majority": 0.7 if name in chance else 0.05})
            entries[name] = MethodEntry(method="elad", round_of=None if r else variant, runs=runs)
    manifest = Manifest(suite="s", suite_hash="h", scoring={"mode": "letter", "confidence": "-"}, methods=entries,
                        metrics={"bins": 10, "n_boot": 200})
    return RunView(run, manifest, pd.DataFrame(rows))


def test_the_claims_table_pairs_rounds_at_equal_budget_with_paired_intervals(tmp_path):
    table = elad.claims_table(claims_run(tmp_path)).set_index(["claim", "round", "domain", "metric"])
    assert set(table.index.get_level_values("claim")) == {"egss vs random", "clear vs teacher_cot"}
    early = table.loc[("egss vs random", 0, "id", "acc")]
    assert (early.variant, early.against, early.seeds) == ("elad", "random_clear", 2)
    assert early["diff"] == pytest.approx(0.3) and 0 < early.diff_lo <= 0.3 <= early.diff_hi and early.finding
    assert (early.variant_tokens, early.against_tokens) == (100, 100)
    final = table.loc[("egss vs random", 1, "ood", "acc")]  # the same answers: the paired resamples agree exactly
    assert (final["diff"], final.diff_lo, final.diff_hi, final.finding) == (0, 0, 0, False)
    ece = table.loc[("egss vs random", 0, "id", "ece")]  # 90% sure of all 20: ECE 0.9 - 0.6 against 0.9 - 0.3
    assert ece["diff"] == pytest.approx(-0.3) and ece.diff_hi < 0
    assert (table.loc[("clear vs teacher_cot", slice(None), slice(None), "acc"), "diff"] == 0).all()


def test_a_claim_between_students_at_chance_is_not_a_finding(tmp_path):
    table = elad.claims_table(claims_run(tmp_path, chance={"random_clear@r0"}))
    early = table.set_index(["claim", "round", "domain", "metric"]).loc[("egss vs random", 0, "id", "acc")]
    assert early.at_chance and early.diff_lo > 0 and not early.finding


def test_the_budget_band_is_the_interval_over_test_examples_and_seeds(tmp_path):
    """Both seeds answer alike, so a range over seeds would be a line; 12 of 20 right leaves about +-20 points."""
    bands = elad.budget_bands(claims_run(tmp_path)).set_index(["variant", "round"])
    assert list(bands.index) == [(v, r) for v in ("egss_cot", "elad", "random_clear") for r in (0, 1)]
    first = bands.loc[("random_clear", 0)]
    assert (first.method, first.teacher_tokens, first.acc) == ("random_clear@r0", 100, pytest.approx(0.3))
    final = bands.loc[("elad", 1)]
    assert final.acc == pytest.approx(0.6) and 0.35 < final.acc_lo < 0.5 and 0.7 < final.acc_hi < 0.85
    assert final.ece == pytest.approx(0.3) and final.ece_lo < 0.3 < final.ece_hi


def test_egss_terms_are_pooled_over_seeds_and_rounds_only_for_egss_variants(tmp_path):
    from trustbench.harness.plots import RunView
    from trustbench.harness.store import Manifest, MethodEntry, RunDir, SeedRun

    def entry(rounds_by_seed):
        return MethodEntry(method="elad", runs={seed: SeedRun(checkpoint="x", records={"elad": {"rounds": rounds}})
                                                for seed, rounds in rounds_by_seed.items()})

    scored = {0: [{"round": 0, "intra": [1.0, 0.5], "inter": [0.25, 0.0]},
                  {"round": 1, "intra": [1.0], "inter": [0.5]}],
              1: [{"round": 0, "intra": [0.0, 0.5], "inter": [0.75, 0.0]}]}
    methods = {"elad": entry(scored), "random_clear": entry({0: [{"round": 0, "picked": [1, 0]}]}),
               "teacher": MethodEntry(method="teacher", runs={0: SeedRun(checkpoint="x")})}
    manifest = Manifest(suite="s", suite_hash="h", scoring={"mode": "letter", "confidence": "-"}, methods=methods)
    terms = elad.egss_term_values(RunView(RunDir(tmp_path), manifest, pd.DataFrame()))
    means = terms.groupby(["variant", "round", "term"])["value"].agg(["count", "mean"])
    assert set(terms["variant"]) == {"elad"} and list(means["count"]) == [4, 4, 1, 1]
    assert means.loc[("elad", 0, "intra"), "mean"] == 0.5 and means.loc[("elad", 0, "inter"), "mean"] == 0.25
    assert elad.uncertainty_figure(RunView(RunDir(tmp_path), manifest, pd.DataFrame())) is not None
    without = manifest.model_copy(update={"methods": {k: v for k, v in methods.items() if k != "elad"}})
    assert elad.uncertainty_figure(RunView(RunDir(tmp_path), without, pd.DataFrame())) is None

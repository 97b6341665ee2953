"""DualChecker: verbalised-confidence parsing, label parsing, ContextAligner's retrieval, the borderline pick, the
re-ask rule at the threshold, known labels from scripted teachers (white and black box), unparsable replies
counted and never filled with gold, a killed run that resumes without asking the teacher anything twice, the
teacher-side table, and bad parameters refused before anything is written."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from trustbench.baselines import dualchecker as dc
from trustbench.baselines.base import Context, StudentArtifact
from trustbench.harness.config import MethodSpec, load_suite
from trustbench.harness.engines import Generation
from trustbench.runner import resolve_tasks
from teacher_runs import kill_and_resume, refused

VERBALISED = [  # (reply, confidence): the largest whole number <= 100 in the field / 100, else the word scale, else 0
    ("Answer: yes\nConfidence: 90%\nReason: heavy", 0.90),
    ("Answer: yes\nConfidence: 70 out of 100", 1.0),  # the rule's quirk, kept: the largest number <= 100 is 100
    ("Answer: no\nConfidence: 250 or 40", 0.40),  # numbers above 100 are not percentages
    ("Answer: no\nconfidence = 12.5 %", 0.125),
    ("Answer: no\nConfidence: somewhat confident", 0.75),
    ("Answer: no\nConfidence: somewhat unconfident", 0.25),
    ("Answer: no\nConfidence: Confident.", 1.0),
    ("Answer: no\nConfidence: not confident", 0.0),
    ("Answer: no\nConfidence: neutral", 0.5),
    ("Answer: no\nConfidence: no idea", 0.0),  # unreadable field: asked again
    ("Answer: no\nReason: none given", 0.0),  # missing field: asked again
    ("", 0.0),
]


@pytest.mark.parametrize("reply, expected", VERBALISED)
def test_verbalised_confidence_follows_the_released_rules(reply, expected):
    assert dc.verbalised_confidence(reply) == pytest.approx(expected)


@pytest.mark.parametrize("reply, expected", [
    ("Answer: yes\nConfidence: 80%", 1), ("answer:No.", 0), ("Yes, they do.", 1), ("Answer: maybe", None),
    ("Answer: no, not yes", 0),  # the first label named
    ("Answer: nothing", None),  # a word boundary: "no" inside "nothing" is not a label
])
def test_parse_label(reply, expected):
    assert dc.parse_label(reply, ("no", "yes")) == expected


SPANS = [  # (reply, (label, start, end) or None): the label after "Answer:" on its line, whole words, any case
    ("Answer: yes\nConfidence: 90%", (1, 8, 11)),
    (" yes, surely", (1, 1, 4)),
    ("Answer:\n  No. Confidence: 70", (0, 10, 12)),
    ("answer : YES or no", (1, 9, 12)),  # the first label named wins
    ("Answer: not sure\nyes", None),  # "not" is not "no", and only the answer's line counts
    ("I cannot tell.", None),
]


@pytest.mark.parametrize("reply, expected", SPANS)
def test_label_span(reply, expected):
    assert dc.label_span(reply, ("no", "yes")) == expected
    assert dc.parse_label(reply, ("no", "yes")) == (None if expected is None else expected[0])


TOKENS = [  # (text, token texts, token log-probs, label probability): the tokens that spell the label
    ("Answer: yes\nConf", ("Answer:", " yes", "\nConf"), (-0.1, -0.2, -0.3), math.exp(-0.2)),
    ("Answer: yes\n", ("Answer:", " y", "es", "\n"), (-0.1, -0.2, -0.3, -0.4), math.exp(-0.5)),
    ("Answer: maybe", ("Answer:", " maybe"), (-0.1, -0.2), 0.0),  # unparsable: no label, no probability
    ("Answer: yes", None, None, None),  # no log-probs
    ("Answer: yes", ("Answer:", " no"), (-0.1, -0.2), None),  # tokens that do not spell the text
]


@pytest.mark.parametrize("text, tokens, logprobs, expected", TOKENS)
def test_label_probability_multiplies_the_label_tokens(text, tokens, logprobs, expected):
    generation = Generation(text, (), logprobs, None, "stop", None, tokens)
    got = dc.label_probability(generation, dc.token_pieces(generation, None), dc.label_span(text, ("no", "yes")))
    assert got == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize("shots, count", [(0, 0), (1, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 3)])
def test_retrieved_count_is_the_codes_rule(shots, count):
    assert dc.retrieved_count(shots) == count


def test_retrieval_excludes_the_query_and_ranks_by_cosine():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.7, 0.7], [1, 0]], dtype=float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert dc.neighbours(vectors, 0, 2) == [4, 1]  # 4 is identical to 0, yet 0 itself is never returned
    assert dc.neighbours(vectors, 2, 3) == [3, 1, 0]
    assert all(q not in dc.neighbours(vectors, q, 4) for q in range(5))


@pytest.mark.parametrize("probs, gold, expected", [
    ([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7]], [0, 0, 0], 1),  # wrong: 1 (top 0.6) and 2 (top 0.7): the lower top
    ([[0.9, 0.1], [0.2, 0.8]], [0, 1], None),  # all right: no feedback
    ([[0.2, 0.3, 0.5], [0.45, 0.1, 0.45]], [0, 0], 0),  # a tie at the top is argmax's first: 1 is right
])
def test_borderline_is_the_least_sure_misclassified_example(probs, gold, expected):
    assert dc.borderline(probs, gold) == expected


# ------------------------------------------------------------------------------------------- scripted teachers


def text_of(prompt: str) -> str:
    """The text the teacher is asked about: the prompt's last "Text:" line(s), up to "Answer:"."""
    return prompt.rsplit("Text: ", 1)[1].rsplit("\nAnswer:", 1)[0]


class WhiteBox:
    """A local teacher that gives P(yes) = `p_yes(text)` to every question (log-likelihoods of " no" / " yes")."""

    def __init__(self, p_yes):
        self.p_yes, self.asked = p_yes, []

    def loglikelihood(self, requests):
        out = []
        for prompt, continuation in requests:
            self.asked.append(text_of(prompt))
            p = self.p_yes(text_of(prompt))
            out.append((math.log(p if continuation == " yes" else 1 - p), True))
        return out

    def generate(self, prompts, **params):
        return [[Generation("because of the weights")] for _ in prompts]


class BlackBox:
    """A teacher whose reply to a question is `reply(text)`: a text, or (text, token texts, token log-probs)."""

    def __init__(self, reply):
        self.reply, self.asked, self.params = reply, [], []

    def generate(self, prompts, **params):
        out = []
        for prompt in prompts:
            if "Please explain why" in prompt:
                out.append([Generation("because")])
                continue
            self.asked.append(text_of(prompt))
            self.params.append(params)
            answer = self.reply(text_of(prompt))
            text, tokens, logprobs = (answer, None, None) if isinstance(answer, str) else answer
            out.append([Generation(text, (), logprobs, None, "stop", None, tokens)])
        return out


def fit(monkeypatch, teacher, black_box=False, suite="dualchecker-smoke", **params):
    """Fit `dualchecker` on `suite`'s ID task with `teacher`; the final training is recorded, not run."""
    suite = load_suite(suite)
    spec = MethodSpec("dc", "dualchecker", {"shots": 0, **params})
    ctx = Context(suite=suite, spec=spec, seed=0, tasks=[t for t in resolve_tasks(suite) if t.card.domain == "id"],
                  log=lambda line: None)
    trained = {}
    monkeypatch.setattr(Context, "teacher_engine", lambda self, fine_tuned=True: teacher)
    monkeypatch.setattr(Context, "sft", lambda self, cache, key, init, examples, config, seed:
                        trained.update(examples=examples) or StudentArtifact(init))
    if black_box:
        monkeypatch.setattr(dc.method, "Endpoint", object)  # any teacher counts as an endpoint
    method = dc.DualChecker(spec)
    method.fit(ctx)
    return ctx, ctx.records["dualchecker"], trained["examples"]


def test_a_scripted_white_box_teacher_gives_its_labels_and_reasks_below_the_threshold_only(monkeypatch):
    """Short texts get P(yes) 0.75 (tau is set to exactly the confidence that gives, as the teacher computes it:
    kept) or 0.6 (below: re-asked); the detail gets 0.1 (a sure no). Which texts are which is a rule on the text, so
    the expected labels are known for every example."""
    def p_yes(text):
        if text.count("weighs") > 1:
            return 0.1  # the detail: every fact
        return 0.75 if int(re.search(r"(\d+) kg", text).group(1)) % 2 else 0.6

    values = np.log([0.25, 0.75])
    at = float((np.exp(values - values.max()) / np.exp(values - values.max()).sum()).max())
    teacher = WhiteBox(p_yes)
    ctx, record, examples = fit(monkeypatch, teacher, part="teacher", tau=at)
    train = {e.id: e for e in ctx.train}
    odd = {i for i, e in train.items() if int(re.search(r"(\d+) kg", e.prompt).group(1)) % 2}
    items = {r["id"]: r for r in record["items"]}
    assert set(items) == set(train) and record["settings"]["tau"] == at
    for i, row in items.items():
        assert row["reprompted"] == (i not in odd)  # 0.75 is not below 0.75; 0.6 is
        assert row["first"] == 1 and row["first_confidence"] == pytest.approx(0.75 if i in odd else 0.6)
        assert row["label"] == (1 if i in odd else 0)
        assert row["confidence"] == pytest.approx(0.75 if i in odd else 0.9)
    assert {e.id: e.gold for e in examples} == {i: items[i]["label"] for i in train}
    details = [t for t in teacher.asked if t.count("weighs") > 1]
    assert len(details) == 2 * (len(train) - len(odd))  # each re-asked question: one request per label


class FirstOption:
    """A local teacher that always prefers the option first in alphabetical order, whatever the options are."""

    def loglikelihood(self, requests):
        return [(-sum(map(ord, continuation.strip()[:1])), True) for _, continuation in requests]

    def generate(self, prompts, **params):
        return [[Generation("because")] for _ in prompts]


def test_each_question_is_labelled_among_its_own_options(monkeypatch):
    """`smoke`'s ID task is multiple choice over each question's own objects (4 of them): the teacher is asked
    about exactly those, and its label is the index of the one it prefers."""
    ctx, record, examples = fit(monkeypatch, FirstOption(), suite="smoke", part="simi", shots=3)
    assert record["labels"] is None and len({tuple(e.choices) for e in ctx.train}) > 1
    expected = {e.id: min(range(len(e.choices)), key=lambda c: e.choices[c][0]) for e in ctx.train}
    assert {r["id"]: r["label"] for r in record["items"]} == expected
    assert {e.id: e.gold for e in examples} == expected


def test_without_the_teacher_checker_nothing_is_reasked(monkeypatch):
    teacher = WhiteBox(lambda text: 0.6)
    _, record, examples = fit(monkeypatch, teacher, part="simi")
    assert record["settings"]["tau"] == 0.75  # the white-box default
    assert not any(r["reprompted"] for r in record["items"]) and {e.gold for e in examples} == {1}
    assert not any(t.count("weighs") > 1 for t in teacher.asked)


def test_unparsable_black_box_replies_are_counted_and_never_filled_with_gold(monkeypatch):
    """A black-box teacher answers "yes" with 95% to short texts with an even weight and nonsense to the rest (also
    when re-asked): those examples are counted unparsable and left out of the student's training; `gold_leak`
    puts the gold label there instead, as the released code does."""
    def reply(text):
        if int(re.search(r"(\d+) kg", text).group(1)) % 2 == 0:
            return "Answer: yes\nConfidence: 95%\nReason: heavy"
        return "I cannot tell."

    ctx, record, examples = fit(monkeypatch, BlackBox(reply), black_box=True, part="teacher")
    train = {e.id: e for e in ctx.train}
    bad = {i for i, e in train.items() if int(re.search(r"(\d+) kg", e.prompt).group(1)) % 2}
    assert 0 < len(bad) < len(train) and record["settings"]["tau"] == 0.85
    assert record["unparsable"] == 2 * len(bad)  # asked twice: confidence 0 is below tau
    assert {e.id for e in examples} == set(train) - bad and {e.gold for e in examples} == {1}
    _, _, leaked = fit(monkeypatch, BlackBox(reply), black_box=True, part="teacher", unparsable="gold_leak")
    assert {e.id: e.gold for e in leaked} == {i: 1 if i not in bad else train[i].gold for i in train}


def scripted_reply(text):
    """A written answer: "no" to the detail (token probability 0.95), else "yes", 0.9 sure by its tokens for even
    weights and 0.6 for odd ones, and always 99% sure in words."""
    label, p = ("no", 0.95) if text.count("weighs") > 1 else \
        ("yes", 0.9 if int(re.search(r"(\d+) kg", text).group(1)) % 2 == 0 else 0.6)
    tokens = ("Answer:", f" {label}", "\nConfidence: 99%")
    return "".join(tokens), tokens, (-0.01, math.log(p), -0.02)


def test_a_reply_teacher_keeps_both_confidences_and_the_checker_reads_the_one_asked_for(monkeypatch):
    teacher = BlackBox(scripted_reply)
    ctx, record, _ = fit(monkeypatch, teacher, part="teacher", ask="reply", confidence="token")
    assert record["settings"]["tau"] == 0.75 and record["settings"]["ask"] == "reply"
    assert all(p == {"max_tokens": 96, "temperature": 0.0, "logprobs": True, "stop": dc.REPLY_STOP}
               for p in teacher.params)
    odd = {e.id for e in ctx.train if int(re.search(r"(\d+) kg", e.prompt).group(1)) % 2}
    for row in record["items"]:
        assert row["reprompted"] == (row["id"] in odd)  # token 0.6 < 0.75, though 99% in words
        assert row["first_token_confidence"] == pytest.approx(0.6 if row["id"] in odd else 0.9)
        assert row["first_verbalised_confidence"] == row["verbalised_confidence"] == 0.99
        assert row["label"] == (0 if row["id"] in odd else 1)
        assert row["confidence"] == row["token_confidence"] == pytest.approx(0.95 if row["id"] in odd else 0.9)
    side = dc.teacher_side(record)
    from trustbench.harness.metrics import ece

    after = [r["label"] == r["gold"] for r in record["items"]]
    assert side["ece_verbalised_after"] == pytest.approx(ece([0.99] * len(after), after))
    assert side["ece_token_after"] == side["ece_after"]
    # read in words, 99% is never below tau: nothing re-asked (the black-box default)
    _, words, _ = fit(monkeypatch, BlackBox(scripted_reply), part="teacher", ask="reply")
    assert words["settings"]["confidence"] == "verbalised" and words["settings"]["tau"] == 0.85
    assert not any(r["reprompted"] for r in words["items"])


def test_a_white_box_teacher_has_token_confidence_only():
    items = [{"gold": 1, "first": 1, "label": 1, "first_confidence": 0.8, "confidence": 0.8, "reprompted": False,
              "first_token_confidence": 0.8, "token_confidence": 0.8, "first_verbalised_confidence": None,
              "verbalised_confidence": None}]
    side = dc.teacher_side({"items": items, "feedback": [], "unparsable": 0})
    assert side["ece_token_after"] == pytest.approx(0.2) and math.isnan(side["ece_verbalised_after"])


def test_token_confidence_from_replies_without_log_probs_is_a_one_line_error(monkeypatch):
    from trustbench.harness.errors import UserError

    with pytest.raises(UserError, match="carry no token log-probs"):
        fit(monkeypatch, BlackBox(lambda text: "Answer: yes\nConfidence: 90%"), ask="reply", confidence="token")


@pytest.mark.vllm
def test_a_served_teachers_token_confidence_comes_from_the_servers_log_probs(vllm_server, vllm_engine, tmp_path,
                                                                            monkeypatch):
    """A real `vllm serve` as the black-box teacher: its replies' token texts and log-probs give the same token
    probabilities as the in-process engine's ids decoded, and a run reads a token confidence for every answer."""
    from trustbench.harness.endpoint import Endpoint, OpenAIEngine

    teacher = OpenAIEngine(Endpoint(vllm_server, "tiny", api="completions"), cache_path=tmp_path / "r.sqlite")
    prompts = [f"Is {n} kg heavy? Answer:" for n in (3, 40, 500)]
    served = [g[0] for g in teacher.generate(prompts, max_tokens=8, logprobs=True, stop=dc.REPLY_STOP)]
    local = [g[0] for g in vllm_engine.generate(prompts, max_tokens=8, logprobs=True, stop=dc.REPLY_STOP)]
    for s_, l_ in zip(served, local):
        pieces = dc.token_pieces(s_, None)
        assert pieces == dc.token_pieces(l_, vllm_engine.tokenizer)
        span = (0, 0, len(pieces[0]))  # the first token, as if it spelled a label
        assert dc.label_probability(s_, pieces, span) == pytest.approx(
            dc.label_probability(l_, pieces, span), rel=1e-3)
    _, record, _ = fit(monkeypatch, teacher, black_box=True, part="teacher", confidence="token")
    assert all(r["first_token_confidence"] is not None for r in record["items"])


class Learner:
    """The online student: predicts "yes" (0.6) for every example, and counts its steps."""

    def __init__(self):
        self.steps = 0

    def step(self, pairs):
        self.steps += 1

    def option_probs(self, prompts, options):
        return [[0.4, 0.6] for _ in prompts]


def test_the_student_checker_puts_the_borderline_example_first_in_later_prompts(monkeypatch):
    learner = Learner()
    monkeypatch.setattr(dc.DualChecker, "_learner", lambda self, ctx: learner)
    teacher = WhiteBox(lambda text: 0.9)
    ctx, record, _ = fit(monkeypatch, teacher, part="student", buffer=8, buffer_epochs=3)
    buffers = math.ceil(len(ctx.train) / 8)
    assert learner.steps == 3 * buffers
    # the student says "yes" to everything: each buffer's first gold "no" (all tie at 0.6) becomes the feedback
    order = [r["id"] for r in sorted(record["items"], key=lambda r: r["buffer"])]
    assert len(record["feedback"]) == len(record["stream"]) == buffers  # this seed's buffers each hold a "no"
    assert record["feedback"][0]["label"] == "no" and record["feedback"][0]["reason"] == "because of the weights"
    assert [p["feedback"] for p in record["stream"]] == list(range(1, buffers + 1))
    assert len(order) == len(ctx.train)


# ------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_killed_run_resumes_without_asking_the_teacher_anything_twice(tmp_path, monkeypatch):
    from trustbench.runner import run_suite

    suite = load_suite("dualchecker-smoke")

    def run(name):
        monkeypatch.setenv("TRUSTBENCH_CACHE", str(tmp_path / f"cache-{name}"))
        run_suite(suite, tmp_path / name, log=lambda line: None)

    whole, stored = kill_and_resume(tmp_path, monkeypatch, run)
    assert len(whole) == len(set(whole)) > 20
    assert len(stored) == len(set(stored)) and sorted(stored) == sorted(whole)
    results = [pd.read_csv(tmp_path / d / "results.csv") for d in ("killed", "whole")]
    pd.testing.assert_frame_equal(*results)
    table = pd.read_csv(tmp_path / "whole" / "tables" / "dualchecker_teacher.csv")
    assert list(table["variant"]) == ["dualchecker", "fewshot_labels"] and list(table["part"]) == ["all", "none"]
    assert table.loc[1, "reprompted"] == 0 and table.loc[1, "feedback"] == 0  # the plain few-shot baseline
    assert list(table["ask"]) == ["choice", "choice"] and list(table["confidence"]) == ["token", "token"]
    gains = pd.read_csv(tmp_path / "whole" / "tables" / "dualchecker_gains.csv")
    assert list(gains["variant"]) == ["dualchecker"] and list(gains["against"]) == ["fewshot_labels"]
    assert (tmp_path / "whole" / "figures" / "dualchecker_stream.png").exists()
    assert "macro_f1" in pd.read_csv(tmp_path / "whole" / "results.csv")


def test_the_teacher_side_numbers_on_a_hand_made_record():
    items = [{"id": "a", "gold": 1, "first": 0, "first_confidence": 0.6, "label": 1, "confidence": 0.9,
              "reprompted": True, "buffer": 0},
             {"id": "b", "gold": 0, "first": 0, "first_confidence": 0.8, "label": 0, "confidence": 0.8,
              "reprompted": False, "buffer": 0},
             {"id": "c", "gold": 1, "first": None, "first_confidence": 0.0, "label": None, "confidence": 0.0,
              "reprompted": True, "buffer": 0}]
    side = dc.teacher_side({"items": items, "feedback": [{}], "unparsable": 2})
    assert side["acc_before"] == pytest.approx(1 / 3) and side["acc_after"] == pytest.approx(2 / 3)
    assert side["reprompted"] == pytest.approx(2 / 3) and side["reprompted_acc_before"] == 0.0
    assert side["reprompted_acc_after"] == 0.5 and side["feedback"] == 1 and side["unparsable"] == 2
    # after: gold [1, 0, 1], labels [1, 0, unparsable]: class 0 F1 1, class 1 F1 2/3, the unparsable class 0
    assert side["f1_after"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_the_paired_gain_against_the_few_shot_teacher():
    """Gold [0, 0, 1, 1]; the few-shot teacher says [0, 0, 0, 0] (F1 (2/3 + 0) / 2, accuracy 1/2), the variant
    [0, 0, 1, None] (F1 of classes 0, 1 and unparsable: (1 + 2/3 + 0) / 3, accuracy 3/4); two seeds alike."""
    def record(labels):
        return {"items": [{"id": f"e{i}", "gold": g, "label": label} for i, (g, label) in
                          enumerate(zip([0, 0, 1, 1], labels))]}

    mine, base = {s: record([0, 0, 1, None]) for s in (0, 1)}, {s: record([0, 0, 0, 0]) for s in (0, 1)}
    gain = dc.paired_gain(mine, base, [0, 1], n_boot=200)
    assert gain["f1_gain"] == pytest.approx((1 + 2 / 3) / 3 - (2 / 3) / 2)
    assert gain["acc_gain"] == pytest.approx(0.25)
    assert gain["acc_gain_lo"] <= 0.25 <= gain["acc_gain_hi"] and gain["acc_gain_lo"] >= 0  # never worse here
    assert dc.paired_gain(base, base, [0, 1], n_boot=50) == {k: 0.0 for k in gain}


BAD = "teacher: tiny-random\nstudent: tiny-random-l1\nbackend: hf\ntasks: [%s]\nmethods:\n  - %s\n"


@pytest.mark.parametrize("task, method, message", [
    ("smoke_short", "{method: dualchecker, part: most}", "part must be one of none, simi, teacher, student, all"),
    ("smoke_short", "{method: dualchecker, shots: -1}", "shots must be a whole number >= 0"),
    ("smoke_short", "{method: dualchecker, tau: 2}", "tau must be a probability in [0, 1]"),
    ("smoke_short", "{method: dualchecker, unparsable: gold}", "unparsable must be drop or gold_leak"),
    ("smoke_id", "{method: dualchecker}", "smoke_id has none; use a card with `short:`"),
    ("smoke_cot_id", "{method: dualchecker}", "labels classification examples"),
    ("smoke_id, smoke_short", "{method: dualchecker, part: simi}", "the suite has 2: smoke_id, smoke_short"),
    ("smoke_short", "{method: dualchecker, ask: maybe}", "ask must be choice or reply"),
    ("smoke_short", "{method: dualchecker, confidence: stated}", "confidence must be token or verbalised"),
    ("smoke_short", "{method: dualchecker, ask: choice, confidence: verbalised}", "states no confidence"),
])
def test_bad_parameters_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, task, method,
                                                                      message):
    assert message in refused(tmp_path, monkeypatch, capsys, BAD % (task, method))


def test_an_endpoint_teacher_cannot_be_asked_to_choose(tmp_path, monkeypatch, capsys):
    suite = BAD.replace("teacher: tiny-random", "teacher: {endpoint: http://127.0.0.1:9/v1, model: m}")
    assert "use ask: reply" in refused(tmp_path, monkeypatch, capsys,
                                       suite % ("smoke_short", "{method: dualchecker, ask: choice}"))

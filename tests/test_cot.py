"""Chain-of-thought tasks: the cot format's prompts, targets and scorer, the reasoning-gym and JSONL loaders, and
temperature scaling of open answers. The scorer runs against a scripted engine, so every number is pinned."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from trustbench import tasks
from trustbench.harness.calibration import apply_temperature
from trustbench.harness.engines import LOCAL, Generation, Usage
from trustbench.harness.errors import UserError
from trustbench.harness.statistics import summarize
from trustbench.harness.scoring import CotFormat, LetterFormat, parse_number
from trustbench.harness.types import Example, TaskCard
from trustbench.tasks.reasoning_gym import running_sum

OPEN = Example("q1", "What is 3 + 4?", (), "7", rationale="3 + 4\n  = 7")
MC = Example("q2", "Is a brick heavier than a feather?", ("Yes", "No"), 0, rationale="Bricks weigh kilograms.")


class LetterTokenizer:
    def encode(self, text, add_special_tokens=True):
        return [ord(text.strip())]


class ScriptedEngine:
    """Answers `generate` from a script keyed by the prompt's end, and letter log-probs from a table."""

    backend, capabilities, tokenizer = "scripted", LOCAL, LetterTokenizer()

    def __init__(self, reasoning: dict, answers: dict, letters=None):
        self.reasoning, self.answers, self.letters = reasoning, answers, letters
        self.usage = Usage()
        self.asked: list[str] = []

    def generate(self, prompts, max_tokens=64, stop=(), logprobs=False, **_):
        self.asked += prompts
        table = self.answers if stop == ["\n"] else self.reasoning
        return [[next(g for key, g in table.items() if p.endswith(key))] for p in prompts]

    def next_token_logprobs(self, prompts, token_ids):
        self.asked += prompts
        return np.log(np.array([self.letters] * len(prompts)))


def test_cot_prompt_and_target():
    fmt = CotFormat()
    assert fmt.pair(OPEN) == ("What is 3 + 4?\nReasoning:", " 3 + 4\n= 7\nAnswer: 7")
    assert fmt.pair(MC) == ("Is a brick heavier than a feather?\nA. Yes\nB. No\nReasoning:",
                            " Bricks weigh kilograms.\nAnswer: A")
    with pytest.raises(UserError, match="has no rationale"):
        fmt.target(Example("q3", "?", (), "1"))


@pytest.mark.parametrize("text, number", [(" 7", "7"), ("-12 apples", "-12"), ("1,000.50", "1000.5"), ("07", "7"),
                                          ("about 3.0 kg", "3"), ("no idea", None), ("", None)])
def test_parse_number(text, number):
    assert parse_number(text) == number


@pytest.mark.parametrize("expression, rationale", [("67 + 75 - 85", "67 + 75 = 142\n142 - 85 = 57"),
                                                   ("4 - 9", "4 - 9 = -5"), ("1 + 2 + 3 + 4", "1 + 2 = 3\n3 + 3 = 6\n6 + 4 = 10")])
def test_running_sum(expression, rationale):
    assert running_sum(expression) == rationale


def test_open_answers_are_a_forecast_of_their_own_correctness():
    """Parsed and right; parsed and wrong; no "Answer:" written (an answer is still read, but it counts as wrong)."""
    questions = [OPEN, Example("q4", "What is 2 + 2?", (), "4"), Example("q5", "What is 1 + 1?", (), "2")]
    reasoning = {"3 + 4?\nReasoning:": Generation(" 3 + 4 = 7\n", stopped_by="Answer:"),
                 "2 + 2?\nReasoning:": Generation(" 2 + 2 = 5\n", stopped_by="Answer:"),
                 "1 + 1?\nReasoning:": Generation(" 1 + 1 = 2", finish_reason="length")}
    answers = {"= 7\nAnswer:": Generation(" 7\n", (1, 2), (math.log(0.9), math.log(0.5)), stopped_by="\n"),
               "= 5\nAnswer:": Generation(" 5", (1,), (math.log(0.6),), finish_reason="length"),
               "= 2\nAnswer:": Generation(" 2\n", (1, 2), (math.log(0.8), math.log(0.5)), stopped_by="\n")}
    engine = ScriptedEngine(reasoning, answers)
    frame = CotFormat().score(engine, questions)
    assert frame.correct.tolist() == [True, False, False] and frame.parsed.tolist() == [True, True, False]
    np.testing.assert_allclose(frame.confidence, [0.9, 0.6, 0.8])  # the newline that ends an answer is not in it
    assert frame.gold.tolist() == [0, 1, 1] and frame.pred.tolist() == [0, 0, 0]
    assert frame.answer.tolist() == ["7", "5", "2"] and frame.gold_answer.tolist() == ["7", "4", "2"]
    assert engine.asked[-1] == "What is 1 + 1?\nReasoning: 1 + 1 = 2\nAnswer:"  # "Answer:" appended when missing
    summary = summarize(frame, n_boot=0)
    assert summary["acc"] == pytest.approx(1 / 3)
    assert summary["brier"] == pytest.approx(2 * ((0.9 - 1) ** 2 + 0.6 ** 2 + 0.8 ** 2) / 3)  # multiclass over 2
    assert summary["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.2)) / 3)


def test_options_are_read_after_the_models_own_answer():
    reasoning = {"B. No\nReasoning:": Generation(" Bricks are heavy.\n", stopped_by="Answer:")}
    engine = ScriptedEngine(reasoning, {}, letters=[0.3, 0.1])
    frame = CotFormat().score(engine, [MC])
    assert engine.asked[-1].endswith("Reasoning: Bricks are heavy.\nAnswer:")
    assert frame.pred.tolist() == [0] and frame.correct.tolist() == [True] and frame.parsed.tolist() == [True]
    np.testing.assert_allclose(frame.confidence, [0.75])
    unparsed = CotFormat().score(ScriptedEngine({"Reasoning:": Generation(" I ramble", finish_reason="length")}, {},
                                                letters=[0.3, 0.1]), [MC])
    assert unparsed.pred.tolist() == [0] and unparsed.correct.tolist() == [False]  # the right letter, never written


def test_temperature_scaling_keeps_an_open_answer_and_a_missing_answer_wrong():
    frame = pd.DataFrame({"example_id": ["a", "b"], "gold": [0, 1], "pred": [0, 0], "confidence": [0.2, 0.9],
                          "probs": [[0.2, 0.8], [0.9, 0.1]], "correct": [True, False], "answer": ["7", "5"],
                          "gold_answer": ["7", "4"]})
    scaled = apply_temperature(frame, 2.0)
    assert scaled.pred.tolist() == [0, 0] and scaled.correct.tolist() == [True, False]
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    expected = [1 / (1 + math.exp(-logit(p) / 2)) for p in (0.2, 0.9)]
    np.testing.assert_allclose(scaled.confidence, expected)
    mc = pd.DataFrame({"example_id": ["a"], "gold": [0], "pred": [0], "confidence": [0.7], "probs": [[0.7, 0.3]],
                       "correct": [False], "parsed": [False]})
    assert apply_temperature(mc, 0.5).correct.tolist() == [False]


def test_reasoning_gym_splits_are_disjoint_seeded_and_sized():
    card = tasks.get_card("chain_sum")
    first, again = tasks.split(card), tasks.split(card)
    assert [e.prompt for e in first.test] == [e.prompt for e in again.test]
    sizes = (len(first.train), len(first.val), len(first.test), len(first.pool))
    assert sizes == (card.train, card.val, card.test, card.pool)
    prompts = [set(e.prompt for e in part) for part in (first.test, first.val, first.train, first.pool)]
    assert all(not (a & b) for i, a in enumerate(prompts) for b in prompts[i + 1:])
    example = first.test[0]
    assert example.choices == () and parse_number(example.gold) == example.gold
    assert example.rationale.splitlines()[-1].endswith(f"= {example.gold}")


def test_gsm_symbolic_keeps_the_generators_rationale_without_its_final_line():
    split = tasks.split(tasks.get_card("gsm_symbolic"))
    assert all("####" not in e.rationale and e.gold.lstrip("-").isdigit() for e in split.train)
    heldout = tasks.split(tasks.get_card("gsm_symbolic_heldout")).test
    assert not {e.prompt for e in heldout} & {e.prompt for e in split.train}


def test_jsonl_open_answers_and_details(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"prompt": "What is 2 + 3?", "answer": 5, "rationale": "2 + 3 = 5", "detail": "Numbers add."}\n')
    card = tasks.card_from_dict({"name": "t", "domain": "ood", "family": "f", "format": "cot", "test": 1,
                                 "source": f"jsonl:{data}", "use_detail": True})
    (example,) = tasks.split(card).test
    assert (example.choices, example.gold) == ((), "5")
    assert CotFormat(card).prompt(example) == "Numbers add.\nWhat is 2 + 3?\nReasoning:"
    assert LetterFormat().question(example) == "What is 2 + 3?"  # without use_detail the detail is not used
    mc = tasks.card_from_dict({"name": "u", "domain": "ood", "family": "f", "format": "mc", "test": 1,
                               "source": f"jsonl:{data}"})
    with pytest.raises(UserError, match="gold 5 for 0 choices"):
        tasks.split(mc)


def test_max_prompt_chars_counts_the_detail_only_when_it_is_used(tmp_path):
    data = tmp_path / "q.jsonl"
    data.write_text('{"prompt": "Short?", "choices": ["a", "b"], "gold": 0, "detail": "' + "x" * 50 + '"}\n')
    base = {"name": "t", "domain": "ood", "family": "f", "format": "mc", "test": 1, "source": f"jsonl:{data}",
            "max_prompt_chars": 20}
    assert len(tasks.split(tasks.card_from_dict(base)).test) == 1
    with pytest.raises(UserError, match="the test split is empty"):
        tasks.split(tasks.card_from_dict({**base, "use_detail": True}))


def test_a_card_with_bad_cot_fields_is_one_line():
    base = {"name": "t", "domain": "ood", "family": "f", "format": "cot", "test": 1, "source": "synthetic:cot"}
    with pytest.raises(UserError, match="'max_new_tokens' must be a positive whole number"):
        tasks.card_from_dict({**base, "max_new_tokens": 0})
    with pytest.raises(UserError, match="'use_detail' must be true or false"):
        tasks.card_from_dict({**base, "use_detail": "yes"})
    assert isinstance(tasks.card_from_dict(base), TaskCard)

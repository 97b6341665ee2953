"""The prior reference row: the most frequent answer with the class frequencies as probabilities."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trustbench.baselines.prior import Prior
from trustbench.harness.config import MethodSpec
from trustbench.harness.statistics import summarize
from trustbench.harness.scoring import LetterFormat
from trustbench.harness.types import Example, Splits, Task, TaskCard

CARD = TaskCard(name="t", domain="id", family="f", format="mc", source="synthetic:id")


def mc(i, gold, choices=3):
    return Example(f"q{i}", "?", tuple("abcd"[:choices]), gold)


def test_the_prior_predicts_the_most_frequent_train_answer_with_smoothed_frequencies():
    train = [mc(i, g) for i, g in enumerate([1, 1, 1, 0, 2, 1])]  # counts 1, 4, 1 -> add-one 2, 5, 2
    test = [mc(10, 1), mc(11, 0), mc(12, 0, choices=2)]
    task = Task(CARD, LetterFormat(CARD), Splits(train=train, val=[], test=test))
    frame = Prior(MethodSpec("prior", "prior")).predict(task, "test")
    np.testing.assert_allclose(frame.probs[0], [2 / 9, 5 / 9, 2 / 9])
    np.testing.assert_allclose(frame.probs[2], [2 / 7, 5 / 7])  # renormalised over the example's two options
    assert frame.pred.tolist() == [1, 1, 1] and frame.correct.tolist() == [True, False, False]
    assert not frame.oracle.any()
    summary = summarize(frame, n_boot=0)
    assert summary["acc"] == pytest.approx(1 / 3)
    assert summary["nll"] == pytest.approx(-(math.log(5 / 9) + math.log(2 / 9) + math.log(2 / 7)) / 3)


def test_without_a_train_split_the_prior_is_an_oracle_of_the_scored_split():
    test = [mc(i, g) for i, g in enumerate([2, 2, 0])]
    task = Task(CARD, LetterFormat(CARD), Splits(train=[], val=[], test=test))
    frame = Prior(MethodSpec("prior", "prior")).predict(task, "test")
    assert frame.oracle.all() and frame.pred.tolist() == [2, 2, 2]
    np.testing.assert_allclose(frame.confidence, [3 / 6] * 3)  # counts 1, 0, 2 -> add-one 2, 1, 3


def test_open_answers_get_the_most_frequent_answer_and_its_frequency():
    train = [Example(f"q{i}", "?", (), g) for i, g in enumerate(["4", "4", "5", "4"])]
    test = [Example("a", "?", (), "4"), Example("b", "?", (), "6")]
    task = Task(CARD, LetterFormat(CARD), Splits(train=train, val=[], test=test))
    frame = Prior(MethodSpec("prior", "prior")).predict(task, "test")
    assert frame.answer.tolist() == ["4", "4"] and frame.correct.tolist() == [True, False]
    np.testing.assert_allclose(frame.confidence, [0.75, 0.75])
    assert frame.gold.tolist() == [0, 1] and frame.gold_answer.tolist() == ["4", "6"]

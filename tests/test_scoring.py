"""Scoring modes: prompts, letters, and how log-probs become predictions."""
from __future__ import annotations

import math

import numpy as np
import pytest

from trustbench.harness.errors import UserError
from trustbench.harness.scoring import choice_context, letter_prompt, letter_token_ids, predictions_frame, score, training_pair
from trustbench.harness.types import Example

EXAMPLE = Example(id="x-1", prompt="Which is heaviest?", choices=("feather", "brick", "leaf"), gold=1)


def test_letter_prompt_and_training_pair():
    assert letter_prompt(EXAMPLE) == "Which is heaviest?\nA. feather\nB. brick\nC. leaf\nAnswer:"
    assert training_pair(EXAMPLE, "letter") == (letter_prompt(EXAMPLE), " B")
    assert training_pair(EXAMPLE, "choice") == ("Which is heaviest?\nAnswer:", " brick")
    assert choice_context(EXAMPLE) == "Which is heaviest?\nAnswer:"


@pytest.mark.parametrize("logprobs, probs, pred, mass", [
    # log(0.5), log(0.25), log(0.05): renormalised over 0.8 of mass -> 0.625, 0.3125, 0.0625
    ([math.log(0.5), math.log(0.25), math.log(0.05)], [0.625, 0.3125, 0.0625], 0, 0.8),
    ([0.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], 0, 3.0),  # ties go to the first option
    ([-3.0, -1.0, -2.0], None, 1, None),
])
def test_predictions_frame(logprobs, probs, pred, mass):
    frame = predictions_frame([EXAMPLE], [np.array(logprobs)], with_mass=True)
    row = frame.iloc[0]
    expected = np.exp(logprobs) / np.exp(logprobs).sum()
    np.testing.assert_allclose(row.probs, probs if probs is not None else expected, atol=1e-12)
    assert row.pred == pred and row.correct == (pred == EXAMPLE.gold)
    assert row.confidence == pytest.approx(max(row.probs))
    if mass is not None:
        assert row.option_mass == pytest.approx(mass)


def test_non_finite_scores_are_a_user_error():
    with pytest.raises(UserError, match="non-finite"):
        predictions_frame([EXAMPLE], [np.array([np.nan, 0.0, 0.0])])


def test_letters_must_be_single_tokens():
    class SplittingTokenizer:
        def encode(self, text, add_special_tokens=True):
            return [1, 2]

    with pytest.raises(UserError, match="scoring: choice"):
        letter_token_ids(SplittingTokenizer(), 2)


def test_empty_split_and_unknown_mode(hf_engine):
    with pytest.raises(UserError, match="empty"):
        score(hf_engine, [], "letter")
    with pytest.raises(UserError, match="unknown scoring format"):
        score(hf_engine, [EXAMPLE], "vibes")


def test_choice_mode_is_softmax_of_loglikelihoods(hf_engine):
    frame = score(hf_engine, [EXAMPLE], "choice")
    lls = np.array([ll for ll, _ in hf_engine.loglikelihood([(choice_context(EXAMPLE), f" {c}")
                                                            for c in EXAMPLE.choices])])
    np.testing.assert_allclose(frame.probs[0], np.exp(lls) / np.exp(lls).sum(), atol=1e-9)

"""The counter-baselines' losses (sampled_kd, reverse_kd, gkd) against hand computations and TRL, the sampled cache's
estimate against full KD, the on-policy swap, and their parameters' errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustbench.baselines import build
from trustbench.baselines.gkd import OnPolicy, generalized_jsd, gkd_loss
from trustbench.baselines.kd import kd_loss
from trustbench.baselines.reverse_kd import reverse_kd_loss
from trustbench.baselines.sampled_kd import importance_weights, sample_teacher, sampled_kd_loss
from trustbench.harness.config import MethodSpec
from trustbench.harness.errors import UserError
from trustbench.harness.teacher_cache import TeacherOutputs

TEACHER = np.array([0.2, 0.5, 0.3])
STUDENT_LOGITS = [1.0, 0.0, -1.0]


def one_position(teacher=TEACHER, student=STUDENT_LOGITS):
    """A batch of one sequence with one answer position over a vocabulary of len(teacher)."""
    return (torch.tensor([[student]]), torch.tensor([[0]]),
            {"teacher_logprobs": torch.log(torch.tensor(np.array([[teacher]]), dtype=torch.float32))})


def softmax(z):
    z = np.exp(np.asarray(z) - np.max(z))
    return z / z.sum()


S = softmax(STUDENT_LOGITS)


# -------------------------------------------------------------------------------------------------- reverse_kd


def test_reverse_kd_is_the_kl_from_student_to_teacher():
    expected = float((S * np.log(S / TEACHER)).sum())
    assert reverse_kd_loss(*one_position()).item() == pytest.approx(expected, rel=1e-5)


def test_skew_reverse_kd_mixes_the_student_into_the_target():
    mixture = 0.1 * S + 0.9 * TEACHER
    expected = float((S * np.log(S / mixture)).sum())
    assert reverse_kd_loss(*one_position(), skew=0.1).item() == pytest.approx(expected, rel=1e-5)


def test_reverse_kd_averages_positions_and_skips_unlabelled_ones():
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[-100, 1, 2], [0, -100, 2]])
    teacher = torch.log_softmax(torch.randn(2, 3, 5), -1)
    whole = reverse_kd_loss(logits, labels, {"teacher_logprobs": teacher})
    kept = [(0, 1), (0, 2), (1, 0), (1, 2)]
    parts = [reverse_kd_loss(logits[b, p][None, None], labels[b, p][None, None],
                             {"teacher_logprobs": teacher[b, p][None, None]}) for b, p in kept]
    assert whole.item() == pytest.approx(sum(p.item() for p in parts) / 4, rel=1e-5)


# -------------------------------------------------------------------------------------------------- gkd


def test_gkd_at_beta_one_half_is_the_hand_computed_jensen_shannon():
    m = 0.5 * TEACHER + 0.5 * S
    expected = 0.5 * float((TEACHER * np.log(TEACHER / m)).sum()) + 0.5 * float((S * np.log(S / m)).sum())
    assert gkd_loss(*one_position(), beta=0.5).item() == pytest.approx(expected, rel=1e-5)


def test_gkd_at_beta_zero_is_forward_kd_and_at_one_reverse_kd():
    batch = one_position()
    assert gkd_loss(*batch, beta=0.0).item() == pytest.approx(kd_loss(*batch, alpha=0.0, tau=1.0).item(), rel=1e-6)
    assert gkd_loss(*batch, beta=1.0).item() == pytest.approx(reverse_kd_loss(*batch).item(), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_generalized_jsd_matches_trls(beta):
    from trl.experimental.gkd.gkd_trainer import GKDTrainer  # trl is a test extra: CI has it, so no skip

    generator = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(2, 4, 11, generator=generator), torch.randn(2, 4, 11, generator=generator)
    labels = torch.tensor([[1, 2, -100, 3], [-100, 4, 5, 6]])
    theirs = GKDTrainer.generalized_jsd_loss(student, teacher, labels=labels, beta=beta)
    mask = labels != -100
    ours = generalized_jsd(torch.log_softmax(student[mask], -1), torch.log_softmax(teacher[mask], -1), beta).mean()
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-7)


# -------------------------------------------------------------------------------------------------- sampled_kd


def test_sampled_kd_loss_is_the_weighted_log_ratio_under_the_full_student_softmax():
    # draws [1, 1, 0] with weights 1/3 each: the target is (1/3, 2/3, 0); the student is NOT renormalised over them
    batch_ids = torch.tensor([[[1, 1, 0]]])
    logp = torch.log(torch.tensor([[[0.5, 0.5, 0.2]]]))
    targets = {"teacher_ids": batch_ids, "teacher_logprobs": logp, "weights": torch.full((1, 1, 3), 1 / 3)}
    expected = 2 / 3 * math.log(0.5 / S[1]) + 1 / 3 * math.log(0.2 / S[0])
    loss = sampled_kd_loss(torch.tensor([[STUDENT_LOGITS]]), torch.tensor([[0]]), targets, vocab=3)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_importance_weights_are_uniform_at_t_one_and_p_to_the_one_minus_one_over_t_otherwise():
    logp = np.log(np.array([[0.5, 0.25, 0.25]]))
    assert importance_weights(logp, 1.0) == pytest.approx(np.full((1, 3), 1 / 3))
    raw = np.array([0.5, 0.25, 0.25]) ** (1 - 1 / 2.0)  # t = 2: q ∝ sqrt(p), p / q ∝ sqrt(p)
    assert importance_weights(logp, 2.0)[0] == pytest.approx(raw / raw.sum())


def full_cache(positions=1, vocab=40, seed=0):
    rng = np.random.default_rng(seed)
    logprobs = np.log(rng.dirichlet(np.full(vocab, 0.3), size=positions)).astype(np.float32)
    return TeacherOutputs(logprobs, None, np.array([0, positions]), {"vocab": vocab, "engine": "hf", "k": None,
                                                                     "tokens": 0, "seconds": 0, "tokens_per_s": None})


def sampled_estimate(cache, n, t, seed, student):
    sampled = sample_teacher(cache, n, t, seed)
    targets = {"teacher_ids": torch.from_numpy(sampled.ids)[None], "teacher_logprobs": torch.from_numpy(
        sampled.logprobs)[None], "weights": torch.from_numpy(importance_weights(sampled.logprobs, t))[None]}
    labels = torch.zeros((1, len(sampled.ids)), dtype=torch.long)
    return sampled_kd_loss(student, labels, targets, vocab=student.shape[-1]).item()


def test_the_sampled_estimate_is_unbiased_for_full_kd_at_t_one():
    cache = full_cache()
    student = torch.randn(1, 1, 40, generator=torch.Generator().manual_seed(1))
    full = kd_loss(student, torch.zeros((1, 1), dtype=torch.long), {"teacher_logprobs": torch.from_numpy(
        cache.logprobs)[None]}, alpha=0.0, tau=1.0).item()
    draws = np.array([sampled_estimate(cache, 4, 1.0, seed, student) for seed in range(2000)])
    assert abs(draws.mean() - full) < 4 * draws.std(ddof=1) / math.sqrt(len(draws))


@pytest.mark.parametrize("t", [1.0, 0.5, 2.0])
def test_the_sampled_estimate_converges_to_full_kd_as_draws_grow(t):
    cache = full_cache(positions=3)
    student = torch.randn(1, 3, 40, generator=torch.Generator().manual_seed(2))
    full = kd_loss(student, torch.zeros((1, 3), dtype=torch.long), {"teacher_logprobs": torch.from_numpy(
        cache.logprobs)[None]}, alpha=0.0, tau=1.0).item()
    errors = {n: np.mean([abs(sampled_estimate(cache, n, t, seed, student) - full) for seed in range(20)])
              for n in (4, 64, 4096)}
    assert errors[4] > errors[64] > errors[4096] and errors[4096] < 0.02 * abs(full) + 0.01


def test_sample_teacher_draws_with_the_proposal_and_keeps_the_teachers_log_probs():
    cache = full_cache(positions=2, vocab=6, seed=4)
    sampled = sample_teacher(cache, 20000, 1.0, seed=0)
    for row in range(2):
        frequency = np.bincount(sampled.ids[row], minlength=6) / 20000
        assert frequency == pytest.approx(np.exp(cache.logprobs[row]), abs=0.015)
        assert sampled.logprobs[row] == pytest.approx(cache.logprobs[row][sampled.ids[row]])
    assert sample_teacher(cache, 5, 1.0, seed=7).ids.tolist() == sample_teacher(cache, 5, 1.0, seed=7).ids.tolist()


def test_a_sampled_cache_costs_what_a_top_k_cache_of_the_same_width_costs_and_counts_an_id_once():
    cache = full_cache(positions=10, vocab=30)
    sampled = sample_teacher(cache, 5, 1.0, seed=0)
    top = TeacherOutputs(*[np.sort(x)[:, ::-1][:, :5] for x in (cache.logprobs,)], np.argsort(
        -cache.logprobs, -1)[:, :5].astype(np.int32), cache.offsets, {**cache.info, "k": 5})
    assert sampled.storage()["cache_bytes"] == top.storage()["cache_bytes"] == 10 * 5 * 8
    duplicated = TeacherOutputs(np.log(np.array([[0.5, 0.5, 0.2]], dtype=np.float32)), np.array([[3, 3, 1]]),
                                np.array([0, 1]), {})
    assert duplicated.mass == pytest.approx([0.7])


# -------------------------------------------------------------------------------------------------- on-policy


class RecordingTeacher:
    """A teacher engine stand-in: the tiny model's tokenizer, and a uniform distribution over the vocabulary."""

    def __init__(self, engine):
        self.tokenizer = engine.tokenizer
        self.asked = []

    def topk_logprobs(self, sequences, starts, k):
        self.asked.append((sequences, starts))
        vocab = len(self.tokenizer)
        return [(None, np.full((len(s) - start, vocab), -math.log(vocab), dtype=np.float32))
                for s, start in zip(sequences, starts)]


def gold_batch(engine, prompts, answers):
    from trustbench.harness.train import LeftPadCollator, encode_pairs

    features = encode_pairs(engine.tokenizer, list(zip(prompts, answers)), 64)
    vocab = len(engine.tokenizer)
    features = [{**f, "teacher_logprobs": np.zeros((f["target_len"], vocab), np.float32)} for f in features]
    return features, LeftPadCollator(engine.pad_id)(features)


def test_on_policy_swaps_gold_answers_for_the_students_samples_scored_by_the_teacher(hf_engine):
    prompts, answers = ["Paris is in", "Rome is in"], [" France", " Italy and more"]
    features, batch = gold_batch(hf_engine, prompts, answers)
    ids = {tuple(f["input_ids"][:len(f["input_ids"]) - f["target_len"]]): p for f, p in zip(features, prompts)}
    teacher = RecordingTeacher(hf_engine)
    always = OnPolicy(ids, teacher, lmbda=1.0, temperature=1.0, seed=0)
    swapped = always(hf_engine.model, batch, step=3)
    (sequences, starts), = teacher.asked
    assert [s[:start] for s, start in zip(sequences, starts)] == [list(k) for k in ids]  # same prompts
    for row, (sequence, start) in enumerate(zip(sequences, starts)):
        answer = sequence[start:]
        assert 1 <= len(answer) <= batch["labels"].shape[1]
        assert swapped["labels"][row, -len(answer):].tolist() == answer  # the sample is the new target
    assert swapped["teacher_logprobs"].shape[-1] == len(hf_engine.tokenizer)
    again = OnPolicy(ids, RecordingTeacher(hf_engine), 1.0, 1.0, seed=0)(hf_engine.model, batch, step=3)
    assert torch.equal(again["labels"], swapped["labels"])  # a resumed run draws the same samples
    never = OnPolicy(ids, teacher, lmbda=0.0, temperature=1.0, seed=0)
    assert never(hf_engine.model, batch, step=3) is batch


def test_the_on_policy_schedule_draws_its_share_of_steps_and_reports_it():
    schedule = OnPolicy({}, None, lmbda=0.3, temperature=1.0, seed=5)
    summary = schedule.summary(1000)
    assert summary["train_steps"] == 1000 and 250 < summary["on_policy_steps"] < 350
    assert summary == OnPolicy({}, None, 0.3, 1.0, seed=5).summary(1000)


# -------------------------------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("method, params, named", [
    ("sampled_kd", {"n": 0}, "n (draws per answer position) must be a positive integer"),
    ("sampled_kd", {"n": 2.5}, "n (draws per answer position) must be a positive integer"),
    ("sampled_kd", {"t": 0}, "t (the proposal's temperature) must be > 0"),
    ("sampled_kd", {"t": "hot"}, "t must be a number"),
    ("reverse_kd", {"skew": 1.0}, "skew must be in [0, 1)"),
    ("gkd", {"beta": 1.5}, "beta must be in [0, 1]"),
    ("gkd", {"lmbda": -0.1}, "lmbda must be in [0, 1]"),
    ("gkd", {"temperature": 0}, "temperature (of the student's samples) must be > 0"),
    ("gkd", {"lambda": 0.5}, "unknown parameter(s) lambda"),
])
def test_bad_parameters_are_one_line_errors(method, params, named):
    with pytest.raises(UserError, match=named.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as error:
        build(MethodSpec(name=method, method=method, params=params))
    assert "\n" not in str(error.value)

"""KD and FIRST: losses against hand computations, the teacher cache, the c search, engines' agreement, vocabularies."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustbench.baselines.first import first_loss, search_c, trustworthy_target, validation_ece
from trustbench.baselines.kd import kd_loss
from trustbench.harness import teacher_cache
from trustbench.harness.errors import UserError
from trustbench.harness.teacher_cache import TeacherOutputs, check_same_vocabulary, extract
from trustbench.harness.train import LeftPadCollator


THREE_POSITIONS = dict(
    # student probabilities at each position are proportional to [1, 2, 3, 4] (logits = log of them)
    logits=torch.log(torch.tensor([1.0, 2.0, 3.0, 4.0])).repeat(1, 3, 1),  # [batch 1, 3 positions, vocab 4]
    labels=torch.tensor([[3, 1, 0]]),
    targets={"teacher_ids": torch.tensor([[[3, 1], [2, 0], [1, 2]]]),
             "teacher_probs": torch.tensor([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]])},
)


def test_first_loss_equals_a_hand_computed_kl_over_three_positions():
    # renormalised over the ids: (4, 2) -> (2/3, 1/3); (3, 1) -> (3/4, 1/4); (2, 3) -> (2/5, 3/5)
    expected = (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
                + 0.9 * math.log(0.9 / 0.75) + 0.1 * math.log(0.1 / 0.25)
                + 0.2 * math.log(0.2 / 0.4) + 0.8 * math.log(0.8 / 0.6))
    assert first_loss(**THREE_POSITIONS, vocab=4).item() == pytest.approx(expected, rel=1e-6)


def test_first_loss_with_the_released_codes_eps_adds_it_before_renormalising():
    expected = 0.0
    for (a, b), (ta, tb) in zip([(3, 1), (2, 0), (1, 2)], [(0.5, 0.5), (0.9, 0.1), (0.2, 0.8)]):
        sa, sb = (a + 1) / 10 + 1e-3, (b + 1) / 10 + 1e-3
        expected += ta * math.log(ta / (sa / (sa + sb))) + tb * math.log(tb / (sb / (sa + sb)))
    assert first_loss(**THREE_POSITIONS, vocab=4, renorm_eps=1e-3).item() == pytest.approx(expected, rel=1e-5)


def test_the_released_codes_eps_kills_the_gradient_when_the_student_has_no_mass_on_the_top_k():
    logits = torch.tensor([[[0.0, 1.0, 30.0]]], requires_grad=True)  # ids 0 and 1 hold ~1e-13 of the mass
    targets = {"teacher_ids": torch.tensor([[[0, 1]]]), "teacher_probs": torch.tensor([[[0.9, 0.1]]])}
    exact, = torch.autograd.grad(first_loss(logits, torch.tensor([[0]]), targets, vocab=3), logits)
    released, = torch.autograd.grad(first_loss(logits, torch.tensor([[0]]), targets, 3, renorm_eps=1e-6), logits)
    assert exact.abs().max() > 0.1 and released.abs().max() < 1e-6


def test_first_loss_sums_positions_averages_sequences_and_skips_padding():
    logits = torch.randn(2, 3, 6)
    labels = torch.tensor([[-100, 1, 2], [0, 1, 2]])
    ids = torch.randint(0, 6, (2, 3, 3))
    target = torch.softmax(torch.randn(2, 3, 3), -1)
    whole = first_loss(logits, labels, {"teacher_ids": ids, "teacher_probs": target}, vocab=6)
    parts = [first_loss(logits[i:i + 1], labels[i:i + 1], {"teacher_ids": ids[i:i + 1],
                                                              "teacher_probs": target[i:i + 1]}, vocab=6)
             for i in range(2)]
    assert whole.item() == pytest.approx((parts[0] + parts[1]).item() / 2, rel=1e-5)


def test_first_loss_is_zero_for_k_1_and_zero_when_student_matches():
    logits = torch.randn(1, 2, 5, requires_grad=True)
    labels = torch.tensor([[1, 2]])
    one = first_loss(logits, labels, {"teacher_ids": torch.tensor([[[1], [2]]]),
                                      "teacher_probs": torch.ones(1, 2, 1)}, vocab=5)
    assert abs(one.item()) < 1e-6
    probs = torch.softmax(logits.detach()[0, :, :3], -1)[None]
    same = first_loss(logits, labels, {"teacher_ids": torch.arange(3).repeat(1, 2, 1), "teacher_probs": probs}, 5)
    assert abs(same.item()) < 1e-5


def test_kd_loss_equals_a_hand_computed_value():
    teacher = np.array([0.7, 0.2, 0.1])
    student_logits = [1.0, 0.0, -1.0]
    alpha, tau = 0.5, 2.0
    t = teacher ** (1 / tau) / (teacher ** (1 / tau)).sum()  # softmax(log p / tau)
    s = np.exp(np.array(student_logits) / tau) / np.exp(np.array(student_logits) / tau).sum()
    kl = float((t * np.log(t / s)).sum())
    ce = -math.log(math.exp(1.0) / sum(math.exp(x) for x in student_logits))  # gold = 0
    expected = alpha * ce + (1 - alpha) * tau ** 2 * kl
    loss = kd_loss(torch.tensor([[student_logits, [9.0, 9.0, 9.0]]]), torch.tensor([[0, -100]]),
                   {"teacher_logprobs": torch.log(torch.tensor(np.array([[teacher, [1 / 3] * 3]])))}, alpha, tau)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    pure = kd_loss(torch.tensor([[student_logits]]), torch.tensor([[0]]),
                   {"teacher_logprobs": torch.log(torch.tensor(np.array([[teacher]])))}, alpha=0.0, tau=1.0)
    s1 = np.exp(student_logits) / np.exp(student_logits).sum()
    assert pure.item() == pytest.approx(float((teacher * np.log(teacher / s1)).sum()), abs=1e-6)


def test_kd_loss_cuts_a_padded_student_vocabulary_to_the_teachers():
    logits = torch.tensor([[[1.0, 0.0, -1.0, 50.0]]])  # a 4th, padding row that would dominate a softmax
    teacher = {"teacher_logprobs": torch.log(torch.tensor([[[0.7, 0.2, 0.1]]]))}
    assert kd_loss(logits, torch.tensor([[0]]), teacher, 0.5, 2.0).item() == pytest.approx(
        kd_loss(logits[..., :3], torch.tensor([[0]]), teacher, 0.5, 2.0).item())


@pytest.mark.parametrize("c, expected", [
    (1.0, [.375, .159, .157, .155, .154]),  # METHODS.md 1.2: c = 1 flattens
    (0.5, [.59, .11, .10, .10, .10]),
    (0.3, [.82, .05, .04, .04, .04]),
    (None, [.90, .04, .03, .02, .01]),  # no TM: plain renormalisation
])
def test_trustworthy_target_matches_the_worked_example(c, expected):
    logprobs = np.log([[0.90, 0.04, 0.03, 0.02, 0.01]])
    assert trustworthy_target(logprobs, c)[0] == pytest.approx(expected, abs=0.006)


def test_label_smoothing_moves_mass_off_the_top_1():
    target = trustworthy_target(np.log([[0.6, 0.3, 0.1]]), None, label_smoothing=0.1)[0]
    assert target == pytest.approx([0.5, 0.35, 0.15]) and target.sum() == pytest.approx(1)


@pytest.mark.parametrize("minimum, chosen", [(0.364, 0.36), (0.725, 0.72), (0.01, 0.02), (0.995, 1.0)])
def test_c_search_finds_the_minimum_of_a_known_curve(minimum, chosen):
    calls = []

    def curve(c):
        calls.append(c)
        return (c - minimum) ** 2

    c, points = search_c(curve)
    assert c == pytest.approx(chosen)
    cs = [p[0] for p in points]
    assert cs == sorted(cs) and len(set(cs)) == len(cs) == len(calls)
    assert {0.1, 0.5, 1.0} <= set(cs) and min(p[1] for p in points) == pytest.approx(curve(c))


def test_validation_ece_is_the_ece_of_the_adjusted_top_1():
    from trustbench.harness.metrics import ece

    rng = np.random.default_rng(0)
    probs = np.sort(rng.dirichlet(np.ones(8), size=200), axis=1)[:, ::-1][:, :5]
    correct = rng.random(200) < 0.6
    for c in (0.2, 0.7, None):
        target = trustworthy_target(np.log(probs), c)
        assert validation_ece(np.log(probs), correct, c) == pytest.approx(ece(target[:, 0], correct))


def test_cache_round_trips_and_slices_top_k(tmp_path, hf_engine):
    sequences = [hf_engine.encode("Which is heavier?\nA. feather\nB. stone\nAnswer: B"),
                 hf_engine.encode("Pick one.\nA. x\nAnswer: A")]
    starts = [len(sequences[0]) - 1, len(sequences[1]) - 2]
    outputs = extract(hf_engine, sequences, starts, k=10)
    assert outputs.ids.dtype == np.int32 and outputs.logprobs.dtype == np.float32
    assert list(outputs.offsets) == [0, 1, 3] and outputs.info["engine"] == "hf"
    assert (np.diff(outputs.logprobs, axis=1) <= 0).all()  # ranked
    path = tmp_path / "cache.npz"
    teacher_cache.save(outputs, path)
    loaded = teacher_cache.load(path)
    assert (loaded.ids == outputs.ids).all() and (loaded.logprobs == outputs.logprobs).all()
    assert (loaded.offsets == outputs.offsets).all() and loaded.info == outputs.info
    top3 = loaded.top(3)
    assert (top3.ids == outputs.ids[:, :3]).all() and top3.info["k"] == 3
    assert (top3.mass <= outputs.mass + 1e-6).all() and (outputs.mass <= 1 + 1e-5).all()
    storage = top3.storage()
    vocab = len(hf_engine.tokenizer)
    assert storage == {"positions": 3, "cache_bytes": 3 * 3 * 8, "full_bytes": 3 * vocab * 4,
                       "full_over_cache": round(vocab * 4 / 24, 1)}
    full = extract(hf_engine, sequences, starts, k=None)
    assert full.ids is None and full.logprobs.shape == (3, vocab)
    assert np.allclose(np.exp(full.logprobs).sum(-1), 1, atol=1e-5)
    assert np.allclose(np.sort(full.logprobs, axis=1)[:, ::-1][:, :10], outputs.logprobs, atol=1e-5)


def test_vllm_and_hf_caches_agree(hf_engine, vllm_engine, smoke_splits):
    from trustbench.harness.scoring import training_pair
    from trustbench.harness.train import encode_pairs

    pairs = [training_pair(e, "letter") for e in smoke_splits[0].train[:16]]
    features = encode_pairs(hf_engine.tokenizer, pairs, 256)
    sequences = [f["input_ids"] for f in features]
    starts = [len(f["input_ids"]) - f["target_len"] for f in features]
    hf, vllm = extract(hf_engine, sequences, starts, 5), extract(vllm_engine, sequences, starts, 5)
    assert vllm.info["engine"] == "vllm" and (hf.offsets == vllm.offsets).all()
    assert (hf.ids == vllm.ids).all()
    assert np.abs(hf.logprobs - vllm.logprobs).max() < 1e-2


def test_collator_aligns_teacher_rows_with_the_labels():
    features = [{"input_ids": [5, 6, 7, 8], "target_len": 2, "teacher_ids": np.array([[1, 2], [3, 4]])},
                {"input_ids": [9, 10], "target_len": 1, "teacher_ids": np.array([[7, 8]])}]
    batch = LeftPadCollator(pad_id=0)(features)
    assert batch["labels"].tolist() == [[7, 8], [-100, 10]]
    assert batch["teacher_ids"].tolist() == [[[1, 2], [3, 4]], [[0, 0], [7, 8]]]


def test_a_vocabulary_mismatch_is_a_one_line_error(tiny_path):
    from transformers import AutoTokenizer

    teacher = AutoTokenizer.from_pretrained(tiny_path)
    student = AutoTokenizer.from_pretrained(tiny_path)
    check_same_vocabulary(teacher, student, "t", "s")  # same: fine
    student.add_tokens(["<extra-token>"])
    with pytest.raises(UserError, match="different vocabularies") as error:
        check_same_vocabulary(teacher, student, "t", "s")
    assert "\n" not in str(error.value)


def test_a_run_with_mismatched_vocabularies_is_refused_before_writing(tmp_path, tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trustbench.harness.config import parse_suite
    from trustbench.runner import run_suite

    other = tmp_path / "other-vocab"
    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    tokenizer.add_tokens(["<extra-token>"])
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    model.resize_token_embeddings(len(tokenizer))
    model.save_pretrained(other)
    tokenizer.save_pretrained(other)
    suite = parse_suite({"name": "mismatch", "teacher": "tiny-random", "student": str(other), "backend": "hf",
                         "tasks": ["smoke_id"], "methods": ["first"]})
    with pytest.raises(UserError, match="different vocabularies"):
        run_suite(suite, tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("params, message", [
    ({"k": 0}, "k must be a positive integer"),
    ({"c": -1}, "c must be"),
    ({"c": "maybe"}, "c must be"),
    ({"label_smoothing": 1.5}, "label_smoothing"),
    ({"topk": 5}, "unknown parameter"),
    ({"k": True}, "k must be a positive integer"),
    ({"c": True}, "c must be"),
    ({"label_smoothing": "abc"}, "label_smoothing must be a number"),
    ({"renorm_eps": None}, "renorm_eps must be a number"),
])
def test_bad_first_parameters_are_one_line_errors(params, message):
    from trustbench import baselines
    from trustbench.harness.config import MethodSpec

    with pytest.raises(UserError, match=message):
        baselines.build(MethodSpec("first", "first", params))


@pytest.mark.parametrize("params, message", [
    ({"tau": "x"}, "tau must be a number"),
    ({"alpha": True}, "alpha must be a number"),
    ({"alpha": 1.5}, "0 <= alpha <= 1"),
])
def test_bad_kd_parameters_are_one_line_errors(params, message):
    from trustbench import baselines
    from trustbench.harness.config import MethodSpec

    with pytest.raises(UserError, match=message):
        baselines.build(MethodSpec("kd", "kd", params))


def test_teacher_outputs_dataclass_rejects_a_larger_top_k():
    outputs = TeacherOutputs(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.int32), np.array([0, 2]),
                             {"k": 3, "vocab": 10})
    with pytest.raises(ValueError, match="cannot take the top 5 of a cache holding 3"):
        outputs.top(5)

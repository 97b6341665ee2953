"""The model zoo's layer-dropped students and the answer-only fine-tuning loss."""
from __future__ import annotations

import pytest
import torch

from trustbench.harness import zoo
from trustbench.harness.config import TrainConfig
from trustbench.harness.errors import UserError
from trustbench.harness.train import AnswerLossTrainer, LeftPadCollator, encode_pairs, finetune


@pytest.mark.parametrize("total, keep, expected", [(30, 6, [0, 6, 12, 17, 23, 29]), (4, 2, [0, 3]), (4, 1, [3]),
                                                   (5, 3, [0, 2, 4])])
def test_kept_layers(total, keep, expected):
    assert zoo.kept_layers(total, keep) == expected


def test_layer_dropped_student_copies_the_teachers_layers(tiny_path):
    from transformers import AutoModelForCausalLM

    student_path = zoo.resolve("tiny-random-l1")
    teacher = AutoModelForCausalLM.from_pretrained(tiny_path)
    student = AutoModelForCausalLM.from_pretrained(student_path)
    assert teacher.config.num_hidden_layers == 2 and student.config.num_hidden_layers == 1
    for student_layer, teacher_index in zip(student.model.layers, [1]):
        teacher_layer = teacher.model.layers[teacher_index]
        for (name, a), (_, b) in zip(student_layer.named_parameters(), teacher_layer.named_parameters()):
            assert torch.equal(a, b), name
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)


@pytest.mark.parametrize("name, message", [("tiny-random-l2", "cannot keep 2 layers"), ("gpt-17", "unknown model")])
def test_bad_model_names(name, message):
    with pytest.raises(UserError, match=message):
        zoo.resolve(name)


def test_collator_aligns_labels_with_the_kept_logits():
    collate = LeftPadCollator(pad_id=0)
    batch = collate([{"input_ids": [5, 6, 7, 8], "target_len": 1}, {"input_ids": [9, 10, 11, 12, 13], "target_len": 2}])
    assert batch["input_ids"].tolist() == [[0, 5, 6, 7, 8], [9, 10, 11, 12, 13]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch["keep"] == 3  # logits at the last 3 positions predict the last 2 tokens
    assert batch["labels"].tolist() == [[-100, 8], [12, 13]]


def test_answer_loss_equals_cross_entropy_on_the_targets_from_full_logits(tiny_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(tiny_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    features = encode_pairs(tokenizer, [("Which item is heaviest?\nAnswer:", " B"),
                                        ("the sum of 2 and 3 is", " 5 kg")], max_length=64)
    batch = LeftPadCollator(tokenizer.pad_token_id)(features)
    trainer = AnswerLossTrainer(model=model, args=TrainingArguments("/tmp/unused", report_to=[], use_cpu=True))
    loss = trainer.compute_loss(model, dict(batch))

    expected = []
    for f in features:  # each sequence alone, unpadded, all logits
        ids = torch.tensor([f["input_ids"]])
        logprobs = torch.log_softmax(model(ids).logits[0, :-1], -1)
        targets = ids[0, 1:]
        n = f["target_len"]
        expected += (-logprobs[-n:].gather(-1, targets[-n:, None])).flatten().tolist()
    assert loss.item() == pytest.approx(sum(expected) / len(expected), abs=1e-4)


def test_finetune_lowers_the_loss_and_partial_training_freezes_the_rest(tiny_path, tmp_path):
    from transformers import AutoModelForCausalLM

    pairs = [(f"Which item is heaviest? {i}\nAnswer:", " B") for i in range(16)]
    config = TrainConfig(epochs=3, lr=3e-3, batch_size=8, warmup_ratio=0.0, train_layers=1)
    cost = finetune(tiny_path, pairs, config, seed=0, out_dir=tmp_path / "ft", log=lambda _: None)
    assert cost["train_examples"] == 16 and cost["train_loss"] < 6.0
    before = AutoModelForCausalLM.from_pretrained(tiny_path)
    after = AutoModelForCausalLM.from_pretrained(tmp_path / "ft")
    assert torch.equal(before.model.layers[0].mlp.up_proj.weight, after.model.layers[0].mlp.up_proj.weight)
    assert not torch.equal(before.model.layers[-1].mlp.up_proj.weight, after.model.layers[-1].mlp.up_proj.weight)


def test_model_identity_tells_two_fine_tunes_of_one_architecture_apart(tiny_path, tmp_path):
    """Same config and weight sizes, trained from different keys: the teacher cache and the students distilled from
    each must not share a cache entry."""
    import shutil

    from trustbench.harness.cache import write_json
    from trustbench.harness.zoo import model_identity

    first, second = tmp_path / "a", tmp_path / "b"
    for folder, lr in ((first, 1e-3), (second, 1e-4)):
        shutil.copytree(tiny_path, folder)
        write_json(folder / "key.json", {"kind": "teacher-sft", "train": {"lr": lr}})
    assert model_identity(first) != model_identity(second)
    assert model_identity(tiny_path) not in (model_identity(first), model_identity(second))


def test_trainer_divides_the_loss_by_the_accumulation_steps(tiny_path, tmp_path):
    """Our loss is a per-micro-batch mean, so Trainer must scale it for gradient accumulation itself."""
    from transformers import AutoModelForCausalLM, TrainingArguments

    from trustbench.harness.train import AnswerLossTrainer

    model = AutoModelForCausalLM.from_pretrained(tiny_path)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, gradient_accumulation_steps=4)
    assert AnswerLossTrainer(model=model, args=args).model_accepts_loss_kwargs is False


def test_the_warmup_ratio_reaches_trainer_as_a_ratio(tmp_path):
    """train.py passes `warmup_ratio` (0.03 by default) as `warmup_steps`: transformers 5 reads a float there as a
    share of the training steps (the reason for pyproject's floor); an earlier release would warm up for 0 steps."""
    from transformers import TrainingArguments

    from trustbench.harness.config import TrainConfig

    args = TrainingArguments(output_dir=str(tmp_path), warmup_steps=TrainConfig().warmup_ratio, report_to=[])
    assert args.get_warmup_steps(1000) == round(1000 * TrainConfig().warmup_ratio) > 0

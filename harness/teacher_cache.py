"""The teacher's outputs over the training sequences, computed once and kept on disk.

FIRST's "concentrated knowledge" is the teacher's top-k next-token ids and log-probs; standard KD needs the full
distribution. Both come from one teacher-forced pass over prompt + gold response, and keep one row per response
position: the row for position t is the distribution that predicts token t + 1 (the shifted mask of METHODS.md 1.2;
the first row is read after the prompt's last token). Top-k rows hold int32 ids and float32 log-probs, by rank.

Extraction goes through the vLLM engine (`prompt_logprobs=k`) when the suite uses it and it is installed, else the
HF engine, which is also the only one that returns the full vocabulary. Results are cached by a hash of the teacher
checkpoint, the token sequences, k and the engine, so every seed and every run of the same data reuses them.
"""
from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from trustbench.harness.cache import atomic_path, cache_dir, locked, stable_hash
from trustbench.harness.errors import UserError
from trustbench.harness.zoo import model_identity

BYTES_PER_FULL_PROB = 4  # a float32 per vocabulary entry: what storing the full distributions would cost


@dataclass
class TeacherOutputs:
    logprobs: np.ndarray  # [positions, k] by rank, or [positions, vocab] for the full distribution
    ids: np.ndarray | None  # [positions, k] int32; None when every vocabulary entry is kept
    offsets: np.ndarray  # sequence i owns rows offsets[i]:offsets[i + 1]
    info: dict  # engine, k, tokens, seconds, tokens_per_s, vocab

    def sequence(self, i: int) -> tuple[np.ndarray | None, np.ndarray]:
        rows = slice(int(self.offsets[i]), int(self.offsets[i + 1]))
        return (None if self.ids is None else self.ids[rows]), self.logprobs[rows]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def top(self, k: int) -> "TeacherOutputs":
        """The top k of a top-K cache (K >= k): ranks are sorted, so it is the first k columns."""
        if self.ids is None or k > self.ids.shape[1]:
            raise ValueError(f"cannot take the top {k} of a cache holding {self.info.get('k')}")
        return TeacherOutputs(self.logprobs[:, :k], self.ids[:, :k], self.offsets, {**self.info, "k": k})

    @property
    def mass(self) -> np.ndarray:
        """The teacher probability each row keeps, each distinct id counted once (1 for the full distribution; a
        sampled cache can hold an id twice)."""
        probs = np.exp(self.logprobs.astype(np.float64))
        if self.ids is None:
            return probs.sum(-1)
        order = np.argsort(self.ids, axis=-1, kind="stable")
        ids = np.take_along_axis(self.ids, order, -1)
        first = np.ones(ids.shape, dtype=bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        return (np.take_along_axis(probs, order, -1) * first).sum(-1)

    def storage(self) -> dict:
        """Bytes of these rows (ids + log-probs) against the bytes of the full float32 distributions they replace."""
        positions = len(self.logprobs)
        kept = self.logprobs.nbytes + (0 if self.ids is None else self.ids.nbytes)
        full = positions * self.info["vocab"] * BYTES_PER_FULL_PROB
        return {"positions": positions, "cache_bytes": int(kept), "full_bytes": int(full),
                "full_over_cache": round(full / kept, 1) if kept else None}

    def cost_columns(self) -> dict:
        """The cache as flat cost columns (costs.csv): k, the kept teacher mass, bytes, engine and speed."""
        record = self.record()
        return {"k": record["k"], "topk_mass": record["mean_mass"], "cache_bytes": record["cache_bytes"],
                "full_bytes": record["full_bytes"], "full_over_cache": record["full_over_cache"],
                "engine": record["engine"], "extract_tok_per_s": record["tokens_per_s"]}

    def record(self) -> dict:
        """What a run's manifest keeps about this cache: its size and how fast it was extracted."""
        extraction = {key: self.info[key] for key in ("engine", "k", "tokens", "seconds", "tokens_per_s")}
        return {**self.storage(), **extraction, "mean_mass": round(float(self.mass.mean()), 4)}


def extract(engine, sequences: Sequence[Sequence[int]], starts: Sequence[int], k: int | None) -> TeacherOutputs:
    """Run the teacher once over `sequences`; rows for the response tokens `sequences[i][starts[i]:]`."""
    for ids, start in zip(sequences, starts):
        if not 1 <= start < len(ids):
            raise ValueError(f"response start {start} outside a sequence of {len(ids)} tokens")
    started = time.perf_counter()
    rows = engine.topk_logprobs(sequences, starts, k)
    seconds = time.perf_counter() - started
    tokens = sum(len(s) for s in sequences)
    lengths = [len(logprobs) for _, logprobs in rows]
    return TeacherOutputs(
        logprobs=np.concatenate([logprobs for _, logprobs in rows]).astype(np.float32),
        ids=None if k is None else np.concatenate([ids for ids, _ in rows]).astype(np.int32),
        offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        info={"engine": engine.backend, "k": k, "tokens": tokens, "seconds": round(seconds, 2),
              "tokens_per_s": round(tokens / seconds, 1) if seconds else None, "vocab": len(engine.tokenizer)})


def save(outputs: TeacherOutputs, path: Path) -> None:
    arrays = {"logprobs": outputs.logprobs, "offsets": outputs.offsets, "info": np.array(json.dumps(outputs.info))}
    if outputs.ids is not None:
        arrays["ids"] = outputs.ids
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would add ".npz" to the temporary name
            np.savez(handle, **arrays)


def load(path: Path) -> TeacherOutputs:
    with np.load(path) as data:
        return TeacherOutputs(logprobs=data["logprobs"], ids=data["ids"] if "ids" in data else None,
                              offsets=data["offsets"], info=json.loads(str(data["info"])))


def teacher_outputs(teacher: Path, sequences: Sequence[Sequence[int]], starts: Sequence[int], k: int | None,
                    backend: str, engine: Callable[[str], object], log: Callable[[str], None] = print) -> TeacherOutputs:
    """Cached `extract` with the suite's engine (vLLM for top-k when available, else HF); `engine(backend)` gives the
    teacher's engine (from the run's pool), asked for only when the cache misses."""
    backend = _usable_backend(backend, k, log)
    key = {"teacher": model_identity(teacher), "sequences": stable_hash([list(map(int, s)) for s in sequences]),
           "starts": stable_hash(list(map(int, starts))), "k": k, "engine": backend}
    path = cache_dir("teacher-outputs") / f"{stable_hash(key)}.npz"
    with locked(path):
        if path.exists():
            try:
                return load(path)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile):
                log(f"cached teacher outputs {path} are damaged: extracting them again")
        what = "full distributions" if k is None else f"top-{k}"
        log(f"teacher {what}: one pass over {len(sequences)} sequences with the {backend} engine (cached by hash)")
        outputs = extract(engine(backend), sequences, starts, k)
        save(outputs, path)
    log(f"teacher {what}: {outputs.info['tokens']} tokens in {outputs.info['seconds']}s "
        f"({outputs.info['tokens_per_s']} tok/s, {backend})")
    return outputs


def _usable_backend(backend: str, k: int | None, log: Callable[[str], None]) -> str:
    if backend != "vllm":
        return backend
    if k is None:
        return "hf"  # the full vocabulary at every position is beyond vLLM's max_logprobs
    try:
        import vllm  # noqa: F401
    except ImportError:
        log("vLLM is not installed: extracting the teacher's top-k with the HF engine")
        return "hf"
    return "vllm"


def check_same_vocabulary(teacher_tokenizer, student_tokenizer, teacher: str, student: str) -> None:
    """Logit-level distillation compares distributions token by token: the vocabularies must be the same."""
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        raise UserError(f"teacher {teacher} and student {student} have different vocabularies "
                        f"({len(teacher_tokenizer)} vs {len(student_tokenizer)} tokens); logit distillation needs "
                        "the same tokenizer: pick a student built from the teacher (e.g. <teacher>-l6)")

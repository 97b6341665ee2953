"""The black-box teacher engine: retries, the request cache, the cost count and one-line failures, against a small
fault-injecting OpenAI-compatible server on 127.0.0.1; and greedy equality with the in-process vLLM engine against a
real `vllm serve`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from trustbench.harness.endpoint import Endpoint, OpenAIEngine, endpoint_from
from trustbench.harness.errors import UserError

TIMEOUT = 0.5  # seconds: the client's per-request timeout in these tests


class FaultServer:
    """Answers each request with the next behaviour of `script` ("ok" once it runs out): ok, 500, 429, 400,
    timeout (answers after the client gave up), truncated (half a JSON body). Bounded: it only serves what the
    tests send, on 127.0.0.1, and stops with the test."""

    def __init__(self):
        self.script: list[str] = []
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                behaviour = server.script.pop(0) if server.script else "ok"
                if behaviour == "timeout":
                    time.sleep(TIMEOUT * 2)
                    behaviour = "ok"
                if behaviour in ("500", "429", "400"):
                    payload = json.dumps({"error": {"message": f"injected {behaviour}"}}).encode()
                    self.send_response(int(behaviour))
                    if behaviour == "429":
                        self.send_header("Retry-After", "0")
                else:
                    payload = json.dumps(reply(body, self.path)).encode()
                    if behaviour == "truncated":
                        payload = payload[:len(payload) // 2]
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out first
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(body: dict, path: str) -> dict:
    """A deterministic answer: the prompt (or last message) upper-cased."""
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    if path.endswith("/chat/completions"):
        text = body["messages"][-1]["content"].upper()
        logprobs = None
        if body.get("logprobs"):  # two tokens: the first character, then the rest
            logprobs = {"content": [{"token": piece, "logprob": value, "bytes": None, "top_logprobs": []}
                                    for piece, value in ((text[:1], -0.5), (text[1:], -0.25))]}
        return {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                             "message": {"role": "assistant", "content": text}}]}
    text = body["prompt"].upper()
    return {"id": "c", "object": "text_completion", "created": 0, "model": body["model"], "usage": usage,
            "choices": [{"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}]}


@pytest.fixture
def server():
    fake = FaultServer()
    yield fake
    fake.close()


def engine(server, tmp_path, api="completions", retries=5, **options) -> OpenAIEngine:
    waits: list[float] = []
    made = OpenAIEngine(Endpoint(server.url, "fake-model", api=api, timeout=TIMEOUT, max_retries=retries, **options),
                        cache_path=tmp_path / "requests.sqlite", sleep=waits.append)
    made.waits = waits
    return made


def test_chat_log_probs_come_with_their_token_texts_and_survive_the_cache(server, tmp_path):
    (generation,), = engine(server, tmp_path, api="chat").generate(["yes sir"], logprobs=True)
    assert generation.tokens == ("Y", "ES SIR") and generation.logprobs == (-0.5, -0.25)
    assert server.requests[0]["body"]["logprobs"] is True
    (cached,), = engine(server, tmp_path, api="chat").generate(["yes sir"], logprobs=True)
    assert cached == generation and len(server.requests) == 1
    (plain,), = engine(server, tmp_path, api="chat").generate(["no"])
    assert plain.tokens is None and plain.logprobs is None


def test_timeouts_5xx_429_and_truncated_json_are_retried_until_an_answer(server, tmp_path):
    server.script = ["timeout", "500", "429", "truncated", "ok"]
    teacher = engine(server, tmp_path)
    (generation,), = teacher.generate(["two plus two"], max_tokens=8)
    assert generation.text == "TWO PLUS TWO"
    usage = teacher.usage
    assert (usage.sent, usage.retries, usage.malformed, usage.calls) == (5, 4, 1, 1)
    assert (usage.prompt_tokens, usage.completion_tokens) == (7, 3)
    assert len(teacher.waits) == 4 and teacher.waits[2] == 0  # 429 said Retry-After: 0
    assert all(0 <= w <= 30 for w in teacher.waits)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_replies_are_cached_and_no_request_is_sent_twice(server, tmp_path, api):
    teacher = engine(server, tmp_path, api=api)
    first = teacher.generate(["a", "b"], max_tokens=4)
    assert [g[0].text for g in first] == ["A", "B"] and len(server.requests) == 2
    assert server.requests[0]["path"].endswith("/chat/completions" if api == "chat" else "/completions")
    again = engine(server, tmp_path, api=api)  # a resumed run: a new engine over the same cache
    assert again.generate(["a", "b"], max_tokens=4) == first and len(server.requests) == 2
    assert (again.usage.calls, again.usage.sent, again.usage.cache_hits, again.usage.prompt_tokens) == (2, 0, 2, 14)
    assert again.generate(["a"], max_tokens=5)[0][0].text == "A" and len(server.requests) == 3  # other parameters


def test_when_retries_run_out_the_run_stops_on_one_line_and_keeps_what_it_received(server, tmp_path):
    teacher = engine(server, tmp_path, retries=2, concurrency=1)
    server.script = ["ok", "500", "500", "500"]
    with pytest.raises(UserError) as error:
        teacher.generate(["first", "second"], max_tokens=4)
    message = str(error.value)
    assert "\n" not in message and "3 attempts failed (last: HTTP 500)" in message and "1 answers received" in message
    server.script = []
    resumed = engine(server, tmp_path)
    assert [g[0].text for g in resumed.generate(["first", "second"], max_tokens=4)] == ["FIRST", "SECOND"]
    assert [r["body"]["prompt"] for r in server.requests] == ["first", "second", "second", "second", "second"]


def test_a_refused_request_is_not_retried(server, tmp_path):
    server.script = ["400"]
    with pytest.raises(UserError, match=r"refused the request \(HTTP 400: .*injected 400\); check the model name"):
        engine(server, tmp_path).generate(["x"])
    assert len(server.requests) == 1


def test_the_key_comes_from_the_environment_and_is_stored_nowhere(server, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="TB_TEST_KEY .* is not set; export TB_TEST_KEY"):
        engine(server, tmp_path, api_key_env="TB_TEST_KEY")
    monkeypatch.setenv("TB_TEST_KEY", "sk-secret-123")
    engine(server, tmp_path, api_key_env="TB_TEST_KEY").generate(["x"])
    assert server.requests[0]["auth"] == "Bearer sk-secret-123"
    assert all(b"sk-secret-123" not in p.read_bytes() for p in tmp_path.iterdir())


@pytest.mark.parametrize("raw, message", [
    ({"endpoint": "127.0.0.1:8000", "model": "m"}, "is not an http\\(s\\) URL"),
    ({"endpoint": "http://h/v1"}, "needs `model:`"),
    ({"endpoint": "http://h/v1", "model": "m", "api": "rest"}, "api must be chat or completions"),
    ({"endpoint": "http://h/v1", "model": "m", "key": "sk-1"}, "unknown teacher key\\(s\\) key"),
    ({"endpoint": "http://h/v1", "model": "m", "timeout": -1}, "timeout must be a positive number"),
])
def test_bad_endpoint_settings_are_one_line(raw, message):
    with pytest.raises(UserError, match=message):
        endpoint_from(raw, "suite")


ANNOTATOR = '''
from trustbench.baselines import Method, StudentArtifact


class Annotate(Method):
    """Asks the teacher to write an answer for every ID train question (as ELAD's annotators will)."""

    name = "annotate"
    trains = False

    def fit(self, ctx):
        ctx.teacher_engine().generate([e.prompt for e in ctx.train[:6]], max_tokens=8)
        return StudentArtifact(ctx.student_init, {})
'''


def test_a_suite_with_an_endpoint_teacher_counts_its_calls_and_resumes_without_asking_twice(server, tmp_path):
    (tmp_path / "annotate.py").write_text(ANNOTATOR)
    (tmp_path / "suite.yaml").write_text(
        f"teacher: {{endpoint: {server.url}, model: fake-model, api: completions, timeout: {TIMEOUT}, "
        "max_retries: 1, concurrency: 1}\nstudent: tiny-random-l1\nbackend: hf\ntasks: [smoke_id]\nsizes: {smoke_id: {test: 4}}\n"
        "temperature_scaling: false\nmethods: [{name: annotate, method: 'annotate:Annotate'}]\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [sys.executable, "-m", "trustbench", "run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "run")]
    server.script = ["ok", "ok", "ok", "500", "500"]
    failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 2, failed.stderr[-2000:]
    (line,) = [x for x in failed.stderr.splitlines() if x.startswith("error:")]
    assert "2 attempts failed (last: HTTP 500)" in line
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len({r["body"]["prompt"] for r in server.requests}) == 6 and len(server.requests) == 8
    costs = pd.read_csv(tmp_path / "run" / "costs.csv")
    assert costs.loc[0, "teacher_calls"] == 6 and costs.loc[0, "teacher_tokens"] == 60
    assert costs.loc[0, "teacher_cache_hits"] == 3 and costs.loc[0, "teacher_sent"] == 3


@pytest.mark.parametrize("method", ["kd", "teacher"])
def test_a_method_the_endpoint_teacher_cannot_serve_is_refused_before_anything_is_written(tmp_path, method):
    from trustbench.harness.config import parse_suite
    from trustbench.runner import run_suite

    suite = parse_suite({"name": "t", "teacher": {"endpoint": "http://127.0.0.1:9/v1", "model": "m"},
                         "student": "tiny-random-l1", "backend": "hf", "tasks": ["smoke_id"], "methods": [method]})
    with pytest.raises(UserError, match="endpoint"):
        run_suite(suite, tmp_path / "run", log=lambda _: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.vllm
def test_vllm_serve_gives_the_in_process_engines_greedy_text(vllm_server, vllm_engine, tmp_path):
    prompts = ["The a of", "the sum of 2 and 3 is", "Which item is the heaviest?\nA. box\nB. stone\nAnswer:"]
    teacher = OpenAIEngine(Endpoint(vllm_server, "tiny", api="completions"), cache_path=tmp_path / "r.sqlite")
    served = teacher.generate(prompts, max_tokens=12, logprobs=True, stop=["\n"])
    local = vllm_engine.generate(prompts, max_tokens=12, logprobs=True, stop=["\n"])
    assert [g[0].text for g in served] == [g[0].text for g in local]
    for s, l in zip(served, local):
        assert s[0].finish_reason == l[0].finish_reason and s[0].stopped_by == l[0].stopped_by
        assert s[0].logprobs == pytest.approx(l[0].logprobs, abs=1e-4)
        assert s[0].tokens is not None and len(s[0].tokens) == len(l[0].token_ids)
        assert "".join(s[0].tokens).startswith(s[0].text)
    assert teacher.usage.sent == 3 and teacher.usage.completion_tokens == sum(len(g[0].token_ids) for g in local)

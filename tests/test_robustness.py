"""The harness under failure: damaged caches, concurrent processes, training killed midway, and a smoke run killed
anywhere and resumed to the same results."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from trustbench.harness.cache import locked
from trustbench.harness.train import WEIGHTS, cached_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def fake_build(calls: list):
    def build(out: Path, work: Path) -> dict:
        calls.append(out)
        (out / "model.safetensors").write_bytes(b"weights" * 100)
        return {"train_seconds": 1.0}
    return build


def test_a_damaged_cache_entry_is_detected_and_rebuilt(monkeypatch):
    from trustbench.harness import train

    calls, lines = [], []
    key = {"kind": "unit", "nonce": time.time()}
    path, cost = cached_checkpoint("unit", key, fake_build(calls), log=lines.append)
    assert len(calls) == 1 and json.loads((path / WEIGHTS).read_text()).keys() == {"model.safetensors"}
    cached_checkpoint("unit", key, fake_build(calls), log=lines.append)
    assert len(calls) == 1  # reused
    (path / "model.safetensors").write_bytes(b"weigh")  # truncated
    monkeypatch.setattr(train, "_VERIFIED", set())  # a new process checks again
    again, _ = cached_checkpoint("unit", key, fake_build(calls), log=lines.append)
    assert again == path and len(calls) == 2 and "is damaged" in lines[-1]
    assert (path / "model.safetensors").read_bytes() == b"weights" * 100


BUILDER = """
import sys, time, json
from pathlib import Path
from trustbench.harness.train import cached_checkpoint
def build(out, work):
    Path(sys.argv[2]).open("a").write("built\\n")
    time.sleep(2)
    (out / "model.safetensors").write_bytes(b"w")
    return {}
path, _ = cached_checkpoint("unit", {"nonce": sys.argv[1]}, build, log=lambda _: None)
print(path)
"""


def test_two_processes_building_one_entry_build_it_once():
    nonce, record = str(time.time()), Path(os.environ["TRUSTBENCH_CACHE"]) / f"builds-{time.time()}.txt"
    runs = [subprocess.Popen([sys.executable, "-c", BUILDER, nonce, str(record)], stdout=subprocess.PIPE, text=True,
                             cwd=ROOT) for _ in range(2)]
    paths = {run.communicate(timeout=120)[0].strip() for run in runs}
    assert all(run.returncode == 0 for run in runs)
    assert len(paths) == 1 and record.read_text() == "built\n"


def test_a_second_process_on_one_run_directory_is_refused(tmp_path):
    run = tmp_path / "run"
    with locked(run / "run", timeout=0):
        result = subprocess.run([sys.executable, "-m", "trustbench", "run", "smoke", "--out", str(run)],
                                capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: another trustbench process is writing {run}")


TRAINER = """
import sys
from pathlib import Path
from trustbench.harness import zoo
from trustbench.harness.config import TrainConfig
from trustbench.harness.train import finetune
pairs = [(f"The box weighs {i} kg. Which item is heaviest?", " box") for i in range(48)]
finetune(zoo.resolve("tiny-random"), pairs, TrainConfig(epochs=3, lr=1e-3, batch_size=8, max_length=64), 0,
         Path(sys.argv[1]), log=print, work_dir=Path(sys.argv[2]))
"""


def test_training_killed_midway_resumes_from_its_last_epoch(tmp_path):
    """Killed after its first epoch's checkpoint, training resumes there and ends with the same weights as a run
    that was never interrupted."""
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    whole = subprocess.run([sys.executable, "-c", TRAINER, str(tmp_path / "whole"), str(tmp_path / "whole-work")],
                           capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert whole.returncode == 0, whole.stderr[-2000:]
    work = tmp_path / "work"
    killed = subprocess.Popen([sys.executable, "-c", TRAINER, str(tmp_path / "out"), str(work)], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(work.glob("checkpoint-*/trainer_state.json")):
        assert killed.poll() is None and time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert not (tmp_path / "out" / "model.safetensors").exists()
    resumed = subprocess.run([sys.executable, "-c", TRAINER, str(tmp_path / "out"), str(work)], capture_output=True,
                             text=True, timeout=600, cwd=ROOT, env=env)
    assert resumed.returncode == 0 and "resuming training from checkpoint-" in resumed.stdout, resumed.stderr[-2000:]
    mine, theirs = (load_file(tmp_path / d / "model.safetensors") for d in ("out", "whole"))
    assert mine.keys() == theirs.keys() and all((mine[k] == theirs[k]).all() for k in mine)


# What the run prints just before each kill (SIGKILL at once, or after a few ms): spread over training, teacher
# caches, scoring, the manifest and the report. Each resumed run starts past the last point, so every one is reached.
KILL_POINTS = [
    ("[prior seed 0] smoke_cot/test", 0.0),  # the first cells written, the manifest next
    ("teacher: fine-tuning", 0.0),  # inside the teacher's training
    ("trained on", 0.0),  # training done, its checkpoint not yet in the cache
    ("[teacher seed 0] scoring", 0.0),  # the manifest entry saved, no cell yet
    ("[teacher seed 0] smoke_id/val", 0.0),  # between two cells
    ("fine-tuning tiny-random-l1", 0.0),  # inside the student's training
    ("[finetune seed 0] smoke_ood/test", 0.0),
    ("teacher full distributions: one pass", 0.0),  # extracting KD's teacher cache
    ("distilling tiny-random into", 0.0),  # inside KD's training
    ("trustworthy maximization picked", 0.0),  # FIRST's c chosen, its training next
    ("elad: round 1", 0.0),  # ELAD mid-loop: the seed set and round 0 annotated, round 1 not yet
    ("[elad seed 0] smoke_cot_id/test", 0.05),  # the last cell: the manifest and the report are being written
]


def run_until(command: list[str], env: dict, marker: str | None, delay: float) -> bool:
    """Run `command`; SIGKILL it `delay` seconds after `marker` appears in its output. True if it was killed."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen = threading.Event()

    def watch():
        buffer = b""
        for chunk in iter(lambda: process.stdout.read1(4096), b""):
            buffer = (buffer + chunk)[-8192:]
            if marker and marker.encode() in buffer:
                seen.set()

    reader = threading.Thread(target=watch, daemon=True)
    reader.start()
    while process.poll() is None and not seen.wait(0.02):
        pass
    if seen.is_set() and process.poll() is None:
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=600)
    reader.join(timeout=10)
    return process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_a_smoke_run_killed_anywhere_resumes_to_the_same_results(tmp_path):
    def env(name: str) -> dict:
        cache = tmp_path / f"cache-{name}"
        cache.mkdir()
        return {**os.environ, "TRUSTBENCH_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}

    command = [sys.executable, "-m", "trustbench", "run", "smoke", "--out"]
    assert not run_until(command + [str(tmp_path / "whole")], env("whole"), None, 0)
    killed_env = env("killed")
    kills = sum(run_until(command + [str(tmp_path / "killed")], killed_env, marker, delay)
                for marker, delay in KILL_POINTS)
    assert kills >= 10  # each point was reached once, and the run was killed there
    assert not run_until(command + [str(tmp_path / "killed")], killed_env, None, 0)
    whole, resumed = (pd.read_csv(tmp_path / d / "results.csv") for d in ("whole", "killed"))
    pd.testing.assert_frame_equal(resumed, whole)

"""Training under `accelerate launch`: two CPU processes (gloo) give one process's loss curve, and only the main
process writes the checkpoint and its cache entry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import json, os, sys
from pathlib import Path
from trustbench.harness import zoo
from trustbench.harness.config import TrainConfig
from trustbench.harness.train import cached_checkpoint, finetune
items = ["box", "stone", "chair", "lamp", "shoe"]
pairs = [(f"The {items[i % 5]} weighs {i} kg. The {items[(i + 2) % 5]} weighs {100 - i} kg. Which is heaviest?",
          f" {items[i % 5] if i > 50 else items[(i + 2) % 5]}") for i in range(96)]
config = TrainConfig(epochs=2, lr=1e-3, batch_size=8, max_length=64)
path, cost = cached_checkpoint("scale", {"test": sys.argv[1]}, lambda out, work: finetune(
    zoo.resolve("tiny-random"), pairs, config, 0, out, log=lambda _: None, work_dir=work))
if os.environ.get("RANK", "0") == "0":
    Path(sys.argv[2]).write_text(json.dumps({"curve": cost["loss_curve"], "path": str(path),
                                             "files": sorted(p.name for p in path.iterdir())}))
"""


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_give_one_process_loss_curve(tmp_path, tiny_path):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(script), "one", str(tmp_path / "one.json")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    launcher = Path(sys.executable).parent / "accelerate"
    two = subprocess.run([str(launcher), "launch", "--num_processes", "2", "--cpu", "--num_machines", "1",
                          "--mixed_precision", "no", "--dynamo_backend", "no", str(script), "two",
                          str(tmp_path / "two.json")], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    single, double = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert [step for step, _ in single["curve"]] == [step for step, _ in double["curve"]] and len(single["curve"]) >= 2
    for (_, a), (_, b) in zip(single["curve"], double["curve"]):
        assert b == pytest.approx(a, rel=1e-3)  # the same batches (here one answer token each: equal halves)
    assert single["files"] == double["files"]  # one complete entry, written once
    assert not list(Path(double["path"]).parent.glob("*.staging")) and not list(Path(double["path"]).parent.glob("*.work"))

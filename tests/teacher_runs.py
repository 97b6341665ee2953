"""Helpers shared by the tests of methods that ask a teacher (ELAD, DualChecker): a run killed halfway through its
teacher requests and resumed, and a suite refused with one line before anything is written."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest

from trustbench.cli import main


def kill_and_resume(tmp_path: Path, monkeypatch, run: Callable[[str], Path]) -> tuple[list[str], list[str]]:
    """`run(name)` once whole, then again killed after half the teacher replies it stored, then resumed. Returns
    the keys the whole run stored and those the killed + resumed run stored (every reply stored once)."""
    from trustbench.harness.cache import RequestCache

    stored: list[str] = []
    real_put = RequestCache.put

    def recording(self, key, reply):
        stored.append(key)
        real_put(self, key, reply)

    monkeypatch.setattr(RequestCache, "put", recording)
    run("whole")
    whole, stored[:] = list(stored), []

    class Killed(BaseException):
        pass

    def put_then_die(self, key, reply):
        recording(self, key, reply)
        if len(stored) == len(whole) // 2:
            raise Killed

    monkeypatch.setattr(RequestCache, "put", put_then_die)
    with pytest.raises(Killed):
        run("killed")
    assert len(stored) == len(whole) // 2
    monkeypatch.setattr(RequestCache, "put", recording)
    (tmp_path / "killed" / "run.lock").unlink(missing_ok=True)
    run("killed")
    return whole, stored


def refused(tmp_path: Path, monkeypatch, capsys, suite_text: str) -> str:
    """`trustbench run` of `suite_text`: asserts exit code 2, one error line and no output folder; returns the line."""
    (tmp_path / "suite.yaml").write_text(suite_text)
    argv = ["trustbench", "run", str(tmp_path / "suite.yaml"), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert exit_.value.code == 2 and len(errors) == 1, errors
    assert not (tmp_path / "out").exists()
    return errors[0]

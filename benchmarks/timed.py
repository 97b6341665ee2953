"""Time a whole command (`make demo`, `make test` on a fresh clone) and keep the figure where the docs read it.

    .venv/bin/python benchmarks/timed.py --name make_test_fresh_clone --cwd /tmp/clone -- make test

writes `benchmarks/results/timed_<name>.json`: the command, where it ran (the directory, the machine, the git
revision), when, its wall time, the largest resident set of any process it started, its exit code and the last lines
of its output and of its errors (pytest's summary line is the last of its output); `trustbench pages` renders it into docs/measured.md. A figure of a command that failed is kept with
its exit code, never dropped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="the result's name: benchmarks/results/timed_<name>.json")
    parser.add_argument("--cwd", default=".", help="where to run the command")
    parser.add_argument("--note", default="", help="what else was running, what the machine had cached")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    from trustbench.runner import _machine

    started = time.perf_counter()
    done = subprocess.run(command, cwd=args.cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    tails = {name: text.strip().splitlines()[-4:] for name, text in (("stdout", done.stdout), ("stderr", done.stderr))}
    record = {"command": " ".join(command), "cwd": os.path.abspath(args.cwd), "machine": _machine(),
              "git_revision": _revision(args.cwd), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "wall_seconds": round(seconds, 1), "wall": f"{int(seconds // 60)} min {seconds % 60:.0f} s",
              "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20, 2),
              "exit_code": done.returncode, "note": args.note, "stdout_tail": tails["stdout"],
              "stderr_tail": tails["stderr"]}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"timed_{args.name}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{record['wall']} (exit {done.returncode}): {path}")


def _revision(cwd: str) -> str | None:
    """The commit the command ran from (its own checkout's, `+dirty` when tracked files differed), if it is one."""
    def git(*args):
        return subprocess.run(["git", "-C", cwd, *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    main()

"""Synthetic run directories for report tests: a manifest and per-cell prediction parquets, no models."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_predictions(rng: np.random.Generator, skill: float, sharpness: float, n: int,
                          choices: int | None = 4) -> pd.DataFrame:
    """`n` questions: the gold option's logit gets `skill`; `sharpness` scales the logits (over-confidence).
    `choices=None` draws 3 or 4 options per question (ragged, as in BIG-bench)."""
    rows = []
    for i in range(n):
        k = choices or int(rng.integers(3, 5))
        gold = int(rng.integers(k))
        logits = rng.normal(0.0, 1.0, k)
        logits[gold] += skill
        probs = np.exp(sharpness * (logits - logits.max()))
        probs /= probs.sum()
        pred = int(np.argmax(probs))
        rows.append({"example_id": f"ex{i}", "gold": gold, "pred": pred, "confidence": float(probs[pred]),
                     "probs": probs.tolist(), "correct": pred == gold})
    return pd.DataFrame(rows)


def manifest_dict(tasks: dict, methods, suite: str = "unit", suite_hash: str = "ab12cd34ef56", mode: str = "letter",
                  bins: int = 10, equal_mass: bool = False, n_boot: int = 100, temperature_scaling: bool = True,
                  **extra) -> dict:
    """A manifest as `trustbench run` writes it (schema 3), for `tasks` ({name: {domain, family?, sizes?, test_hash?}})
    and `methods` (names, or {name: manifest entry})."""
    methods = {name: methods[name] if isinstance(methods, dict) and isinstance(methods[name], dict) else {}
               for name in methods}
    return {
        "schema_version": 3, "suite": suite, "suite_hash": suite_hash,
        "scoring": {"mode": mode, "confidence": "probability of the chosen option"},
        "metrics": {"bins": bins, "equal_mass": equal_mass, "n_boot": n_boot},
        "temperature_scaling": temperature_scaling,
        "tasks": {name: {"domain": meta["domain"], "family": meta.get("family", ""), "sizes": meta.get("sizes", {}),
                         "test_hash": meta.get("test_hash", f"h-{name}")} for name, meta in tasks.items()},
        "methods": {name: {"method": name, **entry} for name, entry in methods.items()},
        **extra,
    }


def write_run(root: Path, manifest: dict, methods: dict, tasks: dict, seeds, rng: np.random.Generator,
              ood_skill: float, **predictions) -> Path:
    """`methods` maps name -> (skill, sharpness); OOD tasks get skill * `ood_skill`; ID tasks also get a val split."""
    for split in ("test", "val"):
        (root / "predictions" / split).mkdir(parents=True)
    (root / "manifest.json").write_text(json.dumps(manifest))
    for method, (skill, sharpness) in methods.items():
        for task, meta in tasks.items():
            for seed in seeds:
                name = f"{method}__{task}__s{seed}.parquet"
                s = skill if meta["domain"] == "id" else skill * ood_skill
                synthetic_predictions(rng, s, sharpness, **predictions).to_parquet(root / "predictions" / "test" / name)
                if meta["domain"] == "id":
                    synthetic_predictions(rng, s, sharpness, **predictions).to_parquet(
                        root / "predictions" / "val" / name)
    return root


def point_draws(results: pd.DataFrame):
    """`harness.statistics.Draws` holding only each (method, task)'s mean over seeds (no spread): for leaderboard
    tests that check ranking and layout, not intervals."""
    from trustbench.harness.statistics import CELL_METRICS as METRICS, Draws

    point, values = {}, {}
    for (method, task), rows in results.groupby(["method", "task"]):
        point[method, task] = {m: float(rows[m].mean()) if m in rows else float("nan") for m in METRICS}
        values[method, task] = {m: np.array([v]) for m, v in point[method, task].items()}
    return Draws(point, values, 1)


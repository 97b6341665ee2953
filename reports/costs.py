"""What each method's training cost and recorded, as one table: a pure function of the manifest.

Rows are method x seed; columns are the cost record every method returns (train seconds, train tokens, teacher
calls and tokens) and, for the distillation methods, their teacher cache: how much of the teacher's probability the
top k keep, the cache's bytes against the full distributions it replaces, the extraction engine and its speed,
and FIRST's chosen c.
"""
from __future__ import annotations

import pandas as pd

COLUMNS = ["method", "seed", "train_seconds", "train_tokens", "teacher_calls", "teacher_tokens", "k", "c",
           "topk_mass", "cache_bytes", "full_bytes", "full_over_cache", "engine", "extract_tok_per_s"]


def cost_table(manifest: dict) -> pd.DataFrame:
    rows = []
    for method, entry in sorted((manifest.get("methods") or {}).items()):
        for seed, run in sorted((entry.get("runs") or {}).items(), key=lambda item: int(item[0])):
            cost = run.get("cost") or {}
            record = cost.get("first") or {}
            cache = record.get("teacher_cache") or cost.get("teacher_cache") or {}
            rows.append({
                "method": method, "seed": int(seed), "train_seconds": cost.get("train_seconds"),
                "train_tokens": cost.get("train_tokens"), "teacher_calls": cost.get("teacher_calls"),
                "teacher_tokens": cost.get("teacher_tokens"), "k": record.get("k", cache.get("k")),
                "c": record.get("c"), "topk_mass": cache.get("mean_mass"), "cache_bytes": cache.get("cache_bytes"),
                "full_bytes": cache.get("full_bytes"), "full_over_cache": cache.get("full_over_cache"),
                "engine": cache.get("engine"), "extract_tok_per_s": cache.get("tokens_per_s")})
    return pd.DataFrame(rows, columns=COLUMNS).dropna(axis=1, how="all")


def format_value(value) -> str:
    """A table cell: blank for what a method did not record, integers without a decimal point."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)

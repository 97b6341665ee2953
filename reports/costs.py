"""What each method's training cost, as one table: a pure function of the manifest.

Rows are method x seed; columns are every scalar of the cost record the methods returned: first the ones every
method has (train seconds and tokens, teacher calls and tokens), then the others in alphabetical order, such as a
distillation method's teacher cache (`k`, `topk_mass`, `cache_bytes` against the `full_bytes` it replaces, the
extraction `engine` and its `extract_tok_per_s`) or FIRST's chosen `c`. No method is known here by name.
"""
from __future__ import annotations

import pandas as pd

from trustbench.harness.store import Manifest

FIRST_COLUMNS = ["method", "seed", "train_seconds", "train_tokens", "teacher_calls", "teacher_tokens"]


def cost_table(manifest: Manifest) -> pd.DataFrame:
    rows = []
    for method, entry in sorted(manifest.methods.items()):
        for seed, run in sorted(entry.runs.items()):
            scalars = {k: v for k, v in run.cost.items() if isinstance(v, (int, float, str, bool)) or v is None}
            rows.append({"method": method, "seed": int(seed), **scalars})
    others = sorted({key for row in rows for key in row} - set(FIRST_COLUMNS))
    return pd.DataFrame(rows, columns=FIRST_COLUMNS + others).dropna(axis=1, how="all")


def format_value(value) -> str:
    """A table cell: blank for what a method did not record, integers without a decimal point."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4g}"
    return str(value)

"""The cost table: one row per method x seed, teacher-cache columns from KD's and FIRST's records."""
from __future__ import annotations

import math

import pytest

from reports.costs import cost_table, format_value

CACHE = {"positions": 4, "cache_bytes": 160, "full_bytes": 4 * 100 * 4, "full_over_cache": 10.0, "engine": "vllm",
         "k": 5, "tokens": 400, "seconds": 2.0, "tokens_per_s": 200.0, "mean_mass": 0.93}
MANIFEST = {"methods": {
    "finetune": {"runs": {"1": {"cost": {"train_seconds": 3.5, "train_tokens": 800, "teacher_calls": 0}},
                          "0": {"cost": {"train_seconds": 3.0, "train_tokens": 800, "teacher_calls": 0}}}},
    "first": {"runs": {"0": {"cost": {"train_seconds": 4.0, "teacher_calls": 6, "first": {
        "k": 5, "c": 0.3, "teacher_cache": CACHE}}}}},
    "kd": {"runs": {"0": {"cost": {"teacher_calls": 4, "teacher_cache": {**CACHE, "k": None, "full_over_cache": 1.0,
                                                                        "engine": "hf"}}}}},
}}


def test_one_row_per_method_and_seed_in_order():
    table = cost_table(MANIFEST)
    assert list(zip(table.method, table.seed)) == [("finetune", 0), ("finetune", 1), ("first", 0), ("kd", 0)]


@pytest.mark.parametrize("method, column, expected", [
    ("first", "c", 0.3), ("first", "k", 5), ("first", "full_over_cache", 10.0), ("first", "engine", "vllm"),
    ("first", "topk_mass", 0.93), ("first", "extract_tok_per_s", 200.0), ("kd", "engine", "hf"),
    ("kd", "full_over_cache", 1.0), ("finetune", "train_seconds", 3.0), ("finetune", "c", None),
])
def test_columns_come_from_each_methods_record(method, column, expected):
    value = cost_table(MANIFEST).set_index(["method", "seed"]).loc[(method, 0), column]
    if expected is None:
        assert value is None or (isinstance(value, float) and math.isnan(value))
    else:
        assert value == expected


def test_columns_nobody_recorded_are_dropped_and_an_empty_manifest_is_empty():
    assert "teacher_tokens" not in cost_table(MANIFEST).columns
    assert cost_table({"methods": {}}).empty


@pytest.mark.parametrize("value, text", [(None, ""), (float("nan"), ""), (14332.0, "14332"), (0.05881, "0.05881"),
                                         (1234.5678, "1235"), ("hf", "hf"), (3, "3")])
def test_cells_are_formatted_for_reading(value, text):
    assert format_value(value) == text

"""The cost table: one row per method x seed, teacher-cache columns from KD's and FIRST's records."""
from __future__ import annotations

import math

import pytest

from trustbench.harness.store import parse_manifest
from trustbench.reports.costs import cost_table, format_value
from synthetic_runs import manifest_dict

CACHE = {"k": 5, "topk_mass": 0.93, "cache_bytes": 160, "full_bytes": 4 * 100 * 4, "full_over_cache": 10.0,
         "engine": "vllm", "extract_tok_per_s": 200.0}
MANIFEST = parse_manifest(manifest_dict({"t": {"domain": "id"}}, {
    "finetune": {"runs": {"1": {"checkpoint": "a", "cost": {"train_seconds": 3.5, "train_tokens": 800, "teacher_calls": 0}},
                          "0": {"checkpoint": "b", "cost": {"train_seconds": 3.0, "train_tokens": 800, "teacher_calls": 0}}}},
    "first": {"runs": {"0": {"checkpoint": "c", "cost": {"train_seconds": 4.0, "teacher_calls": 6, "c": 0.3, **CACHE},
                             "records": {"first": {"ece_curve": [[0.3, 0.1]]}}}}},
    "kd": {"runs": {"0": {"checkpoint": "d", "cost": {"teacher_calls": 4, **CACHE, "k": None, "full_over_cache": 1.0,
                                                      "engine": "hf"}}}},
}))


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


def test_columns_nobody_recorded_are_dropped_records_stay_out_and_an_empty_manifest_is_empty():
    columns = cost_table(MANIFEST).columns
    assert "teacher_tokens" not in columns and "ece_curve" not in columns and "first" not in columns
    assert list(columns[:5]) == ["method", "seed", "train_seconds", "train_tokens", "teacher_calls"]
    assert cost_table(parse_manifest(manifest_dict({}, {}))).empty


def test_a_schema_1_manifest_is_migrated():
    """Before schema 2, FIRST's record rode in cost["first"] and caches were nested records."""
    old = manifest_dict({"t": {"domain": "id"}}, {
        "first": {"runs": {"0": {"checkpoint": "c", "cost": {"teacher_calls": 6, "first": {
            "k": 5, "c": 0.3, "ece_curve": [[0.3, 0.1]], "teacher_cache": {"mean_mass": 0.9, "engine": "vllm"}}}}}}})
    old.pop("schema_version")
    old["tasks"] = {"t": {"name": "t", "domain": "id", "family": "f", "sizes": {"test": 3}, "test_hash": "h"}}
    manifest = parse_manifest(old)
    run = manifest.methods["first"].runs[0]
    assert run.records["first"]["ece_curve"] == [[0.3, 0.1]] and "first" not in run.cost
    assert (run.cost["c"], run.cost["topk_mass"], run.cost["engine"]) == (0.3, 0.9, "vllm")
    assert manifest.tasks["t"].card == {"name": "t", "domain": "id", "family": "f"}
    assert manifest.tasks["t"].sizes == {"test": 3} and manifest.records("first")["first"]["c"] == 0.3


@pytest.mark.parametrize("value, text", [(None, ""), (float("nan"), ""), (14332.0, "14332"), (0.05881, "0.05881"),
                                         (1234.5678, "1235"), ("hf", "hf"), (3, "3")])
def test_cells_are_formatted_for_reading(value, text):
    assert format_value(value) == text

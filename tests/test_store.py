"""The run directory model: the manifest round trip, the cells a run expects, names that become files."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from trustbench.harness.errors import UserError
from trustbench.harness.registry import Registry
from trustbench.harness.store import SCHEMA, Manifest, RunDir, Source, check_name, parse_manifest
from synthetic_runs import manifest_dict

TASKS = {"a": {"domain": "id", "sizes": {"train": 4, "val": 2, "test": 3}},
         "b": {"domain": "id", "sizes": {"train": 4, "val": 0, "test": 3}},
         "c": {"domain": "ood", "sizes": {"test": 3}}}


def manifest(**extra) -> Manifest:
    return parse_manifest(manifest_dict(TASKS, {"kd": {"runs": {"0": {"checkpoint": "x", "tasks": ["a", "b", "c"],
                                                                       "records": {"r": {"v": 1}}}}}}, **extra))


def test_the_manifest_round_trips_through_json_and_keeps_its_schema(tmp_path):
    run = RunDir(tmp_path)
    run.save(manifest())
    loaded = run.load()
    assert loaded == manifest() and loaded.schema_version == SCHEMA
    assert json.loads(run.manifest_path.read_text())["methods"]["kd"]["runs"]["0"]["records"] == {"r": {"v": 1}}
    assert loaded.records("r") == {"kd": {"v": 1}} and loaded.records("missing") == {}


@pytest.mark.parametrize("temperature_scaling, expected", [
    (True, [("test", "kd", "a", 0), ("val", "kd", "a", 0), ("test", "kd", "b", 0), ("test", "kd", "c", 0)]),
    (False, [("test", "kd", "a", 0), ("test", "kd", "b", 0), ("test", "kd", "c", 0)]),
])
def test_the_cells_a_run_expects(temperature_scaling, expected):
    """Test cells for every task; val cells for ID tasks with a val split when temperatures are fitted."""
    assert manifest(temperature_scaling=temperature_scaling).expected_cells() == expected


def test_missing_cells_are_named_and_present_ones_pass(tmp_path):
    run = RunDir(tmp_path)
    loaded = manifest(temperature_scaling=False)
    frame = pd.DataFrame({"example_id": ["q"], "gold": [0], "pred": [0], "confidence": [1.0], "probs": [[1.0]],
                          "correct": [True]})
    for cell in loaded.expected_cells()[:-1]:
        run.write_cell(cell, frame)
    with pytest.raises(UserError, match=r"kd__c__s0.parquet are missing \(manifest.json says kd seed 0 scored c\)"):
        run.check_cells(loaded)
    run.write_cell(("test", "kd", "c", 0), frame)
    run.check_cells(loaded)
    assert sorted(run.cells("test")) == [("kd", "a", 0), ("kd", "b", 0), ("kd", "c", 0)]


@pytest.mark.parametrize("raw, message", [
    ("{not json", "cannot read .* it is damaged"),
    ('{"suite": "x"}', r"is not a trustbench manifest \(suite_hash: Field required\)"),
    ('[1, 2]', "is not a trustbench manifest"),
])
def test_a_damaged_manifest_is_one_line(tmp_path, raw, message):
    (tmp_path / "manifest.json").write_text(raw)
    with pytest.raises(UserError, match=message) as error:
        RunDir(tmp_path).load()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["a/b", "..", "x__y", "+ts", "kd+ts", "", " a", "a b"])
def test_names_that_cannot_be_file_names_are_refused(name):
    with pytest.raises(UserError, match="cannot name a file"):
        check_name("method", name)


@pytest.mark.parametrize("name", ["kd", "first_c0.1", "kd-pure", "elad", "A1"])
def test_ordinary_names_pass(name):
    check_name("method", name)


def test_a_registry_suggests_and_refuses_a_second_object_under_one_name():
    registry = Registry("widget", "see the docs")
    registry.register("round")(len)
    registry.register("round")(len)  # the same object again (a module imported twice): fine
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("round")(max)
    with pytest.raises(UserError, match="unknown widget 'rond': did you mean 'round'\\? use one of round"):
        registry.get("rond")
    assert "round" in registry and list(registry) == ["round"]


def test_a_schema_2_manifest_names_the_recipes_under_trustbench():
    """Schema 2 (before one import root) stored a built-in recipe as `baselines.kd`; a plugin's module stays."""
    old = manifest_dict(TASKS, {"kd": {"module": "baselines.kd"}, "mine": {"module": "my_methods"},
                                "elad": {"module": "baselines.elad"}, "teacher": {}})
    old["schema_version"] = 2
    migrated = parse_manifest(old)
    assert migrated.schema_version == SCHEMA == 4
    assert {name: entry.module for name, entry in migrated.methods.items()} == {
        "kd": "trustbench.baselines.kd", "mine": "my_methods", "elad": "trustbench.baselines.elad", "teacher": None}


def test_a_schema_3_manifest_is_a_run_trustbench_scored_itself():
    """Schema 3 (before lm-eval imports) had no `source`: it migrates to the current schema with none."""
    old = manifest_dict(TASKS, ["kd"])
    assert old["schema_version"] == 3
    migrated = parse_manifest(old)
    assert migrated.schema_version == SCHEMA and migrated.source is None
    assert "source" not in old  # the stored dict is not changed by the migration


def test_an_imported_runs_source_round_trips(tmp_path):
    """An imported run's manifest names where its predictions were scored; a misspelt source field is refused."""
    source = Source(tool="lm-eval", version="0.4.13", model="hf", model_args={"pretrained": "m"}, path="/r.json",
                    tasks={"t": {"config": {"num_fewshot": 0}, "n_shot": 0}})
    run = RunDir(tmp_path)
    run.save(manifest(source=source.model_dump()))
    assert run.load().source == source
    raw = json.loads(run.manifest_path.read_text())
    raw["source"]["versoin"] = "1"
    with pytest.raises(UserError, match=r"source.versoin"):
        parse_manifest(raw)


FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema2_smoke"


def test_a_run_written_with_schema_2_rebuilds_byte_identically(tmp_path):
    """A smoke run written by trustbench at f98766b (schema 2, before one import root), reported by today's code:
    every file (tables, leaderboards, figures, report.html) is byte for byte what it was when the hashes beside
    the run were stored: by the schema-2 code itself, then again when the calibration battery added its columns,
    +iso rows and smooth diagrams and the teacher-agreement table and figure (the files they did not change kept
    their hashes); the run itself is not touched."""
    before = {p: p.read_bytes() for p in FIXTURE.rglob("*") if p.is_file()}
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "trustbench", "report", str(FIXTURE), "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = {f"./{p.relative_to(out)}": hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(out.rglob("*")) if p.is_file()}
    stored = dict(reversed(line.split()) for line in FIXTURE.with_suffix(".report.sha256").read_text().splitlines())
    assert len(stored) == 174 and written == stored
    assert {p: p.read_bytes() for p in FIXTURE.rglob("*") if p.is_file()} == before

"""Suites: parsing, validation errors, CLI overrides, and what the suite hash covers."""
from __future__ import annotations

import pytest

from trustbench.harness.config import MethodSpec, builtin_suites, load_suite, override, parse_suite
from trustbench.harness.errors import UserError

BASE = {"name": "t", "teacher": "tiny-random", "student": "tiny-random-l1", "tasks": ["smoke_id"],
        "methods": ["teacher", {"finetune": {"lr": 1e-3}}, {"method": "finetune", "name": "ft-slow", "lr": 1e-5}]}


def test_builtin_suites_load():
    assert {"smoke", "demo"} <= set(builtin_suites())
    for name in builtin_suites():
        suite = load_suite(name)
        assert suite.tasks and suite.methods and suite.description


def test_method_entries():
    suite = parse_suite(BASE)
    assert suite.methods == (MethodSpec("teacher", "teacher", {}), MethodSpec("finetune", "finetune", {"lr": 1e-3}),
                             MethodSpec("ft-slow", "finetune", {"lr": 1e-5}))


@pytest.mark.parametrize("change, message", [
    ({"teacher": None}, "missing 'teacher'"),
    ({"colour": "red"}, "unknown key"),
    ({"backend": "tpu"}, "backend: input should be 'hf' or 'vllm' \\(got 'tpu'\\)"),
    ({"scoring": "vibes"}, "scoring: input should be 'letter' or 'choice'"),
    ({"seeds": ["a"]}, "seeds must be a list of integers"),
    ({"train": {"lr": 1, "speed": 3}}, "unknown train key"),
    ({"methods": ["teacher", "teacher"]}, "appear twice"),
    ({"methods": [42]}, "cannot read method entry"),
    ({"methods": "teacher"}, "methods must be a list"),
])
def test_bad_suites_are_one_line_errors(change, message):
    with pytest.raises(UserError, match=message) as error:
        parse_suite({**BASE, **change})
    assert "\n" not in str(error.value)


def test_bad_files(tmp_path):
    with pytest.raises(UserError, match="unknown suite 'nope'"):
        load_suite("nope")
    with pytest.raises(UserError, match="does not exist"):
        load_suite(str(tmp_path / "missing.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("teacher: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_suite(str(broken))


def test_overrides_select_and_keep_the_hash():
    suite = parse_suite(BASE)
    narrowed = override(suite, methods=["ft-slow"], seeds=[1, 2], tasks=["smoke_ood"])
    assert [m.name for m in narrowed.methods] == ["ft-slow"] and narrowed.seeds == (1, 2)
    assert narrowed.hash == suite.hash  # selecting cells keeps runs comparable
    assert override(suite, backend="hf").hash != suite.hash
    assert parse_suite({**BASE, "train": {"lr": 1e-2}}).hash != suite.hash
    with pytest.raises(UserError, match="not in suite"):
        override(suite, methods=["kd"])


def test_a_suite_can_extend_another(tmp_path):
    from trustbench.harness.config import load_suite

    path = tmp_path / "variant.yaml"
    path.write_text("extends: smoke\nmethods: [finetune, {name: first_k3, method: first, k: 3}]\n")
    variant, smoke = load_suite(str(path)), load_suite("smoke")
    assert variant.name == "variant" and variant.teacher == smoke.teacher and variant.train == smoke.train
    assert [m.name for m in variant.methods] == ["finetune", "first_k3"] and variant.hash == smoke.hash
    ablations = load_suite("first-ablations")
    assert ablations.hash == load_suite("demo").hash and len(ablations.methods) >= 10


def test_suites_that_share_a_run_spell_shared_variants_alike():
    """Suites with one hash (an ablation suite and its profile) add rows to one run folder, which refuses a variant
    name stored with other parameters, so a variant both suites name must be written the same in both."""
    suites = [load_suite(name) for name in builtin_suites()]
    shared = 0
    for first in suites:
        for second in suites:
            if first.name < second.name and first.hash == second.hash:
                mine = {m.name: (m.method, m.params) for m in first.methods}
                for method in second.methods:
                    if method.name in mine:
                        shared += 1
                        assert mine[method.name] == (method.method, method.params), (first.name, second.name,
                                                                                     method.name)
    assert shared >= 10  # elad-ablations/elad and first-ablations/demo share their baselines and variants


def test_extends_is_relative_to_the_file_and_refuses_cycles(tmp_path, monkeypatch):
    from trustbench.harness.config import load_suite

    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "base.yaml").write_text("extends: smoke\nseeds: [3]\n")
    (folder / "child.yaml").write_text("extends: base.yaml\n")
    monkeypatch.chdir(tmp_path)  # base.yaml is not in the working directory
    assert load_suite(str(folder / "child.yaml")).seeds == (3,)
    (folder / "a.yaml").write_text("extends: b.yaml\n")
    (folder / "b.yaml").write_text("extends: a.yaml\n")
    for name in ("a.yaml", "b.yaml"):
        with pytest.raises(UserError, match="extends itself"):
            load_suite(str(folder / name))
    (folder / "self.yaml").write_text("extends: self.yaml\n")
    with pytest.raises(UserError, match="extends itself"):
        load_suite(str(folder / "self.yaml"))


def test_tasks_override_on_a_suite_with_sizes_keeps_the_sizes_of_the_tasks_it_keeps():
    from trustbench.harness.config import override

    demo = load_suite("demo")
    picked = override(demo, tasks=["provinces_europe", "provinces_americas"])
    assert picked.tasks == ("provinces_europe", "provinces_americas")
    assert picked.sizes == demo.sizes and picked.hash == demo.hash  # choosing tasks changes what runs, not the run
    from trustbench.runner import sized_card

    assert sized_card(picked, "provinces_americas").test == 500  # its card's own size
    assert sized_card(picked, "provinces_europe").train == 400

"""The task registry, the split rule and every loader (bigbench, jsonl, synthetic, lmeval). CPU only, no network."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest

from trustbench import tasks
from trustbench.harness.errors import UserError
from trustbench.harness.types import Example, TaskCard
from trustbench.tasks import bigbench, jsonl, synthetic


@pytest.fixture(autouse=True)
def _fresh_registry():
    tasks.clear_cache()
    yield
    tasks.clear_cache()


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    return msg


def card(**kw) -> TaskCard:
    base = dict(name="t", domain="id", family="f", format="mc", source="synthetic:id", test=10)
    return tasks.card_from_dict({**base, **kw})


# ---------------------------------------------------------------------------------------------------- cards
def test_builtin_cards_load_and_validate():
    cards = tasks.all_cards()
    demo = {"provinces_europe": "id", "provinces_africa": "ood", "provinces_asia": "ood", "multiemo_hotels": "id",
            "multiemo_medicine": "ood", "smoke_id": "id", "smoke_ood": "ood"}
    for name, domain in demo.items():
        assert cards[name].domain == domain
    assert cards["provinces_africa"].family == cards["provinces_europe"].family == "geography_provinces"
    assert cards["multiemo_medicine"].family == cards["multiemo_hotels"].family == "sentiment"
    id_families = {c.family for c in cards.values() if c.domain == "id"}
    for c in cards.values():
        assert c.format in ("mc", "cot") and c.source.split(":")[0] in tasks.LOADERS
        assert c.description, f"{c.name} needs a description"
        assert c.license, f"{c.name} needs the licence of its data"
        if c.domain == "ood":
            assert c.family in id_families, f"OOD card {c.name} has no ID card in family {c.family}"
            assert c.train == c.val == 0
    c = cards["multiemo_hotels"]
    assert (c.train, c.val, c.test, c.max_prompt_chars) == (300, 100, 150, 800)
    assert c.options.get("task_prefix") is True  # the prompt carries the task instruction
    assert tasks.get_card(str(tasks.CARDS_DIR / "smoke_id.yaml")) == cards["smoke_id"]  # by path, the same card


@pytest.mark.parametrize("text, needle", [
    ("name: bad\ndomain: id\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: 5\ncolour: red\n", "'colour'"),
    ("name: bad\ndomain: indomain\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: 5\n", "'domain'"),
    ("name: bad\ndomain: id\nfamily: f\nformat: essay\nsource: synthetic:id\ntest: 5\n", "'format'"),
    ("domain: id\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: 5\n", "'name'"),
    ("name: other\ndomain: id\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: 5\n", "'name'"),
    ("name: bad\ndomain: id\nfamily: f\nformat: mc\nsource: csv:x.csv\ntest: 5\n", "'source'"),
    ("name: bad\ndomain: id\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: -1\n", "'test'"),
    ("name: bad\ndomain: id\nfamily: f\nformat: mc\nsource: synthetic:id\ntest: 5\nmax_prompt_chars: 0\n",
     "'max_prompt_chars'"),
    ("name: bad\ndomain: [id\n", "YAML"),
])
def test_bad_card_names_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as exc:
        tasks.load_card(path)
    msg = one_line(exc)
    assert str(path) in msg and needle in msg


def test_unknown_key_suggests_the_right_one():
    with pytest.raises(UserError, match="did you mean 'max_prompt_chars'"):
        tasks.card_from_dict(dict(name="t", domain="id", family="f", format="mc", source="synthetic:id",
                                  test=5, max_prompt_char=3))


def test_unknown_task_lists_close_matches():
    with pytest.raises(UserError) as exc:
        tasks.get_card("multiemo_hotel")
    msg = one_line(exc)
    assert "multiemo_hotels" in msg and "trustbench list tasks" in msg


# ---------------------------------------------------------------------------------------------------- split rule
def test_split_is_deterministic_disjoint_and_sized():
    c = tasks.get_card("smoke_id")
    s1 = tasks.split(c)
    assert (len(s1.train), len(s1.val), len(s1.test)) == (64, 32, 48)
    ids = [[e.id for e in part] for part in (s1.train, s1.val, s1.test)]
    assert len(set().union(*map(set, ids))) == 64 + 32 + 48
    tasks.clear_cache()
    s2 = tasks.split(tasks.get_card("smoke_id"))
    assert s1 == s2
    # the rule itself: seeded permutation, then test, val, train
    usable = tasks.usable_examples(c)
    order = np.random.default_rng(c.split_seed).permutation(len(usable))
    assert [e.id for e in s1.test] == [usable[i].id for i in order[:48]]
    assert [e.id for e in s1.val] == [usable[i].id for i in order[48:80]]
    assert [e.id for e in s1.train] == [usable[i].id for i in order[80:144]]
    # test and val do not move when train changes; another seed gives another test set
    smaller = dataclasses.replace(c, train=5)
    assert tasks.split(smaller).test == s1.test and tasks.split(smaller).val == s1.val
    assert tasks.split(dataclasses.replace(c, split_seed=7)).test != s1.test


def test_split_filters_long_prompts_clamps_and_rejects_empty(tmp_path):
    rows = [{"prompt": "x" * (10 if i % 2 else 100), "choices": ["a", "b"], "gold": 0} for i in range(20)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    c = card(name="long", source=f"jsonl:{tmp_path / 'd.jsonl'}", test=4, val=3, train=50, max_prompt_chars=50)
    assert len(tasks.load_examples(c)) == 20 and len(tasks.usable_examples(c)) == 10
    s = tasks.split(c)
    assert (len(s.test), len(s.val), len(s.train)) == (4, 3, 3)  # train clamped to what is left
    assert all(len(e.prompt) <= 50 for e in s.test + s.val + s.train)
    info = tasks.describe(c)
    assert info["sizes"] == {"total": 20, "usable": 10, "train": 3, "val": 3, "test": 4} and info["num_choices"] == 2
    with pytest.raises(UserError) as exc:
        tasks.split(dataclasses.replace(c, test=10, val=1))
    assert "val split is empty" in one_line(exc)


# ---------------------------------------------------------------------------------------------------- synthetic
WEIGHT = re.compile(r"The (\w+) (?:weighs (\d+) kg|has a mass of (\d+) g)")


def true_gold(ex: Example) -> int:
    weights = {m.group(1): int(m.group(2) or m.group(3)) for m in WEIGHT.finditer(ex.prompt)}
    assert set(weights) == set(ex.choices)
    return max(range(len(ex.choices)), key=lambda i: weights[ex.choices[i]])


@pytest.mark.parametrize("variant", ["id", "ood"])
def test_synthetic_is_deterministic_with_about_ten_percent_noise(variant):
    a = synthetic.generate(variant, n=2000, seed=3)
    assert a == synthetic.generate(variant, n=2000, seed=3)
    assert a != synthetic.generate(variant, n=2000, seed=4)
    assert all(len(e.choices) == 4 and 0 <= e.gold < 4 for e in a)
    noisy = np.mean([e.gold != true_gold(e) for e in a])
    assert 0.08 <= noisy <= 0.12, noisy
    clean = synthetic.generate(variant, n=300, seed=3, noise=0.0)
    assert all(e.gold == true_gold(e) for e in clean)
    assert {e.gold for e in a} == {0, 1, 2, 3}


def test_synthetic_ood_shifts_surface_form_not_answer_format():
    id_ex, ood_ex = synthetic.generate("id", n=300), synthetic.generate("ood", n=300)
    id_names = {n for e in id_ex for n in e.choices}
    ood_names = {n for e in ood_ex for n in e.choices}
    assert not id_names & ood_names
    assert np.mean([len(e.prompt) for e in ood_ex]) > 1.5 * np.mean([len(e.prompt) for e in id_ex])
    assert len({e.prompt.rsplit(". ", 1)[-1] for e in ood_ex}) > 1  # several phrasings
    with pytest.raises(UserError, match="synthetic:id, synthetic:ood, synthetic:cot"):
        tasks.load_examples(card(source="synthetic:mixed"))


# ---------------------------------------------------------------------------------------------------- jsonl
def test_jsonl_happy_path_with_relative_path(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "qa.jsonl").write_text(
        json.dumps({"id": "q1", "prompt": " 2 + 2 = ? ", "choices": ["3", "4"], "gold": 1, "rationale": "add"}) + "\n"
        + "\n"
        + json.dumps({"question": "Capital of France?", "choices": ["Rome", "Paris", "Oslo"], "gold": "Paris",
                      "detail": "Europe.", "extra": 1}) + "\n"
    )
    (tmp_path / "qa.yaml").write_text("name: qa\ndomain: ood\nfamily: f\nformat: mc\nsource: jsonl:data/qa.jsonl\ntest: 2\n")
    c = tasks.load_card(tmp_path / "qa.yaml")
    assert c.source == f"jsonl:{data / 'qa.jsonl'}"
    assert tasks.load_examples(c) == [
        Example(id="q1", prompt="2 + 2 = ?", choices=("3", "4"), gold=1, rationale="add"),
        Example(id="qa-3", prompt="Capital of France?", choices=("Rome", "Paris", "Oslo"), gold=1, detail="Europe."),
    ]


@pytest.mark.parametrize("row, needle", [
    ({"prompt": "q", "choices": ["a", "b"], "gold": 2}, "out of range"),
    ({"prompt": "q", "choices": ["a", "b"], "gold": "c"}, "not one of the choices"),
    ({"prompt": "q", "gold": 0}, "missing key 'choices'"),
    ({"choices": ["a", "b"], "gold": 0}, "missing key 'prompt'"),
    ({"prompt": "q", "choices": ["a", "b"]}, "missing key 'gold'"),
    ({"prompt": "q", "choices": ["a"], "gold": 0}, "at least 2"),
    ({"prompt": "q", "choices": ["a", "b"], "gold": True}, "'gold'"),
    ("{not json", "not valid JSON"),
])
def test_jsonl_errors_name_file_and_line(tmp_path, row, needle):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"prompt": "ok", "choices": ["a", "b"], "gold": 0})
    path.write_text(good + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n")
    with pytest.raises(UserError) as exc:
        jsonl.read_jsonl(path)
    msg = one_line(exc)
    assert f"{path}:2" in msg and needle in msg


def test_jsonl_missing_file_and_duplicate_ids(tmp_path):
    with pytest.raises(UserError, match="not found"):
        tasks.load_examples(card(source=f"jsonl:{tmp_path / 'nope.jsonl'}"))
    path = tmp_path / "dup.jsonl"
    path.write_text("\n".join(json.dumps({"id": "a", "prompt": "q", "choices": ["x", "y"], "gold": 0}) for _ in range(2)))
    with pytest.raises(UserError, match="already used on line 1"):
        jsonl.read_jsonl(path)


# ---------------------------------------------------------------------------------------------------- lmeval
LMEVAL_ROWS = [
    {"question": "What color is the sky?", "options": ["red", "blue", "green"], "answer": 1},
    {"question": "2 + 2 = ?", "options": ["3", "4", "5", "22"], "answer": 1},
    {"question": "Capital of France?", "options": ["Paris", "Rome"], "answer": 0},
]


def test_lmeval_local_task_converts_to_examples(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    data = tmp_path / "tiny.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in LMEVAL_ROWS) + "\n")
    yaml_dir = tmp_path / "lm_tasks"
    yaml_dir.mkdir()
    common = (f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
              "doc_to_text: \"Question: {{question}}\\nAnswer:\"\ndoc_to_target: answer\n")
    (yaml_dir / "tb_tiny.yaml").write_text(
        "task: tb_tiny\noutput_type: multiple_choice\ndoc_to_choice: \"{{options}}\"\n" + common)
    (yaml_dir / "tb_gen.yaml").write_text("task: tb_gen\noutput_type: generate_until\n" + common)
    c = card(name="tiny", source="lmeval:tb_tiny", test=3, options={"include_path": str(yaml_dir)})
    got = tasks.load_examples(c)
    assert got == [
        Example(id=f"tiny-{i}", prompt=f"Question: {r['question']}\nAnswer:",
                choices=tuple(f" {o}" for o in r["options"]), gold=r["answer"])  # lm-eval's continuations
        for i, r in enumerate(LMEVAL_ROWS)
    ]
    assert os.environ["HF_DATASETS_OFFLINE"] == "1"
    with pytest.raises(UserError) as exc:
        tasks.load_examples(dataclasses.replace(c, source="lmeval:tb_gen"))
    assert "multiple_choice" in one_line(exc)
    with pytest.raises(UserError) as exc:
        tasks.load_examples(dataclasses.replace(c, source="lmeval:tb_tiyn"))
    assert "did you mean tb_tiny" in one_line(exc)


# ---------------------------------------------------------------------------------------------------- bigbench
FAKE_TASK = {
    "name": "fake",
    "task_prefix": "Decide.\n",
    "examples": [
        {"input": "  first  ", "target_scores": {"yes ": 0, "no": 1}},
        {"input": "no scores", "target": "yes"},
        {"input": "tie", "target_scores": {"a": 1, "b": 1, "c": 0}},
        {"input": "Is it so?", "target_scores": {"Yes": 1, "No": 0}, "target": "Yes. Because it is."},
        {"input": "graded", "target_scores": {"a": 0.2, "b": 0.9, "c": 0.5}},
    ],
}


def test_bigbench_parse_rules():
    parsed = bigbench.parse_task(FAKE_TASK, "fake")
    assert parsed.skipped == {"no_target_scores": 1, "tied_top_score": 1}
    assert parsed.examples == [
        Example(id="fake-0", prompt="first", choices=("yes", "no"), gold=1),
        Example(id="fake-3", prompt="Is it so?", choices=("Yes", "No"), gold=0, rationale="Because it is."),
        Example(id="fake-4", prompt="graded", choices=("a", "b", "c"), gold=1),
    ]
    prefixed = bigbench.parse_task(FAKE_TASK, "fake", task_prefix=True).examples
    assert prefixed[0].prompt == "Decide.\n\nfirst"
    shuffled = bigbench.parse_task(FAKE_TASK, "fake", shuffle_seed=1).examples
    assert [e.choices[e.gold] for e in shuffled] == [e.choices[e.gold] for e in parsed.examples]
    assert shuffled == bigbench.parse_task(FAKE_TASK, "fake", shuffle_seed=1).examples


REVIEWS = {"examples": [
    {"input": "Great stay. The staff were rude!\nThe room was clean.", "target_scores": {"neutral": 0, "positive": 1,
                                                                                         "negative": 0}},
    {"input": "Never again? Awful.", "target_scores": {"neutral": 0, "positive": 0, "negative": 1}},
    {"input": "It was a hotel.", "target_scores": {"neutral": 1, "positive": 0, "negative": 0}},
]}


@pytest.mark.parametrize("short, labels, prompts, golds", [
    ("first_sentence", None, ["Great stay.", "Never again?", "It was a hotel."], [1, 2, 0]),
    ("last_line", None, ["The room was clean.", "Never again? Awful.", "It was a hotel."], [1, 2, 0]),
    (None, ["negative", "positive"], ["Great stay. The staff were rude!\nThe room was clean.", "Never again? Awful."],
     [1, 0]),  # the neutral review is dropped; the choices are the labels, in their order
    ("first_sentence", ["positive", "negative"], ["Great stay.", "Never again?"], [0, 1]),
])
def test_bigbench_short_and_labels_options(short, labels, prompts, golds):
    parsed = bigbench.parse_task(REVIEWS, "r", short=short, labels=labels)
    assert [e.prompt for e in parsed.examples] == prompts and [e.gold for e in parsed.examples] == golds
    source = [REVIEWS["examples"][int(e.id.rsplit("-", 1)[1])]["input"] for e in parsed.examples]
    assert [e.detail for e in parsed.examples] == (source if short else [None] * len(prompts))  # the whole input
    if labels:
        assert {e.choices for e in parsed.examples} == {tuple(labels)} and parsed.skipped == {"other_label": 1}


@pytest.mark.parametrize("options, message", [
    ({"short": "middle"}, "option short is 'middle'; use one of first_sentence, last_line"),
    ({"labels": "positive"}, "option labels must be a list of at least two choice names"),
    ({"labels": ["positive"]}, "option labels must be a list of at least two choice names"),
])
def test_bigbench_short_and_labels_are_checked_before_any_data_is_read(options, message):
    card = tasks.card_from_dict({"name": "r", "domain": "id", "family": "f", "format": "mc", "test": 5,
                                 "source": "bigbench:multiemo/hotels_text_en", "options": options})
    with pytest.raises(UserError, match=re.escape(message)):
        bigbench.load(card)


def test_synthetic_short_questions_keep_the_whole_question_as_detail():
    long = synthetic.generate("total", n=20, seed=1, num_choices=3)
    short = [synthetic.shortened(e) for e in long]
    assert {e.choices for e in long} == {("no", "yes")} and len({e.gold for e in long}) == 2
    for full, cut in zip(long, short):
        assert cut.detail == full.prompt and cut.gold == full.gold and cut.prompt.count("weighs") == 1
        assert cut.prompt.endswith(full.prompt.rsplit(". ", 1)[-1])


def make_fake_archive(cache: Path) -> Path:
    path = cache / "downloads" / bigbench.ARCHIVE_NAME
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for task, content in [("fake_task", FAKE_TASK), ("group/sub_task", FAKE_TASK), ("other", {"examples": []})]:
            blob = json.dumps(content).encode()
            info = tarfile.TarInfo(f"{bigbench.MEMBER_PREFIX}{task}/task.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
        readme = b"not a task"
        info = tarfile.TarInfo("bigbench-1.0.0/README.md")
        info.size = len(readme)
        tar.addfile(info, io.BytesIO(readme))
    return path


@pytest.fixture
def fake_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    archive = make_fake_archive(cache)
    monkeypatch.setenv("TRUSTBENCH_CACHE", str(cache))
    monkeypatch.setattr(bigbench, "ARCHIVE_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    return cache


def test_bigbench_extracts_once_from_archive(fake_cache):
    c = card(name="fake", source="bigbench:group/sub_task", test=2)
    got = tasks.load_examples(c)
    assert [e.id for e in got] == ["fake-0", "fake-3", "fake-4"]
    assert (fake_cache / "bigbench" / "group" / "sub_task" / "task.json").exists()
    assert "fake_task" in (fake_cache / "bigbench" / "index.txt").read_text().split()
    # later loads read the extracted file, not the archive
    (fake_cache / "downloads" / bigbench.ARCHIVE_NAME).unlink()
    assert tasks.missing_data(c) is None
    tasks.clear_cache()
    assert tasks.load_examples(c) == got


def test_bigbench_missing_task_and_bad_archive(fake_cache, monkeypatch):
    with pytest.raises(UserError) as exc:
        tasks.load_examples(card(name="fake", source="bigbench:fake_tsak"))
    msg = one_line(exc)
    assert "fake_tsak" in msg and "did you mean fake_task" in msg
    with pytest.raises(UserError, match="no multiple-choice examples"):
        tasks.load_examples(card(name="fake", source="bigbench:other"))
    (fake_cache / "bigbench" / "index.txt").unlink()
    monkeypatch.setattr(bigbench, "ARCHIVE_SHA256", "0" * 64)
    with pytest.raises(UserError, match="sha256"):
        tasks.load_examples(card(name="fake", source="bigbench:fake_task"))
    assert not (fake_cache / "bigbench" / "fake_task" / "task.json").exists()  # nothing half-written


def test_bigbench_card_without_the_archive_is_one_line_that_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTBENCH_CACHE", str(tmp_path / "cache"))
    hotels = tasks.get_card("multiemo_hotels")
    where = str(tmp_path / "cache" / "downloads" / bigbench.ARCHIVE_NAME)
    assert where in tasks.missing_data(hotels)
    with pytest.raises(UserError) as exc:
        tasks.load_examples(hotels)
    assert one_line(exc).startswith("task multiemo_hotels: BIG-bench cards need bigbench-1.0.0.tar.gz")
    assert where in one_line(exc) and "pip download" in one_line(exc)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # nothing written
    assert tasks.missing_data(tasks.get_card("provinces_europe")) is None


def builtin_bigbench_tasks() -> dict[str, list[str]]:
    """The task path of every built-in BIG-bench card -> the choices its options need (labels, else two)."""
    out: dict[str, list[str]] = {}
    for c in tasks.all_cards().values():
        if c.source.startswith("bigbench:"):
            out.setdefault(bigbench.task_path(c.source), []).extend(c.options.get("labels", ["Yes", "No"]))
    return {task: sorted(set(labels)) for task, labels in out.items()}


def test_every_builtin_bigbench_card_loads_from_an_archive_built_here(tmp_path, monkeypatch):
    """The cards stay for users who supply the archive: one in BIG-bench's layout, with a task.json at every card's
    path (120 examples over the choices its cards keep), serves every card, options and splits included."""
    wanted = builtin_bigbench_tasks()
    path = tmp_path / "cache" / "downloads" / bigbench.ARCHIVE_NAME
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w:gz") as tar:
        for task, choices in wanted.items():
            examples = [{"input": f"Item {i}. It goes on here.", "target": f"{choices[i % len(choices)]}. Why.",
                         "target_scores": {c: int(j == i % len(choices)) for j, c in enumerate(choices)}}
                        for i in range(120)]
            blob = json.dumps({"task_prefix": "Decide.", "examples": examples}).encode()
            info = tarfile.TarInfo(f"{bigbench.MEMBER_PREFIX}{task}/task.json")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    monkeypatch.setenv("TRUSTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bigbench, "ARCHIVE_SHA256", hashlib.sha256(path.read_bytes()).hexdigest())
    cards = [c for c in tasks.all_cards().values() if c.source.startswith("bigbench:")]
    assert len(cards) == 19 and len(wanted) == 14
    for c in cards:
        small = dataclasses.replace(c, train=min(c.train, 20), val=min(c.val, 10), test=20)
        parts = tasks.split(small)
        assert len(parts.test) == 20 and len(parts.train) == min(c.train, 20), c.name
        if "short" in c.options:
            assert all(e.prompt == "Item " + e.id.rsplit("-", 1)[1] + "." and e.detail for e in parts.test), c.name
        if "labels" in c.options:
            assert {e.choices for e in parts.test} == {tuple(c.options["labels"])}, c.name
    assert sorted(p.name for p in (tmp_path / "cache" / "bigbench").rglob("task.json")).count("task.json") == 14


# ---------------------------------------------------------------------------------------------------- countryinfo
def test_countryinfo_questions_are_real_facts_by_the_rules():
    from countryinfo import CountryInfo

    europe = {e.prompt.split(" is a region")[0]: e for e in tasks.load_examples(tasks.get_card("provinces_europe"))}
    bayern = europe["Bayern"]
    assert bayern.choices[bayern.gold] == "Germany" and len(set(bayern.choices)) == 4
    country_names = {c["name"].casefold() for c in CountryInfo.all().values()}
    owners: dict[str, int] = {}
    for c in CountryInfo.all().values():
        for p in set(c.get("provinces") or []):
            owners[p] = owners.get(p, 0) + 1
    for name, example in europe.items():
        assert owners[name] == 1 and name.casefold() not in country_names, name  # unambiguous, not a country
        assert example.choices[example.gold].casefold() not in name.casefold(), name  # not a giveaway
    assert not {"Scotland", "Wales", "Guernsey", "Faroe Islands"} & {e.choices[e.gold] for e in europe.values()}
    assert "Aberdeenshire" not in europe  # Scotland's council areas would also be the United Kingdom's


def test_countryinfo_region_questions_carry_a_longer_detail():
    regions = tasks.load_examples(tasks.get_card("regions_provinces"))
    saida = next(e for e in regions if e.prompt == "Saida is in which part of the world?")
    assert saida.choices == ("Africa", "Americas", "Asia", "Europe", "Oceania") and saida.gold == 0
    assert saida.detail.startswith("Saida is a region of the same country as ") and "Constantine" in saida.detail
    assert saida.detail.endswith(saida.prompt)
    binary = tasks.load_examples(tasks.get_card("regions_provinces_eu_as"))
    assert {e.choices for e in binary} == {("Europe", "Asia")} and len(binary) == 1285 + 1091
    germany = next(e for e in tasks.load_examples(tasks.get_card("regions_countries")) if e.prompt.startswith("Germany"))
    assert germany.detail.startswith("The capital of Germany is Berlin. Germany borders Austria, Belgium")
    assert germany.choices[germany.gold] == "Europe"


@pytest.mark.parametrize("source, options, message", [
    ("countryinfo:capitals", {}, "countryinfo question 'capitals' is not known; use one of"),
    ("countryinfo:province_country", {}, "needs option region, one of Africa, Americas, Asia, Europe, Oceania"),
    ("countryinfo:province_country", {"region": "Europe", "num_choices": 1}, "option num_choices must be"),
    ("countryinfo:province_country", {"region": "Europe", "num_choices": 60}, "fewer than num_choices=60"),
    ("countryinfo:province_region", {"labels": ["Europe"]}, "option labels must be a list of distinct world regions"),
    ("countryinfo:country_region", {"labels": ["Europe", "Antarctica"]}, "option labels must be a list of distinct"),
    ("countryinfo:province_region", {"region": "Europe"}, "unknown countryinfo option 'region' for province_region; allowed: regions, labels"),
])
def test_countryinfo_bad_card_is_one_line(source, options, message):
    with pytest.raises(UserError) as exc:
        tasks.load_examples(card(name="geo", source=source, options=options))
    assert message in one_line(exc)

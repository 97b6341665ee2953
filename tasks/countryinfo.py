"""Questions over real geography facts from the PyPI package `countryinfo` (MIT; its data ships in the wheel, so a
card builds offline from what the lock installs): `source: countryinfo:<question>`, templated the LAMA way (one
fact, one question, the fact's value as the gold answer).

Questions:

- `province_country` (multiple choice): "<province> is a region of which country?" The options are the province's
  country and `num_choices - 1` other countries of the same world region. Distractors are drawn with probability
  proportional to each country's number of usable provinces in that region, the rate at which it is gold, so an
  option's name says nothing about whether it is right (a model that always picks the most frequent gold country
  among the options is at chance; `tests/test_tasks.py` checks it). The options are shuffled, so the gold position
  is uniform.
- `province_region` (classification): "<province> is in which part of the world?", the choices the world regions
  (`labels`). Its `detail` is the same question after up to 12 other provinces of the same country, so a model
  re-asked with the detail has more to go on (DualChecker's teacher checker).
- `country_region` (classification): the same question about a country; its `detail` adds the country's capital
  and the countries it borders.

What is used: every country entry with a world region (Africa, Americas, Asia, Europe, Oceania), except
`PART_OF`: territories whose sovereign is another entry of the same region (Scotland and the United Kingdom), which
would make a `province_country` question ambiguous. A province is usable when its name belongs to one country only,
is not a country's name and does not contain its own country's name. Spelling is the package's (often without
diacritics, some historical names). Examples are deterministic given the card (`split_seed` seeds the options);
ids are `<card name>-<i>`, countries by name, each country's provinces in the package's order.

Card options (defaults):
    region: Europe           province_country: the world region the provinces come from (required)
    regions: [...]           province_region: keep only provinces of these regions (default: all five)
    labels: [...]            province_region, country_region: the choices, in this order (default: all five
                             regions); examples whose region is not among them are left out
    num_choices: 4           province_country: options per question
"""
from __future__ import annotations

import functools

import numpy as np

from trustbench.harness.errors import UserError
from trustbench.harness.registry import LOADERS
from trustbench.harness.types import Example, TaskCard

REGIONS = ("Africa", "Americas", "Asia", "Europe", "Oceania")
OPTIONS = {"province_country": ("region", "num_choices"), "province_region": ("regions", "labels"),
           "country_region": ("labels",)}  # each question and the card options it takes
SIBLINGS = 12  # other provinces named in a province_region detail
# Entries that are part of another entry of the same region: a province of one would also be a province of the other.
PART_OF = {
    "Scotland": "United Kingdom", "Wales": "United Kingdom", "Guernsey": "United Kingdom",
    "Jersey": "United Kingdom", "Isle of Man": "United Kingdom", "Gibraltar": "United Kingdom",
    "Faroe Islands": "Denmark", "Svalbard and Jan Mayen": "Norway", "Åland Islands": "Finland",
    "Puerto Rico": "United States", "Virgin Islands, U.S.": "United States", "Hong Kong": "China", "Macau": "China",
    "Western Sahara": "Morocco", "Cook Islands": "New Zealand", "Niue": "New Zealand", "Tokelau": "New Zealand",
    "Norfolk Island": "Australia", "Christmas Island": "Australia", "Cocos (Keeling) Islands": "Australia",
}


@LOADERS.register("countryinfo")
def load(card: TaskCard) -> list[Example]:
    question = card.source.partition(":")[2].strip()
    if question not in OPTIONS:
        raise UserError(f"task {card.name}: countryinfo question {question!r} is not known; use one of "
                        f"{', '.join('countryinfo:' + q for q in OPTIONS)}")
    unknown = sorted(set(card.options) - set(OPTIONS[question]))
    if unknown:
        raise UserError(f"task {card.name}: unknown countryinfo option '{unknown[0]}' for {question}; allowed: "
                        f"{', '.join(OPTIONS[question])}")
    if question == "province_country":
        return _province_country(card)
    labels = _regions(card, "labels", list(REGIONS))
    if question == "province_region":
        regions = set(_regions(card, "regions", list(REGIONS))) & set(labels)
        return [_labelled(card, i, f"{name} is in which part of the world?", labels, region,
                          f"{name} is a region of the same country as {', '.join(siblings)}.")
                for i, (name, region, siblings) in enumerate(_province_facts(card.split_seed)) if region in regions]
    return [_labelled(card, i, f"{c['name']} is in which part of the world?", labels, c["region"], _country_fact(c))
            for i, c in enumerate(countries()) if c["region"] in labels]


def _labelled(card: TaskCard, i: int, prompt: str, labels: list[str], gold: str, fact: str) -> Example:
    return Example(id=f"{card.name}-{i}", prompt=prompt, choices=tuple(labels), gold=labels.index(gold),
                   detail=f"{fact} {prompt}")


def _regions(card: TaskCard, key: str, default: list[str]) -> list[str]:
    value = card.options.get(key, default)
    if not isinstance(value, list) or len(value) < (2 if key == "labels" else 1) or len(set(value)) < len(value) \
            or not set(value) <= set(REGIONS):
        raise UserError(f"task {card.name}: option {key} must be a list of distinct world regions from "
                        f"{', '.join(REGIONS)}{' (at least two)' if key == 'labels' else ''}, got {value!r}")
    return value


# ---------------------------------------------------------------------------------------------------- the facts
@functools.cache
def countries() -> tuple[dict, ...]:
    """Every usable country entry (name, region, capital, borders, provinces), sorted by name."""
    from countryinfo import CountryInfo

    entries = [c for c in CountryInfo.all().values() if c.get("region") in REGIONS and c["name"] not in PART_OF]
    return tuple(sorted(entries, key=lambda c: c["name"]))


@functools.cache
def provinces() -> tuple[tuple[str, dict], ...]:
    """(province, its country) for every usable province (see the module docstring)."""
    names = {c["name"].casefold() for c in countries()}
    counts: dict[str, int] = {}
    for c in countries():
        for p in set(c.get("provinces") or []):
            counts[p] = counts.get(p, 0) + 1
    return tuple((p, c) for c in countries() for p in dict.fromkeys(c.get("provinces") or [])
                 if counts[p] == 1 and p.strip() and p.casefold() not in names
                 and c["name"].casefold() not in p.casefold())


def _province_facts(seed: int):
    """(province, region, up to SIBLINGS other provinces of its country) for every usable province."""
    rng = np.random.default_rng(seed)
    by_country: dict[str, list[str]] = {}
    for p, c in provinces():
        by_country.setdefault(c["name"], []).append(p)
    for p, c in provinces():
        others = [q for q in by_country[c["name"]] if q != p]
        picked = sorted(rng.choice(len(others), size=min(SIBLINGS, len(others)), replace=False)) if others else []
        yield p, c["region"], [others[k] for k in picked] or ["no other listed region"]


@functools.cache
def _names_by_code() -> dict[str, str]:
    return {c["ISO"]["alpha3"]: c["name"] for c in countries() if c.get("ISO", {}).get("alpha3")}


def _country_fact(c: dict) -> str:
    borders = [_names_by_code()[b] for b in c.get("borders") or [] if b in _names_by_code()]
    capital = f"The capital of {c['name']} is {c['capital']}. " if c.get("capital") else ""
    return capital + (f"{c['name']} borders {', '.join(borders)}." if borders else f"{c['name']} has no land border.")


def _province_country(card: TaskCard) -> list[Example]:
    region = card.options.get("region")
    if region not in REGIONS:
        raise UserError(f"task {card.name}: countryinfo:province_country needs option region, one of "
                        f"{', '.join(REGIONS)}; got {region!r}")
    k = card.options.get("num_choices", 4)
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise UserError(f"task {card.name}: option num_choices must be a whole number >= 2, got {k!r}")
    pairs = [(p, c["name"]) for p, c in provinces() if c["region"] == region]
    weight: dict[str, int] = {}
    for _, country in pairs:
        weight[country] = weight.get(country, 0) + 1
    if len(weight) < k:
        raise UserError(f"task {card.name}: {region} has {len(weight)} countries with provinces, fewer than "
                        f"num_choices={k}; lower num_choices")
    names = list(weight)
    rng = np.random.default_rng(card.split_seed)
    out = []
    for i, (province, country) in enumerate(pairs):
        p = np.array([0.0 if n == country else weight[n] for n in names])
        others = [names[j] for j in rng.choice(len(names), size=k - 1, replace=False, p=p / p.sum())]
        choices = [country, *others]
        order = rng.permutation(k)
        out.append(Example(id=f"{card.name}-{i}", prompt=f"{province} is a region of which country?",
                           choices=tuple(choices[j] for j in order), gold=int(np.flatnonzero(order == 0)[0])))
    return out

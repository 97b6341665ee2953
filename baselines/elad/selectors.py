"""ELAD's selectors (`selector:`, registered in `harness.registry.SELECTORS`): which pool questions the teacher
explains next; higher is asked first."""
from __future__ import annotations

from collections import Counter

import numpy as np

from trustbench.baselines.elad.student import Explained
from trustbench.harness.registry import SELECTORS


def intra_uncertainty(item: Explained, mode: str = "prefix") -> float:
    """The share of steps that change the student's answer: prefix i against prefix i-1, or all steps against all
    but step i (0 for an explanation without steps)."""
    answers = item.step_answers
    if len(answers) < 2:
        return 0.0
    if mode == "prefix":
        return sum(a != b for a, b in zip(answers[1:], answers[:-1])) / (len(answers) - 1)
    return sum(a != answers[0] for a in answers[1:]) / (len(answers) - 1)


def inter_uncertainty(item: Explained) -> float:
    """Answer disagreement over the K sampled explanations: 1 - votes of the most common answer / K."""
    if not item.samples:
        return 0.0
    return 1 - Counter(item.samples).most_common(1)[0][1] / len(item.samples)


@SELECTORS.register("egss")
def egss(items: list[Explained], params: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Explanation-Guided Sample Selection: intra + egss_weight x inter (or one term, `egss_terms`)."""
    intra = np.array([intra_uncertainty(i, params["intra"]) for i in items])
    inter = np.array([inter_uncertainty(i) for i in items])
    weights = {"both": (1.0, params["egss_weight"]), "intra": (1.0, 0.0), "inter": (0.0, 1.0)}[params["egss_terms"]]
    return weights[0] * intra + weights[1] * inter, {"intra": intra.tolist(), "inter": inter.tolist()}


egss.needs = {"samples", "steps"}


@SELECTORS.register("random")
def random_selection(items, params, rng):
    """Uniformly at random, from the run's seed."""
    return rng.random(len(items)), {}


random_selection.needs = set()


@SELECTORS.register("max_entropy")
def max_entropy(items, params, rng):
    """The mean entropy of the student's next-token distribution over its answer tokens (top-10 log-probs)."""
    return np.array([i.entropy for i in items]), {}


max_entropy.needs = {"entropy"}


@SELECTORS.register("least_confidence")
def least_confidence(items, params, rng):
    """1 - the probability of the student's greedy answer tokens."""
    return np.array([1 - i.confidence for i in items]), {}


least_confidence.needs = set()


@SELECTORS.register("disagreement")
def disagreement(items, params, rng):
    """Answer disagreement over K sampled explanations (EGSS's inter term alone)."""
    return np.array([inter_uncertainty(i) for i in items]), {}


disagreement.needs = {"samples"}


@SELECTORS.register("self_confidence")
def self_confidence(items, params, rng):
    """1 - the student's own P(" Yes") against P(" No") that its answer is right."""
    return np.array([1 - i.self_confidence for i in items]), {}


self_confidence.needs = {"self"}

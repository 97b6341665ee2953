"""The plain loop the vectorised bootstraps are checked against: every metric from its public function."""
from __future__ import annotations

import pandas as pd

from trustbench.harness import metrics as M


def every_metric(df: pd.DataFrame, bins: int, equal_mass: bool) -> dict[str, float]:
    """Every metric of `M.METRICS` from its public function, one call each."""
    conf, correct = df["confidence"].to_numpy(), df["correct"].to_numpy()
    probs, gold = list(df["probs"]), df["gold"]
    smece, sigma = M.smooth_ece(conf, correct)
    binning = {"bins": bins, "equal_mass": equal_mass}
    return {
        "acc": M.accuracy(correct), "ece": M.ece(conf, correct, **binning), "mce": M.mce(conf, correct, **binning),
        "brier": M.brier(probs, gold), "nll": M.nll(probs, gold), "auroc": M.auroc(conf, correct),
        "aurc": M.aurc(conf, correct), "conf_gap": M.conf_gap(conf, correct), "macro_f1": M.macro_f1(df["pred"], gold),
        "rms_ce": M.rms_ce(conf, correct, **binning), "debiased_ce": M.debiased_ce(conf, correct, bins=bins),
        "ece_sweep": M.ece_sweep(conf, correct), "smece": smece, "smece_sigma": sigma,
        "classwise_ece": M.classwise_ece(probs, gold, bins=bins), **M.brier_decomposition(conf, correct),
        "augrc": M.augrc(conf, correct), "acc_cov80": M.selective_accuracy(conf, correct, 0.8),
        "acc_cov50": M.selective_accuracy(conf, correct, 0.5),
    }

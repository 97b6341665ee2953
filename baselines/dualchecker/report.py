"""DualChecker's tables and figures, from the teacher's answers it recorded: the teacher table, the gains over
the few-shot teacher, the components, the stream and the reliability of both confidences."""
from __future__ import annotations


import numpy as np

from trustbench.baselines.dualchecker.method import CONFIDENCES, teacher_f1
from trustbench.harness.plots import FIGSIZE, RunView, register_figure, register_table


def teacher_records(view: RunView) -> list[tuple[str, int, dict]]:
    """(variant, seed, record) for every DualChecker method x seed of the run."""
    return [(name, seed, run.records["dualchecker"]) for name, entry in view.manifest.methods.items()
            for seed, run in sorted(entry.runs.items()) if "dualchecker" in run.records]


WHEN = (("before", "first", "first_"), ("after", "label", ""))  # (when, label key, confidence key prefix)


def confidence_kinds(items: list[dict]) -> list[str]:
    """The kinds of confidence (token, verbalised) every answer of a record has."""
    return [kind for kind in CONFIDENCES if all(r.get(f"{p}{kind}_confidence") is not None
                                                for r in items for _, _, p in WHEN)]


def teacher_side(record: dict) -> dict:
    """The teacher's labels of the train split against gold: accuracy, macro-F1 and the ECE of the confidence the
    checker reads (and of each kind the answers have: token, verbalised), before and after re-asking; the share
    re-asked and the accuracy of those before and after; feedback count."""
    from trustbench.harness.metrics import ece

    items = record["items"]
    out = {}
    for when, label, prefix in WHEN:
        correct = [r[label] == r["gold"] for r in items]
        out[f"acc_{when}"] = float(np.mean(correct))
        out[f"f1_{when}"] = teacher_f1(items, label)
        out[f"ece_{when}"] = ece([r[f"{prefix}confidence"] for r in items], correct)
        for kind in CONFIDENCES:
            out[f"ece_{kind}_{when}"] = (ece([r[f"{prefix}{kind}_confidence"] for r in items], correct)
                                         if kind in confidence_kinds(items) else np.nan)
    asked = [r for r in items if r["reprompted"]]
    out["reprompted"] = len(asked) / len(items)
    out["reprompted_acc_before"] = float(np.mean([r["first"] == r["gold"] for r in asked])) if asked else np.nan
    out["reprompted_acc_after"] = float(np.mean([r["label"] == r["gold"] for r in asked])) if asked else np.nan
    out["feedback"] = len(record["feedback"])
    out["unparsable"] = record["unparsable"]
    return out


@register_table("dualchecker_teacher")
def teacher_table(view: RunView):
    """Per DualChecker variant (mean over seeds): the teacher side of the method."""
    import pandas as pd

    keys = ["variant", "part", "shots", "ask", "confidence"]
    rows = [{"variant": name, **{k: settings_of(record)[k] for k in keys[1:]}, "seed": seed, **teacher_side(record)}
            for name, seed, record in teacher_records(view)]
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    numbers = [c for c in frame.columns if c not in keys + ["seed"]]
    table = frame.groupby(keys, as_index=False, sort=False)[numbers].mean()
    table.insert(len(keys), "seeds", frame.groupby(keys, sort=False)["seed"].count().to_numpy())
    return table


@register_table("dualchecker_gains")
def gains_table(view: RunView):
    """Each variant's teacher against the plain few-shot teacher (`part: none`, asked the same way and with the same
    shots when the run has them) on the same train examples: the difference in macro-F1 and accuracy of their
    labels, mean over the seeds both ran, with a 95% paired bootstrap interval (the same resampled examples for both
    in each seed)."""
    import pandas as pd

    runs: dict[str, dict[int, dict]] = {}
    for name, seed, record in teacher_records(view):
        runs.setdefault(name, {})[seed] = record
    setting = {name: settings_of(next(iter(by_seed.values()))) for name, by_seed in runs.items()}
    bases = [name for name in runs if setting[name]["part"] == "none"]
    rows = []
    for name in [n for n in runs if n not in bases and bases]:
        alike = [b for b in bases if setting[b]["ask"] == setting[name]["ask"]] or bases
        base = next((b for b in alike if setting[b]["shots"] == setting[name]["shots"]), alike[0])
        seeds = sorted(set(runs[name]) & set(runs[base]))
        if seeds:
            rows.append({"variant": name, "part": setting[name]["part"], "shots": setting[name]["shots"],
                         "against": base, "seeds": len(seeds), **paired_gain(runs[name], runs[base], seeds)})
    return pd.DataFrame(rows) if rows else None


def settings_of(record: dict) -> dict:
    """A record's settings with `ask` and `confidence` (records from before they were parameters asked an endpoint
    by reply, reading the stated confidence, and a local model by choice)."""
    settings, endpoint = record["settings"], record.get("black_box")
    return {**settings, "ask": settings.get("ask") or ("reply" if endpoint else "choice"),
            "confidence": settings.get("confidence") or ("verbalised" if endpoint else "token")}


def paired_gain(mine: dict[int, dict], base: dict[int, dict], seeds: list[int], n_boot: int = 1000) -> dict:
    """Macro-F1 and accuracy of `mine`'s labels minus `base`'s, mean over `seeds`, with a paired bootstrap (each
    seed's examples drawn on their own, both teachers' labels of an example together)."""
    from trustbench.harness.metrics import _macro_f1_rows
    from trustbench.harness.statistics import percentile_interval, resample_indices

    rng = np.random.default_rng(0)
    draws = {"f1": np.zeros(n_boot), "acc": np.zeros(n_boot)}
    point = {"f1": 0.0, "acc": 0.0}
    for seed in seeds:
        theirs = {r["id"]: r for r in base[seed]["items"]}
        items = [(r["gold"], r["label"], theirs[r["id"]]["label"]) for r in mine[seed]["items"] if r["id"] in theirs]
        gold, a, b = (np.array([-1 if v is None else v for v in column]) for column in zip(*items))
        gaps = {"f1": lambda i: _macro_f1_rows(a[i], gold[i]) - _macro_f1_rows(b[i], gold[i]),
                "acc": lambda i: (a[i] == gold[i]).mean(axis=1) - (b[i] == gold[i]).mean(axis=1)}
        resampled = resample_indices(rng, len(gold), n_boot)
        for key, gap in gaps.items():
            point[key] += gap(np.arange(len(gold))[None])[0] / len(seeds)
            draws[key] += gap(resampled) / len(seeds)
    out = {}
    for key in ("f1", "acc"):
        out[f"{key}_gain"] = float(point[key])
        out[f"{key}_gain_lo"], out[f"{key}_gain_hi"] = percentile_interval(point[key], draws[key])
    return out


@register_figure("dualchecker_components")
def components_figure(view: RunView):
    """Teacher macro-F1 and ECE on the train split per variant (the `--part` grid and shots), mean over seeds,
    with the range over seeds as error bars."""
    import pandas as pd
    from matplotlib.figure import Figure

    table = teacher_table(view)
    if table is None:
        return None
    rows = [{"variant": name, "seed": seed, **teacher_side(record)} for name, seed, record in teacher_records(view)]
    spread = pd.DataFrame(rows).groupby("variant", sort=False)
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    for ax, metric, label in zip(fig.subplots(1, 2), ("f1_after", "ece_after"),
                                 ("teacher macro-F1 (%)", "teacher ECE (%)")):
        low, high = (100 * spread[metric].agg(f).reindex(table["variant"]) for f in ("min", "max"))
        mean = 100 * table[metric].to_numpy()
        ax.bar(range(len(table)), mean, yerr=[mean - low.to_numpy(), high.to_numpy() - mean], capsize=3,
               color="#4477aa")
        ax.set_xticks(range(len(table)), [f"{v}\n({p}, {k} shots)" for v, p, k in
                                          zip(table["variant"], table["part"], table["shots"])], fontsize="x-small")
        ax.set_ylabel(label)
        ax.grid(True, axis="y", linewidth=0.3, alpha=0.5)
    fig.suptitle("The teacher's labels of the train split, per component (bars: range over seeds)")
    fig.tight_layout()
    return fig


@register_figure("dualchecker_stream")
def stream_figure(view: RunView):
    """The teacher's macro-F1 on the examples labelled so far, over the stream, per variant (first seed), with the
    feedback demonstrations as they accumulate."""
    from matplotlib.figure import Figure

    records = view.records("dualchecker")
    if not records:
        return None
    fig = Figure(figsize=FIGSIZE)
    ax = fig.subplots()
    for name, record in sorted(records.items()):
        stream = record["stream"]
        ax.plot([p["seen"] for p in stream], [100 * p["macro_f1"] for p in stream], linewidth=1, label=name)
    ax.set_xlabel("train examples labelled")
    ax.set_ylabel("teacher macro-F1 so far (%)")
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(frameon=False, fontsize="small")
    ax.set_title("Teacher F1 over the stream")
    fig.tight_layout()
    return fig


@register_figure("dualchecker_reliability")
def reliability_figure(view: RunView):
    """The teacher's reliability diagram before and after re-asking (first seed of each variant that re-asks), for
    each kind of confidence its answers have (token probability, verbalised)."""
    from matplotlib.figure import Figure

    from trustbench.harness.metrics import reliability_table

    records = {n: r for n, r in view.records("dualchecker").items() if any(i["reprompted"] for i in r["items"])}
    if not records:
        return None
    fig = Figure(figsize=(FIGSIZE[0] * len(records), FIGSIZE[1]))
    for ax, (name, record) in zip(np.atleast_1d(fig.subplots(1, len(records))), sorted(records.items())):
        items = record["items"]
        kinds = confidence_kinds(items) or [None]  # None: a record from before both kinds were kept
        for (when, label, prefix), kind in ((w, k) for k in kinds for w in WHEN):
            key = f"{prefix}{kind}_confidence" if kind else f"{prefix}confidence"
            table = reliability_table([r[key] for r in items], [r[label] == r["gold"] for r in items])
            table = table[table["count"] > 0]
            ax.plot(100 * table["confidence"], 100 * table["accuracy"], marker="o", markersize=3,
                    linestyle="--" if kind == "verbalised" else "-", label=f"{when}, {kind}" if kind else when)
        ax.plot([0, 100], [0, 100], color="grey", linewidth=0.5, linestyle="--")
        ax.set_xlabel("teacher confidence (%)")
        ax.set_ylabel("teacher accuracy (%)")
        ax.set_title(f"{name}: before and after re-asking")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig

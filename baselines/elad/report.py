"""ELAD's tables and figures, from what its rounds recorded: the budget curve and table, the poster's main table
and claims, the uncertainty terms."""
from __future__ import annotations


import numpy as np

from trustbench.harness.plots import FIGSIZE, RunView, register_figure, register_table


def budget_curves(view: RunView):
    """Per ELAD variant, round and seed: the teacher tokens spent before the round's student, and its accuracy and
    ECE averaged over the ID tasks and over the OOD tasks."""
    import pandas as pd

    rows, variants = [], set(view.records("elad"))
    for name, entry in view.manifest.methods.items():
        main = entry.round_of or name
        if main not in variants:
            continue
        for seed, run in entry.runs.items():
            results = view.results[(view.results["method"] == name) & (view.results["seed"] == seed)]
            for domain in ("id", "ood"):
                part = results[results["domain"] == domain]
                if part.empty:
                    continue
                rows.append({"variant": main, "method": name, "round": run.cost.get("round"), "seed": seed,
                             "domain": domain, "teacher_tokens": run.cost.get("teacher_tokens", 0),
                             "teacher_calls": run.cost.get("teacher_calls", 0), "acc": part["acc"].mean(),
                             "ece": part["ece"].mean()})
    return pd.DataFrame(rows)


@register_table("elad_budget")
def budget_table(view: RunView):
    """Per ELAD variant: accuracy and ECE by round with the teacher budget (means over seeds), the area under the
    accuracy-budget curve (trapezoids over teacher tokens, divided by the budget range), and the budget at which
    accuracy first reaches 90% of full-data distillation (`cot_distill`), when the run has it and it clears chance.

    Chance is read as the leaderboard reads it (`full_pool_targets`)."""
    import pandas as pd

    curves = budget_curves(view)
    if curves.empty:
        return None
    means = curves.groupby(["variant", "domain", "round"], as_index=False)[["teacher_tokens", "teacher_calls", "acc",
                                                                            "ece"]].mean()
    distilled = full_pool_targets(view)
    rows = []
    for (variant, domain), part in means.groupby(["variant", "domain"]):
        part = part.sort_values("round")
        x, y = part["teacher_tokens"].to_numpy(float), part["acc"].to_numpy(float)
        area = float(np.trapz(y, x) / (x[-1] - x[0])) if len(x) > 1 and x[-1] > x[0] else float(y.mean())
        full = distilled.get(domain, 0.0)  # a full-data student at 0% gives no target to reach
        reached = part[part["acc"] >= 0.9 * full] if full > 0 else part.iloc[:0]
        rows.append({"variant": variant, "domain": domain, "rounds": len(part),
                     "acc_by_round": " ".join(f"{100 * a:.1f}" for a in y),
                     "ece_by_round": " ".join(f"{100 * e:.1f}" for e in part["ece"]),
                     "teacher_tokens_by_round": " ".join(str(int(t)) for t in x), "acc_budget_area": area,
                     "tokens_to_90pct_full": int(reached["teacher_tokens"].iloc[0]) if len(reached) else None})
    return pd.DataFrame(rows)


def full_pool_targets(view: RunView) -> dict[str, float]:
    """Per domain, the accuracy of `cot_distill` (the student of the whole pool), mean over seeds; 0 where that
    student is at chance on any of the domain's tasks, pooled over seeds as the leaderboard marks it (90% of noise
    is not a budget)."""
    from trustbench.harness.statistics import cell_at_chance, majority_rates

    rows = view.results[view.results["method"] == "cot_distill"]
    majority = majority_rates(rows, "cot_distill")
    draws = _round_draws(view, {"cot_distill"})[1] if majority else None
    return {domain: 0.0 if majority and cell_at_chance(draws, "cot_distill", sorted(set(part["task"])), majority)
            else float(part["acc"].mean()) for domain, part in rows.groupby("domain")}


@register_table("elad_main")
def main_table(view: RunView):
    """The poster's main table on this run's tasks: the final student's accuracy (%, mean over seeds) for each
    selector + annotator, under the teacher's and the untrained student's, with the full-pool distillation last."""
    settings = {name: r["settings"] for name, r in view.records("elad").items()}
    if not settings:
        return None
    labels = {"teacher": "teacher", "zeroshot": "student zero-shot",
              **{name: f"{s['selector']} + {s['annotator']} ({name})" for name, s in settings.items()},
              "cot_distill": "full pool + teacher CoT (cot_distill)"}
    results = view.results[view.results["method"].isin(labels)]
    table = results.groupby(["method", "task"])["acc"].agg(["mean", "count"]).reset_index()
    wide = table.pivot(index="method", columns="task", values="mean").mul(100).round(2)
    wide.insert(0, "seeds", table.groupby("method")["count"].min())
    wide = wide.reindex([m for m in labels if m in wide.index])
    wide.index = [labels[m] for m in wide.index]
    return wide.rename_axis("selection + annotation").reset_index()


# The poster's two claims: EGSS against the other selectors, CLEAR against teacher-written explanations.
CLAIMS = {"selector": "egss", "annotator": "clear"}
CLEAR_ONLY = ("check", "likelihood_threshold")  # settings only CLEAR reads


def claim_pairs(settings: dict[str, dict]) -> list[tuple[str, str, str]]:
    """(claim, variant, against) for every two ELAD variants whose settings differ in one thing only: the selector,
    with EGSS on the variant's side, or the annotator, with CLEAR on it (CLEAR's own settings are not compared
    with an annotator that does not read them). Same n0, B, R: the same budget in questions, round by round."""
    pairs = []
    for variant, mine in settings.items():
        for against, theirs in settings.items():
            both_clear = mine.get("annotator") == theirs.get("annotator") == "clear"
            differs = [key for key in sorted(set(mine) | set(theirs))
                       if mine.get(key) != theirs.get(key) and (both_clear or key not in CLEAR_ONLY)]
            key = differs[0] if len(differs) == 1 else None
            if key in CLAIMS and mine.get(key) == CLAIMS[key]:
                pairs.append((f"{mine[key]} vs {theirs[key]}", variant, against))
    return pairs


def round_students(view: RunView) -> dict[str, dict[int, str]]:
    """Per ELAD variant: the method name of its student after each round (the final one is round R)."""
    found: dict[str, dict[int, str]] = {}
    for name, entry in view.manifest.methods.items():
        for run in entry.runs.values():
            if "round" in run.cost:
                found.setdefault(entry.round_of or name, {})[int(run.cost["round"])] = name
                break
    return found


@register_table("elad_claims")
def claims_table(view: RunView):
    """The poster's claims, round by round at equal budget: for each pair of `claim_pairs`, round and domain, the
    paired difference variant - against in accuracy and ECE (fractions) with its 95% interval from the bootstrap
    over test examples and seeds (`harness.statistics`, the comparison's), both students' teacher tokens, and
    whether either student is at chance there (`cell_at_chance`: its accuracy's lower bound over examples and seeds
    does not clear the majority rate, the leaderboard's mark). `finding` is an interval that excludes 0 between
    students that are not at chance: a difference between students at chance is noise, not evidence for or against
    the claim."""
    import pandas as pd

    from trustbench.harness.statistics import cell_at_chance, interval, majority_rates

    pairs = claim_pairs({name: r["settings"] for name, r in view.records("elad").items()})
    rounds = round_students(view)
    pairs = [(claim, a, b) for claim, a, b in pairs if a in rounds and b in rounds]
    if not pairs:
        return None
    names = {name for _, a, b in pairs for name in (*rounds[a].values(), *rounds[b].values())}
    results, draws = _round_draws(view, names)

    def tokens(name: str) -> float:
        return float(np.mean([run.cost.get("teacher_tokens", 0) for run in view.manifest.methods[name].runs.values()]))

    rows = []
    for claim, variant, against in pairs:
        for r in sorted(set(rounds[variant]) & set(rounds[against])):
            mine, theirs = rounds[variant][r], rounds[against][r]
            for domain in ("id", "ood"):
                scope = results[results["domain"] == domain]
                tasks = sorted(set(scope.loc[scope["method"] == mine, "task"])
                               & set(scope.loc[scope["method"] == theirs, "task"]))
                if not tasks:
                    continue
                chance = any(cell_at_chance(draws, m, tasks, majority_rates(scope, m)) for m in (mine, theirs))
                for metric in ("acc", "ece"):
                    (a, a_values), (b, b_values) = (draws.average(m, tasks, metric) for m in (mine, theirs))
                    lo, hi = interval(a - b, a_values - b_values)
                    rows.append({"claim": claim, "variant": variant, "against": against, "round": r,
                                 "domain": domain, "metric": metric, "tasks": len(tasks),
                                 "seeds": int(scope.loc[scope["method"] == mine, "seed"].nunique()),
                                 "variant_tokens": tokens(mine), "against_tokens": tokens(theirs),
                                 "variant_mean": a, "against_mean": b, "diff": a - b, "diff_lo": lo, "diff_hi": hi,
                                 "at_chance": chance, "finding": not chance and (lo > 0 or hi < 0)})
    return pd.DataFrame(rows)


def _round_draws(view: RunView, names: set[str]):
    """The results rows of the students `names` and their bootstrap over test examples and seeds (the
    comparison's resamples, so a band or a difference here means what it means in the report)."""
    from trustbench.harness.statistics import bootstrap
    from trustbench.harness.store import read_cell

    results = view.results[view.results["method"].isin(names)]
    settings = view.manifest.metrics
    return results, bootstrap(results, lambda m, t, s: read_cell(view.run.cell_path("test", m, t, s)),
                              settings.n_boot, settings.bins, settings.equal_mass)


def budget_bands(view: RunView):
    """Per ELAD variant and round, on the ID tasks: the mean teacher tokens spent, and accuracy and ECE (fractions)
    with the 95% interval from the bootstrap over test examples and seeds (with 3 seeds a range over seeds would
    say little, and nothing of the test set's size)."""
    import pandas as pd

    from trustbench.harness.statistics import interval

    curves = budget_curves(view)
    curves = curves[curves["domain"] == "id"] if not curves.empty else curves
    if curves.empty:
        return pd.DataFrame()
    results, draws = _round_draws(view, set(curves["method"]))
    results = results[results["domain"] == "id"]
    rows = []
    for (variant, r), part in curves.groupby(["variant", "round"]):
        method = part["method"].iloc[0]
        row = {"variant": variant, "round": r, "method": method, "teacher_tokens": part["teacher_tokens"].mean()}
        for metric in ("acc", "ece"):
            point, values = draws.average(method, sorted(set(results.loc[results["method"] == method, "task"])),
                                          metric)
            row[metric], (row[f"{metric}_lo"], row[f"{metric}_hi"]) = point, interval(point, values)
        rows.append(row)
    return pd.DataFrame(rows)


@register_figure("elad_budget")
def budget_figure(view: RunView):
    """Accuracy and ECE (ID tasks) against the teacher tokens spent, per variant, with `budget_bands`' intervals."""
    from matplotlib.figure import Figure

    bands = budget_bands(view)
    if bands.empty:
        return None
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    axes = fig.subplots(1, 2)
    for variant, part in bands.groupby("variant"):
        for ax, metric in zip(axes, ("acc", "ece")):
            line, = ax.plot(part["teacher_tokens"], 100 * part[metric], marker="o", markersize=3, linewidth=1,
                            label=variant)
            ax.fill_between(part["teacher_tokens"], 100 * part[f"{metric}_lo"], 100 * part[f"{metric}_hi"],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    id_rows = view.results[view.results["domain"] == "id"]
    if "majority" in id_rows and id_rows["majority"].notna().any():  # chance, what a student must clear
        axes[0].axhline(100 * id_rows.groupby("task")["majority"].first().mean(), color="grey", linestyle="--",
                        linewidth=1, label="majority rate")
    for ax, label in zip(axes, ("accuracy (%, ID)", "ECE (%, ID)")):
        ax.set_xlabel("teacher tokens spent")
        ax.set_ylabel(label)
        ax.grid(True, linewidth=0.3, alpha=0.5)
    axes[0].set_title("Accuracy against teacher budget (band: 95% interval)")
    axes[1].set_title("ECE against teacher budget")
    handles, labels = axes[0].get_legend_handles_labels()
    rows = -(-len(labels) // 4)  # below both panels: an ablation run's eight variants hide the curves inside one
    fig.set_figheight(FIGSIZE[1] + 0.15 * rows)
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.15 * rows / fig.get_figheight(), 1, 1))
    return fig


def egss_term_values(view: RunView):
    """EGSS's two terms over the pool questions each round scored, per EGSS variant, pooled over seeds: one row per
    (variant, seed, round, term, value)."""
    import pandas as pd

    rows = []
    for name, entry in view.manifest.methods.items():
        for seed, run in entry.runs.items():
            for scored in run.records.get("elad", {}).get("rounds", []):
                for term in ("intra", "inter"):
                    rows += [{"variant": name, "seed": seed, "round": scored["round"], "term": term, "value": v}
                             for v in scored.get(term) or []]
    return pd.DataFrame(rows, columns=["variant", "seed", "round", "term", "value"])


@register_figure("elad_uncertainty")
def uncertainty_figure(view: RunView):
    """The distributions of EGSS's two terms over the pool, round by round: a box per EGSS variant (pooled over
    seeds), side by side, the mean as a dot."""
    from matplotlib.figure import Figure

    terms = egss_term_values(view)
    if terms.empty:
        return None
    variants = sorted(set(terms["variant"]))
    width = 0.8 / len(variants)
    fig = Figure(figsize=(FIGSIZE[0] * 2, FIGSIZE[1]))
    axes = fig.subplots(1, 2)
    for ax, term in zip(axes, ("intra", "inter")):
        for i, variant in enumerate(variants):
            part = terms[(terms["term"] == term) & (terms["variant"] == variant)].groupby("round")["value"]
            rounds = sorted(part.groups)
            positions = [r - 0.4 + width * (i + 0.5) for r in rounds]
            color = f"C{i}"
            ax.boxplot([part.get_group(r) for r in rounds], positions=positions, widths=width * 0.8,
                       showfliers=False, boxprops={"color": color}, medianprops={"color": color},
                       whiskerprops={"color": color}, capprops={"color": color})
            ax.plot(positions, [part.get_group(r).mean() for r in rounds], "o", color=color, markersize=3,
                    label=variant)
        ax.set_xticks(sorted(set(terms["round"])), [str(r) for r in sorted(set(terms["round"]))])
    for ax, term in zip(axes, ("intra-explanation", "inter-explanation")):
        ax.set_xlabel("round")
        ax.set_ylabel(f"{term} uncertainty")
        ax.grid(True, linewidth=0.3, alpha=0.5)
    axes[0].legend(frameon=False, fontsize="small")
    fig.suptitle("EGSS terms over the pool, per round (boxes pooled over seeds; dots: means)")
    fig.tight_layout()
    return fig

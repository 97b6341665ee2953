"""The regression gate: is a candidate run worse than a baseline run, on accuracy or calibration, beyond noise?

`trustbench gate BASELINE CANDIDATE` compares two run directories cell by cell. For each (method, task) both runs
have test predictions for, the cells are paired by seed (the seeds both runs have) and by example id (the ids both
runs scored), and a paired bootstrap resamples the shared examples: one draw of example indices is applied to both
runs and to every shared seed, so what the two runs have in common (the same hard questions) cancels out of the
difference. Statistics per resample, averaged over the shared seeds:

    drop = acc_base - acc_cand          rise = cal_cand - cal_base

where cal is the calibration estimator `--calibration-metric` names (ECE by default; any of
`harness.metrics.CALIBRATION_ERRORS`, with the run's own `metrics:` settings, the same function the results table
uses). Each test is one-sided, at tolerance t (`max_acc_drop`, `max_cal_rise`): its p-value is the share of
resampled differences at or below t, and its (1 - alpha) lower bound the alpha-quantile.

- `--correction holm` (the default): the 2 x cells tests of the run form one family and Holm's step-down
  (`harness.statistics.holm`) decides, so the chance of flagging any cell of an unchanged candidate stays at alpha
  for the whole run, however many cells it has.
- `--correction none`: each test on its own, a regression when its lower bound is above t; about alpha of the
  unchanged cells are flagged, so a run of many cells usually fails by chance.

A small or noisy difference passes; a run gated against itself passes exactly (every resampled difference is 0).
Defaults: tolerances 0.01 (one point), alpha 0.05, 2000 resamples, seed 0. Raw test predictions only (no `+ts` or
`+iso` rows).

Exit codes: 0 no regression, 1 at least one regression, 2 not comparable (different suite settings, scoring
modes, task examples, or nothing shared); `compare_runs` returns the code with the reason. Missing or unreadable
run directories raise a UserError (also exit 2 through the CLI).
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from trustbench.harness.errors import UserError
from trustbench.harness.metrics import CALIBRATION_ERRORS, _block_metrics, _columns
from trustbench.harness.statistics import at_chance, cell_draws, holm, interval, lower_bound, over_seeds, \
    paired_bootstrap
from trustbench.harness.store import Manifest, RunDir, read_cell

CORRECTIONS = ("holm", "none")
PASS, REGRESSION, NOT_COMPARABLE = 0, 1, 2
_TIE = 1e-12  # a bound equal to the tolerance (up to float noise) is not beyond it


class NotComparable(Exception):
    """The two runs cannot be gated against each other; the message says why."""


@dataclass(frozen=True)
class GateSettings:
    """How the gate decides (see the module docstring); `checked()` validates user input."""

    max_acc_drop: float = 0.01
    max_cal_rise: float = 0.01
    alpha: float = 0.05
    n_boot: int = 2000
    seed: int = 0
    calibration_metric: str = "ece"
    correction: str = "holm"

    def checked(self) -> "GateSettings":
        for name, value in (("max-acc-drop", self.max_acc_drop), ("max-cal-rise", self.max_cal_rise)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
                raise UserError(f"--{name} must be a fraction in [0, 1] (0.01 = one point), got {value!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha <= 0.5):
            raise UserError(f"--alpha must be in (0, 0.5], got {self.alpha!r}: use 0.05 for a 95% one-sided bound")
        for name, value, least, kind, example in (("n-boot", self.n_boot, 1, "positive", 2000),
                                                  ("seed", self.seed, 0, "non-negative", 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise UserError(f"--{name} must be a {kind} integer, got {value!r}: use e.g. {example}")
        if self.calibration_metric not in CALIBRATION_ERRORS:
            raise UserError(f"--calibration-metric {self.calibration_metric!r} is not a calibration error: use one "
                            f"of {', '.join(CALIBRATION_ERRORS)}")
        if self.correction not in CORRECTIONS:
            raise UserError(f"--correction {self.correction!r}: use holm (the run's error rate held at alpha) or "
                            "none (each cell at alpha)")
        return self


DEFAULTS = GateSettings()


@dataclass(frozen=True)
class GateRow:
    """One gated (method, task): point values, point differences, their one-sided bootstrap bounds and p-values,
    and the verdicts (`decide` sets them once every cell is in)."""

    base_method: str
    cand_method: str
    task: str
    seeds: tuple[int, ...]
    n: int
    acc_base: float
    acc_cand: float
    cal_base: float
    cal_cand: float
    acc_drop_lb: float  # alpha-quantile of the resampled acc_base - acc_cand
    cal_rise_lb: float  # alpha-quantile of the resampled cal_cand - cal_base
    acc_p: float  # share of resampled drops at or below the tolerance
    cal_p: float
    calibration_metric: str
    at_chance: tuple[bool, bool] = (False, False)  # base, candidate: accuracy's 95% lower bound <= majority rate
    acc_regression: bool = False
    cal_regression: bool = False

    @property
    def acc_drop(self) -> float:
        return self.acc_base - self.acc_cand

    @property
    def cal_rise(self) -> float:
        return self.cal_cand - self.cal_base

    @property
    def regression(self) -> bool:
        return self.acc_regression or self.cal_regression

    @property
    def method(self) -> str:
        """How the row is named: `kd` when both runs call it that, `kd->mykd` when gated across names."""
        if self.base_method == self.cand_method:
            return self.base_method
        return f"{self.base_method}->{self.cand_method}"

    @property
    def failed(self) -> str:
        return ", ".join(m for m, bad in (("acc", self.acc_regression), (self.calibration_metric, self.cal_regression))
                         if bad)


@dataclass
class GateResult:
    """The verdict: `exit_code` 0 pass, 1 regression, 2 not comparable (then `reason` says why)."""

    exit_code: int
    baseline: str
    candidate: str
    settings: GateSettings
    rows: list[GateRow] = field(default_factory=list)
    reason: str = ""
    skipped: list[str] = field(default_factory=list)  # cells only one run has, so not gated
    context: dict = field(default_factory=dict)  # suite, scoring mode, ECE binning of the runs

    @property
    def regressions(self) -> list[GateRow]:
        return [row for row in self.rows if row.regression]


# ------------------------------------------------------------------------------------------ the comparison


def compare_runs(baseline_dir: str | Path, candidate_dir: str | Path,
                 methods: Sequence[tuple[str, str]] | None = None, **settings) -> GateResult:
    """Gate `candidate_dir` against `baseline_dir` (see the module docstring for the rule); `settings` are
    `GateSettings` fields.

    `methods` pairs a baseline method with a candidate method, e.g. [("kd", "mykd")]; by default every method
    name the two runs share is gated against itself. Deterministic for a given `seed`.
    """
    try:
        settings = GateSettings(**settings).checked()
    except TypeError as error:
        raise UserError(f"gate: {error}") from None
    base_run, cand_run = RunDir(baseline_dir), RunDir(candidate_dir)
    base_manifest, cand_manifest = base_run.load(), cand_run.load()
    base_files, cand_files = _by_cell(base_run.cells("test")), _by_cell(cand_run.cells("test"))
    metrics = base_manifest.metrics.model_dump()
    result = GateResult(PASS, str(baseline_dir), str(candidate_dir), settings, context={
        "suite": base_manifest.suite, "scoring": base_manifest.scoring.mode,
        "bins": metrics["bins"], "equal_mass": metrics["equal_mass"]})
    try:
        _check_comparable(base_manifest, cand_manifest)
        pairs = _method_pairs(methods, base_files, cand_files, baseline_dir, candidate_dir)
        cells, result.skipped = _shared_cells(pairs, base_files, cand_files)
        _check_tasks(base_manifest, cand_manifest, {task for _, _, task in cells})
        rows = [_gate_cell(base_method, cand_method, task, base_files, cand_files, metrics, settings)
                for base_method, cand_method, task in cells]
    except NotComparable as exc:
        result.exit_code, result.reason, result.rows = NOT_COMPARABLE, str(exc), []
        return result
    result.rows = decide(rows, settings)
    result.exit_code = REGRESSION if result.regressions else PASS
    return result


def decide(rows: list[GateRow], settings: GateSettings) -> list[GateRow]:
    """The rows with their verdicts: Holm's step-down over all 2 x rows tests, or each test on its own."""
    if settings.correction == "none":
        acc = [row.acc_drop_lb > settings.max_acc_drop + _TIE for row in rows]
        cal = [row.cal_rise_lb > settings.max_cal_rise + _TIE for row in rows]
    else:
        rejected = holm([row.acc_p for row in rows] + [row.cal_p for row in rows], settings.alpha)
        acc, cal = rejected[:len(rows)], rejected[len(rows):]
    return [replace(row, acc_regression=bool(a), cal_regression=bool(c)) for row, a, c in zip(rows, acc, cal)]


def _by_cell(files: dict) -> dict[tuple[str, str], dict[int, Path]]:
    """{(method, task): {seed: path}} from prediction_files' {(method, task, seed): path}."""
    cells: dict[tuple[str, str], dict[int, Path]] = {}
    for (method, task, seed), path in files.items():
        cells.setdefault((method, task), {})[seed] = path
    return cells


def _check_comparable(base: Manifest, cand: Manifest) -> None:
    """Runs are comparable only under the same scoring and the same suite settings (the suite hash)."""
    base_mode, cand_mode = base.scoring.mode, cand.scoring.mode
    if base_mode != cand_mode:
        raise NotComparable(f"different scoring modes (baseline {base_mode}, candidate {cand_mode}): "
                            "confidences are defined differently; score the candidate with the baseline's mode")
    if not base.suite_hash or base.suite_hash != cand.suite_hash:
        raise NotComparable(
            f"different suite settings (suite_hash {base.suite_hash} vs {cand.suite_hash}): run the "
            "candidate from a copy of the baseline's suite that changes only methods, tasks or seeds")


def _check_tasks(base: Manifest, cand: Manifest, tasks: set[str]) -> None:
    """A task gated in both runs must have the same test (and val) examples: same split, same data."""
    for task in sorted(tasks):
        base_hash = base.tasks[task].test_hash if task in base.tasks else None
        cand_hash = cand.tasks[task].test_hash if task in cand.tasks else None
        if base_hash != cand_hash:
            raise NotComparable(f"task {task} has different test examples in the two runs (test_hash {base_hash} "
                                f"vs {cand_hash}): its card, data or split sizes changed")


def parse_method_pairs(text: str | None) -> list[tuple[str, str]] | None:
    """`--methods kd=mykd,finetune` -> [("kd", "mykd"), ("finetune", "finetune")]; None when not given."""
    if not text:
        return None
    pairs = []
    for item in (part.strip() for part in text.split(",")):
        names = [name.strip() for name in item.split("=")]
        if not item or len(names) > 2 or not all(names):
            raise UserError(f"--methods takes BASE=CAND or NAME items separated by commas, e.g. kd=mykd; got {text!r}")
        pairs.append((names[0], names[-1]))
    return pairs


def _method_pairs(methods, base_files, cand_files, baseline_dir, candidate_dir) -> list[tuple[str, str]]:
    base_names = sorted({m for m, _ in base_files})
    cand_names = sorted({m for m, _ in cand_files})
    if methods is None:
        shared = [m for m in base_names if m in cand_names]
        if not shared:
            raise NotComparable(f"no method shared (baseline has {_names(base_names)}, candidate has "
                                f"{_names(cand_names)}): name the pairs with --methods BASE=CAND")
        return [(m, m) for m in shared]
    for base_method, cand_method in methods:
        if base_method not in base_names:
            raise UserError(f"method {base_method!r} has no test predictions in {baseline_dir} "
                            f"(it has {_names(base_names)}): fix --methods")
        if cand_method not in cand_names:
            raise UserError(f"method {cand_method!r} has no test predictions in {candidate_dir} "
                            f"(it has {_names(cand_names)}): fix --methods")
    return list(dict.fromkeys(methods))


def _names(names: list[str]) -> str:
    return ", ".join(names) if names else "none"


def _shared_cells(pairs, base_files, cand_files) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(base method, cand method, task) cells with a shared seed; the rest of the paired methods' cells skipped."""
    cells, skipped = [], []
    for base_method, cand_method in pairs:
        base_tasks = {t for m, t in base_files if m == base_method}
        cand_tasks = {t for m, t in cand_files if m == cand_method}
        for task in sorted(base_tasks | cand_tasks):
            label = base_method if base_method == cand_method else f"{base_method}->{cand_method}"
            if task not in cand_tasks or task not in base_tasks:
                skipped.append(f"{label}/{task} (only in the {'baseline' if task in base_tasks else 'candidate'})")
            elif not set(base_files[base_method, task]) & set(cand_files[cand_method, task]):
                skipped.append(f"{label}/{task} (no seed in common)")
            else:
                cells.append((base_method, cand_method, task))
    if not cells:
        raise NotComparable("no (method, task, seed) shared by the two runs" +
                            (f"; not gated: {'; '.join(skipped)}" if skipped else ""))
    return cells, skipped


# --------------------------------------------------------------------------------------------- one cell


def _gate_cell(base_method, cand_method, task, base_files, cand_files, metrics, settings: GateSettings) -> GateRow:
    base_seeds, cand_seeds = base_files[base_method, task], cand_files[cand_method, task]
    seeds = tuple(sorted(set(base_seeds) & set(cand_seeds)))
    where = f"{base_method}/{task}" if base_method == cand_method else f"{base_method}->{cand_method}/{task}"
    base, cand = _aligned([read_cell(base_seeds[s]) for s in seeds], [read_cell(cand_seeds[s]) for s in seeds], where)
    bins, equal_mass, cal = metrics["bins"], metrics["equal_mass"], settings.calibration_metric
    names = ("acc", cal)

    def point(columns):
        values = [_block_metrics(c, np.arange(c.conf.size)[None], bins, equal_mass, names) for c in columns]
        return [float(np.mean([v[m][0] for v in values])) for m in names]

    (acc_base, cal_base), (acc_cand, cal_cand) = point(base), point(cand)
    rng = bootstrap_rng(settings.seed, base_method, cand_method, task)
    diffs = paired_bootstrap(base, cand, names, bins, equal_mass, settings.n_boot, rng)
    drops, rises = -diffs["acc"], diffs[cal]
    return GateRow(base_method, cand_method, task, seeds, int(base[0].conf.size), acc_base, acc_cand, cal_base,
                   cal_cand, lower_bound(drops, settings.alpha), lower_bound(rises, settings.alpha),
                   acc_p=float(np.mean(drops <= settings.max_acc_drop + _TIE)),
                   cal_p=float(np.mean(rises <= settings.max_cal_rise + _TIE)), calibration_metric=cal,
                   at_chance=(_at_chance(base, task, seeds, settings.n_boot), _at_chance(cand, task, seeds,
                                                                                         settings.n_boot)))


def _at_chance(columns: list, task: str, seeds: tuple[int, ...], n_boot: int) -> bool:
    """The leaderboard's rule on one run's cell: its accuracy's 95% interval over examples and seeds (the
    leaderboard's resamples) does not clear the task's majority rate."""
    if columns[0].gold is None:
        return False  # open answers: no majority class to hold the accuracy against here
    indices, picks = cell_draws(task, columns[0].corr.size, list(seeds), n_boot)
    per_seed = np.stack([c.corr[indices].mean(axis=1) for c in columns])
    point = float(np.mean([c.corr.mean() for c in columns]))
    majority = float(np.unique(columns[0].gold, return_counts=True)[1].max() / columns[0].gold.size)
    return at_chance(interval(point, over_seeds(per_seed, picks))[0], majority)


def _aligned(base: list, cand: list, where: str):
    """Both runs' predictions over the example ids every frame has, sorted, as one `Columns` per seed each."""
    frames = [df.set_index("example_id") for df in base + cand]
    for df in frames:
        if not df.index.is_unique:
            raise UserError(f"{where}: a predictions file repeats example ids; delete it and rerun the cell")
    ids = set(frames[0].index)
    for df in frames[1:]:
        ids &= set(df.index)
    if not ids:
        raise NotComparable(f"{where}: the two runs' predictions share no example id (different examples)")
    ids = sorted(ids)
    half = len(base)
    for b, c in zip(frames[:half], frames[half:]):  # seed by seed
        if not np.array_equal(b.loc[ids, "gold"].to_numpy(), c.loc[ids, "gold"].to_numpy()):
            raise NotComparable(f"{where}: the same example ids have different gold answers in the two runs")
    columns = [_columns(df.loc[ids].reset_index()) for df in frames]
    return columns[:half], columns[half:]


def bootstrap_rng(seed: int, base_method: str, cand_method: str, task: str) -> np.random.Generator:
    """The cell's own generator: its bounds do not depend on which other cells the runs hold."""
    return np.random.default_rng([int(seed), zlib.crc32(f"{base_method}|{cand_method}|{task}".encode())])


# ----------------------------------------------------------------------------------------------- output


def describe_rule(settings: GateSettings) -> str:
    """The rule in words, with the numbers in use (for the table header and `--help`)."""
    level = f"{100 * (1 - settings.alpha):g}"
    tests = (f"{level}% one-sided paired-bootstrap lower bound (lb, {settings.n_boot} resamples) of the accuracy "
             f"drop exceeds {_pct(settings.max_acc_drop)} points, or that of the {settings.calibration_metric} rise "
             f"exceeds {_pct(settings.max_cal_rise)} points")
    if settings.correction == "none":
        return f"regression = the {tests} (each cell on its own: no correction for the number of cells)"
    return (f"regression = Holm's step-down at {settings.alpha:g} over all cells' p-values (p = share of resampled "
            f"differences within tolerance) of the tests 'the {tests}', so the chance of any false flag in the "
            f"run is at most {settings.alpha:g}")


def format_gate(result: GateResult) -> str:
    """The verdict table (percentage points) and a last line with the verdict and exit code."""
    if result.exit_code == NOT_COMPARABLE:
        return f"NOT COMPARABLE: {result.reason} (exit 2)"
    ctx = result.context
    binning = f"{ctx['bins']} {'equal-mass' if ctx['equal_mass'] else 'equal-width'} bins"
    lines = [f"gate: candidate {result.candidate} vs baseline {result.baseline} "
             f"(suite {ctx['suite']}, {ctx['scoring']} scoring, binned estimators over {binning})",
             describe_rule(result.settings) + "; values in %", ""]
    cal = result.settings.calibration_metric
    header = ["method", "task", "seeds", "n", "acc base", "acc cand", "drop", "drop lb", "p",
              f"{cal} base", f"{cal} cand", "rise", "rise lb", "p", "verdict"]
    body = [[row.method, row.task, ",".join(map(str, row.seeds)), str(row.n),
             _pct(row.acc_base), _pct(row.acc_cand), _pct(row.acc_drop), _pct(row.acc_drop_lb), f"{row.acc_p:.3f}",
             _pct(row.cal_base), _pct(row.cal_cand), _pct(row.cal_rise), _pct(row.cal_rise_lb), f"{row.cal_p:.3f}",
             _verdict(row)] for row in result.rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    for cells in [header] + body:
        lines.append("  ".join(c.ljust(w) if i < 3 or i == len(cells) - 1 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    if result.skipped:
        lines += ["", f"not gated: {'; '.join(result.skipped)}"]
    bad = result.regressions
    lines.append("")
    if bad:
        names = ", ".join(f"{row.method}/{row.task} ({row.failed})" for row in bad)
        lines.append(f"FAIL: {len(bad)} of {len(result.rows)} cells regress: {names} (exit 1)")
    else:
        lines.append(f"PASS: no regression in {len(result.rows)} cells (exit 0)")
    return "\n".join(lines)


def _verdict(row: GateRow) -> str:
    """ok or REGRESSION, and whether the cell sits at chance in both runs (then its accuracy carries no signal)."""
    verdict = f"REGRESSION ({row.failed})" if row.regression else "ok"
    return verdict + (" (at chance in both runs)" if all(row.at_chance) else "")


def _pct(value: float) -> str:
    """Percentage points with one decimal; never "-0.0"."""
    text = f"{100 * value:.1f}"
    return "0.0" if text == "-0.0" else text

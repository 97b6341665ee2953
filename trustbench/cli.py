"""The `trustbench` command (also `python -m trustbench`)."""
from __future__ import annotations

import os
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from trustbench.harness.errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Score accuracy and calibration of distilled language models, in and out of domain.")


class Backend(str, Enum):
    hf = "hf"
    vllm = "vllm"


class Scoring(str, Enum):
    letter = "letter"
    choice = "choice"


class Domain(str, Enum):
    id = "id"
    ood = "ood"


class Listing(str, Enum):
    tasks = "tasks"
    methods = "methods"
    models = "models"
    suites = "suites"


def _names(value: Optional[str]) -> Optional[list[str]]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: Optional[str]) -> Optional[list[int]]:
    try:
        return [int(v) for v in _names(value)] if value else None
    except ValueError:
        raise UserError(f"--seeds takes integers separated by commas, e.g. 0,1,2; got {value!r}") from None


@app.command()
def run(
    suite: str = typer.Argument(..., help="a built-in suite name (`trustbench list suites`) or a suite YAML path"),
    out: Optional[Path] = typer.Option(None, help="run directory [default: runs/<suite>]"),
    methods: Optional[str] = typer.Option(None, help="only these methods of the suite, comma-separated"),
    tasks: Optional[str] = typer.Option(None, help="only these tasks, comma-separated"),
    seeds: Optional[str] = typer.Option(None, help="seeds, comma-separated, e.g. 0,1,2"),
    backend: Optional[Backend] = typer.Option(None, help="inference engine [default: the suite's]"),
) -> None:
    """Train or load every method's student, score it on every task, and write the report."""
    from trustbench.harness.config import load_suite, override
    from trustbench.runner import run_suite

    config = override(load_suite(suite), methods=_names(methods), tasks=_names(tasks), seeds=_seeds(seeds),
                      backend=backend.value if backend else None)
    report = run_suite(config, out or Path("runs") / config.name)
    typer.echo(f"report: {report}")


@app.command("eval")
def evaluate(
    model: str = typer.Option(..., help="zoo name (`trustbench list models`), checkpoint folder, or cached HF id"),
    tasks: str = typer.Option(..., help="tasks, comma-separated (`trustbench list tasks`)"),
    backend: Optional[Backend] = typer.Option(None, help="inference engine [default: vllm with a GPU, hf without: "
                                                         "the faster where it runs]"),
    scoring: Scoring = typer.Option(Scoring.choice, help="choice: lm-eval's per-choice log-likelihood (its acc); "
                                                          "letter: next-token over option letters"),
    limit: Optional[int] = typer.Option(None, min=1, help="score only the first N test questions of each task"),
    num_fewshot: int = typer.Option(0, "--num_fewshot", "--num-fewshot", min=0,
                                    help="few-shot examples in each context (lm-eval tasks: `lmeval:` cards)"),
    out: Optional[Path] = typer.Option(None, help="run directory [default: runs/eval-<model>]"),
) -> None:
    """Score one model on some tasks' test splits (no training), as `lm_eval` would by default."""
    from trustbench import tasks as registry
    from trustbench.harness.config import parse_suite
    from trustbench.harness.engines import default_backend
    from trustbench.runner import run_suite

    label = Path(model).name or model
    names = _names(tasks)
    sizes = {name: {"test": min(limit, registry.get_card(name).test)} for name in names or []} if limit else {}
    suite = parse_suite({"name": f"eval-{label}", "teacher": model, "student": model, "tasks": names,
                         "methods": [{"name": label, "method": "load", "path": model}],
                         "backend": backend.value if backend else default_backend(), "scoring": scoring.value,
                         "temperature_scaling": False, "sizes": sizes, "num_fewshot": num_fewshot},
                        source="trustbench eval")
    report = run_suite(suite, out or Path("runs") / suite.name)
    typer.echo(f"report: {report}")


@app.command()
def report(
    run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIR", help="run directories written by "
                                          "`trustbench run`; several are merged (same suite settings and scoring mode)"),
    out: Optional[Path] = typer.Option(None, help="where to write the report (default: the run directory; "
                                                  "required when merging)"),
    reference: Optional[str] = typer.Option(None, help="the method comparison.csv compares every other with "
                                                       "(default: finetune)"),
) -> None:
    """Rebuild results, leaderboards (md, csv, tex), figures and report.html from stored predictions only.

    No model and no GPU are needed. Rows are ranked by the Brier score averaged over the ID and OOD averages.
    """
    from trustbench.reports import build_report

    typer.echo(f"report: {build_report(run_dirs, out=out, reference=reference)}")


@app.command()
def publish(
    run_dir: Path = typer.Argument(..., help="a run directory written by `trustbench run`"),
    suite: Optional[str] = typer.Option(None, help="publish only this suite's rows (its settings hash must be the "
                                                   "run's): a run that several suites joined is published once per "
                                                   "suite [default: every row, under the run's own suite name]"),
    out: Optional[Path] = typer.Option(None, help="where [default: results/<suite>]"),
    machine: str = typer.Option("", help="the machine it ran on, for a run that did not record it (older runs)"),
) -> None:
    """Copy a run's manifest and prediction files (no checkpoints, no caches) into results/, where
    `trustbench report` rebuilds every table and figure from them and `trustbench pages` writes docs/results/."""
    import json

    from trustbench.harness.config import load_suite
    from trustbench.harness.store import RunDir, publish as publish_run

    source = RunDir(run_dir)
    manifest = source.load()
    if suite is None:
        name, methods, relabel = manifest.suite, list(manifest.methods), {"machine": machine}
    else:
        config = load_suite(suite)
        if manifest.suite_hash != config.hash:
            raise UserError(f"{run_dir} is not a run of suite {config.name!r} (its settings differ: another suite "
                            "hash); publish it under the suite that wrote it")
        name, methods = config.name, [m.name for m in config.methods if m.name in manifest.methods]
        missing = [m.name for m in config.methods if m.name not in manifest.methods]
        if not methods:
            raise UserError(f"{run_dir} has none of suite {config.name!r}'s methods; run them first")
        if missing:
            typer.echo(f"warning: {run_dir} has no {', '.join(missing)} (of suite {config.name}): published "
                       "without them", err=True)
        relabel = {"suite": name, "config": json.loads(json.dumps(config.to_dict(), default=str)), "machine": machine}
    target = RunDir(out or Path("results") / name)
    published = publish_run(source, target, methods, relabel)
    typer.echo(f"published: {target.path} ({len(published.methods)} methods, {len(published.expected_cells())} "
               f"prediction files); rebuild its tables with `trustbench report {target.path}`")


@app.command()
def pages(
    root: Path = typer.Option(Path("."), help="the repository: results/ and benchmarks/results/ are read there, "
                                              "docs/ and the README's headline table written"),
    check: bool = typer.Option(False, help="write nothing; exit 1 if a page differs from what the data gives"),
) -> None:
    """Write docs/results/<suite>.md for every published run, docs/measured.md from the benchmarks' result files
    and the README's headline table, all from files in the repository (no model, seconds)."""
    from trustbench.harness.cache import write_text
    from trustbench.reports.pages import pages as generated

    texts = generated(root)
    differ = [path for path, text in texts.items() if not path.is_file() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in differ:
            typer.echo(f"out of date: {path} (run `trustbench pages`)")
        raise typer.Exit(1 if differ else 0)
    for path in differ:
        write_text(path, texts[path])
    typer.echo(f"pages: {len(differ)} written, {len(texts) - len(differ)} already up to date")


FIGURE_FORMATS = ("png", "pdf", "svg")


def _formats(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.lower() for n in _names(value) or []))
    unknown = [n for n in names if n not in FIGURE_FORMATS]
    if unknown or not names:
        raise UserError(f"--format {value!r}: unknown figure format {', '.join(unknown) or '(none given)'}; "
                        f"use {', '.join(FIGURE_FORMATS)}, comma-separated, e.g. --format png,pdf")
    return names


@app.command()
def figures(
    run_dir: Path = typer.Argument(..., help="a run directory written by `trustbench run`"),
    fmt: str = typer.Option("png", "--format", help=f"figure formats, comma-separated: {', '.join(FIGURE_FORMATS)}"),
) -> None:
    """Redraw every figure of a run into RUN_DIR/figures from its stored predictions and manifest only.

    Reliability diagrams per method x task, the reliability grid, accuracy vs ECE, the ID -> OOD change, and
    every figure a method registers (e.g. FIRST's ECE(c) and top-k mass). No model and no GPU are needed.
    """
    from trustbench.reports.figures import write_figures
    from trustbench.reports.results import compute_results

    formats = _formats(fmt)
    paths = write_figures(run_dir, compute_results(run_dir), formats=formats)
    typer.echo(f"figures: {len(paths)} files ({', '.join(formats)}) in {run_dir / 'figures'}")


@app.command()
def gate(
    baseline: Path = typer.Argument(..., help="the reference run directory (written by `trustbench run`)"),
    candidate: Path = typer.Argument(..., help="the run directory to check against it"),
    max_acc_drop: float = typer.Option(0.01, help="tolerated accuracy drop, a fraction (0.01 = one point)"),
    max_cal_rise: float = typer.Option(0.01, "--max-cal-rise", "--max-ece-rise",
                                       help="tolerated rise of the calibration metric, a fraction (0.01 = one point)"),
    calibration_metric: str = typer.Option("ece", help="the calibration error gated: ece, mce, rms_ce, debiased_ce, "
                                                       "ece_sweep, smece, classwise_ece, mcb, brier or nll"),
    correction: str = typer.Option("holm", help="holm: the chance of any false flag in the run is at most alpha; "
                                                "none: each cell on its own at alpha"),
    alpha: float = typer.Option(0.05, help="one-sided level"),
    n_boot: int = typer.Option(2000, help="paired bootstrap resamples"),
    seed: int = typer.Option(0, help="bootstrap seed (the verdict is deterministic for a seed)"),
    methods: Optional[str] = typer.Option(None, help="gate only these methods, comma-separated: NAME, or "
                                                     "BASE=CAND to gate a candidate method against a baseline "
                                                     "method of another name (e.g. finetune=mine)"),
) -> None:
    """Is CANDIDATE worse than BASELINE? Exit 0: no regression, 1: regression, 2: not comparable.

    For each (method, task) both runs scored, a paired bootstrap over the shared test examples (and shared seeds)
    tests whether the accuracy drop or the calibration metric's rise exceeds its tolerance; Holm's step-down over
    all cells keeps the chance of any false flag in the run at alpha (--correction none: each cell at alpha). The
    runs must share the suite settings (suite hash), the scoring mode and the test
    examples of every gated task; otherwise the reason is printed and the exit code is 2.
    """
    from trustbench.reports.gate import NOT_COMPARABLE, compare_runs, format_gate, parse_method_pairs

    result = compare_runs(baseline, candidate, methods=parse_method_pairs(methods), max_acc_drop=max_acc_drop,
                          max_cal_rise=max_cal_rise, calibration_metric=calibration_metric, correction=correction,
                          alpha=alpha, n_boot=n_boot, seed=seed)
    if result.exit_code == NOT_COMPARABLE:
        typer.echo(f"not comparable: {result.reason}", err=True)
    else:
        typer.echo(format_gate(result))
    raise typer.Exit(result.exit_code)


imports = typer.Typer(no_args_is_help=True, help="Turn another tool's logged outputs into a trustbench run directory.")
app.add_typer(imports, name="import")


@imports.command("lm-eval")
def import_lmeval(
    output_dir: Path = typer.Argument(..., help="the folder given to `lm_eval --log_samples --output_path` (or its "
                                                "model folder, or a results_*.json in it)"),
    out: Optional[Path] = typer.Option(None, help="run directory to write, new [default: runs/lm-eval-<model>]"),
    domain: Domain = typer.Option(Domain.id, help="the domain every imported task is reported under"),
) -> None:
    """Import an lm-eval run's multiple-choice samples: methods acc and acc_norm (lm-eval's raw and length-normalised
    log-likelihoods, softmaxed), ready for `trustbench report`, `figures` and `gate`."""
    from trustbench.harness.lmeval_import import import_lmeval as run_import

    path, manifest = run_import(output_dir, out, domain=domain.value)
    samples = sum(entry.sizes["test"] for entry in manifest.tasks.values())
    typer.echo(f"imported lm-eval {manifest.source.version or '?'} run of {manifest.methods['acc'].runs[0].checkpoint}"
               f": {len(manifest.tasks)} task(s), {samples} samples, methods {', '.join(manifest.methods)} -> {path} "
               f"(next: trustbench report {path})")


@app.command("list")
def list_(what: Listing = typer.Argument(..., help="tasks | methods | models | suites")) -> None:
    """List what trustbench knows about."""
    if what is Listing.tasks:
        import trustbench.tasks as registry

        cards = registry.all_cards().values()
        missing = {card.name: registry.missing_data(card) for card in cards}
        rows = [registry.describe(card, sizes=not missing[card.name]) for card in cards]
        _table(["name", "domain", "family", "format", "choices", "train/val/test (usable)", "source", "license"],
               [[r["name"], r["domain"], r["family"], r["format"], r["num_choices"] or "?",
                 _sizes(r) if r.get("sizes") else "needs data you supply (*)", r["source"], r["license"]]
                for r in rows])
        for note in sorted({m for m in missing.values() if m}):
            typer.echo(f"\n(*) {note}")
    elif what is Listing.methods:
        from trustbench import baselines

        _table(["name", "description"], [[name, _first_line(cls)] for name, cls in sorted(baselines.available().items())])
    elif what is Listing.models:
        from trustbench.harness.zoo import MODELS

        _table(["name", "description"], [[k, v] for k, v in MODELS.items()])
    else:
        from trustbench.harness.config import builtin_suites, load_suite

        _table(["name", "description"], [[name, load_suite(name).description] for name in builtin_suites()])


def _sizes(info: dict) -> str:
    sizes = info["sizes"]
    return f"{sizes['train']}/{sizes['val']}/{sizes['test']} ({sizes['usable']})"


def _first_line(obj) -> str:
    """The first sentence of a recipe's documentation, whole: its package's docstring (a recipe in parts) or its
    module's, without the leading "`name`: "."""
    name = getattr(obj, "__module__", "")
    recipe = ".".join(name.split(".")[:3]) if name.startswith("trustbench.baselines.") else name
    module = sys.modules.get(recipe) or sys.modules.get(name)
    doc = " ".join(((module.__doc__ if module else None) or obj.__doc__ or "").strip().split("\n\n")[0].split())
    doc = re.sub(r"^`[\w-]+`: ", "", doc)
    sentence = re.match(r"(.+?\.)(\s|$)", doc)  # the first full stop ending a sentence ("et al." does not)
    while sentence and sentence.group(1).endswith(("al.", "e.g.", "i.e.")):
        sentence = re.match(rf"({re.escape(sentence.group(1))}.+?\.)(\s|$)", doc)
    text = sentence.group(1) if sentence else doc
    return text[:1].upper() + text[1:]


def _table(header: list[str], rows: list[list]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


def main() -> None:
    """Bad input of any kind (a suite, task, model, data file, run directory or command-line flag) is one line on
    stderr and exit code 2; a gate's verdict is its exit code. The libraries' own progress bars (loading weights,
    writing shards) stay quiet, so a run's log shows trustbench's progress and an error is its last line."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is imported, later
    try:  # typer >= 0.26 vendors click
        from typer._click.exceptions import NoArgsIsHelpError, UsageError
    except ImportError:
        from click.exceptions import NoArgsIsHelpError, UsageError

    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as error:
        typer.echo(error.ctx.get_help())
        sys.exit(0)
    except UserError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)
    except UsageError as error:
        command = error.ctx.command_path if error.ctx else "trustbench"
        message = " ".join(error.format_message().replace("Value error, ", "").split()).rstrip(".")
        typer.echo(f"error: {message}; see `{command} --help`", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)

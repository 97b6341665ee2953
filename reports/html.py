"""report.html: one self-contained page (inline CSS and script, base64 images, no network).

It leads with the answer: the sortable leaderboard (click a header; `#sort=<table id>:<column>:asc|desc` in the
address opens it sorted) under the chance line every cell is held against, then the summary figures (every figure
not tied to one task, the plugins' included, captioned in words from their docstrings), the comparison, costs and
method tables, a drill-down per task (its rows for every method and seed, and its figures; `#task-<name>` opens
it), every results row, and last the run information and package versions. Wide tables scroll in place; a column
whose best is shared marks the tie (`=`) rather than bolding every cell.
"""
from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import pandas as pd

from trustbench.harness.metrics import METRICS
from trustbench.harness.store import Manifest, TaskEntry
from trustbench.reports.compare import HEADLINE
from trustbench.reports.figures import figure_name
from trustbench.reports.leaderboard import (FOOTNOTE, MARKS, RANKING, REFERENCE, format_cell, header_line, marks,
                                            suite_name, task_columns, titles)

IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
td.best { font-weight: bold; } td.avg, th.avg { border-left: 2px solid #999; }
td.tie::after { content: " ="; color: #777; }
div.scroll { overflow-x: auto; max-width: 100%; }
figure img { max-width: 100%; }
table.sortable th { cursor: pointer; user-select: none; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
code { background: #f3f3f3; padding: 0 3px; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: bold; }
.figs { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; } figure img { width: 330px; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8em; text-align: center; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; } dt { font-weight: bold; }
"""

# Click a header to sort by it (again to reverse); numbers sort by `data-value`, empty values last either way.
SCRIPT = """
(function () {
  function key(cell) {
    var v = cell.getAttribute("data-value");
    if (v === null) return cell.textContent.trim().toLowerCase();
    return v === "" ? null : parseFloat(v);
  }
  function sortTable(table, col, dir) {
    var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r, s) {
      var a = key(r.cells[col]), b = key(s.cells[col]);
      if (a === null || b === null) return (a === null) - (b === null);
      return dir * (a < b ? -1 : a > b ? 1 : 0);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute("aria-sort", i === col ? (dir > 0 ? "ascending" : "descending") : "none");
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        sortTable(table, i, th.getAttribute("aria-sort") === "ascending" ? -1 : 1);
      });
    });
    table.setAttribute("data-sortable", "ready");
  });
  var m = /^#sort=([\\w-]+):(\\d+):(asc|desc)$/.exec(window.location.hash);
  var target = m && document.getElementById(m[1]);
  if (target) sortTable(target, parseInt(m[2], 10), m[3] === "asc" ? 1 : -1);
  var task = document.getElementById(decodeURIComponent(window.location.hash.slice(1)));
  if (task && task.tagName === "DETAILS") { task.open = true; task.scrollIntoView(); }
  window.addEventListener("load", function () {
    var shown = Array.prototype.filter.call(document.images, function (img) { return img.naturalWidth > 0; });
    document.body.setAttribute("data-images-loaded", String(shown.length));
    var page = document.documentElement;  // a wide table scrolls in its own box, never the page
    document.body.setAttribute("data-overflows", String(page.scrollWidth > page.clientWidth));
  });
})();
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _prose(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    parts = _esc(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _num(value: float, text: str, extra: str = "") -> str:
    """A numeric cell that sorts by `value` (empty when missing)."""
    data = repr(float(value)) if math.isfinite(value) else ""
    return f'<td class="num{extra}" data-value="{data}">{_esc(text)}</td>'


def _table(table_id: str, head: list[str], rows: list[str], avg_cols=()) -> str:
    ths = "".join(f'<th class="avg">{_esc(h)}</th>' if h in avg_cols else f"<th>{_esc(h)}</th>" for h in head)
    return "\n".join([f'<div class="scroll"><table class="sortable" id="{_esc(table_id)}"><thead><tr>{ths}</tr>'
                      "</thead><tbody>", *rows, "</tbody></table></div>"])


def leaderboard_html(frame: pd.DataFrame, metric: str) -> str:
    """One metric of the leaderboard frame: rank, method, then the columns; the best of each column in bold."""
    part = frame[frame["metric"] == metric]
    columns = list(dict.fromkeys(part["task"]))
    averages = [c for c in columns if c.endswith(" avg")]
    tied = set(part.loc[part["best"].astype(bool)].groupby("task").size().loc[lambda n: n > 1].index)
    rows = []
    for (rank, method), cells in part.groupby(["rank", "method"], sort=True):
        label = method + REFERENCE if cells["reference"].iloc[0] else method
        tds = [_num(rank, str(rank)), f"<td>{_esc(label)}</td>"]
        for cell in cells.itertuples(index=False):
            best = (" tie" if cell.task in tied else " best") if cell.best else ""
            extra = best + (" avg" if cell.task in averages else "")
            tds.append(_num(cell.mean, format_cell(cell._asdict()) + marks(cell._asdict()), extra))
        rows.append("<tr>" + "".join(tds) + "</tr>")
    return _table(f"leaderboard-{metric}", ["rank", "method"] + columns, rows, averages)


def results_table_html(results: pd.DataFrame, table_id: str = "results") -> str:
    """Results rows: metric values with their 95% bootstrap CI."""
    head = ["method", "task", "domain", "seed", "n"] + list(METRICS) + ["temperature", "majority", "top share",
                                                                       "marks"]
    rows = []
    for _, r in results.iterrows():
        cells = [f"<td>{_esc(r[c])}</td>" for c in ("method", "task", "domain")]
        cells += [_num(r["seed"], str(int(r["seed"]))), _num(r["n"], str(int(r["n"])))]
        for m in METRICS:
            value, lo, hi = float(r[m]), float(r[f"{m}_lo"]), float(r[f"{m}_hi"])
            text = f"{value:.4f}" if math.isfinite(value) else "–"
            if math.isfinite(value) and math.isfinite(lo) and math.isfinite(hi):
                text += f" [{lo:.4f}, {hi:.4f}]"
            cells.append(_num(value, text))
        t = float(r["temperature"])
        cells.append(_num(t, f"{t:.3f}" if math.isfinite(t) else "–"))
        cells += [_num(r["majority"], f"{r['majority']:.3f}"), _num(r["top_share"], f"{r['top_share']:.3f}"),
                  f"<td>{_esc(marks(r.to_dict()))}</td>"]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _table(table_id, head, rows)


def comparison_html(table: pd.DataFrame) -> str:
    """Every method against finetune (`reports.compare`), or "" when there is no finetune row to compare with."""
    if table.empty:
        return ""
    rows = []
    for r in table[table["metric"].isin(HEADLINE)].itertuples(index=False):
        ci = f" [{100 * r.diff_lo:+.1f}, {100 * r.diff_hi:+.1f}]" if math.isfinite(r.diff_lo) else ""
        metric = r.metric + (MARKS["small_sample"] if r.small_sample else "")
        cells = [f"<td>{_esc(v)}</td>" for v in (r.method, r.domain, metric)] + [
            _num(r.tasks, str(r.tasks)), _num(r.seeds, str(r.seeds)),
            _num(r.method_mean, f"{100 * r.method_mean:.1f}"), _num(r.reference_mean, f"{100 * r.reference_mean:.1f}"),
            _num(r.diff, f"{100 * r.diff:+.1f}{ci}"), _num(r.relative_pct, f"{r.relative_pct:+.1f}%")]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    head = ["method", "domain", "metric", "tasks", "seeds", "method (%)", "finetune (%)",
            "difference (points, 95% CI)", "relative"]
    return "\n".join(["<h2>Against finetune</h2>",
                      "<p>Each method minus finetune, averaged over the tasks of the domain both scored. The CI is a "
                      "paired bootstrap over test examples and seeds (the same resamples for both methods). "
                      "Relative: the difference as a percentage of finetune's value. "
                      f"{MARKS['small_sample']}: fewer than 300 test predictions per seed in a task of the domain. "
                      f"Shown: {', '.join(HEADLINE)}; every metric of the results table is in "
                      "<code>comparison.csv</code>.</p>",
                      _table("comparison", head, rows)])


def costs_html(manifest: Manifest) -> str:
    """Training cost and teacher-cache records per method x seed (`reports.costs`), or "" when there are none."""
    from trustbench.reports.costs import cost_table, format_value

    table = cost_table(manifest)
    if table.empty:
        return ""
    rows = ["<tr>" + "".join(f"<td>{_esc(format_value(v))}</td>" for v in row) + "</tr>"
            for row in table.itertuples(index=False)]
    return "\n".join(["<h2>Training cost and teacher cache</h2>",
                      "<p>Per method and seed: training time and tokens, teacher calls, and for distillation "
                      "methods the teacher cache: k, FIRST's chosen c, the mean teacher probability the top k "
                      "keep (<code>topk_mass</code>), the cache's bytes against the full float32 distributions "
                      "it replaces, and the extraction engine's speed.</p>",
                      _table("costs", list(table.columns), rows)])


def _img(path: Path, caption: str, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    mime = IMAGE_TYPES[Path(path).suffix]
    return (f'<figure><img src="data:{mime};base64,{data}" alt="{_esc(alt)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


def caption(name: str) -> str:
    """A figure's caption in words: the first sentence of its registered function's docstring (the file name for a
    figure no registry knows)."""
    from trustbench.harness.registry import FIGURES

    stem = Path(name).stem
    doc = (FIGURES.get(stem).__doc__ or "") if stem in FIGURES else ""
    return " ".join(doc.strip().split("\n\n")[0].split()) or stem


def chance_html(results: pd.DataFrame) -> str:
    """What a cell must beat: each task's majority rate, and what the marks mean."""
    rates = "; ".join(f"{_esc(task)} ({_esc(part['domain'].iloc[0].upper())}) {100 * part['majority'].iloc[0]:.1f}%"
                      for task, part in results.groupby("task", sort=False))
    return (f"<p><b>Against chance.</b> The majority rate of each test split (the share of its most frequent answer), "
            f"which an accuracy must clear to mean anything: {rates}. {_esc(MARKS['at_chance'])} marks a cell whose "
            "accuracy's 95% lower bound does not clear it; the <code>prior</code> row always gives that answer.</p>")


def _figs(images: list[str]) -> str:
    return '<div class="figs">' + "".join(images) + "</div>" if images else ""


def drilldown_html(results: pd.DataFrame, tasks: dict[str, TaskEntry], methods: list[str],
                   figures: dict[str, Path]) -> str:
    """A collapsed <details> per task (ID, then OOD): every method x seed row of it and its reliability diagrams.

    Pops the figures it shows from `figures`, so the caller can show the rest elsewhere.
    """
    id_tasks, ood_tasks = task_columns(results, tasks)
    out = []
    for label, names in (("ID", id_tasks), ("OOD", ood_tasks)):
        for task in names:
            family = f", {tasks[task].family}" if task in tasks and tasks[task].family else ""
            shown = [m for m in methods if figure_name(m, task) in figures]
            images = [_img(figures.pop(figure_name(m, task, kind)), m, f"{kind} reliability diagram: {m} on {task}")
                      for m in shown for kind in ("reliability", "smooth") if figure_name(m, task, kind) in figures]
            rows = results[results["task"] == task]
            out += [f'<details id="task-{_esc(task)}"><summary>{_esc(task)} ({label}){_esc(family)}: '
                    f"{len(rows)} rows, {len(images)} figures</summary>",
                    results_table_html(rows, f"results-{task}"), _figs(images), "</details>"]
    return "\n".join(out)


def _info_html(manifest: Manifest, results: pd.DataFrame) -> str:
    metrics = manifest.metrics
    items = [
        ("suite", suite_name(results)),
        ("config hash", manifest.suite_hash),
        ("scoring mode", manifest.scoring.mode),
        ("confidence", manifest.scoring.confidence),
        ("ECE bins", f"{metrics.bins} {'equal-mass' if metrics.equal_mass else 'equal-width'}"),
        ("bootstrap resamples", metrics.n_boot),
        ("temperature scaling", "on (fitted on ID val predictions per method x seed)"
         if manifest.temperature_scaling else "off"),
        ("seeds", ", ".join(str(s) for s in sorted(set(results["seed"])))),
    ]
    items += [(f"confidence ({name})", text) for name, text in sorted(manifest.scoring.formats.items())
              if name != manifest.scoring.mode]
    out = ["<dl>"] + [f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items] + ["</dl>"]
    if manifest.merged_from:
        out.append("<h3>Merged runs</h3><table>"
                   "<tr><th>run</th><th>suite</th><th>created</th><th>git revision</th></tr>")
        out += [f"<tr><td>{_esc(s.run)}</td><td>{_esc(s.suite)}</td><td>{_esc(s.created)}</td>"
                f"<td>{_esc(s.git_revision or '?')}</td></tr>" for s in manifest.merged_from]
        out.append("</table>")
    if manifest.tasks:
        out.append("<h3>Tasks</h3><table><tr><th>task</th><th>domain</th><th>family</th><th>scored as</th></tr>")
        for name, entry in manifest.tasks.items():
            out.append(f"<tr><td>{_esc(name)}</td><td>{_esc(entry.domain)}</td><td>{_esc(entry.family)}</td>"
                       f"<td>{_esc(entry.scoring)}</td></tr>")
        out.append("</table>")
    out.append(_versions_html(manifest))
    return "\n".join(out)


def _versions_html(manifest: Manifest) -> str:
    """Package versions: one column, or one per run when runs were merged."""
    runs = [(s.run, s.versions) for s in manifest.merged_from] or [("version", manifest.versions)]
    runs = [(name, versions) for name, versions in runs if versions]
    if not runs:
        return ""
    names = sorted({n for _, versions in runs for n in versions})
    out = ["<h3>Package versions</h3><table><tr><th>package</th>"
           + "".join(f"<th>{_esc(run)}</th>" for run, _ in runs) + "</tr>"]
    out += [f"<tr><td>{_esc(n)}</td>" + "".join(f"<td>{_esc(versions.get(n, '–'))}</td>" for _, versions in runs)
            + "</tr>" for n in names]
    out.append("</table>")
    return "\n".join(out)


def tables_html(tables: dict[str, pd.DataFrame]) -> str:
    """The tables methods register (`tables/<name>.csv`), each with its docstring's first paragraph as caption."""
    from trustbench.harness.registry import TABLES

    out = []
    for name, table in tables.items():
        doc = (TABLES.get(name).__doc__ or "").strip().split("\n\n")[0]
        head = [str(c) for c in table.columns]
        rows = ["<tr>" + "".join(_num(v, f"{v:.4g}") if isinstance(v, float) else f"<td>{_esc(v)}</td>"
                                 for v in row) + "</tr>" for row in table.itertuples(index=False)]
        out += [f"<h3>{_esc(name)}</h3>", f"<p>{_esc(' '.join(doc.split()))} Also in <code>tables/{_esc(name)}.csv"
                "</code>.</p>", _table(f"table-{name}", head, rows)]
    return "\n".join(["<h2>Method tables</h2>", *out]) if out else ""


def render_html(manifest: Manifest, results: pd.DataFrame, frame: pd.DataFrame, comparison: pd.DataFrame,
                figures, tables: dict | None = None) -> str:
    """The whole report as one HTML string, from the (merged) manifest, results, leaderboard frame and figures."""
    title = f"trustbench report: {suite_name(results)}"
    methods = list(dict.fromkeys(frame["method"]))  # rank order
    remaining = {Path(f).name: Path(f) for f in figures if Path(f).suffix in IMAGE_TYPES}  # a browser shows these
    leaderboard = [f"<h3>{_esc(t)}</h3>\n{leaderboard_html(frame, m)}"
                   for m, t in titles(manifest.metrics.model_dump(), frame).items()]
    per_task = {figure_name(m, t, kind) for m in methods for t in manifest.tasks for kind in ("reliability", "smooth")}
    summary = {name: remaining.pop(name) for name in list(remaining) if name not in per_task}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        "<h2>Leaderboard</h2>",
        chance_html(results),
        f"<p>{_prose(header_line(results, manifest.scoring.model_dump()))} {_prose(RANKING)} Bold: the best of its "
        "column; = : tied for best. Click a column header to sort.</p>",
        *leaderboard,
        f"<p>{_prose(FOOTNOTE)}</p>",
    ]
    if summary:
        parts += ["<h2>Figures</h2>",
                  _figs([_img(path, caption(name), name) for name, path in sorted(summary.items())])]
    parts += [
        comparison_html(comparison),
        costs_html(manifest),
        tables_html(tables or {}),
        "<h2>Per task</h2>",
        "<p>Each task's rows (one per method x seed; fractions with 95% bootstrap CIs over test examples) and its "
        "reliability diagrams (bars: accuracy per confidence bin; red line: mean confidence per bin; dashed: "
        "perfect calibration; lower panel: examples per bin; seeds pooled), a raw method's beside its smooth "
        "reliability diagram (kernel-smoothed accuracy with a 95% bootstrap band, at the bandwidth smooth ECE "
        "chooses; grey: the density of the confidences; no bins to choose). Click a task to open it.</p>",
        drilldown_html(results, manifest.tasks, methods, remaining),
        "<h2>All results</h2>",
        "<p>One row per method x task x seed; values are fractions with 95% bootstrap CIs over test examples.</p>",
        results_table_html(results),
    ]
    if remaining:
        parts += ["<h2>Other figures</h2>",
                  _figs([_img(p, caption(name), name) for name, p in sorted(remaining.items())])]
    parts += ["<h2>Run</h2>", _info_html(manifest, results)]
    parts += [f"<script>{SCRIPT}</script>", "</body></html>", ""]
    return "\n".join(parts)

"""report.html: one self-contained page (inline CSS, base64 images, no scripts, no network)."""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import pandas as pd

from reports.figures import figure_name
from reports.leaderboard import method_order, task_columns
from reports.results import METRICS, load_manifest

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 3px; }
.figs { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; } figure img { width: 330px; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8em; text-align: center; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; } dt { font-weight: bold; }
"""


def _inline(text: str) -> str:
    """Escape, then turn `code` spans into <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text, quote=False))


def markdown_to_html(md: str) -> str:
    """The small markdown subset the leaderboard uses: #/## headings, pipe tables, paragraphs."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i].strip())
                i += 1
            rows = [[c.strip() for c in r.strip("|").split("|")] for r in block]
            rows = [r for r in rows if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            if rows:
                head, body = rows[0], rows[1:]
                out.append("<table>")
                out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>")
                for r in body:
                    cells = [f"<th>{_inline(r[0])}</th>"] + [f'<td class="num">{_inline(c)}</td>' for c in r[1:]]
                    out.append("<tr>" + "".join(cells) + "</tr>")
                out.append("</table>")
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            level = min(len(heading.group(1)) + 1, 6)  # the page's own <h1> is the title
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line:
            para = [line]
            while i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].startswith(("|", "#")):
                i += 1
                para.append(lines[i].rstrip())
            out.append(f"<p>{_inline(' '.join(para))}</p>")
        i += 1
    return "\n".join(out)


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def results_table_html(results: pd.DataFrame) -> str:
    """Every results row: metric values with their 95% bootstrap CI."""
    head = ["method", "task", "domain", "seed", "n"] + list(METRICS) + ["temperature"]
    out = ["<table>", "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for _, r in results.iterrows():
        cells = [f"<td>{html.escape(str(r[c]))}</td>" for c in ("method", "task", "domain")]
        cells += [f'<td class="num">{int(r["seed"])}</td>', f'<td class="num">{int(r["n"])}</td>']
        for m in METRICS:
            text = _fmt(float(r[m]))
            if text != "–" and math.isfinite(float(r[f"{m}_lo"])) and math.isfinite(float(r[f"{m}_hi"])):
                text += f" [{float(r[f'{m}_lo']):.4f}, {float(r[f'{m}_hi']):.4f}]"
            cells.append(f'<td class="num">{text}</td>')
        cells.append(f'<td class="num">{_fmt(float(r["temperature"]), 3)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _img(path: Path, caption: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(f"reliability diagram: {caption}")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def figures_html(results: pd.DataFrame, tasks_meta: dict, figures) -> str:
    """Every figure once, grouped by task (ID tasks, then OOD tasks), methods in leaderboard order."""
    remaining = {Path(f).name: Path(f) for f in figures}
    id_tasks, ood_tasks = task_columns(results, tasks_meta) if len(results) else ([], [])
    methods = method_order(results["method"]) if len(results) else []
    out = []
    for label, tasks in (("ID", id_tasks), ("OOD", ood_tasks)):
        for task in tasks:
            imgs = [_img(remaining.pop(figure_name(m, task)), m) for m in methods if figure_name(m, task) in remaining]
            if imgs:
                out.append(f"<h3>{html.escape(task)} ({label})</h3>")
                out.append('<div class="figs">' + "".join(imgs) + "</div>")
    if remaining:
        out.append("<h3>Other figures</h3>")
        out.append('<div class="figs">' + "".join(_img(p, name) for name, p in sorted(remaining.items())) + "</div>")
    return "\n".join(out)


def _info_html(manifest: dict, results: pd.DataFrame) -> str:
    scoring = manifest.get("scoring") or {}
    metrics = manifest.get("metrics") or {}
    items = [
        ("suite", manifest.get("suite", "?")),
        ("config hash", manifest.get("suite_hash", "?")),
        ("scoring mode", scoring.get("mode", "?")),
        ("confidence", scoring.get("confidence", "?")),
        ("ECE bins", f"{metrics.get('bins', 10)} {'equal-mass' if metrics.get('equal_mass') else 'equal-width'}"),
        ("bootstrap resamples", metrics.get("n_boot", 1000)),
        ("temperature scaling", "on (fitted on ID val predictions per method x seed)"
         if manifest.get("temperature_scaling") else "off"),
        ("seeds", ", ".join(str(s) for s in sorted(set(results["seed"])))),
    ]
    out = ["<dl>"] + [f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items] + ["</dl>"]
    tasks = manifest.get("tasks") or {}
    if tasks:
        out.append("<h3>Tasks</h3><table><tr><th>task</th><th>domain</th><th>family</th></tr>")
        for name, meta in tasks.items():
            meta = meta if isinstance(meta, dict) else {}
            out.append(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(meta.get('domain', '?')))}</td>"
                       f"<td>{html.escape(str(meta.get('family', '')))}</td></tr>")
        out.append("</table>")
    versions = manifest.get("versions")
    if isinstance(versions, dict) and versions:
        out.append("<h3>Package versions</h3><table><tr><th>package</th><th>version</th></tr>")
        for name in sorted(versions):
            out.append(f"<tr><td>{html.escape(str(name))}</td><td>{html.escape(str(versions[name]))}</td></tr>")
        out.append("</table>")
    return "\n".join(out)


def render_html(run_dir: str | Path, results: pd.DataFrame, leaderboard_md: str, figures) -> str:
    """The whole report as one HTML string: suite info, leaderboard, full results, reliability diagrams."""
    manifest = load_manifest(run_dir)
    title = f"trustbench report: {manifest.get('suite', '?')}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Run</h2>",
        _info_html(manifest, results),
        markdown_to_html(leaderboard_md),
        "<h2>All results</h2>",
        "<p>One row per method x task x seed; values are fractions with 95% bootstrap CIs over test examples.</p>",
        results_table_html(results),
        "<h2>Reliability diagrams</h2>",
        "<p>Bars: accuracy per confidence bin; red line: mean confidence per bin; dashed: perfect calibration; "
        "lower panel: examples per bin. Seeds pooled.</p>",
        figures_html(results, manifest.get("tasks") or {}, figures),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)

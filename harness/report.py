"""Run reports: each kind's figures, headline table and findings, assembled into report.md.

Figures read only the stored results (`load_run`). A kind whose report fails does not stop the
others: its section says so and the data stays in points.parquet.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from harness.kind import Kind, Report  # noqa: E402
from harness.kinds import get_kind  # noqa: E402
from harness.store import kind_frame, load_run  # noqa: E402


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (numbers to 4 significant digits)."""
    if df.empty:
        return "_(no rows)_"
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _values(values: list) -> str:
    if len(values) > 8:
        return f"{len(values)} values from {values[0]} to {values[-1]}"
    return ", ".join(str(v) for v in values)


def _run_section(df: pd.DataFrame, manifest: dict, resolved: dict | None) -> list[str]:
    git = manifest.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty") else "")
    pk = manifest.get("packages", {})
    lines = [
        "## The run",
        "",
        f"- Experiment: `{manifest.get('experiment')}` from `{manifest.get('config')}`"
        + (f" with `--set {' '.join(manifest['overrides'])}`" if manifest.get("overrides")
           else ""),
        f"- Run: `{manifest.get('run_id')}`, status **{manifest.get('status')}**, "
        f"{len(df)} rows (point x repeat), started {manifest.get('start_time')}, "
        f"ended {manifest.get('end_time')}",
        f"- Kinds: {', '.join(manifest.get('kinds', []))}",
        f"- Compute: {df['wall_s'].sum():.1f} s of point wall time, median "
        f"{df['wall_s'].median() if len(df) else float('nan'):.3g} s per point run",
        f"- Code: commit {commit}; Python {manifest.get('python')}, numba {pk.get('numba')}, "
        f"llvmlite {pk.get('llvmlite')}, numpy {pk.get('numpy')}",
        f"- Machine: {manifest.get('cpu_model')}, {manifest.get('cores')} cores",
    ]
    if manifest.get("calibration"):
        lines.append(f"- Calibration: {manifest['calibration']}")
    if resolved:
        lines.append(f"- Seed {resolved.get('seed')}, {resolved.get('repeats')} repeat(s)")
        for i, part in enumerate(resolved.get("parts", []), 1):
            grid = "; ".join(f"{k}: {_values(v)}" for k, v in part["grid"].items()) or "none"
            fixed = ", ".join(f"{k}={v}" for k, v in part["fixed"].items()) or "none"
            lines.append(f"- Part {i} (`{part['kind']}`): grid {grid}; fixed {fixed}")
    return lines + [""]


def _kind_section(kind: Kind, rep: Report, plots: Path,
                  warn: Callable[[str], None]) -> list[str]:
    lines = [f"## {kind.name}: {kind.summary}", "", "### Headline numbers", "",
             markdown_table(rep.headline), ""]
    if rep.findings:
        lines += ["### Findings", "", *(f"- {f}" for f in rep.findings), ""]
    if rep.figures:
        lines += ["### Figures", ""]
    for fig in rep.figures:
        if not (plots / fig.filename).is_file():
            warn(f"kpbench: warning: kind {kind.name} listed figure {fig.filename} "
                 "but did not write it")
            lines += [f"{fig.caption} _(figure {fig.filename} missing)_", ""]
            continue
        lines += [fig.caption, "", f"![{fig.caption}](plots/{fig.filename})", ""]
    return lines


def write_report(run_dir: str | Path, echo: Callable[[str], None] | None = None) -> Path:
    """Write plots/, report.md and (unless the config says `html = false`) report.html."""
    import json

    echo = echo or (lambda line: print(line, file=sys.stderr))
    run = Path(run_dir)
    df, manifest = load_run(run)
    resolved_file = run / "resolved.json"
    resolved = json.loads(resolved_file.read_text()) if resolved_file.is_file() else None
    options = (resolved or {}).get("report", {})
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    title = options.get("title") or f"kpbench report: {manifest.get('experiment')}"
    lines = [f"# {title}", ""]
    if resolved and resolved.get("description"):
        lines += [resolved["description"], ""]
    lines += _run_section(df, manifest, resolved)
    figures: list[tuple[str, str]] = []
    kinds = [k for k in manifest.get("kinds", []) if (df["kind"] == k).any()] if len(df) else []
    if not kinds:
        lines += ["_No finished points yet._", ""]
    for name in kinds:
        try:
            kind = get_kind(name)
            rep = kind.report(kind_frame(df, kind, manifest), plots)
            lines += _kind_section(kind, rep, plots, echo)
            figures += [(f.caption, f.filename) for f in rep.figures
                        if (plots / f.filename).is_file()]
        except Exception as exc:  # keep the data and the other kinds' reports
            echo(f"kpbench: warning: report of kind {name} failed: {type(exc).__name__}: {exc} "
                 "(its points are kept in points.parquet)")
            lines += [f"## {name}", "", f"_The report of this kind failed "
                      f"({type(exc).__name__}: {exc}); its points are in points.parquet._", ""]
    listed = {f for _, f in figures}
    others = sorted(p.name for p in plots.glob("*.png") if p.name not in listed)
    if others:
        lines += ["## Other figures", ""]
        for name in others:
            lines += [f"Figure {name} (written by a kind's report without a caption).", "",
                      f"![{name}](plots/{name})", ""]
    out = run / "report.md"
    out.write_text("\n".join(lines).rstrip() + "\n")
    if options.get("html", True):
        from harness.html_report import write_html  # self-contained, beside report.md

        write_html(run, title, lines)
    return out

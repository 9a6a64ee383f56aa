"""Compare two runs: metrics side by side (joined on parameters, with deltas and ratios) and
overlay plots, as compare.md + compare.csv + PNGs (`kpbench compare RUN_A RUN_B`).

For every kind present in both runs, repeats are averaged per parameter combination and the two
tables are joined on the parameters that vary in either run. A parameter held constant in both
runs at different values (before/after a change such as conntrack_buckets = 0 -> 65536) is the
change under study: it is reported, not joined on. Numeric metrics (wall_s included) get
B - A and B / A per point and a summary (median ratio, range, points that differ); text metrics
are counted as differing or not. Figures overlay A (solid) and B (dashed) against the numeric
parameter with the most values, one line per combination of the other varying parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.errors import UserError  # noqa: E402
from harness.kind import Kind  # noqa: E402
from harness.kinds import get_kind  # noqa: E402
from harness.report import markdown_table  # noqa: E402
from harness.store import RESERVED, kind_frame, load_run  # noqa: E402

MAX_PLOTS_PER_KIND = 8
MAX_POINT_ROWS = 200
TIMING = "wall_s"


@dataclass
class KindComparison:
    """The comparison of one kind's points in two runs."""

    kind: str
    keys: list[str]
    changed: dict[str, tuple]  # parameter -> (value in A, value in B), constant within each run
    only_params: dict[str, list[str]]  # "A"/"B" -> parameters present in that run only
    matched: int
    only_a: int
    only_b: int
    long: pd.DataFrame  # keys..., metric, A, B, delta, ratio
    summary: pd.DataFrame  # metric, median A, median B, median/min/max B/A, points differing
    a: pd.DataFrame = field(default_factory=pd.DataFrame)  # run A averaged over repeats
    b: pd.DataFrame = field(default_factory=pd.DataFrame)  # run B averaged over repeats
    text_differing: dict[str, int] = field(default_factory=dict)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (filename, caption)


def _constant(series: pd.Series) -> bool:
    return series.nunique(dropna=False) <= 1


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)


def _aggregate(df: pd.DataFrame, keys: list[str], numeric: list[str],
               text: list[str]) -> pd.DataFrame:
    """Mean of numeric metrics (first value of text ones) over repeats, per key combination."""
    data = df[keys + numeric + text].copy()
    for m in numeric:
        data[m] = data[m].astype(float)
    agg = {**dict.fromkeys(numeric, "mean"), **dict.fromkeys(text, "first")}
    if not keys:
        return pd.DataFrame([data.agg(agg)]) if agg else pd.DataFrame(index=[0])
    return data.groupby(keys, dropna=False, sort=True).agg(agg).reset_index()


def compare_kind(kind: Kind, a: pd.DataFrame, b: pd.DataFrame) -> KindComparison:
    """Join one kind's points of runs A and B and compute deltas, ratios and a summary."""
    params = [p.name for p in kind.params]
    in_a = [p for p in params if p in a.columns]
    in_b = [p for p in params if p in b.columns]
    shared = [p for p in in_a if p in in_b]
    changed = {p: (a[p].iloc[0], b[p].iloc[0]) for p in shared
               if _constant(a[p]) and _constant(b[p]) and len(a) and len(b)
               and not (a[p].iloc[0] == b[p].iloc[0])}
    keys = [p for p in shared if p not in changed
            and not (_constant(a[p]) and _constant(b[p]))]
    metric_cols = [c for c in a.columns if c in b.columns and c not in params
                   and (c not in RESERVED or c == TIMING)]
    metric_cols = [m for m in metric_cols if a[m].notna().any() or b[m].notna().any()]
    numeric = [m for m in metric_cols if _numeric(a[m].dropna()) and _numeric(b[m].dropna())]
    text = [m for m in metric_cols if m not in numeric]
    ga, gb = _aggregate(a, keys, numeric, text), _aggregate(b, keys, numeric, text)
    if keys:
        joined = ga.merge(gb, on=keys, how="outer", suffixes=(" A", " B"), indicator=True)
    else:
        joined = ga.add_suffix(" A").join(gb.add_suffix(" B"))
        joined["_merge"] = "both"
    both = joined[joined["_merge"] == "both"].reset_index(drop=True)
    frames, rows = [], []
    for m in numeric:
        va, vb = both[f"{m} A"].astype(float), both[f"{m} B"].astype(float)
        ratio = (vb / va).where(va != 0)
        frames.append(pd.DataFrame({**{k: both[k] for k in keys}, "metric": m, "A": va,
                                    "B": vb, "delta": vb - va, "ratio": ratio}))
        differ = int((~((va == vb) | (va.isna() & vb.isna()))).sum())
        fin = ratio[np.isfinite(ratio)]
        rows.append({"metric": m, "median A": va.median(), "median B": vb.median(),
                     "median B/A": fin.median() if len(fin) else math.nan,
                     "min B/A": fin.min() if len(fin) else math.nan,
                     "max B/A": fin.max() if len(fin) else math.nan,
                     "points differing": differ})
    text_differing = {m: int((both[f"{m} A"].astype(str) != both[f"{m} B"].astype(str)).sum())
                      for m in text}
    long = (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=[*keys, "metric", "A", "B", "delta", "ratio"]))
    return KindComparison(
        kind=kind.name, keys=keys, changed=changed,
        only_params={"A": [p for p in in_a if p not in in_b],
                     "B": [p for p in in_b if p not in in_a]},
        matched=len(both), only_a=int((joined["_merge"] == "left_only").sum()),
        only_b=int((joined["_merge"] == "right_only").sum()), long=long,
        summary=pd.DataFrame(rows, columns=["metric", "median A", "median B", "median B/A",
                                            "min B/A", "max B/A", "points differing"]),
        a=ga, b=gb, text_differing=text_differing)


def _spread(values: pd.Series) -> float:
    v = values.dropna().astype(float)
    v = v[v > 0]
    return float(v.max() / v.min()) if len(v) and len(v) == len(values.dropna()) else 0.0


def _plot_metrics(comp: KindComparison, chosen: list[str] | None) -> list[str]:
    """Metrics to plot: those asked for, else the most changed ones (or the first few)."""
    summary = comp.summary
    if chosen:
        return [m for m in chosen if m in set(summary["metric"])]
    changed = summary[(summary["points differing"] > 0) & (summary["metric"] != TIMING)].copy()
    if changed.empty:
        return [m for m in summary["metric"] if m != TIMING][:4]
    changed["size"] = [max(abs(math.log(x)) if x and x > 0 else 0.0
                           for x in (lo, hi)) if np.isfinite(lo) and np.isfinite(hi) else math.inf
                       for lo, hi in zip(changed["min B/A"], changed["max B/A"], strict=True)]
    ordered = changed.sort_values("size", ascending=False, kind="stable")["metric"].tolist()
    return ordered[:MAX_PLOTS_PER_KIND]


def plot_overlay(comp: KindComparison, metric: str, out: Path, labels: tuple[str, str]) -> str:
    """One overlay figure of `metric` (A solid, B dashed; every point of each run, matched or
    not); returns its caption."""
    data = pd.concat([comp.a[[*comp.keys, metric]].assign(run="A"),
                      comp.b[[*comp.keys, metric]].assign(run="B")], ignore_index=True)
    data = data.rename(columns={metric: "value"})
    numeric_keys = [k for k in comp.keys if pd.api.types.is_numeric_dtype(data[k])
                    and not pd.api.types.is_bool_dtype(data[k]) and data[k].nunique() > 1]
    x = max(numeric_keys, key=lambda k: data[k].nunique()) if numeric_keys else None
    groups = [k for k in comp.keys if k != x]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    grouped = list(data.groupby(groups, dropna=False, sort=True)) if groups else [((), data)]
    if x is not None:
        for i, (name, sub) in enumerate(grouped):
            sub = sub.sort_values(x)
            name = name if isinstance(name, tuple) else (name,)
            tag = ", ".join(f"{g}={v}" for g, v in zip(groups, name, strict=True))
            color = colors[i % len(colors)]
            for run, style in (("A", "-o"), ("B", "--x")):
                line = sub[sub["run"] == run]
                ax.plot(line[x], line["value"], style, color=color, ms=4 if run == "A" else 5,
                        label=f"{tag} ({run})" if tag else run)
        ax.set_xlabel(x)
        if _spread(data[x]) >= 100:
            ax.set_xscale("log")
    else:
        names = [", ".join(f"{g}={v}" for g, v in
                           zip(groups, n if isinstance(n, tuple) else (n,), strict=True))
                 or "all points" for n, _ in grouped]
        pos = np.arange(len(grouped))
        for run, shift, hatch in (("A", -0.2, None), ("B", 0.2, "//")):
            ax.bar(pos + shift, [s.loc[s["run"] == run, "value"].mean() for _, s in grouped],
                   0.4, label=run, hatch=hatch)
        ax.set_xticks(pos, names, rotation=30 if len(grouped) > 3 else 0, ha="right"
                      if len(grouped) > 3 else "center", fontsize=8)
        ax.set_xlabel(", ".join(groups) or "point")
    if x is not None and _spread(data["value"]) >= 100:
        ax.set_yscale("log")
    ax.set_ylabel(f"{metric} (mean over repeats)")
    ax.set_title(f"{comp.kind}: {metric}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(grouped) > 3 else 1)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    against = f"against {x}" if x else "per point"
    return (f"{comp.kind}: {metric} {against}, run A {labels[0]} (solid) and run B "
            f"{labels[1]} (dashed)" + (f", one colour per {', '.join(groups)}" if groups and x
                                       else "") + ".")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _fmt(value: object) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.6g}"
    return str(value)


def _runs_table(runs: list[tuple[Path, dict]]) -> pd.DataFrame:
    def facts(path: Path, m: dict) -> dict:
        git = m.get("git") or {}
        pk = m.get("packages") or {}
        return {
            "run folder": str(path),
            "experiment": m.get("experiment"),
            "status": m.get("status"),
            "started": m.get("start_time"),
            "commit": (git.get("commit") or "unknown")[:12] + (" (dirty)" if git.get("dirty")
                                                               else ""),
            "machine": f"{m.get('cpu_model')}, {m.get('cores')} cores ({m.get('hostname')})",
            "python / numba": f"{m.get('python')} / {pk.get('numba')}",
            "overrides": " ".join(m.get("overrides") or []) or "none",
            "calibration": ", ".join(f"{k}={v}" for k, v in
                                     (m.get("calibration") or {}).items()) or "none",
        }

    fa, fb = (facts(p, m) for p, m in runs)
    return pd.DataFrame({"": list(fa), "A": list(fa.values()), "B": list(fb.values())})


def compare_runs(run_a: str | Path, run_b: str | Path, out: str | Path | None = None,
                 metrics: list[str] | None = None) -> Path:
    """Write compare.md, compare.csv and overlay PNGs comparing two run folders; returns the md."""
    run_a, run_b = Path(run_a), Path(run_b)
    for flag, run in (("RUN_A", run_a), ("RUN_B", run_b)):
        if not run.is_dir():
            raise UserError(f"{flag}: {run}: expected a run folder, got no such directory")
    df_a, man_a = load_run(run_a)
    df_b, man_b = load_run(run_b)
    kinds_a = [k for k in man_a.get("kinds", []) if len(df_a) and (df_a["kind"] == k).any()]
    kinds_b = {k for k in man_b.get("kinds", []) if len(df_b) and (df_b["kind"] == k).any()}
    common = [k for k in kinds_a if k in kinds_b]
    if not common:
        raise UserError(f"RUN_B: {run_b}: expected finished points of a kind RUN_A has "
                        f"({', '.join(kinds_a) or 'none'}), got "
                        f"{', '.join(sorted(kinds_b)) or 'none'}")
    out = Path(out) if out else run_b.parent.parent / "_compare" / f"{run_a.name}_vs_{run_b.name}"
    out.mkdir(parents=True, exist_ok=True)
    labels = (f"{man_a.get('experiment')}/{man_a.get('run_id')}",
              f"{man_b.get('experiment')}/{man_b.get('run_id')}")
    lines = [f"# kpbench compare: A `{labels[0]}` vs B `{labels[1]}`", "",
             "Ratios are B / A; deltas are B - A; repeats are averaged per parameter "
             "combination before joining.", "", "## The runs", "",
             markdown_table(_runs_table([(run_a, man_a), (run_b, man_b)])), ""]
    missing = sorted((set(kinds_a) | kinds_b) - set(common))
    if missing:
        lines += [f"Kinds in only one run (not compared): {', '.join(missing)}.", ""]
    csv_frames = []
    for name in common:
        kind = get_kind(name)
        comp = compare_kind(kind, kind_frame(df_a, kind, man_a), kind_frame(df_b, kind, man_b))
        for metric in _plot_metrics(comp, metrics):
            filename = f"{_safe(name)}_{_safe(metric)}.png"
            comp.figures.append((filename, plot_overlay(comp, metric, out / filename, labels)))
        lines += _kind_section(comp)
        csv_frames.append(comp.long.assign(kind=name))
    pd.concat(csv_frames, ignore_index=True).to_csv(out / "compare.csv", index=False)
    md = out / "compare.md"
    md.write_text("\n".join(lines).rstrip() + "\n")
    return md


def _kind_section(comp: KindComparison) -> list[str]:
    joined = ", ".join(comp.keys) or "nothing (one point per run)"
    lines = [f"## {comp.kind}", "", f"- Joined on: {joined}",
             f"- Points: {comp.matched} in both, {comp.only_a} only in A, {comp.only_b} only "
             "in B"]
    if comp.changed:
        lines.append("- Changed between the runs: " + "; ".join(
            f"{p}: {_fmt(va)} -> {_fmt(vb)}" for p, (va, vb) in comp.changed.items()))
    for side in ("A", "B"):
        if comp.only_params[side]:
            lines.append(f"- Parameters only in {side}: {', '.join(comp.only_params[side])}")
    differing = {m: n for m, n in comp.text_differing.items() if n}
    if differing:
        lines.append("- Text metrics differing: " + ", ".join(
            f"{m} ({n} points)" for m, n in differing.items()))
    lines += ["", "### Metrics", "", markdown_table(comp.summary), ""]
    if comp.figures:
        lines += ["### Figures", ""]
        for filename, caption in comp.figures:
            lines += [caption, "", f"![{caption}]({filename})", ""]
    differ = comp.summary.loc[comp.summary["points differing"] > 0, "metric"]
    long = comp.long
    same = (long["A"] == long["B"]) | (long["A"].isna() & long["B"].isna())
    changed = long[long["metric"].isin(differ) & (long["metric"] != TIMING) & ~same]
    lines += ["### Points that differ (model metrics; wall_s in compare.csv)", ""]
    if changed.empty:
        lines += ["_Every model metric is identical in both runs._", ""]
    else:
        shown = changed.head(MAX_POINT_ROWS)
        lines += [markdown_table(shown), ""]
        if len(changed) > len(shown):
            lines += [f"_{len(changed) - len(shown)} more rows in compare.csv._", ""]
    return lines

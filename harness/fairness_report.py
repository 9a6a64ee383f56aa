"""Reports of the `fairness` and `churn` kinds: figures, headline table, findings from the data.

fairness: per scenario, Jain and peak-to-mean bars by scheduler; latency CDFs; p99 vs load;
scheduling cost vs backends and vs Services. churn: flow disruption vs the optimum, broken
connections, per-backend load over time (from the stored ``load_series`` column). Every figure
reads only the points table; every finding is computed from it.

Latency figures use only points whose latency is warm (``latency_warm``: the warm-up covered the
queues' relaxation time, harness/connsim_scenarios.py); a finding counts the points left out.
``disruption_pct`` is defined for the hashing schedulers (dh, sh, mh) only (NaN otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.connsim_scenarios import Q_LEVELS  # noqa: E402
from harness.kind import Figure, Report  # noqa: E402
from kernels.schedulers import SCHEDULERS  # noqa: E402

DPI = 110


def _order(df: pd.DataFrame) -> list[str]:
    present = set(df["scheduler"])
    return [s for s in SCHEDULERS if s in present]


def _ref(values, target: float) -> float:
    """The value in ``values`` closest (in log) to ``target``."""
    v = np.array(sorted(set(values)), dtype=float)
    return float(v[np.argmin(np.abs(np.log(v) - np.log(target)))])


def _base(df: pd.DataFrame) -> pd.DataFrame:
    """Points with a single Service (the scheduling-cost Services sweep aside)."""
    one = df[df["services"] == df["services"].min()]
    return one


def _warm(df: pd.DataFrame) -> pd.Series:
    """Points whose latency is not dominated by the start-up transient (all, for tables
    written before the ``latency_warm`` column)."""
    if "latency_warm" not in df.columns:
        return pd.Series(True, index=df.index)
    return df["latency_warm"].astype(bool)


def _save(fig, plots_dir: Path, name: str) -> None:
    fig.tight_layout()
    fig.savefig(plots_dir / name, dpi=DPI)
    plt.close(fig)


def _bars(df: pd.DataFrame, plots_dir: Path, figures: list, findings: list, rows: list) -> None:
    base = _base(df)
    for sc in sorted(set(base["scenario"])):
        sub = base[base["scenario"] == sc]
        nb = _ref(sub["backends"], 10)
        sub = sub[sub["backends"] == nb]
        g = sub.groupby("scheduler")[["jain_index", "peak_to_mean"]].mean()
        order = [s for s in _order(sub) if s in g.index]
        if not order:
            continue
        g = g.loc[order]
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        axes[0].bar(order, g["jain_index"], color="tab:blue")
        axes[0].set_ylabel("Jain's index (1 = perfectly even)")
        axes[0].set_ylim(0, 1.05)
        axes[1].bar(order, g["peak_to_mean"], color="tab:orange")
        axes[1].axhline(1.0, color="k", lw=0.8)
        axes[1].set_ylabel("peak-to-mean connections")
        for ax in axes:
            ax.set_xlabel("scheduler")
            ax.tick_params(axis="x", rotation=60, labelsize=7)
            ax.set_title(f"{sc}, {int(nb)} backends (mean over loads)")
        name = f"balance_{sc}.png"
        _save(fig, plots_dir, name)
        figures.append(Figure(name, f"Jain's index and peak-to-mean of per-backend connection "
                                    f"counts by scheduler in {sc} with {int(nb)} backends, "
                                    f"averaged over the loads simulated."))
        worst, best = g["jain_index"].idxmin(), g["jain_index"].idxmax()
        findings.append(f"{sc}, {int(nb)} backends: Jain ranges from "
                        f"{g.loc[worst, 'jain_index']:.3f} ({worst}) to "
                        f"{g.loc[best, 'jain_index']:.4f} ({best}); peak-to-mean is "
                        f"highest for {g['peak_to_mean'].idxmax()} "
                        f"({g['peak_to_mean'].max():.2f}).")
        for s in order:
            rows.append({"scenario": sc, "backends": int(nb), "scheduler": s,
                         "jain_index": round(float(g.loc[s, "jain_index"]), 4),
                         "peak_to_mean": round(float(g.loc[s, "peak_to_mean"]), 3)})


def _cdfs(df: pd.DataFrame, plots_dir: Path, figures: list, findings: list) -> None:
    base = _base(df)
    for sc in sorted(set(base["scenario"])):
        sub = base[(base["scenario"] == sc) & base["stable"].astype(bool) & _warm(base)]
        if sub.empty:
            continue
        nb = _ref(sub["backends"], 10)
        sub = sub[sub["backends"] == nb]
        load = float(sub["load"].max())
        sub = sub[sub["load"] == load]
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        drawn = 0
        for s in _order(sub):
            q = sub[sub["scheduler"] == s]["latency_quantiles"]
            q = [json.loads(v) for v in q if isinstance(v, str) and v]
            if not q:
                continue
            ax.plot(np.mean(q, axis=0), Q_LEVELS, marker=".", ms=3, lw=1, label=s)
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        ax.set_xscale("log")
        ax.set_xlabel("request latency (units of mean service time)")
        ax.set_ylabel("cumulative share of requests")
        ax.set_title(f"{sc}, {int(nb)} backends, load {load:g}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        name = f"latency_cdf_{sc}.png"
        _save(fig, plots_dir, name)
        figures.append(Figure(name, f"Latency CDFs by scheduler in {sc} ({int(nb)} backends, "
                                    f"load {load:g}, stable and warmed-up points only)."))


def _p99(df: pd.DataFrame, plots_dir: Path, figures: list, findings: list) -> None:
    base = _base(df)
    for sc in sorted(set(base["scenario"])):
        sub = base[base["scenario"] == sc]
        if sub["load"].nunique() < 2:
            continue
        nb = _ref(sub["backends"], 10)
        sub = sub[sub["backends"] == nb].copy()
        sub.loc[~_warm(sub), "latency_p99"] = np.nan  # start-up transient: no latency shown
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for s in _order(sub):
            g = sub[sub["scheduler"] == s].groupby("load").agg(
                p99=("latency_p99", "mean"), stable=("stable", "all"))
            line, = ax.plot(g.index, g["p99"], marker="o", ms=3, lw=1, label=s)
            bad = g[~g["stable"].astype(bool)]
            if not bad.empty:
                ax.plot(bad.index, np.full(len(bad), np.nanmax(sub["latency_p99"])
                                           if sub["latency_p99"].notna().any() else 1.0),
                        "x", color=line.get_color(), ms=7)
        ax.set_yscale("log")
        ax.set_xlabel("offered load ρ")
        ax.set_ylabel("p99 latency (units of mean service time)")
        ax.set_title(f"{sc}, {int(nb)} backends (x = unstable)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        name = f"p99_vs_load_{sc}.png"
        _save(fig, plots_dir, name)
        figures.append(Figure(name, f"p99 request latency vs offered load by scheduler in {sc} "
                                    f"({int(nb)} backends); crosses mark unstable points, which "
                                    f"have no latency; stable points not warmed up are left "
                                    f"out."))
        unstable = sub[~sub["stable"].astype(bool)]
        if not unstable.empty:
            by = unstable.groupby("scheduler")["load"].min().sort_values()
            findings.append(f"{sc}, {int(nb)} backends: {len(by)} of {sub['scheduler'].nunique()} "
                            f"schedulers overload a backend at some load; the first to do so: "
                            + ", ".join(f"{s} at ρ={v:g}" for s, v in by.head(6).items()) + ".")
        top = sub[sub["load"] == sub["load"].max()].dropna(subset=["latency_p99"])
        if not top.empty:
            g = top.groupby("scheduler")["latency_p99"].mean().sort_values()
            findings.append(f"{sc}, {int(nb)} backends, ρ={sub['load'].max():g}: lowest p99 "
                            f"{g.iloc[0]:.2f} ({g.index[0]}), highest stable p99 {g.iloc[-1]:.2f} "
                            f"({g.index[-1]}) mean service times.")


def _cost(df: pd.DataFrame, plots_dir: Path, figures: list, findings: list, rows: list) -> None:
    for axis, fname in (("backends", "decision_cost_vs_backends.png"),
                        ("services", "decision_cost_vs_services.png")):
        other = "services" if axis == "backends" else "backends"
        sub = df[df[other] == _ref(df[other], 1 if other == "services" else 10)]
        if sub[axis].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        ax.set_prop_cycle(color=plt.cm.tab20.colors)
        for s in _order(sub):
            g = sub[sub["scheduler"] == s].groupby(axis)["decision_ns_mean"].median()
            ax.plot(g.index, g.values, marker="o", ms=3, lw=1, label=s)
            if len(g) > 1:
                rows.append({"scheduler": s, "axis": axis, "from": int(g.index[0]),
                             "to": int(g.index[-1]), "ns_from": round(float(g.iloc[0]), 1),
                             "ns_to": round(float(g.iloc[-1]), 1)})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(axis + (" per Service" if axis == "backends" else ""))
        ax.set_ylabel("ns per scheduling decision (schedule + bind)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
        _save(fig, plots_dir, fname)
        figures.append(Figure(fname, f"Measured nanoseconds per scheduling decision vs {axis} "
                                     f"(median over the points), log-log."))
        g = sub.groupby(["scheduler", axis])["decision_ns_mean"].median().unstack()
        lo, hi = g.columns.min(), g.columns.max()
        growth = (g[hi] / g[lo]).dropna().sort_values()
        if growth.empty:
            continue
        findings.append(f"From {int(lo)} to {int(hi)} {axis}, decision cost grows least for "
                        f"{growth.index[0]} (×{growth.iloc[0]:.1f}) and most for "
                        f"{growth.index[-1]} (×{growth.iloc[-1]:.1f}, "
                        f"{g.loc[growth.index[-1], hi]:.0f} ns at {int(hi)}).")


def report_fairness(df: pd.DataFrame, plots_dir: Path) -> Report:
    """Figures and findings of the `fairness` kind."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    findings: list[str] = []
    rows: list[dict] = []
    cost_rows: list[dict] = []
    if df.empty:
        return Report(figures, pd.DataFrame(), ["no fairness points"])
    _bars(df, plots_dir, figures, findings, rows)
    _cdfs(df, plots_dir, figures, findings)
    _p99(df, plots_dir, figures, findings)
    _cost(df, plots_dir, figures, findings, cost_rows)
    drops = df[df["dropped_pct"] > 0].groupby("scheduler")["dropped_pct"].max().sort_values()
    if not drops.empty:
        findings.append("Schedulers that answer \"no destination\" (connections dropped, latency "
                        "counts only served ones): " + ", ".join(
                            f"{s} up to {v:.1f}%" for s, v in drops[::-1].items()) + ".")
    n_unstable = int((~df["stable"].astype(bool)).sum())
    findings.append(f"{n_unstable} of {len(df)} points are unstable (a backend offered more "
                    f"than it can serve, or a group of backends at ρ ≈ 1 with a growing "
                    f"backlog) and carry no latency.")
    cold = df[df["stable"].astype(bool) & ~_warm(df)]
    if not cold.empty:
        by = cold.groupby("backends")["load"].min()
        findings.append(f"{len(cold)} stable points have too few connections per backend for "
                        f"the queues to warm up (latency_warm False: the warm-up did not cover "
                        f"the relaxation time ρ/(1−√ρ)² per backend) and are left out of the "
                        f"latency figures; by backends, the lowest such load: "
                        + ", ".join(f"{int(b)} from ρ={v:g}" for b, v in by.items()) + ".")
    return Report(figures, pd.DataFrame(rows), findings)


def report_churn(df: pd.DataFrame, plots_dir: Path) -> Report:
    """Figures and findings of the `churn` kind."""
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    findings: list[str] = []
    rows: list[dict] = []
    if df.empty:
        return Report(figures, pd.DataFrame(), ["no churn points"])
    base = _base(df)
    scen = sorted(set(base["scenario"]))
    # disruption vs optimal and broken connections, one panel per scenario
    for col, fname, ylabel, cap in (
            ("disruption_pct", "disruption_vs_optimal.png", "flow keys moved (%)",
             "Share of sampled flow keys whose backend changes per backend-set change for the "
             "hashing schedulers (dh, sh, mh; for the others a key's backend depends on the "
             "order keys arrive in, not on the key, so no bar), by scenario; the black line is "
             "the optimum k/N."),
            ("broken_connections_pct", "broken_connections.png",
             "live connections broken (%)",
             "Live connections reset by a dying pod per 100 connections live at the "
             "removal/crash, by scheduler and scenario."),
            ("refused_connections_pct", "refused_connections.png",
             "new connections refused (%)",
             "New connections sent to a dead pod before kube-proxy removed its endpoint, per "
             "100 connections of the Service, by scheduler and scenario.")):
        fig, axes = plt.subplots(1, len(scen), figsize=(4.6 * len(scen), 3.9), squeeze=False)
        for ax, sc in zip(axes[0], scen, strict=True):
            sub = base[base["scenario"] == sc]
            nb = _ref(sub["backends"], 10)
            sub = sub[sub["backends"] == nb]
            g = sub.groupby("scheduler")[[col, "optimal_disruption_pct"]].mean()
            order = [s for s in _order(sub) if s in g.index]
            ax.bar(order, g.loc[order, col], color="tab:blue" if "disruption" in col else "tab:red")
            if col == "disruption_pct":
                ax.axhline(float(g["optimal_disruption_pct"].mean()), color="k", lw=1.2,
                           label="optimal")
                ax.legend(fontsize=7)
            ax.set_title(f"{sc}, {int(nb)} backends")
            ax.set_xlabel("scheduler")
            ax.set_ylabel(ylabel)
            ax.tick_params(axis="x", rotation=60, labelsize=7)
            for s in order:
                rows.append({"scenario": sc, "backends": int(nb), "scheduler": s,
                             "metric": col, "value": round(float(g.loc[s, col]), 3)})
        _save(fig, plots_dir, fname)
        figures.append(Figure(fname, cap))
    for sc in scen:
        sub = base[base["scenario"] == sc]
        g = sub.groupby("scheduler")[["disruption_pct", "optimal_disruption_pct",
                                      "broken_connections_pct"]].mean()
        excess = (g["disruption_pct"] - g["optimal_disruption_pct"]).dropna().sort_values()
        moved = (f"closest to the optimal disruption ({g['optimal_disruption_pct'].mean():.1f}%)"
                 f" among the hashing schedulers is {excess.index[0]} "
                 f"({g.loc[excess.index[0], 'disruption_pct']:.1f}%), farthest "
                 f"{excess.index[-1]} ({g.loc[excess.index[-1], 'disruption_pct']:.1f}%); "
                 if not excess.empty else "")
        findings.append(
            f"{sc}: {moved}"
            f"live connections broken range {g['broken_connections_pct'].min():.2f}–"
            f"{g['broken_connections_pct'].max():.2f}%"
            + (f"; new connections refused by a dead pod: most with "
               f"{r.idxmax()} ({r.max():.2f}%), fewest with {r.idxmin()} ({r.min():.2f}%)"
               if (r := sub.groupby("scheduler")["refused_connections_pct"].mean()).max() > 0
               else "") + ".")
    drops = base[base["dropped_pct"] > 0].groupby(["scenario", "scheduler"])["dropped_pct"].mean()
    if not drops.empty:
        findings.append("New connections answered with \"no destination\" (dropped), mean over "
                        "points: " + "; ".join(f"{sc} {s} {v:.1f}%" for (sc, s), v in
                                               drops.sort_values()[::-1].head(8).items())
                        + " (mh/sh without fallback while a removed real server sits at "
                        "weight 0 until drained; ovf when every backend has more active "
                        "connections than its weight).")
    unstable = base[~base["stable"].astype(bool)].groupby("scheduler").size()
    if not unstable.empty:
        findings.append("Unstable churn points (a backend offered more than it can serve): "
                        + ", ".join(f"{s} {n}" for s, n in unstable.sort_values()[::-1].items())
                        + f" of {len(base) // max(1, base['scheduler'].nunique())} each.")
    # per-backend load over time
    for sc in scen:
        sub = base[(base["scenario"] == sc) & base["load_series"].astype(str).str.len().gt(2)]
        if sub.empty:
            continue
        nb = _ref(sub["backends"], 5)
        sub = sub[sub["backends"] == nb]
        load = _ref(sub["load"], 0.8)
        sub = sub[sub["load"] == load]
        scheds = [s for s in ("rr", "lc", "mh", "sh", "statistic", "numgen") if s in
                  set(sub["scheduler"])] or _order(sub)[:4]
        scheds = scheds[:4]
        fig, axes = plt.subplots(1, len(scheds), figsize=(4.4 * len(scheds), 3.6),
                                 squeeze=False, sharey=True)
        for ax, s in zip(axes[0], scheds, strict=True):
            ser = json.loads(sub[sub["scheduler"] == s]["load_series"].iloc[0])
            act = np.asarray(ser["active"])
            t = (np.arange(act.shape[1]) + 0.5) * ser["bin_s"]
            for k in range(act.shape[0]):
                ax.plot(t, act[k], lw=0.9, label=f"backend {k}")
            ax.axvline(ser["t_change"], color="k", ls=":", lw=0.8)
            ax.set_title(f"{s}")
            ax.set_xlabel("time (s)")
            ax.set_ylabel("activeconns (time-averaged)")
            ax.grid(True, alpha=0.3)
        axes[0][0].legend(fontsize=6)
        name = f"load_over_time_{sc}.png"
        _save(fig, plots_dir, name)
        figures.append(Figure(name, f"Per-backend active connections over time in {sc} "
                                    f"({int(nb)} backends, load {load:g}) for {', '.join(scheds)};"
                                    f" the dotted line marks mid-run, where the churn starts or is"
                                    f" centred."))
    return Report(figures, pd.DataFrame(rows), findings)

"""Report of the ``scaling`` kind: figures, headline table and findings computed from the points.

Figures: first-packet cost vs Services (one panel per traffic class, fitted log-log slope per
curve), first-packet operations vs Services for each endpoint count, IPVS established-packet cost
vs live connections per connection-table size, rules and kernel memory vs Services. Findings
are sentences built from the numbers (slopes, crossovers, where IPVS's service table leaves
O(1), nftables flatness), never canned text.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.kind import Figure, Report  # noqa: E402

MODES = ("userspace", "iptables", "ipvs", "nftables")
COLORS = {"userspace": "tab:purple", "iptables": "tab:red", "ipvs": "tab:blue",
          "nftables": "tab:green"}
TRAFFIC = ("clusterip", "nodeport", "miss")
SLOPE_FROM = 1000  # fit slopes over Services >= this (the decades where the dataplane dominates)


def slope(x: np.ndarray, y: np.ndarray, x_min: float = SLOPE_FROM) -> float:
    """Least-squares slope of log10(y) on log10(x) over x >= x_min (NaN if < 2 points)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    keep = (x >= x_min) & (y > 0) & np.isfinite(y)
    if keep.sum() < 2:
        keep = (y > 0) & np.isfinite(y)
    if keep.sum() < 2 or np.unique(x[keep]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log10(x[keep]), np.log10(y[keep]), 1)[0])


def crossover(curve_a: pd.Series, curve_b: pd.Series, factor: float) -> float:
    """Smallest index (Services) where a >= factor * b, NaN if never."""
    both = pd.concat([curve_a, curve_b], axis=1, keys=["a", "b"]).dropna()
    hit = both.index[both["a"] >= factor * both["b"]]
    return float(hit.min()) if len(hit) else float("nan")


def _main_points(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the Services sweep (the most common live_connections / conn_table_bits)."""
    if df.empty:
        return df
    live = df["live_connections"].mode().iloc[0]
    bits = df["conn_table_bits"].mode().iloc[0]
    return df[(df["live_connections"] == live) & (df["conn_table_bits"] == bits)]


def _pick_endpoints(df: pd.DataFrame) -> int:
    eps = sorted(df["endpoints_per_service"].unique())
    return 10 if 10 in eps else int(eps[len(eps) // 2])


def _curve(df: pd.DataFrame, col: str) -> pd.Series:
    return df.groupby("services")[col].mean().sort_index()


def _fmt_n(x: float) -> str:
    return "never (in range)" if not np.isfinite(x) else f"{int(x):,}"


def report(df: pd.DataFrame, plots_dir: Path) -> Report:
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures: list[Figure] = []
    findings: list[str] = []
    rows: list[dict] = []
    main = _main_points(df)
    eps = _pick_endpoints(main) if not main.empty else 10
    base = main[(main["endpoints_per_service"] == eps)] if not main.empty else main
    traffics = [t for t in TRAFFIC if t in set(base.get("traffic", []))]
    modes = [m for m in MODES if m in set(base.get("mode", []))]

    # ---- figure 1: first-packet ns vs Services, one panel per traffic class
    if traffics and base["services"].nunique() > 1:
        fig, axes = plt.subplots(1, len(traffics), figsize=(5.2 * len(traffics), 4.4),
                                 squeeze=False)
        for ax, tr in zip(axes[0], traffics, strict=True):
            for mode in modes:
                for pop, ls in (("uniform", "-"), ("zipf", "--")):
                    sub = base[(base["traffic"] == tr) & (base["mode"] == mode)
                               & (base["popularity"] == pop)]
                    if sub.empty:
                        continue
                    cur = _curve(sub, "first_packet_ns_mean")
                    b = slope(cur.index.values, cur.values)
                    ax.plot(cur.index, cur.values, ls, marker="o", ms=3, color=COLORS[mode],
                            label=f"{mode} {pop} (slope {b:.2f})")
                    ops = _curve(sub, "first_packet_ops_mean")
                    rows.append({
                        "mode": mode, "traffic": tr, "popularity": pop,
                        "endpoints": eps, "slope_ns": round(b, 3),
                        "slope_ops": round(slope(ops.index.values, ops.values), 3),
                        "ns_at_min_services": round(float(cur.iloc[0]), 1),
                        "ns_at_max_services": round(float(cur.iloc[-1]), 1),
                        "ops_at_max_services": round(float(ops.iloc[-1]), 1),
                        "max_services": int(cur.index[-1]),
                    })
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("Services")
            ax.set_ylabel("first-packet cost (ns, mean)")
            ax.set_title(f"{tr} traffic, {eps} endpoints/Service")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6.5)
        fig.tight_layout()
        fig.savefig(plots_dir / "first_packet_vs_services.png", dpi=110)
        plt.close(fig)
        figures.append(Figure("first_packet_vs_services.png",
                              f"Mean first-packet cost vs Services per dataplane ({eps} endpoints "
                              f"per Service; solid uniform, dashed Zipf popularity); slopes are "
                              f"log-log fits over Services >= {SLOPE_FROM:,}."))

    # ---- figure 2: first-packet ops vs Services for each endpoint count
    if not main.empty and main["services"].nunique() > 1:
        sub0 = main[(main["popularity"] == "uniform")]
        t0 = "clusterip" if "clusterip" in set(sub0["traffic"]) else sub0["traffic"].iloc[0]
        sub0 = sub0[sub0["traffic"] == t0]
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        styles = ["-", "--", ":", "-."]
        for i, e in enumerate(sorted(sub0["endpoints_per_service"].unique())):
            for mode in modes:
                sub = sub0[(sub0["mode"] == mode) & (sub0["endpoints_per_service"] == e)]
                if sub.empty:
                    continue
                cur = _curve(sub, "first_packet_ops_mean")
                ax.plot(cur.index, cur.values, styles[i % 4], marker=".", color=COLORS[mode],
                        label=f"{mode}, {e} ep")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("Services")
        ax.set_ylabel("first-packet operations (mean)")
        ax.set_title(f"{t0} traffic, uniform popularity")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6.5, ncol=2)
        fig.tight_layout()
        fig.savefig(plots_dir / "first_packet_ops_vs_services.png", dpi=110)
        plt.close(fig)
        figures.append(Figure("first_packet_ops_vs_services.png",
                              "Mean first-packet operations vs Services for each endpoint count "
                              "(rules for iptables/userspace, lookups+rules+hash probes for "
                              "nftables, probes+rules for ipvs)."))

    # ---- figure 3: IPVS established cost vs live connections per conn-table size
    ipv = df[df["mode"] == "ipvs"] if "mode" in df else df.iloc[0:0]
    if not ipv.empty and ipv["live_connections"].nunique() > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for bits in sorted(ipv["conn_table_bits"].unique()):
            sub = ipv[ipv["conn_table_bits"] == bits]
            cur = sub.groupby("live_connections")["established_packet_ns_mean"].mean()
            pr = sub.groupby("live_connections")["established_conn_probes_mean"].mean()
            axes[0].plot(cur.index, cur.values, marker="o", ms=3,
                         label=f"{1 << int(bits):,} buckets")
            axes[1].plot(pr.index, pr.values, marker="o", ms=3,
                         label=f"{1 << int(bits):,} buckets")
            nb = 1 << int(bits)
            doubled = pr.index[pr >= 2 * pr.iloc[0]]
            where = (f"; probes double from {int(doubled.min()):,} live connections (load "
                     f"{doubled.min() / nb:.1f}/bucket)" if len(doubled) else "")
            findings.append(
                f"IPVS connection table with 2^{int(bits)} buckets: an established packet walks "
                f"{pr.iloc[0]:.1f} probes ({cur.iloc[0]:.0f} ns with conntrack) at "
                f"{int(pr.index[0]):,} live connections and {pr.iloc[-1]:.1f} probes "
                f"({cur.iloc[-1]:.0f} ns) at {int(pr.index[-1]):,} (load "
                f"{pr.index[-1] / nb:.2f}/bucket){where}.")
        for ax, lab in zip(axes, ("established-packet cost (ns, mean)",
                                  "IPVS conn-table probes per packet (mean)"), strict=True):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("live connections")
            ax.set_ylabel(lab)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, title="conn_table_bits")
        axes[0].set_title("ipvs: conntrack + IPVS connection table")
        axes[1].set_title("ipvs connection-table chain walk")
        fig.tight_layout()
        fig.savefig(plots_dir / "established_vs_live_connections.png", dpi=110)
        plt.close(fig)
        figures.append(Figure("established_vs_live_connections.png",
                              "IPVS established-packet cost and connection-table probes vs live "
                              "connections, one curve per connection-table size."))

    # ---- figure 4: rules and memory vs Services
    if not base.empty and base["services"].nunique() > 1:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
        for mode in modes:
            sub = base[base["mode"] == mode]
            for ax, col in zip(axes, ("rules_total", "kernel_memory_bytes"), strict=True):
                cur = _curve(sub, col)
                ax.plot(cur.index, cur.values, marker="o", ms=3, color=COLORS[mode], label=mode)
        axes[0].set_ylabel("rules programmed (nat+filter / nft; ipvs: iptables rules only)")
        axes[1].set_ylabel("kernel memory of the programmed state (bytes, estimate)")
        for ax in axes:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("Services")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        axes[0].set_title(f"rules, {eps} endpoints/Service")
        axes[1].set_title(f"kernel memory, {eps} endpoints/Service")
        fig.tight_layout()
        fig.savefig(plots_dir / "rules_memory_vs_services.png", dpi=110)
        plt.close(fig)
        figures.append(Figure("rules_memory_vs_services.png",
                              "Rules programmed and estimated kernel memory vs Services per "
                              "dataplane (documented per-object sizes, kernels/costmodel.py)."))

    # ---- findings from the numbers
    uni = base[base["popularity"] == "uniform"] if not base.empty else base
    for tr in traffics:
        t = uni[uni["traffic"] == tr]
        ipt = _curve(t[t["mode"] == "iptables"], "first_packet_ns_mean")
        for other in ("nftables", "ipvs"):
            oth = _curve(t[t["mode"] == other], "first_packet_ns_mean")
            if ipt.empty or oth.empty:
                continue
            x2, x10 = crossover(ipt, oth, 2.0), crossover(ipt, oth, 10.0)
            rows.append({"mode": f"iptables vs {other}", "traffic": tr, "popularity": "uniform",
                         "endpoints": eps, "crossover_2x_services": x2,
                         "crossover_10x_services": x10})
            findings.append(
                f"{tr}: iptables' first packet costs 2x {other}'s from {_fmt_n(x2)} Services and "
                f"10x from {_fmt_n(x10)} Services ({eps} endpoints/Service, uniform popularity).")
    for r in rows:
        if "slope_ns" in r and r["popularity"] == "uniform" and np.isfinite(r["slope_ns"]):
            findings.append(
                f"{r['mode']} {r['traffic']}: first-packet cost grows as Services^"
                f"{r['slope_ns']:.2f} (operations ^{r['slope_ops']:.2f}) above {SLOPE_FROM:,} "
                f"Services, {r['ns_at_min_services']:.0f} ns -> {r['ns_at_max_services']:.0f} ns "
                f"at {r['max_services']:,}.")
    nft_rows = uni[uni["mode"] == "nftables"]
    if not nft_rows.empty:
        for tr in traffics:
            cur = _curve(nft_rows[nft_rows["traffic"] == tr], "first_packet_ops_mean")
            if len(cur) > 1:
                findings.append(
                    f"nftables {tr}: operations per first packet stay within "
                    f"{cur.max() - cur.min():.2f} between {int(cur.index.min()):,} and "
                    f"{int(cur.index.max()):,} Services (verdict-map dispatch is O(1)).")
    ipv_main = uni[(uni["mode"] == "ipvs") & (uni["traffic"] == "clusterip")]
    if not ipv_main.empty and "svc_probes_mean" in ipv_main:
        sp = _curve(ipv_main, "svc_probes_mean")
        vs = _curve(ipv_main, "ipvs_virtual_servers")
        nb = float(ipv_main["ipvs_svc_buckets"].iloc[0])
        first = sp.iloc[0]
        over = sp.index[sp >= first + 1.0]
        if len(over):
            s0 = over.min()
            findings.append(
                f"IPVS's {int(nb)}-bucket service table stops being O(1) at about {int(s0):,} "
                f"Services ({int(vs.loc[s0]):,} virtual servers, {vs.loc[s0] / nb:.1f} per "
                f"bucket): a ClusterIP hit then walks {sp.loc[s0]:.1f} probes vs {first:.1f} at "
                f"{int(sp.index[0]):,} Services, and {sp.iloc[-1]:.1f} at "
                f"{int(sp.index[-1]):,} (slope {slope(sp.index.values, sp.values):.2f}).")
    usr = uni[(uni["mode"] == "userspace") & (uni["traffic"] == "clusterip")]
    if not usr.empty:
        cur = _curve(usr, "first_packet_ns_mean")
        findings.append(
            f"userspace: the first packet costs {cur.iloc[0] / 1000:.1f} us at "
            f"{int(cur.index[0]):,} Services — dominated by the proxy's accept/connect and "
            f"context switches — and {cur.iloc[-1] / 1000:.1f} us at {int(cur.index[-1]):,}.")
    if "ops_definition" in df:
        defs = df.groupby("mode")["ops_definition"].first()
        findings.append("Operations counted: " + "; ".join(f"{m}: {d}" for m, d in
                                                           defs.items()) + ".")
    if "nodeport_range" in df:
        wide = df[(df["traffic"] == "nodeport") & (df["nodeport_range"] != "30000-32767")]
        if not wide.empty:
            capped = df[df["nodeport_services"] < df["services"]]
            msg = (f"nodeport points with more than 2,700 NodePort Services use "
                   f"--service-node-port-range 1024-65535 (from {int(wide['services'].min()):,}"
                   f" Services)")
            if not capped.empty:
                msg += (f"; the largest clusters cannot make every Service a NodePort (a node "
                        f"has 64,512 ports in 1024-65535): {int(capped['services'].max()):,} "
                        f"Services -> {int(capped['nodeport_services'].min()):,} NodePorts")
            findings.append(msg + ".")
    headline = pd.DataFrame(rows)
    return Report(figures=figures, headline=headline, findings=findings)
